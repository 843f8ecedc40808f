"""Monthly range partitions of the audit table on PostgreSQL (SQLite keeps one table).

``audit_auditlog`` is ``PARTITION BY RANGE (created_at)`` with one partition a month, named
``audit_auditlog_pYYYY_MM``, and a DEFAULT partition as a safety net for rows no month partition takes (when
``manage.py audit_partitions`` has not run for a while). The primary key is ``(id, created_at)``, as PostgreSQL
requires the partition key in it; Django keeps using ``id``, which the sequence alone keeps unique.

The append-only row trigger of the parent reaches every partition (PostgreSQL 13+); a TRUNCATE can name a
partition directly, so each partition gets its own TRUNCATE trigger when it is created.
"""

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from . import triggers

PARENT = "audit_auditlog"
DEFAULT_PARTITION = f"{PARENT}_default"
DEFAULT_MONTHS_AHEAD = 3
_DETACHED = f"{PARENT}_default_detached"
_UNPARTITIONED = f"{PARENT}_unpartitioned"
_SEQUENCE = f"{PARENT}_id_seq"
_NAME_RE = re.compile(rf"^{PARENT}_p(\d{{4}})_(\d{{2}})$")


class PartitionError(Exception):
    """The table cannot be partitioned or a partition cannot be made; the message says why."""


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    through: dt.date | None = None


def supported(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor == "postgresql"


def month_start(value: dt.date | dt.datetime) -> dt.date:
    return dt.date(value.year, value.month, 1)


def add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def partition_name(month: dt.date) -> str:
    return f"{PARENT}_p{month:%Y_%m}"


def month_of_partition(name: str) -> dt.date | None:
    match = _NAME_RE.match(name)
    return dt.date(int(match[1]), int(match[2]), 1) if match else None


def _bound(month: dt.date) -> str:
    # UTC midnight: created_at is timestamptz, and every audit time is UTC.
    return f"'{month.isoformat()} 00:00:00+00'"


def _create_statements(month: dt.date) -> list[str]:
    name = partition_name(month)
    return [
        f"CREATE TABLE {name} PARTITION OF {PARENT} "
        f"FOR VALUES FROM ({_bound(month)}) TO ({_bound(add_months(month, 1))})",
        *triggers.postgres_truncate_statements(name),
    ]


def _name_indexes(cursor: Any, partition: str) -> None:
    """Name each index of a partition after the table's index it belongs to (``audit_action_id_p2026_11``), not
    PostgreSQL's generated name: a query plan then still says which of the table's indexes it reads."""
    suffix = partition.removeprefix(f"{PARENT}_")
    cursor.execute(
        "SELECT child.relname, parent.relname FROM pg_inherits i "
        "JOIN pg_class child ON child.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent "
        "JOIN pg_index x ON x.indexrelid = child.oid WHERE x.indrelid = to_regclass(%s)",
        [partition],
    )
    for child, parent in cursor.fetchall():
        wanted = f"{parent}_{suffix}"
        if child != wanted and len(wanted) <= 63:  # PostgreSQL's limit for a name
            cursor.execute(f'ALTER INDEX "{child}" RENAME TO "{wanted}"')


def is_partitioned(connection: BaseDatabaseWrapper) -> bool:
    if not supported(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))", [PARENT])
        return bool(cursor.fetchone()[0])


def partitions(connection: BaseDatabaseWrapper) -> dict[str, str]:
    """Each partition of the audit table with its bounds as PostgreSQL states them."""
    if not supported(connection):
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [PARENT],
        )
        return dict(cursor.fetchall())


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    months = []
    month = first
    while month <= last:
        months.append(month)
        month = add_months(month, 1)
    return months


def _default_has_rows_in(cursor: Any, months: list[dt.date]) -> bool:
    for month in months:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE created_at >= %s AND created_at < %s)",
            [_utc(month), _utc(add_months(month, 1))],
        )
        if cursor.fetchone()[0]:
            return True
    return False


def _utc(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def ensure_partitions(
    connection: BaseDatabaseWrapper,
    *,
    months_ahead: int = DEFAULT_MONTHS_AHEAD,
    today: dt.date | None = None,
    first_month: dt.date | None = None,
) -> PartitionReport:
    """Create the month partitions from ``first_month`` (default: this month) through ``months_ahead`` months after
    this one, those missing only: running it again changes nothing.

    Rows that meanwhile landed in the DEFAULT partition for one of the new months are moved into it: PostgreSQL
    refuses to create a partition for values its DEFAULT partition holds. The DEFAULT partition is detached, a new
    one takes its place, its rows are inserted again through the parent and the detached table is dropped, all in
    one transaction. Rows are never updated or deleted on the way: no trigger has to step aside.
    """
    if not supported(connection):
        return PartitionReport()
    if months_ahead < 0:
        raise PartitionError("--months-ahead cannot be negative")
    if not is_partitioned(connection):
        raise PartitionError(f"{PARENT} is not partitioned: run `manage.py migrate` first")
    current = month_start(today or dt.datetime.now(dt.UTC).date())
    last = add_months(current, months_ahead)
    report = PartitionReport(through=last)
    wanted = _months(first_month or current, last)
    if all(partition_name(month) in partitions(connection) for month in wanted):
        # The usual daily run: nothing to make, and no lock that would hold up writers.
        return report
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # One maker at a time: two would both find a month missing and the second CREATE would fail.
        cursor.execute(f"LOCK TABLE {PARENT} IN SHARE ROW EXCLUSIVE MODE")
        existing = set(partitions(connection))
        missing = [month for month in wanted if partition_name(month) not in existing]
        if not missing:
            return report
        moving = DEFAULT_PARTITION in existing and _default_has_rows_in(cursor, missing)
        if moving:
            cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT_PARTITION}")
            cursor.execute(f"ALTER TABLE {DEFAULT_PARTITION} RENAME TO {_DETACHED}")
            cursor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT")
            for sql in triggers.postgres_truncate_statements(DEFAULT_PARTITION):
                cursor.execute(sql)
        for month in missing:
            for sql in _create_statements(month):
                cursor.execute(sql)
            report.created.append(partition_name(month))
        if moving:
            cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM {_DETACHED}")
            report.moved_from_default = cursor.rowcount
            # Dropped before the new DEFAULT partition's indexes take the names the detached one's still hold.
            cursor.execute(f"DROP TABLE {_DETACHED}")
            _name_indexes(cursor, DEFAULT_PARTITION)
        for name in report.created:
            _name_indexes(cursor, name)
    return report


def convert_to_partitioned(connection: BaseDatabaseWrapper, *, months_ahead: int = DEFAULT_MONTHS_AHEAD) -> bool:
    """Recreate the audit table as a partitioned one with the same columns, indexes, ids and rows (migration).

    Returns False when it already is. The rows are copied with INSERT ... SELECT and the old table is dropped:
    DROP is DDL, which the row triggers do not see. The id sequence goes on from where the old one stood, so no id
    is ever handed out twice.
    """
    if not supported(connection) or is_partitioned(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE confrelid = to_regclass(%s) AND contype = 'f'",
            [PARENT],
        )
        referencing = [name for (name,) in cursor.fetchall()]
        if referencing:
            # A foreign key needs a unique id; the partitioned table's key is (id, created_at).
            raise PartitionError(f"{PARENT} cannot be partitioned while foreign keys point at it: {referencing}")
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
            "AND indexname <> %s ORDER BY indexname",
            [PARENT, f"{PARENT}_pkey"],
        )
        indexes = cursor.fetchall()
        cursor.execute(f"SELECT min(created_at), max(id) FROM {PARENT}")
        oldest, max_id = cursor.fetchone()
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [PARENT])
        (old_sequence,) = cursor.fetchone()
        last_value = 0
        if old_sequence:
            cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {old_sequence}")
            (last_value,) = cursor.fetchone()

        cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {_UNPARTITIONED}")
        # LIKE copies the columns, NOT NULL, defaults (created_at's) and checks, not the identity: a partitioned
        # table takes no identity column before PostgreSQL 17, so id gets a sequence of its own below.
        cursor.execute(
            f"CREATE TABLE {PARENT} (LIKE {_UNPARTITIONED} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (created_at)"
        )
        cursor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT")
        current = month_start(dt.datetime.now(dt.UTC).date())
        first = min(month_start(oldest), current) if oldest else current
        for month in _months(first, add_months(current, months_ahead)):
            cursor.execute(_create_statements(month)[0])
        cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM {_UNPARTITIONED}")
        cursor.execute(f"DROP TABLE {_UNPARTITIONED}")

        cursor.execute(f"CREATE SEQUENCE {_SEQUENCE} OWNED BY {PARENT}.id")
        cursor.execute(f"ALTER TABLE {PARENT} ALTER COLUMN id SET DEFAULT nextval('{_SEQUENCE}')")
        cursor.execute(
            "SELECT setval(%s, %s, %s)", [_SEQUENCE, max(last_value or 0, max_id or 0, 1), bool(max_id or last_value)]
        )
        # Indexes after the copy (one pass each), created on the parent so that every partition, later ones too,
        # gets them. Same names as before: Django's migration state names them.
        cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (id, created_at)")
        for _name, definition in indexes:
            cursor.execute(definition)
        for partition in triggers.partitions_of(connection, PARENT):
            _name_indexes(cursor, partition)
    triggers.install(connection, [PARENT])
    return True


def drop_empty_partitions_before(connection: BaseDatabaseWrapper, before: dt.datetime) -> list[str]:
    """Drop the month partitions that end by ``before`` and hold no row any more (after an archive).

    Only empty ones, checked under an exclusive lock: dropping a table skips the row triggers, so a partition that
    still holds an entry (one left behind by a legal hold, say) stays.
    """
    if not is_partitioned(connection):
        return []
    dropped = []
    for name in partitions(connection):
        month = month_of_partition(name)
        if month is None or _utc(add_months(month, 1)) > before:
            continue
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
            if cursor.fetchone()[0]:
                continue
            cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")
        dropped.append(name)
    return dropped
