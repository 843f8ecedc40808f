"""The entry INSERT (audit.writing): prepared once per connection on PostgreSQL, logged with its text when Django
logs queries, and failing with Django's database errors."""

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import EventSpec, _build_entry, record
from audit.writing import insert_entries

INSERT = 'INSERT INTO "audit_auditlog"'


def _prepared_inserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [f"{INSERT}%"])
        return cursor.fetchone()[0]


def test_the_entry_insert_is_prepared_once_per_connection(postgres_only, db):
    for n in range(3):
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=n)

    assert _prepared_inserts() == 1
    assert AuditLog.objects.filter(entity="Role").count() == 3


def test_prepared_statements_can_be_turned_off_for_connection_poolers(postgres_only, committed_db, settings):
    settings.AUDIT_PREPARED_STATEMENTS = False
    connection.close()  # a session that has prepared nothing yet

    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)

    assert _prepared_inserts() == 0
    assert AuditLog.objects.filter(entity="Role").count() == 1


def test_logged_queries_show_the_insert_also_after_it_was_prepared(db):
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)  # prepared on PostgreSQL from here on

    with CaptureQueriesContext(connection) as queries:
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=2)

    inserts = [query["sql"] for query in queries.captured_queries if query["sql"].startswith(INSERT)]
    assert len(inserts) == 1


def test_a_failed_insert_raises_djangos_error_and_leaves_no_row(postgres_only, db):
    entry = _build_entry(
        EventSpec(action=AuditAction.ROLE_UPDATE, entity="Role", entity_id=1), actor=None, perms={}, ctx=None
    )
    # Longer than the column: the recorder never sends this, PostgreSQL refuses it (SQLite does not check lengths).
    entry.outcome = "x" * 17

    with pytest.raises(DataError), transaction.atomic():
        insert_entries([entry], "default")

    assert not AuditLog.objects.filter(entity="Role").exists()
