"""Retention and archive: signed month segments, removal through the one guarded path, two officers (NIST AU-9(5))."""

import datetime as dt
import fcntl
import gzip
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from audit import archive as archive_module
from audit.actions import AuditAction
from audit.archive import approve_archive, default_before, request_archive
from audit.models import ArchiveCheckpoint, ArchiveGuard, ArchiveRequest, AuditLog, Seal
from audit.sealing import seal_pending
from audit.verify import verify_chain
from tests.audit.archive_helpers import CUTOFF, Keys, grant, utc
from tests.factories.users import UserFactory

OFFICER_RIGHTS = ("request_archive", "approve_archive")


@pytest.fixture
def alice(db) -> User:
    return grant(UserFactory(username="alice-officer"), *OFFICER_RIGHTS)


@pytest.fixture
def bob(db) -> User:
    return grant(UserFactory(username="bob-officer"), *OFFICER_RIGHTS)


@pytest.fixture
def approved(trail, alice, bob) -> ArchiveRequest:
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    return approve_archive(actor=bob, request_id=request.pk)


def run_archive(*args: str) -> str:
    out = StringIO()
    call_command("audit_archive", "--no-progress", *args, stdout=out)
    return out.getvalue()


def verify_segments(keys: Keys, *paths: Path) -> tuple[int, str]:
    """audit_verify_segment's exit status and output."""
    out = StringIO()
    try:
        call_command("audit_verify_segment", *map(str, paths), "--public-key", str(keys.public), stdout=out)
    except SystemExit as exited:
        return int(exited.code), out.getvalue()
    return 0, out.getvalue()


def archive_entries(outcome: str = AuditLog.Outcome.SUCCESS) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE, outcome=outcome).order_by("id"))


def ids(entries: list[AuditLog]) -> list[int]:
    return [entry.pk for entry in entries]


# --- the round trip -------------------------------------------------------------------------------------------------


def test_archive_round_trip(approved, trail, keys, archive_dir):
    """An approved archive writes January and February as segments that verify offline, removes exactly those
    entries and their seals, leaves March, the chain still verifies, and an AUDIT.ARCHIVE entry records it."""
    output = run_archive("--before", "2025-03-01")

    assert not AuditLog.objects.filter(pk__in=ids(trail.archivable)).exists()
    assert not Seal.objects.filter(entry_id__in=ids(trail.archivable)).exists()
    assert sorted(AuditLog.objects.filter(pk__in=ids(trail.march)).values_list("pk", flat=True)) == ids(trail.march)
    manifests = sorted(archive_dir.glob("*.manifest.json"))
    assert [json.loads(path.read_text())["month"] for path in manifests] == ["2025-01", "2025-02"]
    assert verify_segments(keys, archive_dir) == (
        0,
        "Segments verified: 2 segment(s), 5 chain positions, signatures valid.\n",
    )
    seal_pending()
    report = verify_chain()
    assert report.ok, [finding.line() for finding in report.findings]
    assert report.archived_through == 4
    [entry] = archive_entries()
    assert entry.entity == "ArchiveRequest" and entry.entity_id == str(approved.pk)
    assert entry.meta["entries"] == 5
    assert (entry.meta["requested_by"], entry.meta["approved_by"]) == ("alice-officer", "bob-officer")
    assert [segment["month"] for segment in entry.meta["segments"]] == ["2025-01", "2025-02"]
    assert "Removed 5 entries and their seals" in output
    assert ArchiveRequest.objects.get(pk=approved.pk).status == ArchiveRequest.Status.EXECUTED


def test_audit_verify_passes_after_archiving(approved, trail):
    """`manage.py audit_verify` exits 0 after an archive and says it started from the signed checkpoint."""
    run_archive("--before", "2025-03-01")
    seal_pending()
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    assert out.getvalue().startswith("Audit chain intact: ")
    assert "from the archive checkpoint at #4" in out.getvalue()


def test_segment_lines_hold_entries_salts_and_seals(approved, trail, archive_dir):
    """Each line of a segment is one chain position: the entry's committed fields, its salt and its seal."""
    run_archive("--before", "2025-03-01")
    data = sorted(archive_dir.glob("*.jsonl.gz"))[0]
    lines = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()]
    assert [line["chain_index"] for line in lines] == [0, 1, 2]
    assert [line["entry"]["id"] for line in lines] == ids(trail.january)
    assert lines[0]["entry"]["created_at"] == "2025-01-05T12:00:00.000000+00:00"
    assert lines[0]["salt"] == bytes(trail.january[0].salt).hex()
    assert set(lines[0]["seal"]) == {"digest", "prev_hash", "hash", "sealed_at"}


def test_last_manifest_carries_the_signed_checkpoint(approved, trail, archive_dir):
    """The last segment's manifest holds the checkpoint stored in the database, signature included."""
    run_archive("--before", "2025-03-01")
    last = json.loads(sorted(archive_dir.glob("*.manifest.json"))[-1].read_text())
    stored = ArchiveCheckpoint.objects.get()
    assert last["checkpoint"]["chain_index"] == stored.chain_index == last["chain"]["last_index"] == 4
    assert last["checkpoint"]["signature"] == stored.signature
    assert last["checkpoint"]["head_hash"] == last["chain"]["head_hash"] == stored.head_hash
    assert last["request"]["requested_by"] == "alice-officer" and last["request"]["approved_by"] == "bob-officer"


def _rewrite_line(data: Path, number: int, change) -> None:
    lines = gzip.decompress(data.read_bytes()).splitlines()
    row = json.loads(lines[number])
    change(row)
    lines[number] = json.dumps(row).encode()
    data.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


def test_segment_fails_offline_when_a_value_is_edited(approved, trail, keys, archive_dir):
    """A value changed in a segment's data file is caught: the file's SHA-256 and the entry's seal no longer match."""
    run_archive("--before", "2025-03-01")
    data = sorted(archive_dir.glob("*.jsonl.gz"))[0]
    _rewrite_line(data, 1, lambda row: row["entry"].update(entity_id="forged"))
    status, output = verify_segments(keys, data)
    assert status == 1
    assert "SHA-256 does not match the manifest" in output
    assert f"entry {trail.january[1].pk} does not match its seal" in output


def test_segment_fails_offline_when_a_line_is_removed(approved, trail, keys, archive_dir):
    """A removed line is caught as a missing chain position, even if the manifest's hash were recomputed."""
    run_archive("--before", "2025-03-01")
    data = sorted(archive_dir.glob("*.jsonl.gz"))[0]
    lines = gzip.decompress(data.read_bytes()).splitlines()
    data.write_bytes(gzip.compress(b"\n".join(lines[:1] + lines[2:]) + b"\n"))
    status, output = verify_segments(keys, data)
    assert status == 1
    assert "chain #1 is missing or out of order" in output


def test_segment_fails_offline_when_the_manifest_is_edited(approved, trail, keys, archive_dir):
    """A manifest whose counts or hashes were edited no longer carries a valid signature."""
    run_archive("--before", "2025-03-01")
    manifest = sorted(archive_dir.glob("*.manifest.json"))[0]
    document = json.loads(manifest.read_text())
    document["count"] = 2
    manifest.write_text(json.dumps(document))
    status, output = verify_segments(keys, manifest)
    assert status == 1
    assert "the signature does not verify (the manifest was changed)" in output


def test_missing_segment_in_the_directory_is_reported(approved, trail, keys, archive_dir):
    """Checking the archive directory names the segment a checkpoint lists that is no longer there."""
    run_archive("--before", "2025-03-01")
    for path in archive_dir.glob("audit-2025-01-*"):
        path.unlink()
    status, output = verify_segments(keys, archive_dir)
    assert status == 1
    assert "segment audit-2025-01-000000000000-000000000002.jsonl.gz is missing" in output


def test_second_archive_continues_from_the_first_checkpoint(trail, alice, bob, keys, archive_dir):
    """Archiving January, then February: the second segment starts where the first ended, each checkpoint signs
    the one before, the directory verifies as a whole and the chain still does."""
    first = request_archive(actor=alice, before=dt.date(2025, 2, 1), reason="January")
    approve_archive(actor=bob, request_id=first.pk)
    run_archive("--request", str(first.pk))
    second = request_archive(actor=bob, before=CUTOFF, reason="February")
    approve_archive(actor=alice, request_id=second.pk)
    run_archive("--request", str(second.pk))

    checkpoints = list(ArchiveCheckpoint.objects.order_by("chain_index"))
    assert [checkpoint.chain_index for checkpoint in checkpoints] == [2, 4]
    assert checkpoints[1].prev_signature == checkpoints[0].signature
    assert verify_segments(keys, archive_dir)[0] == 0
    seal_pending()
    assert verify_chain().ok


# --- two officers ---------------------------------------------------------------------------------------------------


def test_request_and_approval_are_audited(approved, alice, bob):
    """Requesting and approving each leave an entry naming the officer and the request, with the status change."""
    [requested] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE_REQUEST)
    [approval] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE_APPROVE)
    assert (requested.actor_id, requested.entity_id, requested.outcome) == (alice.pk, str(approved.pk), "success")
    assert requested.changes["before"]["after"] == "2025-03-01T00:00:00Z"
    assert (approval.actor_id, approval.entity_id, approval.outcome) == (bob.pk, str(approved.pk), "success")
    assert approval.changes["status"] == {"before": "pending", "after": "approved"}


def test_requester_approving_own_request_is_refused(trail, alice):
    """The requester cannot approve their own request: refused, recorded as denied, and the request stays pending."""
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    with pytest.raises(PermissionDenied, match=r"NIST AU-9\(5\)"):
        approve_archive(actor=alice, request_id=request.pk)
    assert ArchiveRequest.objects.get(pk=request.pk).status == ArchiveRequest.Status.PENDING
    [denied] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE_APPROVE)
    assert (denied.actor_id, denied.outcome) == (alice.pk, "denied")


def test_superuser_alone_cannot_remove_anything(trail):
    """A superuser may request, but not approve their own request, and the archive then refuses: nothing is removed."""
    root = User.objects.create_superuser("root-officer", "root@example.org", "x")
    request = request_archive(actor=root, before=CUTOFF, reason="Alone")
    with pytest.raises(PermissionDenied):
        approve_archive(actor=root, request_id=request.pk)
    with pytest.raises(CommandError, match="not approved"):
        run_archive("--request", str(request.pk))
    assert AuditLog.objects.filter(pk__in=ids(trail.archivable)).count() == 5
    assert not ArchiveCheckpoint.objects.exists()


def test_archive_without_approval_is_refused_with_one_line_and_status_1(trail, alice, archive_dir):
    """With only a pending request, audit_archive refuses in one line (exit status 1), removes nothing, writes no
    file, and records the refused attempt."""
    request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    with pytest.raises(CommandError) as refused:
        run_archive("--before", "2025-03-01")
    message = str(refused.value)
    assert message.startswith("Archive refused: no approved archive request for the entries before 2025-03-01")
    assert "\n" not in message and refused.value.returncode == 1
    assert AuditLog.objects.filter(pk__in=ids(trail.archivable)).count() == 5
    assert not list(archive_dir.glob("audit-*"))
    [attempt] = archive_entries(AuditLog.Outcome.DENIED)
    assert "no approved archive request" in attempt.meta["reason"]


def test_approving_needs_the_right(trail, alice):
    """An officer without audit.approve_archive cannot approve, even another officer's request."""
    clerk = grant(UserFactory(), "request_archive")
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    with pytest.raises(PermissionDenied, match="audit.approve_archive"):
        approve_archive(actor=clerk, request_id=request.pk)
    assert ArchiveRequest.objects.get(pk=request.pk).status == ArchiveRequest.Status.PENDING


def test_the_database_refuses_an_approval_by_the_requester(trail, alice):
    """Even written past the service, a request approved by its own requester violates a check constraint."""
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    with pytest.raises(IntegrityError), transaction.atomic():
        ArchiveRequest.objects.filter(pk=request.pk).update(status="approved", approved_by=alice)


def _in_guarded_transaction(request: ArchiveRequest, sql: str, params: list) -> None:
    """Run ``sql`` as the archive would: request executing over chain #0..#4, with the guard open."""
    with transaction.atomic():
        ArchiveRequest.objects.filter(pk=request.pk).update(status="executing", first_index=0, checkpoint_index=4)
        request.refresh_from_db()
        archive_module._open_guard(request, "default")
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def test_the_guard_opens_only_for_a_request_a_second_officer_approved(trail, alice, bob):
    """The triggers let a guarded DELETE through only for a request approved by another officer: with the guard
    of a request nobody approved, the raw DELETE is refused; once approved by a second officer, it passes."""
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    target = trail.january[0].pk
    delete = "DELETE FROM audit_auditlog WHERE id = %s"
    with pytest.raises(DatabaseError, match="append-only"):
        _in_guarded_transaction(request, delete, [target])
    assert AuditLog.objects.filter(pk=target).exists()

    ArchiveRequest.objects.filter(pk=request.pk).update(status="approved", approved_by=bob)
    _in_guarded_transaction(request, delete, [target])
    assert not AuditLog.objects.filter(pk=target).exists()


def test_the_guard_never_covers_entries_outside_the_request(trail, alice, bob):
    """Inside an approved archive transaction, an entry after the request's cutoff is still refused."""
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    ArchiveRequest.objects.filter(pk=request.pk).update(status="approved", approved_by=bob)
    with pytest.raises(DatabaseError, match="append-only"):
        _in_guarded_transaction(request, "DELETE FROM audit_auditlog WHERE id = %s", [trail.march[0].pk])
    assert AuditLog.objects.filter(pk=trail.march[0].pk).exists()


def test_raw_delete_and_update_are_refused_again_after_an_archive(approved, trail):
    """After the archive transaction the guard is gone (no guard row is left): raw DELETE and UPDATE fail again."""
    run_archive("--before", "2025-03-01")
    assert not ArchiveGuard.objects.exists()
    for sql in ("DELETE FROM audit_auditlog", "UPDATE audit_auditlog SET entity_id = 'x'", "DELETE FROM audit_seal"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditLog.objects.filter(pk__in=ids(trail.march)).count() == 2


# --- retention ------------------------------------------------------------------------------------------------------


def test_requesting_entries_younger_than_the_retention_is_refused(trail, alice):
    """A cutoff inside the retention (AUDIT_RETENTION_DAYS) is refused when requested."""
    with pytest.raises(ValidationError, match="AUDIT_RETENTION_DAYS"):
        request_archive(actor=alice, before=dt.datetime.now(dt.UTC), reason="Too early")
    assert not ArchiveRequest.objects.exists()


def test_archive_rechecks_the_retention_when_it_runs(approved, trail, settings):
    """A retention raised after the approval is applied when the archive runs: refused, nothing removed."""
    settings.AUDIT_RETENTION_DAYS = 100_000
    with pytest.raises(CommandError, match="younger than 100000 days"):
        run_archive("--request", str(approved.pk))
    assert AuditLog.objects.filter(pk__in=ids(trail.archivable)).count() == 5


def test_before_defaults_to_now_minus_the_retention_at_a_month_start(settings):
    """--before defaults to the month start at or before today minus AUDIT_RETENTION_DAYS."""
    settings.AUDIT_RETENTION_DAYS = 90
    assert default_before(utc(2026, 11, 23)) == dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
    settings.AUDIT_RETENTION_DAYS = 365
    assert default_before(utc(2026, 11, 23)) == dt.datetime(2025, 11, 1, tzinfo=dt.UTC)


def test_a_request_is_rounded_down_to_a_month_start(trail, alice):
    """--before 2025-03-15 asks for the entries before 2025-03-01: archives move whole months."""
    request = request_archive(actor=alice, before=dt.date(2025, 3, 15), reason="Mid-month")
    assert request.before == dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


# --- tamper evidence of the checkpoint ------------------------------------------------------------------------------


def test_a_forged_checkpoint_is_reported(trail, keys):
    """A checkpoint inserted without the private key (to hide removed entries) fails its signature in audit_verify."""
    head = Seal.objects.get(chain_index=2)
    ArchiveCheckpoint.objects.create(
        chain_index=2,
        head_hash=head.hash,
        before=utc(2025, 2, 1, 0),
        request_id=1,
        segments=[],
        created_at=utc(2025, 6, 1),
        signature="00" * 64,
        key_fingerprint="0" * 64,
    )
    kinds = {(finding.kind, finding.chain_index) for finding in verify_chain().findings}
    assert ("bad_signature", 2) in kinds
    # The seals it claims were archived are still there: reported too.
    assert {("checkpoint", 0), ("checkpoint", 1), ("checkpoint", 2)} <= kinds


def test_a_tampered_entry_stops_the_archive_and_nothing_is_removed(approved, trail, archive_dir, triggers_dropped):
    """An entry changed after sealing is not archived as if it were genuine: the archive fails naming it, removes
    nothing, leaves no segment, and records the failure."""
    target = trail.february[0]
    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET entity_id = 'forged' WHERE id = %s", [target.pk])
    with pytest.raises(CommandError, match=f"entry {target.pk} \\(chain #3\\) does not match the chain"):
        run_archive("--before", "2025-03-01")
    assert AuditLog.objects.filter(pk__in=ids(trail.archivable)).count() == 5
    assert not list(archive_dir.glob("audit-*"))
    [failure] = archive_entries(AuditLog.Outcome.FAILURE)
    assert failure.meta["error"] == "ArchiveFailed"


def test_one_archive_at_a_time_per_directory(approved, trail, archive_dir):
    """While another archive holds the directory's lock, audit_archive refuses instead of writing over its files."""
    archive_dir.mkdir(parents=True)
    with (archive_dir / ".audit-archive.lock").open("w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CommandError, match="another archive is writing to"):
            run_archive("--before", "2025-03-01")
    assert AuditLog.objects.filter(pk__in=ids(trail.archivable)).count() == 5
