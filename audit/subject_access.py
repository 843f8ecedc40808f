"""GDPR Art. 15 for the audit trail: every entry about a person, and who consulted their entries, when and how.

An entry is about a user when they are its actor, when it is about their account (entity ``User`` with their id),
when another system recorded it on their behalf (``on_behalf_of`` their username), or when it changed a group they
were or became a member of (their username in the ``members`` of a ``Group`` entry's changes). A consultation is an
AUDIT.VIEW, AUDIT.EXPORT or AUDIT.SUBJECT.ACCESS entry whose ``meta.subjects`` names them: the console, the API and
the exports record there whose entries they showed.
"""

from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet

from .actions import COMPLIANCE, AuditAction
from .hashing import canonical_value
from .models import AuditLog
from .privacy import USER_ENTITY, reveal
from .services import record

PERMISSION = "audit.export_subject_access"
CONSULTATIONS = (AuditAction.AUDIT_VIEW, AuditAction.AUDIT_EXPORT, AuditAction.AUDIT_SUBJECT_ACCESS)
CHUNK = 500


def find_subject(identifier: str) -> Any:
    """The user of that username, or else of that id; None if neither."""
    users = get_user_model().objects
    found = users.filter(username=identifier).first()
    if found is None and identifier.isascii() and identifier.isdigit():
        found = users.filter(pk=int(identifier)).first()
    return found


def entries_about(subject: Any) -> QuerySet[AuditLog]:
    """Entries with the subject as actor, as the entity, or as the end user another system acted for."""
    return AuditLog.objects.filter(
        Q(actor_id=subject.pk)
        | Q(entity=USER_ENTITY, entity_id=str(subject.pk))
        # The partial index's own condition, repeated: SQLite uses a partial index only for a query that states
        # it (PostgreSQL infers it from the equality).
        | (Q(on_behalf_of=subject.get_username()) & ~Q(on_behalf_of=""))
    ).order_by("id")


GROUP_ENTITY = "Group"  # its entries' changes list members by username (rbac.services.group_snapshot)


def _is_member_in(entry: AuditLog, username: str) -> bool:
    members = entry.changes.get("members") if isinstance(entry.changes, dict) else None
    if not isinstance(members, dict):
        return False
    return any(isinstance(side, list) and username in side for side in (members.get("before"), members.get("after")))


def memberships_of(subject: Any) -> Iterator[AuditLog]:
    """Group entries whose member lists name the subject (by their current username), oldest first.

    Matched in Python, as ``consultations_of``: the (entity, entity_id, id) index keeps the scan to group entries.
    """
    username = subject.get_username()
    groups = AuditLog.objects.filter(entity=GROUP_ENTITY).order_by("id")
    for chunk in _chunks(groups.iterator(chunk_size=CHUNK)):
        yield from (entry for entry in chunk if _is_member_in(entry, username))


def consultations_of(subject: Any) -> Iterator[AuditLog]:
    """Reads of the audit trail that showed the subject's entries, oldest first.

    ``meta.subjects`` is matched in Python: a JSON array lookup is not portable to SQLite. The (action, id) index
    keeps the scan to the consultation entries; a subject-access request is rare.
    """
    reads = AuditLog.objects.filter(action__in=CONSULTATIONS).order_by("id")
    for chunk in _chunks(reads.iterator(chunk_size=CHUNK)):
        shown = [entry for entry in chunk if subject.pk in (entry.meta.get("subjects") or [])]
        reveal(shown)
        yield from shown


def _chunks(entries: Iterator[AuditLog]) -> Iterator[list[AuditLog]]:
    chunk: list[AuditLog] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _roles(entry: AuditLog, subject: Any) -> list[str]:
    roles = []
    if entry.actor_id == subject.pk:
        roles.append("actor")
    if entry.entity == USER_ENTITY and entry.entity_id == str(subject.pk):
        roles.append("entity")
    if entry.on_behalf_of and entry.on_behalf_of == subject.get_username():
        roles.append("on_behalf_of")
    if entry.entity == GROUP_ENTITY and _is_member_in(entry, subject.get_username()):
        roles.append("member")
    return roles


def _purpose(action: str) -> dict[str, Any]:
    try:
        description = AuditAction(action).label
    except ValueError:
        description = ""
    return {"description": description, "compliance": list(COMPLIANCE.get(action, ()))}


def _entry_document(entry: AuditLog, subject: Any) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "created_at": canonical_value(entry.created_at),
        "as": _roles(entry, subject),
        "action": entry.action,
        "purpose": _purpose(entry.action),
        "outcome": entry.outcome,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "ip_address": entry.ip_address,
        "user_agent": entry.user_agent,
        "on_behalf_of": entry.on_behalf_of,
        "changes": entry.changes,
        "meta": entry.meta,
    }


def _consultation_document(entry: AuditLog) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "at": canonical_value(entry.created_at),
        "by_id": entry.actor_id,
        "by": entry.actor_label,
        "action": entry.action,
        "via": entry.meta.get("via", "api"),
    }


def subject_access_export(*, subject: Any, actor: Any, via: str = "command") -> dict[str, Any]:
    """The Art. 15 document of ``subject``: the entries about them (decrypted, or ``[ERASED]``) and the
    consultations of their entries. Recorded as AUDIT.SUBJECT.ACCESS, itself a consultation of the subject;
    ``via`` says where it was asked for (``command``, ``api``).

    ``actor`` None is the system (a shell account); a person needs ``audit.export_subject_access``.
    """
    if actor is not None and not actor.has_perm(PERMISSION):
        record(
            AuditAction.AUDIT_SUBJECT_ACCESS,
            entity=USER_ENTITY,
            entity_id=subject.pk,
            outcome=AuditLog.Outcome.DENIED,
            actor=actor,
            independent=True,
        )
        raise PermissionDenied(f"{actor.get_username()} does not have the permission {PERMISSION}")
    found = {entry.pk: entry for entry in entries_about(subject).iterator(chunk_size=CHUNK)}
    found.update((entry.pk, entry) for entry in memberships_of(subject) if entry.pk not in found)
    entries = []
    for chunk in _chunks(iter([found[pk] for pk in sorted(found)])):
        reveal(chunk)
        entries.extend(_entry_document(entry, subject) for entry in chunk)
    consultations = [_consultation_document(entry) for entry in consultations_of(subject)]
    recorded = record(
        AuditAction.AUDIT_SUBJECT_ACCESS,
        entity=USER_ENTITY,
        entity_id=subject.pk,
        meta={"subjects": [subject.pk], "entries": len(entries), "consultations": len(consultations), "via": via},
        actor=actor,
    )
    return {
        "subject": {"id": subject.pk, "username": subject.get_username()},
        "generated_at": canonical_value(recorded.created_at),
        "export_entry_id": recorded.pk,
        "entries": entries,
        "consultations": consultations,
    }
