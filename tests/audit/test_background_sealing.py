"""Background sealing (AUDIT_SEALING = "background"): writers return after their commit, a sealer thread per process
seals their entries in batches, each exactly once, and the chain verifies."""

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import background_sealing, sealing
from audit.actions import AuditAction
from audit.models import AnomalyScanState, AuditLog, Seal
from audit.sealing import KnownSealed, _with_digests, digest_of, digest_of_sent, seal_pending
from audit.services import EventSpec, perms_snapshot, record, record_many
from audit.verify import verify_chain
from audit.writing import _SENT_INDEX, SentEntry, insert_entries

THREADS = 4
PER_THREAD = 100


@pytest.fixture
def background(settings, postgres_only, committed_db) -> Iterator[None]:
    settings.AUDIT_SEALING = "background"
    yield
    # The thread's connection must be gone before the test database is emptied and, at the end, dropped.
    background_sealing.stop_all(timeout=30)


def _flush() -> None:
    assert background_sealing.flush_all(timeout=30), "the sealer thread did not finish in 30 s"


def _assert_sealed_once() -> None:
    seals = list(Seal.objects.order_by("chain_index"))
    assert [seal.chain_index for seal in seals] == list(range(len(seals)))
    assert sorted(seal.entry_id for seal in seals) == sorted(AuditLog.objects.values_list("id", flat=True))
    assert verify_chain().ok


def test_record_returns_before_the_seal_and_the_thread_seals_it(background, settings):
    settings.AUDIT_SEAL_LINGER_MS = 500
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)
    # The batch waits half a second for company: the writer is long back.
    assert not Seal.objects.filter(entry_id=entry.pk).exists()
    _flush()
    assert Seal.objects.filter(entry_id=entry.pk).count() == 1
    _assert_sealed_once()


def _writer(errors: list[BaseException]) -> None:
    try:
        for i in range(PER_THREAD):
            if i % 10 == 0:
                with transaction.atomic():
                    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i)
                    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i)
            else:
                record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i)
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_writers_are_sealed_exactly_once(background, settings):
    settings.AUDIT_SEAL_LINGER_MS = 5
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(errors,)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _flush()
    assert AuditLog.objects.count() == THREADS * (PER_THREAD + PER_THREAD // 10)
    _assert_sealed_once()


def test_rolled_back_entries_are_never_handed_to_the_sealer(background):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="rolled back")
            raise RuntimeError("the change fails")
    with transaction.atomic():
        kept = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="kept")
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="savepoint rolled back")
                raise RuntimeError("the inner change fails")
    _flush()
    # A seal of an entry that never committed would show as a missing entry in the chain.
    assert list(Seal.objects.values_list("entry_id", flat=True)) == [kept.pk]
    _assert_sealed_once()


def test_entries_another_sealer_took_first_are_not_sealed_twice(background, settings):
    settings.AUDIT_SEAL_LINGER_MS = 1000
    entries = [record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i) for i in range(5)]
    # `audit_seal` (or a look-back) runs while the thread still waits for its batch to fill.
    assert seal_pending() == 5
    _flush()
    assert Seal.objects.count() == len(entries)
    _assert_sealed_once()


def test_bulk_records_are_handed_to_the_sealer_with_digests_of_their_stored_values(background, settings):
    """record_many's multi-row INSERTs return what the database normalised, as record's INSERT does: the batch job
    returns before its entries are sealed, and the thread seals them with digests that verify (floats that jsonb
    writes its own way included)."""
    settings.AUDIT_SEAL_LINGER_MS = 500
    specs = [
        EventSpec(action=AuditAction.ROLE_UPDATE, entity="Role", entity_id=i, meta={"ratio": 1e16 + i, "zero": -0.0})
        for i in range(1200)  # more than one statement's rows
    ]

    entries = record_many(specs)

    assert not Seal.objects.filter(entry_id__in=[entry.pk for entry in entries]).exists()
    stored = dict(AuditLog.objects.filter(pk__in=[entry.pk for entry in entries]).values_list("pk", "entity_id"))
    assert stored == {entry.pk: entry.entity_id for entry in entries}  # each entry got its own row's id
    _flush()
    assert Seal.objects.filter(entry_id__in=[entry.pk for entry in entries]).count() == 1200
    _assert_sealed_once()


def test_stop_seals_what_was_handed_over_and_closes_the_connection(background, settings):
    settings.AUDIT_SEAL_LINGER_MS = 10_000
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)
    background_sealing.stop_all(timeout=30)
    assert Seal.objects.filter(entry_id=entry.pk).count() == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0


def test_sqlite_seals_inline_whatever_the_setting(db, settings):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL seals in the background with this setting")
    settings.AUDIT_SEALING = "background"
    with transaction.atomic():
        entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1)
    seal_pending()  # inside the test's transaction on_commit does not run; the entry is sealed as before
    assert Seal.objects.filter(entry_id=entry.pk).count() == 1


def _inserted(meta: dict, ip: str | None) -> tuple[AuditLog, SentEntry | None]:
    """An entry with ``meta`` and ``client_ip`` built as the recorder builds it, inserted, with what its INSERT sent."""
    from audit.services import _build_entry

    entry = _build_entry(
        EventSpec(action=AuditAction.ROLE_UPDATE, entity="Role", entity_id=1, meta=meta, client_ip=ip),
        actor=None,
        perms={"perms": []},
        ctx=None,
    )
    (sent,) = insert_entries([entry], "default")
    return entry, sent


@pytest.mark.parametrize(
    "meta",
    [
        {"big": 1e16, "small": 1e-7, "neg_zero": -0.0, "integral": 2.0, "huge": 1.5e300},
        {"text": "zwölf 🧾 \u202e", "nested": {"b": [1, 2.5, None, True], "a": "x"}},
        {"text": "zwölf 🧾 \u202e", "nested": {"b": [1, None, True], "a": "x"}, "big": 10**30, "list": []},
    ],
    ids=["numbers", "text", "no-float"],
)
@pytest.mark.parametrize("ip", [None, "192.0.2.1", "2001:DB8:0:0::1", "::ffff:192.0.2.1"])
def test_digest_of_the_inserted_entry_is_the_digest_of_the_stored_row(db, meta, ip):
    """What the background sealer chains (the digest of the entry as the INSERT returned it) is what
    `audit_verify` recomputes from the row, also where the database stores a value in a form of its own."""
    entry, sent = _inserted(meta, ip)
    stored = AuditLog.objects.get(pk=entry.pk)
    assert digest_of(entry) == digest_of(stored)
    if sent is not None:
        assert digest_of_sent(sent) == digest_of(stored)


@pytest.mark.parametrize(
    ("meta", "ip", "kept"),
    [
        ({"n": 1, "s": "text"}, None, True),
        ({"n": 1.5}, None, False),
        ({"deep": [1, {"x": -2.5e-3}], "n": 10**30}, None, False),
        ({"s": "version 1.5, build 2e3", "n": 10**30, "b": [True, None]}, None, True),
        ({}, "192.0.2.1", False),
    ],
    ids=["as-sent", "float", "nested-float", "numbers-in-text", "address"],
)
def test_what_the_insert_sent_is_kept_only_where_the_database_stores_it_as_sent(postgres_only, db, meta, ip, kept):
    """The sealer thread takes a digest from the values sent only where the row holds exactly those: jsonb writes
    a float and inet an address in a form of their own, and those digests are taken from what the INSERT returned."""
    _, sent = _inserted(meta, ip)
    assert (sent is not None) is kept


def test_every_sent_entry_of_a_mixed_batch_gives_the_digest_of_its_row(postgres_only, db, user):
    """A multi-row INSERT of entries by a user (personal fields encrypted), with an offset ``occurred_at`` and some
    with floats: each entry stored as sent yields the digest ``audit_verify`` takes from its row, the others none."""
    from audit.privacy import protected
    from audit.services import _build_entry

    metas = [{"n": 1}, {"f": 0.5}, {"text": "zwölf \x00"}, {"f": 1e16}, {}]
    entries = [
        _build_entry(
            EventSpec(
                action=AuditAction.ROLE_UPDATE,
                entity="Role",
                entity_id=index,
                meta={**meta, "email": "someone@example.org"},
                occurred_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
            ),
            actor=user,
            perms=perms_snapshot(user),
            ctx=None,
        )
        for index, meta in enumerate(metas)
    ]
    with protected(entries):
        sent = insert_entries(entries, "default")

    assert [item is not None for item in sent] == [True, False, True, False, True]
    for entry, item in zip(entries, sent, strict=True):
        stored = AuditLog.objects.get(pk=entry.pk)
        assert stored.personal  # encrypted: the sent values are the protected ones
        if item is not None:
            assert item.pk == entry.pk
            assert digest_of_sent(item) == digest_of(stored)


def test_an_entry_that_cannot_be_hashed_holds_up_no_other(caplog):
    """Should a committed entry's values not hash, the sealer thread logs it and seals the rest of its batch; the
    entry stays unsealed for ``audit_verify`` to report, instead of failing every batch after it."""
    values: list[object] = [""] * len(_SENT_INDEX)
    for name in ("perms_snapshot", "changes", "meta"):
        values[_SENT_INDEX[name]] = "{}"
    values[_SENT_INDEX["personal_commitments"]] = None
    values[_SENT_INDEX["salt"]] = b"s" * 16
    values[_SENT_INDEX["created_at"]] = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    # Past the end of the calendar in UTC: stored by PostgreSQL, refused by the recorder, and not hashable.
    values[_SENT_INDEX["occurred_at"]] = dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    unhashable = SentEntry(7, tuple(values))
    with pytest.raises(OverflowError):
        digest_of_sent(unhashable)

    assert _with_digests([(6, "a" * 64), (7, unhashable), (8, "b" * 64)]) == [(6, "a" * 64), (8, "b" * 64)]
    assert "committed entry 7 could not be hashed for its seal" in caplog.text


def test_a_caller_changing_its_entry_before_the_seal_changes_nothing_sealed(background, settings, user):
    """The sealer takes the digest from what the INSERT sent, not from the entry object the caller got back."""
    settings.AUDIT_SEAL_LINGER_MS = 1000
    entry = record(
        AuditAction.ROLE_UPDATE,
        entity="Role",
        entity_id=1,
        changes={"name": {"before": "a", "after": "b"}},
        meta={"reason": "as written"},
        actor=user,
    )
    entry.changes["name"]["after"] = "changed"
    entry.meta["reason"] = "changed"
    entry.perms_snapshot["perms"].append("everything")
    entry.entity_id = "changed"
    _flush()
    seal = Seal.objects.get(entry_id=entry.pk)
    assert seal.digest == digest_of(AuditLog.objects.get(pk=entry.pk)) != digest_of(entry)
    _assert_sealed_once()


def test_an_edit_between_commit_and_seal_is_reported_as_modified(background, settings, triggers_dropped):
    """The thread chains the digest of the values the INSERT returned, so an entry changed before its batch is
    sealed (an attacker who dropped the triggers) does not match its seal."""
    settings.AUDIT_SEAL_LINGER_MS = 1000
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="as written")
    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET entity_id = 'rewritten' WHERE id = %s", [entry.pk])
    _flush()
    assert [(finding.kind, finding.entry_id) for finding in verify_chain().findings] == [("modified", entry.pk)]


def test_a_batch_whose_connection_was_cut_is_sealed_on_a_new_one(background, settings, caplog):
    """The sealer thread's connection is terminated by the server: the batch fails, is logged, and is sealed on a
    new connection a moment later."""
    settings.AUDIT_SEAL_LINGER_MS = 5
    settings.AUDIT_ANOMALY_SCAN_EVERY_SECONDS = 3600  # no review in between: the batch meets the cut first
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="first")
    _flush()  # the thread has its connection now
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 1
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="second")
    _flush()
    assert Seal.objects.filter(entry_id=entry.pk).count() == 1
    assert "background sealing of 1 entries failed (attempt 1)" in caplog.text
    _assert_sealed_once()


class _ContendedSealer:
    """A stand-in for ``seal_known``: records each batch and says whether another sealer held the lock."""

    def __init__(self, contended: list[bool]) -> None:
        self.contended = contended
        self.batches: list[list[tuple[int, str]]] = []

    def __call__(self, handed: list[tuple[int, str]]) -> bool:
        self.batches.append(handed)
        return self.contended[len(self.batches) - 1]


def _sealer(seal: Callable[[list[tuple[int, str]]], bool], linger: float) -> background_sealing.BackgroundSealer:
    return background_sealing.BackgroundSealer(
        "default", seal=seal, review=lambda final: True, review_every=3600, linger=linger, enough=1000
    )


def test_linger_grows_while_other_sealers_hold_the_lock_and_shrinks_back():
    """Each batch that found another process's sealer holding the lock doubles the linger, up to ten times the
    configured one; each uncontended batch halves it, down to the configured one."""
    seal = _ContendedSealer([True] * 5 + [False] * 5)
    sealer = _sealer(seal, linger=0.01)
    seen = []
    try:
        for pk in range(10):
            sealer.submit([(pk, "d" * 64)])
            assert sealer.flush(timeout=5)
            seen.append(round(sealer.linger, 4))
    finally:
        sealer.stop(timeout=5)

    assert [len(batch) for batch in seal.batches] == [1] * 10
    assert seen == [0.02, 0.04, 0.08, 0.1, 0.1, 0.05, 0.025, 0.0125, 0.01, 0.01]


def test_linger_grows_while_writes_keep_coming_and_shrinks_back_when_they_stop():
    """A batch that ends with new entries already waiting doubles the linger (a steady stream of writes: fewer,
    larger batches); a batch that ends with none halves it, down to the configured one."""
    seal = _ContendedSealer([False] * 4)
    seen = []

    def seal_while_writes_come(handed: list[tuple[int, str]]) -> bool:
        if len(seal.batches) < 2:
            sealer.submit([(100 + len(seal.batches), "d" * 64)])  # a write committed during this batch
        seen.append(round(sealer.linger, 4))
        return seal(handed)

    sealer = _sealer(seal_while_writes_come, linger=0.01)
    try:
        sealer.submit([(1, "d" * 64)])
        assert sealer.flush(timeout=5)
        sealer.submit([(2, "d" * 64)])
        assert sealer.flush(timeout=5)
        seen.append(round(sealer.linger, 4))
    finally:
        sealer.stop(timeout=5)

    assert [[pk for pk, _ in batch] for batch in seal.batches] == [[1], [100], [101], [2]]
    # Before each batch, then after the last: two batches ended with a write waiting, then two with none.
    assert seen == [0.01, 0.02, 0.04, 0.02, 0.01]


def test_flush_seals_at_once_instead_of_waiting_out_the_linger():
    """A process about to exit (or a test) asks for what is waiting to be sealed now, not in ten seconds."""
    seal = _ContendedSealer([False])
    sealer = _sealer(seal, linger=10.0)
    try:
        sealer.submit([(1, "d" * 64)])
        assert sealer.flush(timeout=2)
    finally:
        sealer.stop(timeout=5)

    assert seal.batches == [[(1, "d" * 64)]]


def test_a_review_not_done_is_asked_again_and_the_last_one_is_final():
    """A review that left its work to another process runs again ``review_every`` later, until it says it is done;
    then no more until the next batch. The review before the thread ends is told it is the last."""
    calls: list[tuple[float, bool]] = []
    answers = iter([False, False, True])

    def review(final: bool) -> bool:
        calls.append((time.monotonic(), final))
        return True if final else next(answers)

    sealer = background_sealing.BackgroundSealer(
        "default", seal=_ContendedSealer([False]), review=review, review_every=0.05, linger=0.001, enough=1000
    )
    try:
        sealer.submit([(1, "d" * 64)])
        assert sealer.flush(timeout=5)
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # time for six more reviews, were any asked for
    finally:
        sealer.stop(timeout=5)

    assert [final for _, final in calls] == [False, False, False, True]
    assert all(later - earlier >= 0.045 for (earlier, _), (later, _) in zip(calls[:2], calls[1:3], strict=True))


@pytest.fixture
def sealed_unscanned(db, settings, monkeypatch) -> int:
    """Entries this process sealed with the scan after sealing off, which is then switched on; their newest chain
    position."""
    monkeypatch.setattr(sealing, "_newest_sealed", {})
    monkeypatch.setattr(sealing, "_own_scan_watermark", {})
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = False
    record_many([EventSpec(action=AuditAction.ROLE_UPDATE, entity="Role", entity_id=i) for i in range(3)])
    seal_pending()
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = True
    settings.AUDIT_ANOMALY_SCAN_EVERY_SECONDS = 60
    return Seal.objects.order_by("-chain_index").values_list("chain_index", flat=True).first()


def _watermark() -> int:
    return AnomalyScanState.objects.get(pk=1).last_chain_index


def test_review_leaves_the_scan_to_another_process_while_its_scans_are_recent(sealed_unscanned):
    """With the last scan made by another process less than twice AUDIT_ANOMALY_SCAN_EVERY_SECONDS ago, a sealer's
    review does not scan and says it is not done; once that scan is older, the review scans what this process
    sealed."""
    # Saved now: another process's scan, which has not reached this process's entries.
    AnomalyScanState.objects.update_or_create(pk=1, defaults={"last_chain_index": 0})

    assert sealing._review("default") is False
    assert _watermark() == 0

    AnomalyScanState.objects.update(updated_at=timezone.now() - dt.timedelta(seconds=119))
    assert sealing._review("default") is False
    AnomalyScanState.objects.update(updated_at=timezone.now() - dt.timedelta(seconds=121))
    assert sealing._review("default") is True
    assert _watermark() == sealed_unscanned


def test_the_process_that_made_the_last_scan_goes_on_scanning_within_the_interval(sealed_unscanned, settings):
    """The sealer whose scan moved the watermark last scans again at its next review, however recent that scan:
    it is the one the others leave the scan to."""
    assert sealing._review("default", final=True) is True  # this process's scan, now the last one
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = False
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="newer")
    assert seal_pending() == 1
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = True
    assert _watermark() == sealed_unscanned

    assert sealing._review("default") is True
    assert _watermark() == sealed_unscanned + 1


def test_final_review_scans_whatever_another_process_did(sealed_unscanned):
    """The last review of a sealer thread that ends scans its entries itself: nothing is left to a process that
    may stop too."""
    AnomalyScanState.objects.update_or_create(pk=1, defaults={"last_chain_index": 0})

    assert sealing._review("default", final=True) is True
    assert _watermark() == sealed_unscanned


def test_review_of_entries_another_scan_examined_reads_only_the_watermark(sealed_unscanned, settings, monkeypatch):
    """Once a scan of any process has passed this process's newest seal, its review is done with one query."""
    settings.AUDIT_SEAL_LOOKBACK_EVERY_SECONDS = 3600
    monkeypatch.setitem(sealing._last_lookback, "default", time.monotonic())  # no look-back due
    AnomalyScanState.objects.update_or_create(pk=1, defaults={"last_chain_index": sealed_unscanned})
    AnomalyScanState.objects.update(updated_at=timezone.now() - dt.timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        assert sealing._review("default") is True

    assert len(queries) == 1
    assert _watermark() == sealed_unscanned


def test_seal_known_says_when_another_sealer_held_the_lock(postgres_only, committed_db):
    """``seal_known`` tells the sealer thread whether it had to wait for another sealer: the signal its linger
    grows on."""
    from audit.sealing import SEALER_LOCK_KEY, seal_known  # noqa: PLC0415

    # Sealed at once (inline sealing): seal_known takes the lock, finds them sealed and leaves them out.
    first = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="free")
    second = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="contended")
    assert seal_known([(first.pk, digest_of(first))], using="default") == KnownSealed(0, contended=False)

    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        holder = connection.copy()  # another process's sealer, as far as the lock is concerned
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
            locked.set()
            release.wait(10)
            cursor.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    threading.Timer(0.2, release.set).start()
    result = seal_known([(second.pk, digest_of(second))], using="default")
    thread.join(10)

    assert result == KnownSealed(0, contended=True)
    _assert_sealed_once()
