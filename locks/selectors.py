from django.db.models import QuerySet

from .models import FileLock


def lock_list(*, repository: str = "", path: str = "", owner: str = "") -> QuerySet[FileLock]:
    """Locks with their repository and owner joined, oldest first (the id order the cursors page on)."""
    locks = FileLock.objects.select_related("repository", "owner").order_by("id")
    if repository:
        locks = locks.filter(repository__slug=repository)
    if path:
        locks = locks.filter(path=path)
    if owner:
        locks = locks.filter(owner__username=owner)
    return locks
