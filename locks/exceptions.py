from django.core.exceptions import PermissionDenied

from auditproject.exceptions import ApplicationError


class LockConflict(ApplicationError):
    """The path is locked by someone (else): 409, naming the owner and the lock."""

    status_code = 409
    code = "lock_conflict"
    audit_outcome = "denied"

    def __init__(self, lock: "FileLock") -> None:  # noqa: F821
        self.lock = lock
        super().__init__(
            f"{lock.path} is already locked by {lock.owner.get_username()} (lock {lock.pk})",
            extra={"lock_id": str(lock.pk), "owner": lock.owner.get_username()},
        )


class NotLockOwner(PermissionDenied):
    """Only the owner checks a file in; others need force-checkin and the right to it."""
