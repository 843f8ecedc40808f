"""Sealing: every committed entry gets exactly one seal, linked into one chain without gaps."""

import os
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from audit import sealing
from audit.actions import AuditAction
from audit.hashing import GENESIS_HASH, chain_hash
from audit.models import AuditLog, Seal
from audit.sealing import SEALER_LOCK_KEY, digest_of, seal_pending
from audit.services import EventSpec, record, record_many
from audit.verify import verify_chain


def _record(n: int) -> list[AuditLog]:
    return [record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i) for i in range(n)]


def _assert_one_chain() -> None:
    """Every entry has exactly one seal, indices are 0..n-1 and each seal links to the one before."""
    seals = list(Seal.objects.order_by("chain_index"))
    assert [seal.chain_index for seal in seals] == list(range(AuditLog.objects.count()))
    assert sorted(seal.entry_id for seal in seals) == sorted(AuditLog.objects.values_list("id", flat=True))
    prev_hash = GENESIS_HASH
    for seal in seals:
        assert seal.prev_hash == prev_hash
        assert seal.hash == chain_hash(seal.prev_hash, seal.digest)
        prev_hash = seal.hash


def _late_entry(below: int) -> AuditLog:
    """An entry whose id was taken before ``below`` but whose transaction committed after it was sealed."""
    return AuditLog.objects.create(
        id=below - 1, created_at=timezone.now(), action=AuditAction.ROLE_UPDATE, salt=os.urandom(16)
    )


def test_seal_pending_seals_each_entry_once_in_order(db):
    """seal_pending seals every entry once, in id order, at indices 0..n-1 linked by prev_hash."""
    entries = _record(5)
    assert seal_pending() == 5
    _assert_one_chain()
    seals = list(Seal.objects.order_by("chain_index"))
    assert [seal.entry_id for seal in seals] == [entry.pk for entry in entries]
    assert all(seal.digest == digest_of(AuditLog.objects.get(pk=seal.entry_id)) for seal in seals)


def test_second_seal_pending_seals_nothing(db):
    """A second run finds nothing left to seal and leaves the chain as it was."""
    _record(3)
    seal_pending()
    assert seal_pending() == 0
    assert Seal.objects.count() == 3


def test_later_entries_extend_the_chain(db):
    """Entries recorded after a batch are appended after the head, not restarted at the genesis."""
    _record(2)
    seal_pending()
    _record(3)
    assert seal_pending() == 3
    _assert_one_chain()


def test_entry_is_sealed_after_commit(db, django_capture_on_commit_callbacks):
    """record() seals its entry through transaction.on_commit: not before the commit, right after it."""
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            entries = _record(3)
        assert not Seal.objects.exists()
    assert sorted(Seal.objects.values_list("entry_id", flat=True)) == [entry.pk for entry in entries]
    _assert_one_chain()


def test_rolled_back_entry_is_not_sealed(db, django_capture_on_commit_callbacks):
    """An entry whose transaction rolls back is neither kept nor sealed; the next commit seals only its own."""
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            _record(1)
            raise RuntimeError
        kept = _record(1)[0]
    assert list(Seal.objects.values_list("entry_id", flat=True)) == [kept.pk]


def test_late_entry_below_lookback_is_sealed_by_its_id(db, settings):
    """An entry that committed late, below the look-back window, is skipped by a plain run but sealed when its
    transaction passes its id."""
    settings.AUDIT_SEAL_LOOKBACK = 2
    entries = _record(6)
    seal_pending()
    late = _late_entry(below=entries[0].pk)
    assert seal_pending() == 0
    assert seal_pending(entry_ids=[late.pk]) == 1
    assert Seal.objects.get(entry=late).chain_index == 6
    _assert_one_chain()


def _seal_rows_read() -> int:
    """Rows of the seal table this transaction has read so far, by index or by scan."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idx_tup_fetch + seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = %s",
            [Seal._meta.db_table],
        )
        return cursor.fetchone()[0]


def test_lookback_window_reads_the_recent_positions_not_the_whole_chain(db, settings, postgres_only):
    """The look-back's lower bound, the lowest entry of the last AUDIT_SEAL_LOOKBACK chain positions, is read from
    those positions: what the sealer reads under its lock does not grow with the chain."""
    settings.AUDIT_SEAL_LOOKBACK = 10
    record_many([EventSpec(action=AuditAction.ROLE_UPDATE, entity="Role", entity_id=i) for i in range(3000)])
    seal_pending()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Seal._meta.db_table}")
    with transaction.atomic():
        before = _seal_rows_read()
        window = sealing._take_lock_and_window("default", wait=True, lookback=True)
        read = _seal_rows_read() - before
    recent = Seal.objects.order_by("-chain_index")[:10]
    assert window.floor == min(seal.entry_id for seal in recent)
    assert read < 100, f"the window read {read} seals of a chain of 3,000"


def test_audit_seal_full_seals_an_old_unsealed_entry(db, settings):
    """`manage.py audit_seal --full` seals an unsealed entry that the look-back window no longer covers."""
    settings.AUDIT_SEAL_LOOKBACK = 2
    entries = _record(6)
    seal_pending()
    late = _late_entry(below=entries[0].pk)
    out = StringIO()
    call_command("audit_seal", stdout=out)
    assert not Seal.objects.filter(entry=late).exists()
    call_command("audit_seal", "--full", stdout=out)
    assert Seal.objects.filter(entry=late).exists()
    assert out.getvalue().splitlines() == ["Sealed 0 entries.", "Sealed 1 entries."]
    _assert_one_chain()


THREADS = 8
PER_THREAD = 50


def _writer(number: int, errors: list[BaseException]) -> None:
    try:
        for i in range(PER_THREAD):
            if number % 2 and i % 5 == 0:
                # Some entries commit in transactions of several entries, sealed as one batch on commit.
                with transaction.atomic():
                    for _ in range(3):
                        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=f"{number}-{i}")
            else:
                record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=f"{number}-{i}")
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_writers_seal_every_entry_exactly_once(postgres_only, committed_db):
    """With 8 threads recording at once, in autocommit and in transactions, every entry gets exactly one seal,
    the chain indices are exactly 0..n-1 and the chain verifies."""
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(number, errors)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    per_odd_thread = PER_THREAD + 2 * (PER_THREAD // 5)
    assert AuditLog.objects.count() == THREADS // 2 * (PER_THREAD + per_odd_thread)
    _assert_one_chain()
    assert verify_chain().ok


# --- the sealer after a commit: no queue for the lock ----------------------------------------------------------


def _waiting_for_the_sealer_lock() -> bool:
    """Whether some session waits for a shared sealer lock (a writer that found the sealer busy)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s "
            "AND mode = 'ShareLock' AND NOT granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            [SEALER_LOCK_KEY],
        )
        return cursor.fetchone()[0] > 0


def _hold_sealer_lock(*, seal: bool, holding: threading.Event, outcome: dict, errors: list) -> None:
    """Another sealer: holds the lock until a writer waits for it, then seals (or not) and commits."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
            holding.set()
            deadline = time.monotonic() + 10
            while not _waiting_for_the_sealer_lock():
                assert time.monotonic() < deadline, "the writer never waited for the sealer"
                time.sleep(0.01)
            # A holder whose batch reads now finds the writer's entry; one that read earlier did not.
            outcome["sealed"] = seal_pending() if seal else 0
            outcome["committed_at"] = time.monotonic()
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.parametrize("holder_seals", [True, False], ids=["holder-seals-it", "holder-read-too-early"])
def test_writer_that_finds_the_sealer_busy_returns_only_with_its_entry_sealed(
    postgres_only, committed_db, holder_seals
):
    """A writer whose commit finds another sealer holding the lock does not queue for it: it waits until that
    sealer has committed and looks. If the holder sealed its entry, the writer seals nothing; if the holder's
    batch did not include it, the writer seals it itself. Either way record() returns with the entry sealed
    exactly once."""
    holding, outcome, errors = threading.Event(), {}, []
    holder = threading.Thread(
        target=_hold_sealer_lock,
        kwargs={"seal": holder_seals, "holding": holding, "outcome": outcome, "errors": errors},
    )
    holder.start()
    assert holding.wait(10)
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)
    returned_at = time.monotonic()
    holder.join()
    assert errors == []
    assert returned_at > outcome["committed_at"]
    assert outcome["sealed"] == (1 if holder_seals else 0)
    assert Seal.objects.filter(entry=entry).count() == 1
    _assert_one_chain()
    assert verify_chain().ok


def test_sealer_after_commit_looks_back_for_stranded_entries_when_due(committed_db, settings):
    """An entry whose own sealer failed, below the newest sealed one, is sealed by the next commit's sealer once
    the look-back is due (every AUDIT_SEAL_LOOKBACK_EVERY_SECONDS), and by `audit_seal` in any case."""
    _record(2)
    # Committed, never sealed (its sealer "failed"), and below an entry that a later batch sealed: out of reach
    # of the batches that look only above the newest sealed entry.
    stranded = AuditLog.objects.create(created_at=timezone.now(), action=AuditAction.ROLE_UPDATE, salt=os.urandom(16))
    later = AuditLog.objects.create(created_at=timezone.now(), action=AuditAction.ROLE_UPDATE, salt=os.urandom(16))
    sealing._seal_batch(using="default", entry_ids=[], full_scan=False, lookback=False, after_id=stranded.pk, limit=10)
    assert Seal.objects.filter(entry=later).exists() and not Seal.objects.filter(entry=stranded).exists()

    settings.AUDIT_SEAL_LOOKBACK_EVERY_SECONDS = 3600
    sealing._last_lookback["default"] = time.monotonic()
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="next")
    assert not Seal.objects.filter(entry=stranded).exists()

    settings.AUDIT_SEAL_LOOKBACK_EVERY_SECONDS = 0
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="after")
    assert Seal.objects.filter(entry=stranded).exists()
    _assert_one_chain()
    assert verify_chain().ok
