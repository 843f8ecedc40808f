"""Checking files out and in. The REST API, the Git LFS API and the admin all come through here.

Each service is audited: the change and its entry commit together, and a refused attempt (already locked, not the
owner, no right) is recorded as ``denied`` with the reason in a transaction of its own, so it survives the
rollback of the request.
"""

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_users_with_perms, remove_perm

from audit.actions import AuditAction
from audit.authz import require
from audit.services import audited

from .exceptions import LockConflict, NotLockOwner
from .models import FileLock, Repository
from .paths import InvalidPath, normalize_path

FORCE_UNLOCK = "locks.force_unlock"
CHECKOUT = "locks.add_filelock"


def lock_snapshot(lock: FileLock) -> dict[str, Any]:
    return {
        "repository": lock.repository.slug,
        "path": lock.path,
        "owner": lock.owner.get_username(),
        "ref_name": lock.ref_name,
        "locked_at": lock.locked_at,
        "reason": lock.reason,
    }


def can_force_unlock(user: Any, repository: Repository) -> bool:
    """The right globally (a role) or on this repository (django-guardian)."""
    return user.has_perm(FORCE_UNLOCK) or user.has_perm(FORCE_UNLOCK, repository)


def can_check_out(user: Any, repository: Repository) -> bool:
    return user.has_perm(CHECKOUT)


def _checkout_meta(before: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    repository = kwargs.get("repository")
    return {"repository": getattr(repository, "slug", ""), "path": kwargs.get("path", "")}


def _lock(*, lock_id: int, **_: Any) -> FileLock:
    return FileLock.objects.select_related("repository", "owner").select_for_update().get(pk=lock_id)


def _release_meta(before: FileLock | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if before is None:
        return {"lock_id": kwargs.get("lock_id")}
    return {"repository": before.repository.slug, "path": before.path, "owner": before.owner.get_username()}


def _force_meta(before: FileLock | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"override": True, "lock_id": kwargs.get("lock_id")}
    if before is not None:
        meta.update(repository=before.repository.slug, path=before.path, previous_owner=before.owner.get_username())
    return meta


def _release(lock: FileLock) -> None:
    # A queryset delete leaves the instance (and its id) intact for the caller's response.
    FileLock.objects.filter(pk=lock.pk).delete()


@audited(AuditAction.LOCK_CREATE, entity="FileLock", snapshot_with=lock_snapshot, meta_from=_checkout_meta)
def checkout(*, actor: Any, repository: Repository, path: str, ref_name: str = "", reason: str = "") -> FileLock:
    """Lock ``path`` for ``actor``. Raises LockConflict (409) when anyone holds it, the actor included."""
    try:
        normalized = normalize_path(path)
    except InvalidPath as exc:
        raise ValidationError({"path": str(exc)}) from exc
    if not can_check_out(actor, repository):
        raise PermissionDenied(f"{actor.get_username()} may not lock files in {repository.slug}")
    existing = FileLock.objects.select_related("owner").filter(repository=repository, path=normalized).first()
    if existing is not None:
        raise LockConflict(existing)
    try:
        # A savepoint: the unique constraint decides between racing clients, and the loser must be able to
        # read the winner's lock afterwards.
        with transaction.atomic():
            return FileLock.objects.create(
                repository=repository,
                path=normalized,
                owner=actor,
                ref_name=ref_name[:255],
                reason=reason,
                locked_at=timezone.now(),
            )
    except IntegrityError:
        winner = FileLock.objects.select_related("owner").filter(repository=repository, path=normalized).first()
        if winner is None:
            raise
        raise LockConflict(winner) from None


@audited(
    AuditAction.LOCK_RELEASE,
    entity="FileLock",
    pre_fetch=_lock,
    snapshot_with=lock_snapshot,
    meta_from=_release_meta,
    deletes=True,
)
def checkin(*, actor: Any, lock_id: int) -> FileLock:
    """Release the actor's own lock; anyone else's is refused (NotLockOwner, 403)."""
    lock = FileLock.objects.select_related("repository", "owner").get(pk=lock_id)
    if lock.owner_id != actor.pk:
        raise NotLockOwner(
            f"{lock.path} is locked by {lock.owner.get_username()}, not by {actor.get_username()}; "
            "only a lock administrator can release it (force)"
        )
    _release(lock)
    return lock


@audited(
    AuditAction.LOCK_FORCE_RELEASE,
    entity="FileLock",
    pre_fetch=_lock,
    snapshot_with=lock_snapshot,
    meta_from=_force_meta,
    deletes=True,
)
def force_checkin(*, actor: Any, lock_id: int, reason: str) -> FileLock:
    """Release anyone's lock: needs ``locks.force_unlock`` (globally or on the repository) and a reason."""
    lock = FileLock.objects.select_related("repository", "owner").get(pk=lock_id)
    if not can_force_unlock(actor, lock.repository):
        raise PermissionDenied(f"{actor.get_username()} may not release other people's locks in {lock.repository.slug}")
    if not (reason or "").strip():
        raise ValidationError({"reason": "A reason is required to release someone else's lock."})
    _release(lock)
    return lock


def repository_rights_snapshot(repository: Repository) -> dict[str, Any]:
    holders = get_users_with_perms(repository, only_with_perms_in=["force_unlock"], with_group_users=False)
    return {"force_unlock": sorted(user.get_username() for user in holders)}


def _repository(*, repository_id: int, **_: Any) -> Repository:
    return Repository.objects.select_for_update().get(pk=repository_id)


def _set_force_unlock_right(*, actor: Any, repository_id: int, user: Any, reason: str, grant: bool) -> Repository:
    # Handing out a right is an administrator's act: the same right that gives roles.
    if actor is not None and not actor.has_perm("rbac.assign_role"):
        raise PermissionDenied(f"{actor.get_username()} may not hand out rights")
    if not (reason or "").strip():
        raise ValidationError({"reason": "A reason is required to give or take away a lock administrator's right."})
    repository = Repository.objects.get(pk=repository_id)
    if grant:
        assign_perm(FORCE_UNLOCK, user, repository)
    else:
        remove_perm(FORCE_UNLOCK, user, repository)
    return repository


@audited(
    AuditAction.REPOSITORY_PERM_GRANT,
    entity="Repository",
    pre_fetch=_repository,
    snapshot_with=repository_rights_snapshot,
)
def repository_force_unlock_grant(*, actor: Any, repository_id: int, user: Any, reason: str) -> Repository:
    """Let ``user`` force-release locks in this repository only (django-guardian object permission)."""
    return _set_force_unlock_right(actor=actor, repository_id=repository_id, user=user, reason=reason, grant=True)


@audited(
    AuditAction.REPOSITORY_PERM_REVOKE,
    entity="Repository",
    pre_fetch=_repository,
    snapshot_with=repository_rights_snapshot,
)
def repository_force_unlock_revoke(*, actor: Any, repository_id: int, user: Any, reason: str) -> Repository:
    """Take the per-repository force-release right away from ``user``."""
    return _set_force_unlock_right(actor=actor, repository_id=repository_id, user=user, reason=reason, grant=False)


REPOSITORY_FIELDS = ("slug", "name")


@audited(AuditAction.REPOSITORY_CREATE, entity="Repository", diff_keys=REPOSITORY_FIELDS)
def repository_create(*, actor: Any, slug: str, name: str) -> Repository:
    """Raises PermissionDenied without ``locks.add_repository``, ValidationError naming the field."""
    require(actor, "locks.add_repository")
    repository = Repository(slug=slug, name=name)
    repository.full_clean()
    repository.save()
    return repository


@audited(AuditAction.REPOSITORY_UPDATE, entity="Repository", pre_fetch=_repository, diff_keys=REPOSITORY_FIELDS)
def repository_rename(*, actor: Any, repository_id: int, name: str) -> Repository:
    """Change the display name; the slug stays (it is in the clients' LFS URLs and names the repository in the
    trail). Raises PermissionDenied without ``locks.change_repository``."""
    require(actor, "locks.change_repository")
    repository = Repository.objects.get(pk=repository_id)
    repository.name = name
    repository.full_clean()
    repository.save(update_fields=["name"])
    return repository


@audited(
    AuditAction.REPOSITORY_DELETE,
    entity="Repository",
    pre_fetch=_repository,
    diff_keys=REPOSITORY_FIELDS,
    deletes=True,
)
def repository_delete(*, actor: Any, repository_id: int) -> None:
    """Raises PermissionDenied without ``locks.delete_repository``; ProtectedError while files are locked in it
    (locks are released one by one, each with its own entry)."""
    require(actor, "locks.delete_repository")
    Repository.objects.get(pk=repository_id).delete()
