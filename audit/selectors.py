"""Reading the audit trail, always scoped by who is looking."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Q, QuerySet

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


# Built once: every recorded entry is checked against it.
CATALOGUE_CODES = frozenset(AuditAction.values)


def unknown_actions(codes: Iterable[str]) -> set[str]:
    """The codes that are neither the project's own nor registered (one query for any number of codes)."""
    candidates = {str(code) for code in codes} - CATALOGUE_CODES
    if not candidates:
        return set()
    return candidates - set(RegisteredAction.objects.filter(code__in=candidates).values_list("code", flat=True))


# --- the compliance console --------------------------------------------------------------------------------------

RELATED_LIMIT = 10
# Per (vendor, database name): a database's default collation does not change while the process runs.
_BYTEWISE: dict[tuple[str, str], bool] = {}


def _orders_bytewise(using: str) -> bool:
    """Whether the database compares text byte by byte (code point order), as SQLite's BINARY and PostgreSQL's C
    collations do. Only then is ``'LOCK.' <= action < 'LOCK/'`` the same set as ``action LIKE 'LOCK.%'``: a
    linguistic collation (en_US) ignores the dot at first level and sorts ``LOCK.CREATE`` after ``LOCK/``."""
    connection = connections[using]
    key = (connection.vendor, connection.settings_dict["NAME"])
    if key not in _BYTEWISE:
        _BYTEWISE[key] = connection.vendor == "sqlite" or (
            connection.vendor == "postgresql" and _postgres_collation_is_c(connection)
        )
    return _BYTEWISE[key]


def _postgres_collation_is_c(connection: Any) -> bool:
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            # From 15 on, an ICU provider decides the order whatever datcollate says.
            cursor.execute("SELECT datcollate, datlocprovider FROM pg_database WHERE datname = current_database()")
            collate, provider = cursor.fetchone()
        else:
            cursor.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
            (collate,), provider = cursor.fetchone(), "c"
    return provider == "c" and (collate in ("C", "POSIX") or collate.startswith("C."))


def with_action_prefix(entries: QuerySet[AuditLog], prefix: str) -> QuerySet[AuditLog]:
    """Entries whose action starts with ``prefix`` (``"LOCK."`` for the LOCK family), on the ``(action, id)`` index.

    PostgreSQL turns ``LIKE 'LOCK.%'`` into an index range only under the "C" collation (not "C.UTF-8"), and SQLite's
    LIKE never uses an index (it ignores case): both scan the table for a rare family. The equivalent range
    ``'LOCK.' <= action < 'LOCK/'`` is an index condition wherever text compares byte by byte; the LIKE stays as
    well, so the result is right under any collation (there without the range, and slower).
    """
    entries = entries.filter(action__startswith=prefix)
    if prefix and _orders_bytewise(entries.db):
        entries = entries.filter(action__gte=prefix, action__lt=prefix[:-1] + chr(ord(prefix[-1]) + 1))
    return entries


def same_request(entry: AuditLog, *, limit: int = RELATED_LIMIT) -> list[AuditLog]:
    """The newest other entries of the request that recorded ``entry`` (on the ``request_id`` index; no count).

    Commands and jobs record no request id: entries without one are not "of the same request".
    """
    if not entry.request_id:
        return []
    return list(AuditLog.objects.filter(request_id=entry.request_id).exclude(pk=entry.pk).order_by("-id")[:limit])


def same_entity(entry: AuditLog, *, limit: int = RELATED_LIMIT) -> list[AuditLog]:
    """The newest other entries about the same entity (``(entity, entity_id, id)`` index, read backwards).

    Without an entity id there is no "same" entity: all changelist views (entity AuditLog, no id) are not related.
    """
    if not entry.entity or not entry.entity_id:
        return []
    return list(
        AuditLog.objects.filter(entity=entry.entity, entity_id=entry.entity_id)
        .exclude(pk=entry.pk)
        .order_by("-id")[:limit]
    )


def console_search(entries: QuerySet[AuditLog], term: str) -> QuerySet[AuditLog]:
    """Exact matches of ``term`` on indexed columns only: entry id, request id, entity id, or the actor whose current
    username it is (through the ``(actor, id)`` index). A LIKE '%term%' over millions of rows would scan them all,
    and so would one OR-ed column without an index (``actor_label`` has none)."""
    term = term.strip()
    if not term:
        return entries
    match = Q(request_id=term) | Q(entity_id=term)
    # ASCII digits only: str.isdigit() is true of "²" too, which int() refuses.
    if term.isascii() and term.isdigit():
        match |= Q(id=int(term))
    actor_ids = list(get_user_model().objects.filter(username=term).values_list("pk", flat=True)[:1])
    if actor_ids:
        match |= Q(actor_id=actor_ids[0])
    return entries.filter(match)
