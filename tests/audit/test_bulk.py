"""Bulk recording: a batch job or bulk action over 10,000 objects records one entry per object through
``record_many``, with multi-row INSERTs, and every entry is sealed once its transaction commits."""

import math

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.actions import AuditAction
from audit.models import AuditLog, Seal
from audit.services import EventSpec, record_many
from audit.verify import verify_chain
from audit.writing import ROWS_PER_INSERT
from locks.models import Repository

OBJECTS = 10_000


def _bulk_create_repositories(count: int) -> tuple[list[Repository], list[AuditLog]]:
    """A batch job: create ``count`` repositories and record one entry per repository, all in one transaction."""
    with transaction.atomic():
        repositories = Repository.objects.bulk_create(
            Repository(slug=f"bulk-{n}", name=f"Bulk {n}") for n in range(count)
        )
        entries = record_many(
            [
                EventSpec(
                    action=AuditAction.LOCK_CREATE,
                    entity="Repository",
                    entity_id=repository.pk,
                    changes={"slug": {"before": None, "after": repository.slug}},
                    meta={"job": "import"},
                )
                for repository in repositories
            ]
        )
    return repositories, entries


@pytest.fixture
def insert_counter():
    """Counts INSERT statements per table while a block runs."""

    class Counter(CaptureQueriesContext):
        def inserts_into(self, table: str) -> int:
            return sum(query["sql"].startswith(f'INSERT INTO "{table}"') for query in self.captured_queries)

    return Counter(connection)


def test_bulk_operation_of_10000_objects_is_fully_recorded_and_sealed(committed_db):
    """One entry per object, each naming its object; all sealed right after the commit, in one chain that
    verifies."""
    repositories, entries = _bulk_create_repositories(OBJECTS)

    assert AuditLog.objects.count() == OBJECTS
    recorded = set(AuditLog.objects.filter(entity="Repository").values_list("entity_id", flat=True))
    assert recorded == {str(repository.pk) for repository in repositories}
    assert Seal.objects.count() == OBJECTS
    assert not AuditLog.objects.filter(seal__isnull=True).exists()
    assert sorted(Seal.objects.values_list("chain_index", flat=True)) == list(range(OBJECTS))
    assert sorted(Seal.objects.values_list("entry_id", flat=True)) == sorted(entry.pk for entry in entries)
    report = verify_chain()
    assert report.ok, report.findings
    assert report.head_index == OBJECTS - 1


def test_bulk_recording_uses_multi_row_inserts(committed_db, insert_counter):
    """10,000 entries and their seals take a few dozen INSERT statements, not 10,000 each."""
    with insert_counter:
        _bulk_create_repositories(OBJECTS)

    entry_inserts = insert_counter.inserts_into("audit_auditlog")
    seal_inserts = insert_counter.inserts_into("audit_seal")
    # Entries go ROWS_PER_INSERT rows to a statement and seals a sealer batch (AUDIT_SEAL_BATCH_SIZE, 1000) to a
    # statement; SQLite splits both further, at 999 parameters a statement (43 entries, 199 seals).
    if connection.vendor == "postgresql":
        assert entry_inserts == math.ceil(OBJECTS / ROWS_PER_INSERT)
        assert seal_inserts == math.ceil(OBJECTS / 1000)
    assert entry_inserts <= OBJECTS / 40
    assert seal_inserts <= OBJECTS / 100
    assert Seal.objects.count() == OBJECTS
