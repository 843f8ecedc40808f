"""Groups and rights that must exist after every migrate."""

from typing import Any

from django.contrib.auth.models import Group, Permission

COMPLIANCE_OFFICERS = "Compliance officers"
# Read-only on purpose (NIST AU-9(6)): officers review the trail, nobody edits it.
OFFICER_PERMISSIONS = (("audit", "view_auditlog"), ("audit", "view_seal"))


def ensure_officer_group(using: str = "default", **kwargs: Any) -> Group:
    group, _ = Group.objects.using(using).get_or_create(name=COMPLIANCE_OFFICERS)
    for app_label, codename in OFFICER_PERMISSIONS:
        permission = (
            Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
        )
        if permission is not None:
            group.permissions.add(permission)
    return group


def ensure_default_redaction_profile(using: str = "default", apps: Any = None, **kwargs: Any) -> None:
    """The standard FOIA redaction profile, created once; an officer's later edits to it are kept."""
    from .foia_models import DEFAULT_PROFILE_DESCRIPTION, DEFAULT_PROFILE_NAME, DEFAULT_PROFILE_RULES

    try:
        # The migration state's model: after a migrate backwards the table may not exist (yet).
        profile_model = apps.get_model("audit", "RedactionProfile") if apps is not None else None
    except LookupError:
        return
    if profile_model is None:
        from .foia_models import RedactionProfile as profile_model
    profile_model.objects.using(using).get_or_create(
        name=DEFAULT_PROFILE_NAME,
        defaults={"description": DEFAULT_PROFILE_DESCRIPTION, "rules": [dict(rule) for rule in DEFAULT_PROFILE_RULES]},
    )
