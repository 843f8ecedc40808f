"""PostgreSQL: the audit table is range-partitioned by month, made ahead by audit_partitions, every partition
append-only. SQLite keeps one table."""

import datetime as dt
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit import partitions, triggers
from audit.actions import AuditAction
from audit.archive import approve_archive, request_archive
from audit.models import AuditLog
from audit.partitions import add_months, month_start, partition_name
from audit.sealing import seal_pending
from audit.services import record
from audit.verify import verify_chain
from tests.audit.archive_helpers import CUTOFF, grant, make_keys, old_trail
from tests.factories.users import UserFactory


def this_month() -> dt.date:
    return month_start(dt.datetime.now(dt.UTC).date())


def run_partitions(*args: str) -> str:
    out = StringIO()
    call_command("audit_partitions", *args, stdout=out)
    return out.getvalue()


def partition_of(entry: AuditLog) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_auditlog WHERE id = %s", [entry.pk])
        return cursor.fetchone()[0]


def _raw(sql: str) -> None:
    # atomic: on PostgreSQL a failed statement would otherwise abort the test's transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture
def entry(db) -> AuditLog:
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=42)
    seal_pending()
    return entry


def test_sqlite_keeps_one_table(db):
    """On SQLite audit_partitions says there is nothing to do and the audit table stays a plain table."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert run_partitions() == "SQLite keeps the audit trail in one table: no partitions to create.\n"
    assert not partitions.is_partitioned(connection)
    assert "audit_auditlog_default" not in connection.introspection.table_names()


def test_the_table_is_partitioned_by_month_with_id_and_time_as_key(postgres_only, db):
    """audit_auditlog is PARTITION BY RANGE (created_at) with primary key (id, created_at) and a DEFAULT partition."""
    assert partitions.is_partitioned(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_partkeydef('audit_auditlog'::regclass)")
        assert cursor.fetchone()[0] == "RANGE (created_at)"
        cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_auditlog_pkey'")
        assert cursor.fetchone()[0] == "PRIMARY KEY (id, created_at)"
    assert partitions.partitions(connection)["audit_auditlog_default"] == "DEFAULT"


def test_partitions_exist_for_this_month_and_three_ahead(postgres_only, db):
    """The test session ran audit_partitions: this month and the next three have their partitions, with UTC bounds."""
    existing = partitions.partitions(connection)
    for offset in range(4):
        month = add_months(this_month(), offset)
        following = add_months(month, 1)
        assert existing[partition_name(month)] == (
            f"FOR VALUES FROM ('{month} 00:00:00+00') TO ('{following} 00:00:00+00')"
        )


def test_audit_partitions_is_idempotent_and_records_what_it_creates(postgres_only, db):
    """Asking for more months creates them once and records AUDIT.PARTITIONS.CREATE; a second run creates and
    records nothing."""
    later = [partition_name(add_months(this_month(), offset)) for offset in (4, 5)]
    first = run_partitions("--months-ahead", "5")
    assert f"Created 2 partition(s): {', '.join(later)}." in first
    second = run_partitions("--months-ahead", "5")
    assert "Created" not in second
    [created] = AuditLog.objects.filter(action=AuditAction.AUDIT_PARTITIONS_CREATE)
    assert created.meta["created"] == later
    assert set(later) <= set(partitions.partitions(connection))


def test_entries_land_in_their_month_partition(postgres_only, entry):
    """A recorded entry is stored in this month's partition and read back by id like before."""
    assert partition_of(entry) == partition_name(this_month())
    assert AuditLog.objects.get(pk=entry.pk).entity_id == "42"
    assert AuditLog.objects.order_by("-id").first().pk == entry.pk


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {partition} SET entity_id = '43'",
        "DELETE FROM {partition}",
        "TRUNCATE {partition}",
        "UPDATE audit_auditlog SET entity_id = '43'",
        "DELETE FROM audit_auditlog",
        "TRUNCATE audit_auditlog",
    ],
)
def test_raw_update_delete_truncate_on_partitions_are_refused(postgres_only, entry, sql):
    """Raw UPDATE, DELETE and TRUNCATE, on the partition itself or through the parent, are refused by a trigger,
    and the entry is unchanged."""
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql.format(partition=partition_name(this_month())))
    assert AuditLog.objects.get(pk=entry.pk).entity_id == "42"


def test_a_new_partition_is_append_only_too(postgres_only, db):
    """A partition audit_partitions creates later gets the TRUNCATE trigger, and the row trigger reaches it."""
    run_partitions("--months-ahead", "6")
    newest = partition_name(add_months(this_month(), 6))
    future = dt.datetime.combine(add_months(this_month(), 6), dt.time(12), tzinfo=dt.UTC)
    AuditLog(created_at=future, action=AuditAction.ROLE_UPDATE, salt=os.urandom(16)).save()
    for sql in (f"TRUNCATE {newest}", f"DELETE FROM {newest}", f"UPDATE {newest} SET entity = 'x'"):
        with pytest.raises(DatabaseError, match="append-only"):
            _raw(sql)
    assert AuditLog.objects.filter(created_at=future).exists()


def test_triggers_drop_and_install_cover_every_partition(postgres_only, db):
    """triggers.drop (what tamper tests use) removes the partitions' TRUNCATE triggers too, install puts them back."""

    def truncate_triggers() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'audit_auditlog_%%_no_truncate'")
            return {name for (name,) in cursor.fetchall()}

    expected = {f"{name}_no_truncate" for name in partitions.partitions(connection)}
    assert expected <= truncate_triggers()
    triggers.drop(connection)
    assert not truncate_triggers() & expected
    triggers.install(connection)
    assert expected <= truncate_triggers()


def test_rows_in_the_default_partition_move_into_their_new_month(postgres_only, db):
    """An entry beyond the months made ahead lands in the DEFAULT partition; once its month is made, it is moved
    there unchanged (no UPDATE or DELETE involved) and the chain still verifies."""
    month = add_months(this_month(), 8)
    late = AuditLog(
        created_at=dt.datetime.combine(month, dt.time(9), tzinfo=dt.UTC),
        action=AuditAction.ROLE_UPDATE,
        salt=os.urandom(16),
    )
    late.save()
    seal_pending()
    assert partition_of(late) == "audit_auditlog_default"
    output = run_partitions("--months-ahead", "8")
    assert "Moved 1 entries from the default partition into their month." in output
    assert partition_of(late) == partition_name(month)
    assert verify_chain().ok
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("TRUNCATE audit_auditlog_default")


def test_migration_conversion_is_idempotent(postgres_only, db):
    """Converting an already partitioned table does nothing (the migration may meet one)."""
    assert partitions.convert_to_partitioned(connection) is False


def test_archive_drops_the_month_partitions_it_emptied(postgres_only, db, tmp_path, settings):
    """With month partitions for January to March 2025, archiving January and February empties and drops those two;
    March's partition, which still holds entries, stays."""
    partitions.ensure_partitions(connection, months_ahead=0, first_month=dt.date(2025, 1, 1))
    make_keys(tmp_path / "keys", settings)
    settings.AUDIT_ARCHIVE_DIR = str(tmp_path / "archive")
    trail = old_trail()
    assert partition_of(trail.january[0]) == "audit_auditlog_p2025_01"
    alice = grant(UserFactory(), "request_archive")
    bob = grant(UserFactory(), "approve_archive")
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    approve_archive(actor=bob, request_id=request.pk)
    out = StringIO()
    call_command("audit_archive", "--no-progress", "--request", str(request.pk), stdout=out)
    existing = partitions.partitions(connection)
    assert "audit_auditlog_p2025_01" not in existing and "audit_auditlog_p2025_02" not in existing
    assert "audit_auditlog_p2025_03" in existing
    assert "Dropped the emptied partitions audit_auditlog_p2025_01, audit_auditlog_p2025_02." in out.getvalue()
