"""Legal holds: entries an officer keeps out of the archive (litigation, investigation, a regulator's request).

``create_legal_hold`` / ``release_legal_hold`` are the only writers; each checks the actor's right and is wrapped by
``@audited``, so placing and lifting a hold are in the trail (AUDIT.HOLD.CREATE / AUDIT.HOLD.RELEASE). The archive
asks ``first_covered`` which chain position an active hold reaches first, and stops before that entry's month.
"""

import datetime as dt
import json
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from .actions import AuditAction
from .models import AuditLog, Seal
from .retention_models import LegalHold
from .services import audited

PERMISSION = "audit.manage_legalhold"
SNAPSHOT_FIELDS = (
    "entity",
    "entity_id",
    "actor_label",
    "since",
    "until",
    "reason",
    "created_by_label",
    "released_at",
    "released_by_label",
    "release_reason",
)


def _require(actor: Any) -> None:
    # None is the system (a case-management integration, say); a person needs the right.
    if actor is not None and not actor.has_perm(PERMISSION):
        raise PermissionDenied(f"{actor.get_username()} does not have the permission {PERMISSION}")


def hold_snapshot(hold: LegalHold) -> dict[str, Any]:
    values = {name: getattr(hold, name) for name in SNAPSHOT_FIELDS}
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def _label(actor: Any) -> str:
    return actor.get_username() if actor is not None else ""


@audited(AuditAction.AUDIT_HOLD_CREATE, entity="LegalHold", snapshot_with=hold_snapshot)
def create_legal_hold(
    *,
    actor: Any,
    reason: str,
    entity: str = "",
    entity_id: object = "",
    actor_label: str = "",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> LegalHold:
    """Place a hold: the entries matching every criterion given are not archived until it is released.

    Raises PermissionDenied without ``audit.manage_legalhold``, ValidationError without a criterion or a reason.
    """
    _require(actor)
    hold = LegalHold(
        entity=entity.strip(),
        entity_id=str(entity_id).strip(),
        actor_label=actor_label.strip(),
        since=since,
        until=until,
        reason=reason.strip(),
        created_by=actor,
        created_by_label=_label(actor),
    )
    hold.full_clean()
    hold.save()
    return hold


def _locked_hold(*, hold_id: int, **_: Any) -> LegalHold:
    return LegalHold.objects.select_for_update().get(pk=hold_id)


@audited(AuditAction.AUDIT_HOLD_RELEASE, entity="LegalHold", pre_fetch=_locked_hold, snapshot_with=hold_snapshot)
def release_legal_hold(*, actor: Any, hold_id: int, reason: str) -> LegalHold:
    """Lift a hold, saying why; its entries may be archived again. A hold is released once."""
    _require(actor)
    if not reason.strip():
        raise ValidationError({"release_reason": "Releasing a legal hold needs a reason."})
    hold = LegalHold.objects.get(pk=hold_id)
    if not hold.is_active:
        raise ValidationError({"released_at": f"Legal hold #{hold.pk} was released on {hold.released_at:%Y-%m-%d}."})
    hold.released_at = timezone.now()
    hold.released_by = actor
    hold.released_by_label = _label(actor)
    hold.release_reason = reason.strip()
    hold.save()
    return hold


def active_holds() -> QuerySet[LegalHold]:
    return LegalHold.objects.filter(released_at__isnull=True).order_by("id")


def first_covered(first_index: int, last_index: int) -> tuple[LegalHold, int, int] | None:
    """The active hold that covers the earliest chain position in ``first_index..last_index``, with that position
    and its entry id; None when no active hold covers any of them."""
    found: tuple[LegalHold, int, int] | None = None
    for hold in active_holds():
        covered = AuditLog.objects.filter(hold.covers(), pk=OuterRef("entry_id"))
        position = (
            Seal.objects.filter(chain_index__gte=first_index, chain_index__lte=last_index)
            .filter(Exists(covered))
            .order_by("chain_index")
            .values_list("chain_index", "entry_id")
            .first()
        )
        if position is not None and (found is None or position[0] < found[1]):
            found = (hold, position[0], position[1])
    return found
