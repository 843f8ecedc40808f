"""The database layer of append-only: triggers that refuse UPDATE, DELETE and TRUNCATE on the audit tables.

Created by a migration for each vendor, so raw SQL from a database shell fails like the ORM does. A later
migration that alters a protected table must call ``install`` again: on SQLite, Django rebuilds an altered table
as a new one, which has no triggers.
"""

from collections.abc import Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

PROTECTED_TABLES = ("audit_auditlog", "audit_seal", "audit_signeddigest")

_POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def _postgres_install(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    ]


def _sqlite_install(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_update",
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'UPDATE on {table} refused: the audit trail is append-only'); END",
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'DELETE on {table} refused: the audit trail is append-only'); END",
    ]


def install_statements(vendor: str, tables: Sequence[str] = PROTECTED_TABLES) -> list[str]:
    if vendor == "postgresql":
        return [_POSTGRES_FUNCTION] + [sql for table in tables for sql in _postgres_install(table)]
    if vendor == "sqlite":
        return [sql for table in tables for sql in _sqlite_install(table)]
    raise NotImplementedError(f"no append-only triggers for the {vendor} backend")


def drop_statements(vendor: str, tables: Sequence[str] = PROTECTED_TABLES) -> list[str]:
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_{name} ON {table}" for table in tables for name in ("append_only", "no_truncate")
        ]
    return [f"DROP TRIGGER IF EXISTS {table}_{name}" for table in tables for name in ("no_update", "no_delete")]


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: BaseDatabaseWrapper, tables: Sequence[str] = PROTECTED_TABLES) -> None:
    _run(connection, install_statements(connection.vendor, tables))


def drop(connection: BaseDatabaseWrapper, tables: Sequence[str] = PROTECTED_TABLES) -> None:
    """Remove the triggers: tests use it to play an attacker with database access."""
    _run(connection, drop_statements(connection.vendor, tables))
