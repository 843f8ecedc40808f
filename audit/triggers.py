"""The database layer of append-only: triggers that refuse UPDATE, DELETE and TRUNCATE on the audit tables.

Created by a migration for each vendor, so raw SQL from a database shell fails like the ORM does. A later
migration that alters a protected table must call ``install`` again: on SQLite, Django rebuilds an altered table
as a new one, which has no triggers.

One way out exists, for the archive (``audit.archive``): a DELETE of entries and seals is allowed inside the archive
transaction of a request that a second officer approved, and only for the chain positions and the time range of
that request. PostgreSQL recognises that transaction by a transaction-local setting (``SET LOCAL audit.archive``)
whose SHA-256 the request holds; SQLite, which has no session variables, by a guard row that exists only inside
that transaction. UPDATE and TRUNCATE are refused always.

On PostgreSQL the entries' table is partitioned by month (``audit.partitions``): its row trigger reaches every
partition by itself, while TRUNCATE triggers are per table, so each partition gets its own.
"""

from collections.abc import Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

PROTECTED_TABLES = ("audit_auditlog", "audit_seal", "audit_signeddigest", "audit_archivecheckpoint")
# The tables an approved archive may remove rows from, and how the trigger function tells them apart.
ARCHIVABLE = {"audit_auditlog": "entry", "audit_seal": "seal"}
# The guarded triggers read these; before the migration that creates them, the plain triggers are installed.
GUARD_TABLES = ("audit_archiverequest", "audit_archiveguard")

_POSTGRES_REFUSE = """
    RAISE EXCEPTION '% on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
"""

_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_POSTGRES_REFUSE}
END;
$$
"""

# The approved request whose archive transaction this is: approved by another officer than its requester (NIST
# AU-9(5) once more, in the database), executing now, and holding the SHA-256 of this transaction's token.
_POSTGRES_REQUEST = """
    SELECT 1 FROM audit_archiverequest r
    WHERE r.guard_sha256 = guard AND r.status = 'executing'
      AND r.approved_by_id IS NOT NULL AND r.approved_by_id <> r.requested_by_id
"""

_POSTGRES_GUARDED_FUNCTION = f"""
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    token text;
    guard text;
BEGIN
    IF TG_OP = 'DELETE' AND TG_NARGS = 1 THEN
        -- Transaction-local (set_config(..., true)): it ends with the archive transaction, commit or rollback.
        token := current_setting('audit.archive', true);
        IF token IS NOT NULL AND token <> '' THEN
            guard := encode(sha256(convert_to(token, 'UTF8')), 'hex');
            -- Nested IFs: OLD has the columns of one table only, and SQL does not promise to short-circuit.
            IF TG_ARGV[0] = 'entry' THEN
                IF EXISTS ({_POSTGRES_REQUEST}
                      AND OLD.created_at < r."before"
                      AND EXISTS (SELECT 1 FROM audit_seal s WHERE s.entry_id = OLD.id
                                  AND s.chain_index BETWEEN r.first_index AND r.checkpoint_index)) THEN
                    RETURN OLD;
                END IF;
            ELSIF TG_ARGV[0] = 'seal' THEN
                IF EXISTS ({_POSTGRES_REQUEST}
                      AND OLD.chain_index BETWEEN r.first_index AND r.checkpoint_index) THEN
                    RETURN OLD;
                END IF;
            END IF;
        END IF;
    END IF;
{_POSTGRES_REFUSE}
END;
$$
"""


def _postgres_install(table: str) -> list[str]:
    argument = f"'{ARCHIVABLE[table]}'" if table in ARCHIVABLE else ""
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_refuse_change({argument})",
        *postgres_truncate_statements(table),
    ]


def postgres_truncate_statements(table: str) -> list[str]:
    """The TRUNCATE trigger of one table; a partition needs its own, as a TRUNCATE can name it directly."""
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    ]


def _sqlite_guard(table: str) -> str:
    """The WHEN clause of a guarded DELETE trigger: refuse unless the archive transaction of an approved request
    removes this row (SQLite's stand-in for the transaction-local setting is the guard row)."""
    request = (
        "SELECT 1 FROM audit_archiveguard g JOIN audit_archiverequest r ON r.id = g.request_id "
        "WHERE r.status = 'executing' AND r.approved_by_id IS NOT NULL AND r.approved_by_id <> r.requested_by_id"
    )
    if ARCHIVABLE[table] == "entry":
        return (
            f'WHEN NOT EXISTS ({request} AND OLD.created_at < r."before" '
            "AND EXISTS (SELECT 1 FROM audit_seal s WHERE s.entry_id = OLD.id "
            "AND s.chain_index BETWEEN r.first_index AND r.checkpoint_index)) "
        )
    return f"WHEN NOT EXISTS ({request} AND OLD.chain_index BETWEEN r.first_index AND r.checkpoint_index) "


def _sqlite_install(table: str, guarded: bool) -> list[str]:
    when = _sqlite_guard(table) if guarded and table in ARCHIVABLE else ""
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_update",
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'UPDATE on {table} refused: the audit trail is append-only'); END",
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} {when}"
        f"BEGIN SELECT RAISE(ABORT, 'DELETE on {table} refused: the audit trail is append-only'); END",
    ]


def install_statements(vendor: str, tables: Sequence[str] = PROTECTED_TABLES, *, guarded: bool = False) -> list[str]:
    """The statements that protect ``tables``; ``guarded`` opens the archive's one way out (the guard tables must
    exist then). Partitions' own TRUNCATE triggers need a connection to find them: see ``install``."""
    if vendor == "postgresql":
        function = _POSTGRES_GUARDED_FUNCTION if guarded else _POSTGRES_FUNCTION
        return [function] + [sql for table in tables for sql in _postgres_install(table)]
    if vendor == "sqlite":
        return [sql for table in tables for sql in _sqlite_install(table, guarded)]
    raise NotImplementedError(f"no append-only triggers for the {vendor} backend")


def drop_statements(vendor: str, tables: Sequence[str] = PROTECTED_TABLES) -> list[str]:
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_{name} ON {table}"
            for table in tables
            for name in ("append_only", "no_truncate")
        ]
    return [f"DROP TRIGGER IF EXISTS {table}_{name}" for table in tables for name in ("no_update", "no_delete")]


def partitions_of(connection: BaseDatabaseWrapper, table: str) -> list[str]:
    """The partitions of ``table`` (PostgreSQL), sorted by name; none for a plain table or on SQLite."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


def _partition_statements(connection: BaseDatabaseWrapper, tables: Sequence[str], drop: bool) -> list[str]:
    statements = []
    for table in tables:
        for partition in partitions_of(connection, table):
            statements += (
                [f"DROP TRIGGER IF EXISTS {partition}_no_truncate ON {partition}"]
                if drop
                else postgres_truncate_statements(partition)
            )
    return statements


def guard_tables_exist(connection: BaseDatabaseWrapper) -> bool:
    existing = set(connection.introspection.table_names())
    return all(table in existing for table in GUARD_TABLES)


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(
    connection: BaseDatabaseWrapper, tables: Sequence[str] = PROTECTED_TABLES, *, guarded: bool | None = None
) -> None:
    """Protect ``tables`` and their partitions. ``guarded`` defaults to whether the archive's guard tables exist:
    the migrations before them install the plain triggers, every later install the guarded ones."""
    if guarded is None:
        guarded = guard_tables_exist(connection)
    statements = install_statements(connection.vendor, tables, guarded=guarded)
    _run(connection, statements + _partition_statements(connection, tables, drop=False))


def drop(connection: BaseDatabaseWrapper, tables: Sequence[str] = PROTECTED_TABLES) -> None:
    """Remove the triggers, the partitions' too: tests use it to play an attacker with database access."""
    _run(connection, drop_statements(connection.vendor, tables) + _partition_statements(connection, tables, drop=True))
