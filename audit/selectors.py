"""Reading the audit trail, always scoped by who is looking."""

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from .actions import AuditAction
from .models import AuditLog, RegisteredAction

VIEW_ALL_PERMISSION = "audit.view_auditlog"


def can_view_all(viewer: Any) -> bool:
    return bool(viewer and viewer.is_authenticated and viewer.has_perm(VIEW_ALL_PERMISSION))


def visible_entries(*, viewer: Any) -> QuerySet[AuditLog]:
    """Officers see every entry; any other authenticated user only the entries where they are the actor."""
    entries = AuditLog.objects.select_related("seal").order_by("-id")
    if can_view_all(viewer):
        return entries
    if viewer is None or not viewer.is_authenticated:
        return entries.none()
    return entries.filter(actor_id=viewer.pk)


def unknown_actions(codes: Iterable[str]) -> set[str]:
    """The codes that are neither the project's own nor registered (one query for any number of codes)."""
    candidates = {str(code) for code in codes} - set(AuditAction.values)
    if not candidates:
        return set()
    return candidates - set(RegisteredAction.objects.filter(code__in=candidates).values_list("code", flat=True))
