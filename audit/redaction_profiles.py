"""Redaction profiles: created, changed and deleted only here, each change audited with a before/after diff.

A profile decides what a FOIA release withholds; a changed profile changes what the next release shows, so who
changed it, when and from what is part of the trail.
"""

from typing import Any

from .actions import AuditAction
from .authz import require
from .foia_models import RedactionProfile
from .services import audited

FIELDS = ("name", "description", "rules")


def _profile(*, profile_id: int, **_: Any) -> RedactionProfile:
    return RedactionProfile.objects.select_for_update().get(pk=profile_id)


def _save(profile: RedactionProfile, fields: dict[str, Any]) -> RedactionProfile:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown redaction profile fields: {', '.join(unknown)}")
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean()  # normalises and checks the rules; errors name the rule
    profile.save()
    return profile


@audited(AuditAction.REDACTION_PROFILE_CREATE, entity="RedactionProfile", diff_keys=FIELDS)
def redaction_profile_create(*, actor: Any, **fields: Any) -> RedactionProfile:
    """``fields``: name, description, rules. Raises PermissionDenied without ``audit.add_redactionprofile``."""
    require(actor, "audit.add_redactionprofile")
    return _save(RedactionProfile(), fields)


@audited(AuditAction.REDACTION_PROFILE_UPDATE, entity="RedactionProfile", pre_fetch=_profile, diff_keys=FIELDS)
def redaction_profile_update(*, actor: Any, profile_id: int, **fields: Any) -> RedactionProfile:
    """Set the given fields. Raises PermissionDenied without ``audit.change_redactionprofile``."""
    require(actor, "audit.change_redactionprofile")
    return _save(RedactionProfile.objects.get(pk=profile_id), fields)


@audited(
    AuditAction.REDACTION_PROFILE_DELETE, entity="RedactionProfile", pre_fetch=_profile, diff_keys=FIELDS, deletes=True
)
def redaction_profile_delete(*, actor: Any, profile_id: int) -> None:
    """Raises PermissionDenied without ``audit.delete_redactionprofile``; ProtectedError while a FOIA request uses
    the profile (its releases must stay explainable)."""
    require(actor, "audit.delete_redactionprofile")
    RedactionProfile.objects.get(pk=profile_id).delete()
