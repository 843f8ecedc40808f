"""Legal holds: what they cover is not archived, the archive says which hold stopped it, and every step is audited."""

import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.actions import AuditAction
from audit.archive import approve_archive, request_archive
from audit.holds import create_legal_hold, first_covered, release_legal_hold
from audit.models import ArchiveCheckpoint, ArchiveRequest, AuditLog, LegalHold
from tests.audit.archive_helpers import CUTOFF, grant, utc
from tests.factories.users import UserFactory


@pytest.fixture
def counsel(db) -> User:
    return grant(UserFactory(username="counsel"), "manage_legalhold")


@pytest.fixture
def approved(trail) -> ArchiveRequest:
    alice = grant(UserFactory(), "request_archive")
    bob = grant(UserFactory(), "approve_archive")
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    return approve_archive(actor=bob, request_id=request.pk)


def run_archive(*args: str) -> str:
    out = StringIO()
    call_command("audit_archive", "--no-progress", *args, stdout=out)
    return out.getvalue()


def remaining(entries: list[AuditLog]) -> int:
    return AuditLog.objects.filter(pk__in=[entry.pk for entry in entries]).count()


def test_a_hold_on_the_first_month_blocks_the_archive_and_names_itself(approved, trail, counsel, archive_dir):
    """A hold covering a January entry refuses the archive in one line naming the hold and its reason; nothing is
    removed, no segment is left, the refusal is recorded, and the request stays approved for later."""
    hold = create_legal_hold(actor=counsel, entity="Role", entity_id="15", reason="Case 2025-117")
    with pytest.raises(CommandError) as refused:
        run_archive("--before", "2025-03-01")
    message = str(refused.value)
    assert f"legal hold #{hold.pk}" in message and "Case 2025-117" in message
    assert f"entry {trail.january[1].pk}" in message and "\n" not in message
    assert remaining(trail.archivable) == 5
    assert not ArchiveCheckpoint.objects.exists()
    assert not list(archive_dir.glob("audit-*"))
    [attempt] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE, outcome="denied")
    assert attempt.meta["hold"] == hold.pk
    assert ArchiveRequest.objects.get(pk=approved.pk).status == ArchiveRequest.Status.APPROVED


def test_a_hold_stops_the_archive_before_the_month_it_covers(approved, trail, counsel, archive_dir):
    """A hold on a February entry lets January go and keeps February and later; the output and the AUDIT.ARCHIVE
    entry say which hold stopped it."""
    hold = create_legal_hold(actor=counsel, entity="Group", reason="Regulator inquiry")
    output = run_archive("--before", "2025-03-01")
    assert remaining(trail.january) == 0
    assert remaining(trail.february) == 2
    assert f"Stopped before 2025-02: legal hold #{hold.pk}" in output
    assert [path.name.split("-")[2] for path in sorted(archive_dir.glob("*.manifest.json"))] == ["01"]
    [entry] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE, outcome="success")
    assert entry.meta["stopped_by_hold"]["hold"] == hold.pk
    assert entry.meta["entries"] == 3


def test_a_released_hold_no_longer_blocks(approved, trail, counsel):
    """Once released, the hold's entries are archived like any other."""
    hold = create_legal_hold(actor=counsel, entity="Role", entity_id="15", reason="Case 2025-117")
    release_legal_hold(actor=counsel, hold_id=hold.pk, reason="Case closed")
    run_archive("--before", "2025-03-01")
    assert remaining(trail.archivable) == 0


@pytest.mark.parametrize(
    ("criteria", "month", "position"),
    [
        ({"actor_label": "alice"}, "january", 0),
        ({"since": utc(2025, 2, 10), "until": utc(2025, 2, 20)}, "february", 1),
        ({"entity": "Role", "entity_id": "25"}, "january", 2),
    ],
)
def test_holds_cover_by_actor_time_range_and_entity(trail, counsel, criteria, month, position):
    """A hold by actor label, by time range or by entity reaches the first entry that matches all its criteria."""
    hold = create_legal_hold(actor=counsel, reason="Matter", **criteria)
    expected = getattr(trail, month)[position]
    covered = first_covered(0, 6)
    assert covered is not None
    assert (covered[0].pk, covered[2]) == (hold.pk, expected.pk)


def test_a_hold_matching_nothing_covers_nothing(trail, counsel):
    """Every criterion must match: a hold on an actor who appears nowhere covers no entry."""
    create_legal_hold(actor=counsel, actor_label="mallory", entity="Role", reason="Matter")
    assert first_covered(0, 6) is None


def test_placing_and_releasing_a_hold_are_audited(trail, counsel):
    """AUDIT.HOLD.CREATE and AUDIT.HOLD.RELEASE name the officer, the hold, its criteria and the release reason."""
    hold = create_legal_hold(actor=counsel, actor_label="alice", reason="Case 2025-117")
    release_legal_hold(actor=counsel, hold_id=hold.pk, reason="Case closed")
    [placed] = AuditLog.objects.filter(action=AuditAction.AUDIT_HOLD_CREATE)
    [released] = AuditLog.objects.filter(action=AuditAction.AUDIT_HOLD_RELEASE)
    assert (placed.actor_id, placed.entity, placed.entity_id) == (counsel.pk, "LegalHold", str(hold.pk))
    assert placed.changes["actor_label"] == {"before": None, "after": "alice"}
    assert released.changes["release_reason"] == {"before": "", "after": "Case closed"}
    assert LegalHold.objects.get(pk=hold.pk).is_active is False


def test_a_hold_needs_the_right(trail):
    """An officer without audit.manage_legalhold cannot place a hold; the refusal is recorded as denied."""
    clerk = UserFactory()
    with pytest.raises(PermissionDenied):
        create_legal_hold(actor=clerk, entity="Role", reason="Case")
    assert not LegalHold.objects.exists()
    [denied] = AuditLog.objects.filter(action=AuditAction.AUDIT_HOLD_CREATE)
    assert denied.outcome == "denied"


@pytest.mark.parametrize(
    "criteria",
    [
        {"reason": "Covers everything"},
        {"entity": "Role", "reason": "  "},
        {"since": utc(2025, 3, 1), "until": utc(2025, 2, 1), "reason": "Backwards"},
    ],
)
def test_a_hold_must_be_specific_and_justified(trail, counsel, criteria):
    """A hold without any criterion, without a reason, or with a backwards range is refused."""
    with pytest.raises(ValidationError):
        create_legal_hold(actor=counsel, **criteria)
    assert not LegalHold.objects.exists()


def test_a_hold_is_released_once(trail, counsel):
    """Releasing a released hold is refused; releasing needs a reason."""
    hold = create_legal_hold(actor=counsel, entity="Role", reason="Case")
    with pytest.raises(ValidationError):
        release_legal_hold(actor=counsel, hold_id=hold.pk, reason="")
    release_legal_hold(actor=counsel, hold_id=hold.pk, reason="Closed")
    with pytest.raises(ValidationError):
        release_legal_hold(actor=counsel, hold_id=hold.pk, reason="Again")


def test_the_hold_command_places_lists_and_releases(trail, counsel):
    """manage.py audit_hold create / list / release, acting as the named officer."""
    out = StringIO()
    call_command(
        "audit_hold",
        "create",
        "--entity",
        "Role",
        "--since",
        "2025-01-01",
        "--reason",
        "Case 7",
        "--as",
        "counsel",
        stdout=out,
    )
    hold = LegalHold.objects.get()
    assert hold.since == dt.datetime(2025, 1, 1, tzinfo=dt.UTC) and hold.created_by_label == "counsel"
    call_command("audit_hold", "list", stdout=out)
    assert f"#{hold.pk} " in out.getvalue() and "Case 7" in out.getvalue()
    call_command("audit_hold", "release", str(hold.pk), "--reason", "Done", "--as", "counsel", stdout=out)
    assert not LegalHold.objects.get().is_active
