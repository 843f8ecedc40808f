"""checkout, checkin and force_checkin: one lock per path, owner-only checkin, force-release with the right and a
reason, and an audit entry for every attempt (refusals as "denied", in a transaction of their own)."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from guardian.shortcuts import assign_perm

from audit.actions import AuditAction
from audit.models import AuditLog
from locks import services
from locks.exceptions import LockConflict, NotLockOwner
from locks.models import FileLock, Repository
from tests.factories.users import UserFactory

DENIED = AuditLog.Outcome.DENIED
FAILURE = AuditLog.Outcome.FAILURE
SUCCESS = AuditLog.Outcome.SUCCESS


# --- fixtures and helpers -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def other_repository(db) -> Repository:
    return Repository.objects.create(slug="website", name="Website")


def lock_entries(action: str | None = None) -> list[AuditLog]:
    entries = AuditLog.objects.filter(action__startswith="LOCK.").order_by("id")
    return list(entries.filter(action=action) if action else entries)


def as_json(value: Any) -> Any:
    """A value as the audit trail stores it (datetimes as ISO strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot_of(lock: FileLock) -> dict[str, Any]:
    return as_json(
        {
            "repository": lock.repository.slug,
            "path": lock.path,
            "owner": lock.owner.username,
            "ref_name": lock.ref_name,
            "locked_at": lock.locked_at,
            "reason": lock.reason,
        }
    )


# --- checkout -------------------------------------------------------------------------------------------------------


def test_checkout_creates_a_lock_and_one_success_entry(owner, repository):
    """A member checks a file out: the lock exists with the normalised path, and exactly one LOCK.CREATE success
    entry records it with the whole lock as "after"."""
    lock = services.checkout(
        actor=owner, repository=repository, path="./design//model.psd", ref_name="refs/heads/main", reason="retouch"
    )

    stored = FileLock.objects.get()
    assert (stored.pk, stored.repository_id, stored.path, stored.owner_id) == (
        lock.pk,
        repository.pk,
        "design/model.psd",
        owner.pk,
    )
    assert (stored.ref_name, stored.reason) == ("refs/heads/main", "retouch")
    [entry] = lock_entries()
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_CREATE, SUCCESS, owner.pk)
    assert (entry.entity, entry.entity_id) == ("FileLock", str(lock.pk))
    assert entry.changes == {key: {"before": None, "after": value} for key, value in snapshot_of(stored).items()}
    assert entry.meta == {"reason": "retouch", "repository": "game-art", "path": "./design//model.psd"}


@pytest.mark.parametrize("who", ["owner", "rival"])
def test_second_checkout_raises_conflict_naming_owner_and_lock(who, lock, owner, rival, repository):
    """Anyone checking out a locked path, the owner included, gets LockConflict naming the owner and the lock id;
    the lock stays as it was, and one LOCK.CREATE "denied" entry carries the refusal."""
    actor = {"owner": owner, "rival": rival}[who]

    # Written differently, the same file: the conflict is on the normalised path.
    with pytest.raises(LockConflict) as caught:
        services.checkout(actor=actor, repository=repository, path="design\\model.psd")

    assert caught.value.lock.pk == lock.pk
    assert caught.value.message == f"design/model.psd is already locked by {owner.username} (lock {lock.pk})"
    assert caught.value.extra == {"lock_id": str(lock.pk), "owner": owner.username}
    assert caught.value.status_code == 409
    assert list(FileLock.objects.values_list("pk", "owner_id")) == [(lock.pk, owner.pk)]
    [denied] = [entry for entry in lock_entries(AuditAction.LOCK_CREATE) if entry.outcome != SUCCESS]
    assert (denied.outcome, denied.actor_id) == (DENIED, actor.pk)
    assert denied.meta == {
        "repository": "game-art",
        "path": "design\\model.psd",
        "error": "LockConflict",
        "message": caught.value.message,
    }
    assert len(lock_entries()) == 2


def test_checkout_without_the_right_is_denied(user, repository):
    """A user without locks.add_filelock gets PermissionDenied, no lock, and a LOCK.CREATE "denied" entry."""
    with pytest.raises(PermissionDenied, match="may not lock files in game-art"):
        services.checkout(actor=user, repository=repository, path="design/model.psd", reason="try")

    assert not FileLock.objects.exists()
    [entry] = lock_entries()
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_CREATE, DENIED, user.pk)
    assert entry.meta["error"] == "PermissionDenied"
    assert entry.meta["reason"] == "try"
    assert entry.perms_snapshot == {"perms": []}


@pytest.mark.parametrize("path", ["../outside.psd", "", "./", "a\x00b"])
def test_checkout_of_a_bad_path_raises_validation_error_on_path(path, owner, repository):
    """A path that names no file in the repository is a ValidationError on "path"; no lock, a failure entry."""
    with pytest.raises(ValidationError) as caught:
        services.checkout(actor=owner, repository=repository, path=path)

    assert list(caught.value.message_dict) == ["path"]
    assert not FileLock.objects.exists()
    [entry] = lock_entries()
    assert (entry.outcome, entry.meta["error"]) == (FAILURE, "ValidationError")


def test_failure_entry_of_a_nul_path_escapes_the_nul(owner, repository):
    """The path as sent is kept in the entry with control characters escaped: PostgreSQL's jsonb cannot store a
    NUL, and the refused attempt must be recorded on both databases."""
    with pytest.raises(ValidationError):
        services.checkout(actor=owner, repository=repository, path="design/a\x00b.psd")

    [entry] = lock_entries()
    assert entry.meta["path"] == "design/a\\x00b.psd"
    assert entry.meta["message"] == "path: path must not contain NUL characters"


def test_same_path_in_another_repository_is_a_separate_lock(lock, rival, other_repository):
    """Locks are per repository: the same path elsewhere can be checked out by someone else."""
    other = services.checkout(actor=rival, repository=other_repository, path="design/model.psd")

    assert FileLock.objects.count() == 2
    assert other.owner_id == rival.pk


def test_a_released_path_can_be_checked_out_again(lock, owner, rival, repository):
    """After checkin the path is free: the next checkout succeeds with a new lock."""
    services.checkin(actor=owner, lock_id=lock.pk)

    again = services.checkout(actor=rival, repository=repository, path="design/model.psd")

    assert again.pk != lock.pk
    assert list(FileLock.objects.values_list("owner_id", flat=True)) == [rival.pk]


# --- checkin --------------------------------------------------------------------------------------------------------


def test_checkin_by_the_owner_releases_with_the_snapshot(lock, owner):
    """The owner checks in: the lock is gone and a LOCK.RELEASE success entry holds the whole lock as "before"."""
    before = snapshot_of(lock)

    released = services.checkin(actor=owner, lock_id=lock.pk)

    assert released.pk == lock.pk
    assert not FileLock.objects.exists()
    [entry] = lock_entries(AuditAction.LOCK_RELEASE)
    assert (entry.outcome, entry.actor_id, entry.entity, entry.entity_id) == (
        SUCCESS,
        owner.pk,
        "FileLock",
        str(lock.pk),
    )
    assert entry.changes == {key: {"before": value, "after": None} for key, value in before.items()}
    assert entry.meta == {"repository": "game-art", "path": "design/model.psd", "owner": owner.username}


def test_checkin_by_another_user_is_refused_and_the_lock_stays(lock, owner, rival):
    """Someone else's checkin raises NotLockOwner (a PermissionDenied), leaves the lock and a "denied" entry."""
    with pytest.raises(NotLockOwner, match=f"locked by {owner.username}, not by {rival.username}"):
        services.checkin(actor=rival, lock_id=lock.pk)

    assert FileLock.objects.filter(pk=lock.pk, owner=owner).exists()
    [entry] = lock_entries(AuditAction.LOCK_RELEASE)
    assert (entry.outcome, entry.actor_id, entry.entity_id) == (DENIED, rival.pk, str(lock.pk))
    assert entry.meta["error"] == "NotLockOwner"
    assert entry.meta["owner"] == owner.username
    assert entry.changes == {}


def test_checkin_by_a_lock_administrator_is_refused_too(lock, lock_admin):
    """The force right does not make a plain checkin work: releasing someone else's lock is force-checkin, with a
    reason."""
    with pytest.raises(NotLockOwner):
        services.checkin(actor=lock_admin, lock_id=lock.pk)

    assert FileLock.objects.filter(pk=lock.pk).exists()
    assert lock_entries(AuditAction.LOCK_RELEASE)[0].outcome == DENIED


def test_checkin_of_an_unknown_lock_raises_does_not_exist_and_records_a_failure(owner):
    """A lock id that does not exist raises FileLock.DoesNotExist (404 in the API) and a failure entry names it."""
    with pytest.raises(FileLock.DoesNotExist):
        services.checkin(actor=owner, lock_id=999_999)

    [entry] = lock_entries()
    assert (entry.action, entry.outcome) == (AuditAction.LOCK_RELEASE, FAILURE)
    assert entry.meta["lock_id"] == 999_999


# --- force_checkin --------------------------------------------------------------------------------------------------


def assert_force_released(lock: FileLock, actor: Any, owner: Any, reason: str) -> None:
    assert not FileLock.objects.filter(pk=lock.pk).exists()
    [entry] = lock_entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.actor_id, entry.entity, entry.entity_id) == (
        SUCCESS,
        actor.pk,
        "FileLock",
        str(lock.pk),
    )
    assert entry.meta == {
        "override": True,
        "reason": reason,
        "previous_owner": owner.username,
        "lock_id": lock.pk,
        "repository": lock.repository.slug,
        "path": lock.path,
    }
    assert entry.changes["owner"] == {"before": owner.username, "after": None}


def test_force_checkin_with_the_global_right_through_the_role(lock, owner, lock_admin):
    """A lock administrator (role) releases anyone's lock: LOCK.FORCE_RELEASE with override, reason and the
    previous owner."""
    services.force_checkin(actor=lock_admin, lock_id=lock.pk, reason="owner on leave")

    assert_force_released(lock, lock_admin, owner, "owner on leave")


def test_force_checkin_with_the_per_repository_guardian_right(lock, owner, repository):
    """locks.force_unlock granted on this repository through django-guardian is enough for its locks."""
    maintainer = UserFactory()
    assign_perm("locks.force_unlock", maintainer, repository)

    services.force_checkin(actor=maintainer, lock_id=lock.pk, reason="stale lock")

    assert_force_released(lock, maintainer, owner, "stale lock")


def test_force_checkin_with_the_per_repository_right_of_a_group(lock, owner, repository):
    """The per-repository right may also be given to a group (guardian group object permission)."""
    maintainer = UserFactory()
    group = Group.objects.create(name="game-art maintainers")
    maintainer.groups.add(group)
    assign_perm("locks.force_unlock", group, repository)

    services.force_checkin(actor=maintainer, lock_id=lock.pk, reason="stale lock")

    assert_force_released(lock, maintainer, owner, "stale lock")


def test_guardian_right_on_another_repository_does_not_count(lock, owner, other_repository):
    """The right on another repository gives nothing here: PermissionDenied, the lock stays, a "denied" entry."""
    maintainer = UserFactory()
    assign_perm("locks.force_unlock", maintainer, other_repository)

    with pytest.raises(PermissionDenied, match="may not release other people's locks in game-art"):
        services.force_checkin(actor=maintainer, lock_id=lock.pk, reason="stale lock")

    assert FileLock.objects.filter(pk=lock.pk, owner=owner).exists()
    [entry] = lock_entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.actor_id) == (DENIED, maintainer.pk)


def test_force_checkin_without_the_right_is_denied(lock, owner, rival):
    """A member without force_unlock is refused: PermissionDenied, the lock stays, a "denied" entry that still
    says whose lock it was and why it was tried."""
    with pytest.raises(PermissionDenied):
        services.force_checkin(actor=rival, lock_id=lock.pk, reason="I need it")

    assert FileLock.objects.filter(pk=lock.pk, owner=owner).exists()
    [entry] = lock_entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.actor_id, entry.entity_id) == (DENIED, rival.pk, str(lock.pk))
    assert entry.meta["override"] is True
    assert entry.meta["previous_owner"] == owner.username
    assert entry.meta["reason"] == "I need it"
    assert entry.meta["error"] == "PermissionDenied"


@pytest.mark.parametrize("reason", ["", "   "])
def test_force_checkin_with_an_empty_reason_raises_validation_error_on_reason(reason, lock, lock_admin):
    """Even with the right, a force-release needs a reason: ValidationError on "reason", the lock stays, and the
    attempt is recorded as a failure."""
    with pytest.raises(ValidationError) as caught:
        services.force_checkin(actor=lock_admin, lock_id=lock.pk, reason=reason)

    assert list(caught.value.message_dict) == ["reason"]
    assert FileLock.objects.filter(pk=lock.pk).exists()
    [entry] = lock_entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.meta["error"]) == (FAILURE, "ValidationError")


def test_force_checkin_of_an_unknown_lock_raises_does_not_exist(lock_admin):
    """A lock that is already gone raises FileLock.DoesNotExist; the attempt is recorded as a failure."""
    with pytest.raises(FileLock.DoesNotExist):
        services.force_checkin(actor=lock_admin, lock_id=999_999, reason="stale")

    [entry] = lock_entries()
    assert (entry.action, entry.outcome, entry.meta["lock_id"]) == (AuditAction.LOCK_FORCE_RELEASE, FAILURE, 999_999)


# --- refusals survive the caller's rollback (PostgreSQL) ------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_denied_entry_survives_the_rollback_of_the_callers_transaction(
    postgres_only, committed_db, owner, rival, repository
):
    """A conflict inside a caller's transaction that is then rolled back: the caller's own checkout and its entry
    go, the "denied" entry of the refused checkout stays (written through the second connection)."""
    held = services.checkout(actor=owner, repository=repository, path="design/model.psd")

    with pytest.raises(RuntimeError), transaction.atomic():
        services.checkout(actor=rival, repository=repository, path="design/other.psd")
        with pytest.raises(LockConflict):
            services.checkout(actor=rival, repository=repository, path="design/model.psd")
        raise RuntimeError("the caller gives up")

    assert list(FileLock.objects.values_list("pk", flat=True)) == [held.pk]
    entries = [(entry.actor_id, entry.outcome) for entry in lock_entries(AuditAction.LOCK_CREATE)]
    assert entries == [(owner.pk, SUCCESS), (rival.pk, DENIED)]
    assert (
        lock_entries()[-1].meta["message"] == f"design/model.psd is already locked by {owner.username} (lock {held.pk})"
    )


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_denied_force_checkin_survives_the_rollback_of_the_callers_transaction(
    postgres_only, committed_db, owner, rival, repository
):
    """A refused force-checkin inside a rolled-back caller transaction still leaves its "denied" entry, although
    the lock row was locked (select_for_update) by the caller's connection when it was written."""
    held = services.checkout(actor=owner, repository=repository, path="design/model.psd")

    with pytest.raises(RuntimeError), transaction.atomic():
        with pytest.raises(PermissionDenied):
            services.force_checkin(actor=rival, lock_id=held.pk, reason="I need it")
        raise RuntimeError("the caller gives up")

    assert FileLock.objects.filter(pk=held.pk).exists()
    [entry] = lock_entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.actor_id, entry.meta["reason"]) == (DENIED, rival.pk, "I need it")
