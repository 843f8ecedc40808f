"""The default roles every installation starts with."""

from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from audit.bootstrap import COMPLIANCE_OFFICERS

from . import services
from .models import Role


@dataclass(frozen=True)
class DefaultRole:
    name: str
    description: str
    privileged: bool
    permissions: tuple[str, ...]


DEFAULT_ROLES = (
    DefaultRole(
        "administrator",
        "Manages users, groups and roles, and the action catalogue.",
        True,
        (
            "auth.add_user",
            "auth.change_user",
            "auth.view_user",
            "auth.add_group",
            "auth.change_group",
            "auth.delete_group",
            "auth.view_group",
            "rbac.add_role",
            "rbac.change_role",
            "rbac.delete_role",
            "rbac.view_role",
            "rbac.assign_role",
            "audit.view_auditlog",
            "audit.view_seal",
            "audit.add_registeredaction",
            "audit.change_registeredaction",
            "audit.view_registeredaction",
        ),
    ),
    DefaultRole(
        "compliance officer",
        "Reviews the audit trail, verifies it and acknowledges its anomalies; changes no record.",
        False,
        (
            "audit.view_auditlog",
            "audit.view_seal",
            "audit.view_registeredaction",
            # Acknowledging adds an AUDIT.ANOMALY.ACK entry and closes the anomaly on the dashboard: review work.
            "audit.view_anomaly",
            "audit.acknowledge_anomaly",
            "rbac.view_role",
            "auth.view_group",
            "auth.view_user",
        ),
    ),
    DefaultRole(
        "lock administrator",
        "Releases other people's file locks, always with a reason.",
        True,
        ("locks.force_unlock", "locks.view_filelock", "locks.view_repository"),
    ),
    DefaultRole(
        "member",
        "Checks files out and in.",
        False,
        ("locks.add_filelock", "locks.view_filelock", "locks.view_repository"),
    ),
    DefaultRole(
        "records officer",
        "Answers FOIA requests and regulators' exports, places legal holds, and requests or approves archiving "
        "(another officer must approve a request).",
        True,
        (
            "audit.view_auditlog",
            "audit.view_seal",
            "audit.add_foiarequest",
            "audit.change_foiarequest",
            "audit.view_foiarequest",
            "audit.view_redactionprofile",
            # Removal of entries: two officers of this role, one requesting and another approving (NIST AU-9(5)).
            "audit.request_archive",
            "audit.approve_archive",
            "audit.view_archiverequest",
            "audit.manage_legalhold",
            "audit.view_legalhold",
        ),
    ),
)


def _existing(codes: tuple[str, ...]) -> list[str]:
    """The codes whose app is installed and migrated; the others are skipped."""
    rows = Permission.objects.values_list("content_type__app_label", "codename")
    known = {f"{app_label}.{codename}" for app_label, codename in rows}
    return [code for code in codes if code in known]


def bootstrap_default_roles() -> list[Role]:
    """Create the default roles that do not exist yet (audited, by the system); existing roles are left as they are."""
    created = []
    with transaction.atomic():
        for default in DEFAULT_ROLES:
            if Role.objects.filter(name=default.name).exists():
                continue
            role = services.role_create(
                actor=None,
                name=default.name,
                description=default.description,
                privileged=default.privileged,
                permissions=_existing(default.permissions),
                reason="default roles of a new installation",
            )
            created.append(role)
            if default.name == "compliance officer":
                group = Group.objects.filter(name=COMPLIANCE_OFFICERS).first()
                if group is not None:
                    # Add the role; replacing the group's roles would take away any it already had.
                    role_ids = [*group.rbac_roles.values_list("pk", flat=True), role.pk]
                    services.group_update(actor=None, group_id=group.pk, role_ids=role_ids)
    return created
