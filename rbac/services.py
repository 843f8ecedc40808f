"""Every change to roles, groups and users. The API, the admin and the commands all come through here, so the
audit trail is the same whichever door was used.

Each service checks the actor's right itself (deny by default; ``actor=None`` is the system, e.g. an operator's
management command) and is wrapped by ``@audited``: the change and its entry commit together, a refusal is
recorded as ``denied`` and any other error as ``failure``.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError

from audit.actions import AuditAction
from audit.authz import require
from audit.services import audited

from .backends import forget_role_permissions
from .models import GroupScope, Role
from .scope import validate_branch_scope

User = get_user_model()
USER_FIELDS = ("username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser")


# --- checks -----------------------------------------------------------------------------------------------------


def _require_reason(reason: str, why: str) -> None:
    if not (reason or "").strip():
        raise ValidationError({"reason": f"A reason is required because {why}."})


def _guard_escalation(actor: Any, codes: Iterable[str]) -> None:
    """Nobody hands out rights they do not hold themselves (superusers and the system excepted)."""
    if actor is None or actor.is_superuser:
        return
    missing = sorted(set(codes) - actor.get_all_permissions())
    if missing:
        raise PermissionDenied(f"cannot grant permissions you do not hold: {', '.join(missing)}")


def permission_codes(permissions: Iterable[Permission]) -> list[str]:
    return sorted(f"{perm.content_type.app_label}.{perm.codename}" for perm in permissions)


def resolve_permissions(codes: Iterable[str]) -> list[Permission]:
    """``["app_label.codename", ...]`` to Permission rows; any unknown code is a validation error on ``permissions``."""
    wanted = set(codes)
    malformed = sorted(code for code in wanted if code.count(".") != 1)
    if malformed:
        raise ValidationError({"permissions": f"Not an app_label.codename: {', '.join(malformed)}"})
    found = {
        f"{perm.content_type.app_label}.{perm.codename}": perm
        for perm in Permission.objects.select_related("content_type").filter(
            content_type__app_label__in={code.split(".")[0] for code in wanted},
            codename__in={code.split(".")[1] for code in wanted},
        )
        if f"{perm.content_type.app_label}.{perm.codename}" in wanted
    }
    unknown = sorted(wanted - set(found))
    if unknown:
        raise ValidationError({"permissions": f"Unknown permission(s): {', '.join(unknown)}"})
    return list(found.values())


def _role_codes(roles: Iterable[Role]) -> set[str]:
    return {code for role in roles for code in permission_codes(role.permissions.select_related("content_type"))}


def _group_codes(groups: Iterable[Group]) -> set[str]:
    """The Django permissions the groups themselves carry (``Group.permissions``), besides their roles'."""
    return set(permission_codes(Permission.objects.filter(group__in=list(groups)).select_related("content_type")))


def _roles_by_id(role_ids: Iterable[int], field: str = "roles") -> list[Role]:
    ids = set(role_ids)
    roles = list(Role.objects.filter(pk__in=ids))
    unknown = sorted(ids - {role.pk for role in roles})
    if unknown:
        raise ValidationError({field: f"Unknown role id(s): {', '.join(map(str, unknown))}"})
    return roles


def _users_by_id(user_ids: Iterable[int]) -> list[Any]:
    ids = set(user_ids)
    users = list(User.objects.filter(pk__in=ids))
    unknown = sorted(ids - {user.pk for user in users})
    if unknown:
        raise ValidationError({"members": f"Unknown user id(s): {', '.join(map(str, unknown))}"})
    return users


def privileged_roles_change(before: Iterable[Role], after: Iterable[Role]) -> bool:
    """Whether a privileged role comes or goes between the two sets of roles: such a change needs a reason.

    Pure, so that a form can tell the user before any service is called (the admin's forms use it).
    """
    return any(role.privileged for role in set(before) ^ set(after))


def _check_role_change(actor: Any, before: Iterable[Role], after: Iterable[Role], reason: str) -> None:
    """A change of roles needs a reason when a privileged role comes or goes, and only grants held rights."""
    old, new = set(before), set(after)
    if privileged_roles_change(old, new):
        _require_reason(reason, "a privileged role is granted or removed")
    _guard_escalation(actor, _role_codes(new - old))


# --- snapshots (what an entry's before/after shows) ---------------------------------------------------------------


def role_snapshot(role: Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "privileged": role.privileged,
        "permissions": permission_codes(role.permissions.select_related("content_type")),
        "users": sorted(role.users.values_list("username", flat=True)),
        "groups": sorted(role.groups.values_list("name", flat=True)),
    }


def group_snapshot(group: Group) -> dict[str, Any]:
    scope = GroupScope.objects.filter(group=group).values_list("branch_scope", flat=True).first()
    return {
        "name": group.name,
        "roles": sorted(group.rbac_roles.values_list("name", flat=True)),
        "members": sorted(group.user_set.values_list("username", flat=True)),
        "branch_scope": scope,
    }


def user_snapshot(user: Any) -> dict[str, Any]:
    return {
        **{field: getattr(user, field) for field in USER_FIELDS},
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


def user_roles_snapshot(user: Any) -> dict[str, Any]:
    return {"roles": sorted(user.rbac_roles.values_list("name", flat=True))}


def _role(*, role_id: int, **_: Any) -> Role:
    return Role.objects.select_for_update().get(pk=role_id)


def _group(*, group_id: int, **_: Any) -> Group:
    return Group.objects.select_for_update().get(pk=group_id)


def _user(*, user_id: int, **_: Any) -> Any:
    return User.objects.select_for_update().get(pk=user_id)


# --- roles --------------------------------------------------------------------------------------------------------


@audited(AuditAction.ROLE_CREATE, entity="Role", snapshot_with=role_snapshot)
def role_create(
    *,
    actor: Any,
    name: str,
    description: str = "",
    privileged: bool = False,
    permissions: Iterable[str] = (),
    reason: str = "",
) -> Role:
    require(actor, "rbac.add_role")
    perms = resolve_permissions(permissions)
    if privileged and perms:
        _require_reason(reason, "a privileged role is created with permissions")
    _guard_escalation(actor, permission_codes(perms))
    role = Role(name=name, description=description, privileged=privileged)
    role.full_clean()
    role.save()
    role.permissions.set(perms)
    return role


@audited(AuditAction.ROLE_UPDATE, entity="Role", pre_fetch=_role, snapshot_with=role_snapshot)
def role_update(
    *,
    actor: Any,
    role_id: int,
    name: str | None = None,
    description: str | None = None,
    privileged: bool | None = None,
    reason: str = "",
) -> Role:
    require(actor, "rbac.change_role")
    role = Role.objects.get(pk=role_id)
    if privileged is not None and privileged != role.privileged:
        _require_reason(reason, "the privileged flag changes")
        role.privileged = privileged
    if name is not None:
        role.name = name
    if description is not None:
        role.description = description
    role.full_clean()
    role.save()
    return role


@audited(AuditAction.ROLE_PERM_REPLACE, entity="Role", pre_fetch=_role, snapshot_with=role_snapshot)
def role_permissions_replace(*, actor: Any, role_id: int, permissions: Iterable[str], reason: str = "") -> Role:
    require(actor, "rbac.change_role")
    role = Role.objects.get(pk=role_id)
    perms = resolve_permissions(permissions)
    if role.privileged:
        _require_reason(reason, f"{role.name} is a privileged role")
    _guard_escalation(actor, set(permission_codes(perms)) - set(permission_codes(role.permissions.all())))
    role.permissions.set(perms)
    return role


@audited(AuditAction.ROLE_DELETE, entity="Role", pre_fetch=_role, snapshot_with=role_snapshot, deletes=True)
def role_delete(*, actor: Any, role_id: int, reason: str = "") -> None:
    require(actor, "rbac.delete_role")
    role = Role.objects.get(pk=role_id)
    if role.privileged:
        _require_reason(reason, f"{role.name} is a privileged role")
    role.delete()


@audited(AuditAction.USER_ROLES_SET, entity="User", pre_fetch=_user, snapshot_with=user_roles_snapshot)
def user_roles_set(*, actor: Any, user_id: int, role_ids: Iterable[int], reason: str = "") -> Any:
    require(actor, "rbac.assign_role")
    user = User.objects.get(pk=user_id)
    roles = _roles_by_id(role_ids)
    _check_role_change(actor, user.rbac_roles.all(), roles, reason)
    user.rbac_roles.set(roles)
    forget_role_permissions(user)
    return user


# --- groups -------------------------------------------------------------------------------------------------------


@audited(AuditAction.GROUP_CREATE, entity="Group", snapshot_with=group_snapshot)
def group_create(
    *,
    actor: Any,
    name: str,
    role_ids: Iterable[int] = (),
    branch_scope: Any = None,
    reason: str = "",
) -> Group:
    require(actor, "auth.add_group")
    scope = validate_branch_scope(branch_scope if branch_scope is not None else {"allow": []})
    roles = _roles_by_id(role_ids)
    _check_role_change(actor, [], roles, reason)
    group = Group(name=name)
    group.full_clean()
    group.save()
    GroupScope.objects.create(group=group, branch_scope=scope)
    group.rbac_roles.set(roles)
    return group


@audited(AuditAction.GROUP_UPDATE, entity="Group", pre_fetch=_group, snapshot_with=group_snapshot)
def group_update(
    *, actor: Any, group_id: int, name: str | None = None, role_ids: Iterable[int] | None = None, reason: str = ""
) -> Group:
    require(actor, "auth.change_group")
    group = Group.objects.get(pk=group_id)
    if name is not None:
        group.name = name
        group.full_clean()
        group.save()
    if role_ids is not None:
        roles = _roles_by_id(role_ids)
        if group.user_set.exists():
            _check_role_change(actor, group.rbac_roles.all(), roles, reason)
        group.rbac_roles.set(roles)
    return group


@audited(AuditAction.GROUP_MEMBERS_SET, entity="Group", pre_fetch=_group, snapshot_with=group_snapshot)
def group_members_set(*, actor: Any, group_id: int, user_ids: Iterable[int], reason: str = "") -> Group:
    require(actor, "auth.change_group")
    group = Group.objects.get(pk=group_id)
    members = _users_by_id(user_ids)
    roles = list(group.rbac_roles.all())
    if set(members) ^ set(group.user_set.all()):
        if any(role.privileged for role in roles):
            _require_reason(reason, f"{group.name} carries a privileged role")
        if set(members) - set(group.user_set.all()):
            _guard_escalation(actor, _role_codes(roles) | _group_codes([group]))
    group.user_set.set(members)
    return group


@audited(AuditAction.GROUP_SCOPE_SET, entity="Group", pre_fetch=_group, snapshot_with=group_snapshot)
def group_scope_set(*, actor: Any, group_id: int, branch_scope: Any, reason: str = "") -> Group:
    require(actor, "auth.change_group")
    group = Group.objects.get(pk=group_id)
    GroupScope.objects.update_or_create(group=group, defaults={"branch_scope": validate_branch_scope(branch_scope)})
    return group


@audited(AuditAction.GROUP_DELETE, entity="Group", pre_fetch=_group, snapshot_with=group_snapshot, deletes=True)
def group_delete(*, actor: Any, group_id: int, reason: str = "") -> None:
    require(actor, "auth.delete_group")
    group = Group.objects.get(pk=group_id)
    if group.user_set.exists() and group.rbac_roles.filter(privileged=True).exists():
        _require_reason(reason, f"{group.name} gives its members a privileged role")
    group.delete()


# --- users --------------------------------------------------------------------------------------------------------


def _protect_superuser(actor: Any, user: Any) -> None:
    """Only a superuser changes a superuser's account: setting its password would otherwise take it over."""
    if user.is_superuser and actor is not None and not actor.is_superuser and actor.pk != user.pk:
        raise PermissionDenied(f"only a superuser may change the account of superuser {user.get_username()}")


def _check_superuser_change(actor: Any, reason: str) -> None:
    if actor is not None and not actor.is_superuser:
        raise PermissionDenied("only a superuser may grant or remove superuser status")
    _require_reason(reason, "superuser status is granted or removed")


@audited(AuditAction.USER_CREATE, entity="User", snapshot_with=user_snapshot)
def user_create(
    *,
    actor: Any,
    username: str,
    email: str = "",
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    reason: str = "",
) -> Any:
    require(actor, "auth.add_user")
    if is_superuser:
        _check_superuser_change(actor, reason)
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from exc
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    return user


@audited(AuditAction.USER_UPDATE, entity="User", pre_fetch=_user, snapshot_with=user_snapshot)
def user_update(
    *, actor: Any, user_id: int, fields: dict[str, Any], group_ids: Iterable[int] | None = None, reason: str = ""
) -> Any:
    """Change the account fields in ``fields`` (of ``USER_FIELDS``) and, if given, the user's groups."""
    require(actor, "auth.change_user")
    unknown = sorted(set(fields) - set(USER_FIELDS))
    if unknown:
        raise ValidationError({unknown[0]: "This field cannot be changed here."})
    user = User.objects.get(pk=user_id)
    _protect_superuser(actor, user)
    if fields.get("is_active") is False and user.is_active:
        raise ValidationError({"is_active": "Deactivate the account with user_deactivate, which records why."})
    if "is_superuser" in fields and bool(fields["is_superuser"]) != user.is_superuser:
        _check_superuser_change(actor, reason)
    for field, value in fields.items():
        setattr(user, field, value)
    user.full_clean(exclude=["password"])
    user.save()
    if group_ids is not None:
        wanted = set(group_ids)
        groups = list(Group.objects.filter(pk__in=wanted))
        missing = sorted(wanted - {group.pk for group in groups})
        if missing:
            raise ValidationError({"groups": f"Unknown group id(s): {', '.join(map(str, missing))}"})
        _check_role_change(
            actor,
            Role.objects.filter(groups__in=user.groups.all()).distinct(),
            Role.objects.filter(groups__in=groups).distinct(),
            reason,
        )
        _guard_escalation(actor, _group_codes(set(groups) - set(user.groups.all())))
        user.groups.set(groups)
    forget_role_permissions(user)
    return user


@audited(AuditAction.USER_DEACTIVATE, entity="User", pre_fetch=_user, snapshot_with=user_snapshot)
def user_deactivate(*, actor: Any, user_id: int, reason: str = "") -> Any:
    require(actor, "auth.change_user")
    user = User.objects.get(pk=user_id)
    _protect_superuser(actor, user)
    if actor is not None and actor.pk == user.pk:
        raise ValidationError({"user": "You cannot deactivate your own account."})
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user


@audited(AuditAction.USER_PASSWORD_CHANGE, entity="User", pre_fetch=_user, snapshot_with=lambda user: {})
def user_password_change(*, actor: Any, user_id: int, password: str) -> Any:
    """Set a new password. The entry says who changed whose password and when, never the password."""
    user = User.objects.get(pk=user_id)
    _protect_superuser(actor, user)
    if actor is None or actor.pk != user.pk:
        require(actor, "auth.change_user")
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    user.set_password(password)
    user.save(update_fields=["password"])
    return user
