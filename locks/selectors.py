from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from .models import FileLock

VIEW = "locks.view_filelock"


def lock_list(*, actor: Any, repository: str = "", path: str = "", owner: str = "") -> QuerySet[FileLock]:
    """Locks with their repository and owner joined, oldest first (the id order the cursors page on).

    Raises PermissionDenied without ``locks.view_filelock``: which files whom is working on is not for everyone.
    """
    if not actor.has_perm(VIEW):
        raise PermissionDenied(f"{actor.get_username()} may not see the locks")
    locks = FileLock.objects.select_related("repository", "owner").order_by("id")
    if repository:
        locks = locks.filter(repository__slug=repository)
    if path:
        locks = locks.filter(path=path)
    if owner:
        locks = locks.filter(owner__username=owner)
    return locks
