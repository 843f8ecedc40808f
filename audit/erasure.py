"""GDPR Art. 17 for the audit trail: a subject's personal fields are erased by destroying their key.

The entries stay, INSERT-only and sealed: action, time, outcome, entity and the commitments remain; the actor label,
addresses, user agent and personal ``meta`` keys read ``[ERASED]`` from then on, everywhere.
"""

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from . import privacy
from .actions import AuditAction
from .models import SubjectKey
from .services import audited

PERMISSION = "audit.erase_subject"


def _personal_fields(subject: Any) -> dict[str, str]:
    readable = SubjectKey.objects.filter(subject_id=subject.pk, key__isnull=False).exists()
    return {"personal_fields": "readable" if readable else "erased"}


@audited(
    AuditAction.AUDIT_SUBJECT_ERASE,
    entity="User",
    pre_fetch=lambda **kwargs: kwargs["subject"],
    snapshot_with=_personal_fields,
)
def erase_subject(*, subject: Any, actor: Any, reason: str) -> Any:
    """Destroy ``subject``'s key; the AUDIT.SUBJECT.ERASE entry (about the user, by ``actor``, with the reason)
    commits with it. ``actor`` None is the system (a shell account is trusted to say who it is).

    Raises PermissionDenied without the right, ValidationError without a reason; both are recorded.
    """
    if actor is not None and not actor.has_perm(PERMISSION):
        raise PermissionDenied(f"{actor.get_username()} does not have the permission {PERMISSION}")
    if not reason or not reason.strip():
        raise ValidationError({"reason": ["An erasure needs a reason, e.g. the request it answers."]})
    with transaction.atomic():
        privacy.destroy_key(subject.pk)
    return subject
