"""Action codes of other systems, registered by administrators beside the project's own catalogue."""

from typing import Any

from django.db import transaction

from .actions import AuditAction
from .diff import diff, snapshot
from .models import RegisteredAction
from .services import record

FIELDS = ("code", "description", "compliance")


def registered_action_save(*, actor: Any, code: str, description: str, compliance: str = "") -> RegisteredAction:
    """Register ``code`` or change its description and mapping; either way recorded with a before/after diff.

    Raises ``django.core.exceptions.ValidationError`` for a malformed code or one of the project's own.
    """
    with transaction.atomic():
        existing = RegisteredAction.objects.select_for_update().filter(code=code).first()
        before = snapshot(existing, FIELDS)
        action = existing or RegisteredAction(code=code)
        action.description = description
        action.compliance = compliance
        action.full_clean()
        action.save()
        record(
            AuditAction.ACTION_UPDATE if existing else AuditAction.ACTION_REGISTER,
            entity="RegisteredAction",
            entity_id=action.pk,
            changes=diff(before, snapshot(action, FIELDS)),
            actor=actor,
        )
    return action
