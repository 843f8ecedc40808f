"""Groups and rights that must exist after every migrate."""

from typing import Any

from django.contrib.auth.models import Group, Permission

COMPLIANCE_OFFICERS = "Compliance officers"
# Read-only on purpose (NIST AU-9(6)): officers review the trail, nobody edits it.
OFFICER_PERMISSIONS = (("audit", "view_auditlog"), ("audit", "view_seal"))


def ensure_officer_group(using: str = "default", **kwargs: Any) -> Group:
    group, _ = Group.objects.using(using).get_or_create(name=COMPLIANCE_OFFICERS)
    for app_label, codename in OFFICER_PERMISSIONS:
        permission = Permission.objects.using(using).filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is not None:
            group.permissions.add(permission)
    return group
