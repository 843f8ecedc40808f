"""The rbac services: every change of roles, groups and users is checked against the actor's rights and recorded
as exactly one audit entry, with a before/after diff, the actor's permissions and, for privileged changes, a
required reason. Refusals change nothing and are recorded too (denied or failure)."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.models.signals import pre_delete

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.privacy import reveal
from rbac import services
from rbac.models import GroupScope, Role
from tests.factories.users import UserFactory

User = get_user_model()

VIEW_LOG = "audit.view_auditlog"
VIEW_SEAL = "audit.view_seal"
BLANK_REASONS = [pytest.param("", id="empty"), pytest.param("   ", id="spaces"), pytest.param("\t\n ", id="whitespace")]
STRONG_PASSWORD = "Tr0ub4dor&3-zebra-canary"


# --- helpers ------------------------------------------------------------------------------------------------------


def perm(code: str) -> Permission:
    app_label, codename = code.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def actor_with(*codes: str, **fields: Any) -> Any:
    """A non-superuser holding exactly ``codes`` (as Django user permissions, independent of roles)."""
    user = UserFactory(**fields)
    user.user_permissions.set([perm(code) for code in codes])
    return User.objects.get(pk=user.pk)


def make_role(name: str, *codes: str, privileged: bool = False) -> Role:
    role = Role.objects.create(name=name, privileged=privileged)
    role.permissions.set([perm(code) for code in codes])
    return role


def make_group(name: str, *, roles: tuple[Role, ...] = (), members: tuple[Any, ...] = ()) -> Group:
    group = Group.objects.create(name=name)
    GroupScope.objects.create(group=group, branch_scope={"allow": []})
    group.rbac_roles.set(roles)
    group.user_set.set(members)
    return group


def only_entry() -> AuditLog:
    """The one entry the call wrote: a change leaves exactly one entry, never two, never none."""
    entries = list(AuditLog.objects.all())
    assert len(entries) == 1, [(entry.action, entry.outcome) for entry in entries]
    reveal(entries)  # the actor's label and address are stored encrypted
    return entries[0]


def assert_success(entry: AuditLog, action: str, entity: str, entity_id: object, actor: Any) -> None:
    assert entry.action == action
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert (entry.entity, entry.entity_id) == (entity, str(entity_id))
    assert (entry.actor_id, entry.actor_label) == (actor.pk, actor.username)


def assert_refused(entry: AuditLog, action: str, outcome: str, actor: Any | None) -> None:
    assert entry.action == action
    assert entry.outcome == outcome
    assert entry.changes == {}
    assert entry.actor_id == (actor.pk if actor is not None else None)
    assert entry.meta["error"] == ("PermissionDenied" if outcome == "denied" else "ValidationError")


def table_dump() -> str:
    """Every value of every audit row, read back raw from the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_auditlog")
        rows = cursor.fetchall()
    return "\n".join(repr([bytes(value) if isinstance(value, memoryview) else value for value in row]) for row in rows)


def snapshot_of(perms: Any) -> dict[str, Any]:
    return {"perms": sorted(perms)}


@pytest.fixture
def superuser(db):
    return UserFactory(is_superuser=True, is_staff=True)


# --- role_create --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_role_create_makes_the_role_and_records_its_snapshot():
    """role_create saves the role with its permissions and writes one ROLE.CREATE success entry: every field with
    before None, permission sets with added/removed, the actor, their permissions and the reason."""
    actor = actor_with("rbac.add_role", VIEW_LOG, VIEW_SEAL)

    role = services.role_create(
        actor=actor,
        name="reviewer",
        description="Reads the trail",
        permissions=[VIEW_SEAL, VIEW_LOG],
        reason="ticket 17",
    )

    role = Role.objects.get(pk=role.pk)
    assert (role.name, role.description, role.privileged) == ("reviewer", "Reads the trail", False)
    assert services.permission_codes(role.permissions.all()) == [VIEW_LOG, VIEW_SEAL]
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_CREATE, "Role", role.pk, actor)
    assert entry.changes == {
        "name": {"before": None, "after": "reviewer"},
        "description": {"before": None, "after": "Reads the trail"},
        "privileged": {"before": None, "after": False},
        "permissions": {"before": None, "after": [VIEW_LOG, VIEW_SEAL], "added": [VIEW_LOG, VIEW_SEAL], "removed": []},
        "users": {"before": None, "after": [], "added": [], "removed": []},
        "groups": {"before": None, "after": [], "added": [], "removed": []},
    }
    assert entry.perms_snapshot == snapshot_of(["rbac.add_role", VIEW_LOG, VIEW_SEAL])
    assert entry.meta == {"reason": "ticket 17"}


@pytest.mark.django_db
def test_role_create_by_the_system_records_no_actor():
    """actor=None is the system: allowed, and the entry names no actor and no permissions."""
    role = services.role_create(actor=None, name="auditor", permissions=[VIEW_LOG])

    entry = only_entry()
    assert (entry.outcome, entry.entity_id) == ("success", str(role.pk))
    assert (entry.actor_id, entry.actor_label) == (None, "")
    assert entry.perms_snapshot == {"perms": []}
    assert entry.meta == {}


@pytest.mark.django_db
def test_role_create_without_the_permission_is_denied_and_recorded():
    """Without rbac.add_role the call is refused: no role, one denied ROLE.CREATE entry with the actor's rights."""
    actor = actor_with(VIEW_LOG)

    with pytest.raises(PermissionDenied):
        services.role_create(actor=actor, name="reviewer", permissions=[VIEW_LOG])

    assert not Role.objects.exists()
    entry = only_entry()
    assert_refused(entry, AuditAction.ROLE_CREATE, "denied", actor)
    assert (entry.entity, entry.entity_id) == ("Role", "")
    assert entry.perms_snapshot == snapshot_of([VIEW_LOG])


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_role_create_privileged_with_permissions_needs_a_reason(superuser, reason):
    """A privileged role with permissions needs a non-blank reason: ValidationError on reason, no role, one
    failure entry and no success entry."""
    with pytest.raises(ValidationError) as excinfo:
        services.role_create(actor=superuser, name="root", privileged=True, permissions=[VIEW_LOG], reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not Role.objects.exists()
    assert_refused(only_entry(), AuditAction.ROLE_CREATE, "failure", superuser)


@pytest.mark.django_db
def test_role_create_privileged_with_a_reason_records_it(superuser):
    """With a reason the privileged role is created and the reason is in meta.reason; a superuser's permissions
    are recorded as "*"."""
    role = services.role_create(
        actor=superuser, name="root", privileged=True, permissions=[VIEW_LOG], reason="new audit lead"
    )

    assert Role.objects.get(pk=role.pk).privileged
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_CREATE, "Role", role.pk, superuser)
    assert entry.meta == {"reason": "new audit lead"}
    assert entry.perms_snapshot == {"perms": ["*"], "superuser": True}


@pytest.mark.django_db
def test_role_create_cannot_bundle_permissions_the_actor_lacks():
    """Escalation guard: an actor with rbac.add_role cannot create a role holding a permission they do not have."""
    actor = actor_with("rbac.add_role", VIEW_LOG)

    with pytest.raises(PermissionDenied, match=VIEW_SEAL):
        services.role_create(actor=actor, name="reviewer", permissions=[VIEW_LOG, VIEW_SEAL])

    assert not Role.objects.exists()
    assert_refused(only_entry(), AuditAction.ROLE_CREATE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("codes", [["audit.no_such_permission"], ["not-a-code"], ["a.b.c"]])
def test_role_create_with_unknown_permission_fails_on_permissions(superuser, codes):
    """Unknown or malformed permission codes are a ValidationError on permissions; nothing is created."""
    with pytest.raises(ValidationError) as excinfo:
        services.role_create(actor=superuser, name="reviewer", permissions=codes)

    assert "permissions" in excinfo.value.message_dict
    assert not Role.objects.exists()
    assert_refused(only_entry(), AuditAction.ROLE_CREATE, "failure", superuser)


@pytest.mark.django_db
def test_role_create_with_a_taken_name_fails_on_name(superuser):
    """Role names are unique: a second role of the same name is a ValidationError on name."""
    make_role("reviewer")

    with pytest.raises(ValidationError) as excinfo:
        services.role_create(actor=superuser, name="reviewer")

    assert "name" in excinfo.value.message_dict
    assert Role.objects.count() == 1
    assert_refused(only_entry(), AuditAction.ROLE_CREATE, "failure", superuser)


# --- role_update --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_role_update_records_only_the_changed_fields():
    """Renaming and describing a role records name and description before/after and nothing else."""
    actor = actor_with("rbac.change_role")
    role = make_role("reviewer", VIEW_LOG)

    services.role_update(actor=actor, role_id=role.pk, name="auditor", description="Reads everything")

    role.refresh_from_db()
    assert (role.name, role.description) == ("auditor", "Reads everything")
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_UPDATE, "Role", role.pk, actor)
    assert entry.changes == {
        "name": {"before": "reviewer", "after": "auditor"},
        "description": {"before": "", "after": "Reads everything"},
    }
    assert entry.perms_snapshot == snapshot_of(["rbac.change_role"])
    assert entry.meta == {}


@pytest.mark.django_db
def test_role_update_without_the_permission_is_denied():
    """Without rbac.change_role: no change and one denied ROLE.UPDATE entry naming the role."""
    actor = actor_with("rbac.view_role")
    role = make_role("reviewer")

    with pytest.raises(PermissionDenied):
        services.role_update(actor=actor, role_id=role.pk, name="mine")

    assert Role.objects.get(pk=role.pk).name == "reviewer"
    entry = only_entry()
    assert_refused(entry, AuditAction.ROLE_UPDATE, "denied", actor)
    assert (entry.entity, entry.entity_id) == ("Role", str(role.pk))


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
@pytest.mark.parametrize("was_privileged", [False, True])
def test_role_update_privileged_flag_needs_a_reason(superuser, reason, was_privileged):
    """Setting or clearing the privileged flag needs a non-blank reason; without one nothing changes, not even the
    other fields of the same call."""
    role = make_role("reviewer", privileged=was_privileged)

    with pytest.raises(ValidationError) as excinfo:
        services.role_update(
            actor=superuser, role_id=role.pk, name="renamed", privileged=not was_privileged, reason=reason
        )

    assert "reason" in excinfo.value.message_dict
    role.refresh_from_db()
    assert (role.name, role.privileged) == ("reviewer", was_privileged)
    assert_refused(only_entry(), AuditAction.ROLE_UPDATE, "failure", superuser)


@pytest.mark.django_db
def test_role_update_privileged_flag_with_a_reason(superuser):
    """With a reason the flag changes and the entry holds it with the reason."""
    role = make_role("reviewer")

    services.role_update(actor=superuser, role_id=role.pk, privileged=True, reason="holds audit rights now")

    assert Role.objects.get(pk=role.pk).privileged
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_UPDATE, "Role", role.pk, superuser)
    assert entry.changes == {"privileged": {"before": False, "after": True}}
    assert entry.meta == {"reason": "holds audit rights now"}


@pytest.mark.django_db
def test_role_update_of_a_missing_role_is_a_failure(superuser):
    """An unknown role id raises Role.DoesNotExist and is recorded as a failure without an id."""
    with pytest.raises(Role.DoesNotExist):
        services.role_update(actor=superuser, role_id=987654, name="ghost")

    entry = only_entry()
    assert (entry.action, entry.outcome, entry.entity_id) == (AuditAction.ROLE_UPDATE, "failure", "")


# --- role_permissions_replace -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_role_permissions_replace_records_full_sets_with_added_and_removed():
    """Replacing a role's permissions records the full before and after sets plus what was added and removed."""
    actor = actor_with("rbac.change_role", VIEW_SEAL, "audit.view_registeredaction")
    role = make_role("reviewer", VIEW_LOG, VIEW_SEAL)

    services.role_permissions_replace(
        actor=actor, role_id=role.pk, permissions=[VIEW_SEAL, "audit.view_registeredaction"]
    )

    assert services.permission_codes(role.permissions.all()) == ["audit.view_registeredaction", VIEW_SEAL]
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_PERM_REPLACE, "Role", role.pk, actor)
    assert entry.changes == {
        "permissions": {
            "before": [VIEW_LOG, VIEW_SEAL],
            "after": ["audit.view_registeredaction", VIEW_SEAL],
            "added": ["audit.view_registeredaction"],
            "removed": [VIEW_LOG],
        }
    }
    assert entry.perms_snapshot == snapshot_of(["rbac.change_role", VIEW_SEAL, "audit.view_registeredaction"])


@pytest.mark.django_db
def test_role_permissions_replace_without_the_permission_is_denied():
    """Without rbac.change_role the permissions stay and one denied ROLE.PERM.REPLACE entry is written."""
    actor = actor_with(VIEW_LOG)
    role = make_role("reviewer", VIEW_SEAL)

    with pytest.raises(PermissionDenied):
        services.role_permissions_replace(actor=actor, role_id=role.pk, permissions=[VIEW_LOG])

    assert services.permission_codes(role.permissions.all()) == [VIEW_SEAL]
    assert_refused(only_entry(), AuditAction.ROLE_PERM_REPLACE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_role_permissions_replace_on_a_privileged_role_needs_a_reason(superuser, reason):
    """Changing a privileged role's permissions needs a non-blank reason; without it they stay as they were."""
    role = make_role("administrator", VIEW_LOG, privileged=True)

    with pytest.raises(ValidationError) as excinfo:
        services.role_permissions_replace(actor=superuser, role_id=role.pk, permissions=[VIEW_SEAL], reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert services.permission_codes(role.permissions.all()) == [VIEW_LOG]
    entry = only_entry()
    assert_refused(entry, AuditAction.ROLE_PERM_REPLACE, "failure", superuser)
    assert not AuditLog.objects.filter(outcome="success").exists()


@pytest.mark.django_db
def test_role_permissions_replace_on_a_privileged_role_with_a_reason(superuser):
    """With a reason the privileged role's permissions are replaced and the reason is recorded."""
    role = make_role("administrator", VIEW_LOG, privileged=True)

    services.role_permissions_replace(actor=superuser, role_id=role.pk, permissions=[VIEW_SEAL], reason="SOC2 fix")

    assert services.permission_codes(role.permissions.all()) == [VIEW_SEAL]
    entry = only_entry()
    assert entry.outcome == "success"
    assert entry.meta == {"reason": "SOC2 fix"}


@pytest.mark.django_db
def test_role_permissions_replace_cannot_add_permissions_the_actor_lacks():
    """Escalation guard: an actor with rbac.change_role cannot add a permission they do not hold."""
    actor = actor_with("rbac.change_role", VIEW_LOG)
    role = make_role("reviewer", VIEW_LOG)

    with pytest.raises(PermissionDenied, match=VIEW_SEAL):
        services.role_permissions_replace(actor=actor, role_id=role.pk, permissions=[VIEW_LOG, VIEW_SEAL])

    assert services.permission_codes(role.permissions.all()) == [VIEW_LOG]
    assert_refused(only_entry(), AuditAction.ROLE_PERM_REPLACE, "denied", actor)


@pytest.mark.django_db
def test_role_permissions_replace_may_keep_or_remove_permissions_the_actor_lacks():
    """Only additions are checked: permissions the role already had may be kept or removed by anyone allowed to
    change roles."""
    actor = actor_with("rbac.change_role")
    role = make_role("reviewer", VIEW_LOG, VIEW_SEAL)

    services.role_permissions_replace(actor=actor, role_id=role.pk, permissions=[VIEW_LOG])

    assert services.permission_codes(role.permissions.all()) == [VIEW_LOG]
    assert only_entry().changes["permissions"]["removed"] == [VIEW_SEAL]


# --- role_delete --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_role_delete_records_the_full_snapshot_and_the_row_goes(user):
    """Deleting a role records everything it was (name, description, flag, permissions, users, groups) with after
    None, and removes the row."""
    actor = actor_with("rbac.delete_role")
    role = make_role("reviewer", VIEW_LOG, VIEW_SEAL)
    role.description = "Reads the trail"
    role.save()
    role.users.add(user)
    role.groups.add(make_group("Reviewers"))
    role_id = role.pk

    assert services.role_delete(actor=actor, role_id=role_id, reason="obsolete") is None

    assert not Role.objects.filter(pk=role_id).exists()
    entry = only_entry()
    assert_success(entry, AuditAction.ROLE_DELETE, "Role", role_id, actor)
    assert entry.changes == {
        "name": {"before": "reviewer", "after": None},
        "description": {"before": "Reads the trail", "after": None},
        "privileged": {"before": False, "after": None},
        "permissions": {"before": [VIEW_LOG, VIEW_SEAL], "after": None, "added": [], "removed": [VIEW_LOG, VIEW_SEAL]},
        "users": {"before": [user.username], "after": None, "added": [], "removed": [user.username]},
        "groups": {"before": ["Reviewers"], "after": None, "added": [], "removed": ["Reviewers"]},
    }
    assert entry.meta == {"reason": "obsolete"}


@pytest.mark.django_db
def test_role_delete_entry_exists_before_the_row_goes(superuser):
    """The ROLE.DELETE entry is written before the row is deleted: at the moment of deletion it is already there."""
    role = make_role("reviewer", VIEW_LOG)
    seen: list[list[str]] = []

    def look(sender: Any, instance: Role, **kwargs: Any) -> None:
        seen.append(
            list(AuditLog.objects.filter(entity="Role", entity_id=str(instance.pk)).values_list("action", flat=True))
        )

    pre_delete.connect(look, sender=Role, dispatch_uid="test_role_delete_look")
    try:
        services.role_delete(actor=superuser, role_id=role.pk)
    finally:
        pre_delete.disconnect(dispatch_uid="test_role_delete_look", sender=Role)

    assert seen == [[AuditAction.ROLE_DELETE]]


@pytest.mark.django_db
def test_role_delete_without_the_permission_is_denied_and_keeps_the_role():
    """Without rbac.delete_role the role stays and only a denied entry is left (the early record is rolled back)."""
    actor = actor_with("rbac.change_role")
    role = make_role("reviewer")

    with pytest.raises(PermissionDenied):
        services.role_delete(actor=actor, role_id=role.pk, reason="cleanup")

    assert Role.objects.filter(pk=role.pk).exists()
    entry = only_entry()
    assert_refused(entry, AuditAction.ROLE_DELETE, "denied", actor)
    assert entry.entity_id == str(role.pk)
    assert entry.meta["reason"] == "cleanup"


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_role_delete_of_a_privileged_role_needs_a_reason(superuser, user, reason):
    """Deleting a privileged role takes it from its holders, so it needs a non-blank reason; without one the role
    and its holders stay and only a failure entry is written."""
    role = make_role("administrator", VIEW_LOG, privileged=True)
    role.users.add(user)

    with pytest.raises(ValidationError) as excinfo:
        services.role_delete(actor=superuser, role_id=role.pk, reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert list(Role.objects.get(pk=role.pk).users.all()) == [user]
    assert_refused(only_entry(), AuditAction.ROLE_DELETE, "failure", superuser)


@pytest.mark.django_db
def test_role_delete_of_a_privileged_role_with_a_reason(superuser):
    """With a reason the privileged role is deleted and the reason recorded."""
    role = make_role("administrator", VIEW_LOG, privileged=True)

    services.role_delete(actor=superuser, role_id=role.pk, reason="replaced by two smaller roles")

    assert not Role.objects.exists()
    entry = only_entry()
    assert (entry.outcome, entry.meta) == ("success", {"reason": "replaced by two smaller roles"})


# --- user_roles_set -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_roles_set_replaces_the_roles_and_records_the_sets(user):
    """Replacing a user's roles records the role names before and after with added and removed."""
    actor = actor_with("rbac.assign_role", VIEW_LOG, VIEW_SEAL)
    kept, dropped, gained = make_role("kept", VIEW_LOG), make_role("dropped"), make_role("gained", VIEW_SEAL)
    user.rbac_roles.set([kept, dropped])

    result = services.user_roles_set(actor=actor, user_id=user.pk, role_ids=[kept.pk, gained.pk], reason="review")

    assert result.pk == user.pk
    assert sorted(user.rbac_roles.values_list("name", flat=True)) == ["gained", "kept"]
    assert result.has_perm(VIEW_SEAL), "the returned user sees the new role at once"
    entry = only_entry()
    assert_success(entry, AuditAction.USER_ROLES_SET, "User", user.pk, actor)
    assert entry.changes == {
        "roles": {
            "before": ["dropped", "kept"],
            "after": ["gained", "kept"],
            "added": ["gained"],
            "removed": ["dropped"],
        }
    }
    assert entry.perms_snapshot == snapshot_of(["rbac.assign_role", VIEW_LOG, VIEW_SEAL])
    assert entry.meta == {"reason": "review"}


@pytest.mark.django_db
def test_user_roles_set_without_the_permission_is_denied(user):
    """Without rbac.assign_role the user's roles stay and one denied USER.ROLES.SET entry is written."""
    actor = actor_with("rbac.change_role")
    role = make_role("reviewer")

    with pytest.raises(PermissionDenied):
        services.user_roles_set(actor=actor, user_id=user.pk, role_ids=[role.pk])

    assert not user.rbac_roles.exists()
    entry = only_entry()
    assert_refused(entry, AuditAction.USER_ROLES_SET, "denied", actor)
    assert (entry.entity, entry.entity_id) == ("User", str(user.pk))


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
@pytest.mark.parametrize("direction", ["grant", "remove"])
def test_user_roles_set_privileged_role_needs_a_reason(superuser, user, reason, direction):
    """Granting or removing a privileged role needs a non-blank reason: ValidationError on reason, the roles stay,
    one failure entry and no success entry."""
    admin_role = make_role("administrator", VIEW_LOG, privileged=True)
    if direction == "remove":
        user.rbac_roles.set([admin_role])
    before = set(user.rbac_roles.all())

    with pytest.raises(ValidationError) as excinfo:
        services.user_roles_set(
            actor=superuser, user_id=user.pk, role_ids=[admin_role.pk] if direction == "grant" else [], reason=reason
        )

    assert "reason" in excinfo.value.message_dict
    assert set(user.rbac_roles.all()) == before
    assert_refused(only_entry(), AuditAction.USER_ROLES_SET, "failure", superuser)
    assert not AuditLog.objects.filter(outcome="success").exists()


@pytest.mark.django_db
def test_user_roles_set_privileged_role_with_a_reason_records_it(superuser, user):
    """With a reason the privileged role is granted and the reason is in meta.reason."""
    admin_role = make_role("administrator", VIEW_LOG, privileged=True)

    services.user_roles_set(actor=superuser, user_id=user.pk, role_ids=[admin_role.pk], reason="INC-42 on call")

    assert list(user.rbac_roles.all()) == [admin_role]
    entry = only_entry()
    assert entry.outcome == "success"
    assert entry.meta == {"reason": "INC-42 on call"}


@pytest.mark.django_db
def test_user_roles_set_keeping_a_privileged_role_needs_no_reason(superuser, user):
    """Only a privileged role that comes or goes needs a reason: one that stays does not."""
    admin_role = make_role("administrator", privileged=True)
    other = make_role("member")
    user.rbac_roles.set([admin_role])

    services.user_roles_set(actor=superuser, user_id=user.pk, role_ids=[admin_role.pk, other.pk])

    assert only_entry().changes == {
        "roles": {"before": ["administrator"], "after": ["administrator", "member"], "added": ["member"], "removed": []}
    }


@pytest.mark.django_db
def test_user_roles_set_cannot_grant_a_role_with_permissions_the_actor_lacks(user):
    """Escalation guard: a non-superuser with rbac.assign_role cannot give a role holding a permission they lack."""
    actor = actor_with("rbac.assign_role", VIEW_LOG)
    role = make_role("reviewer", VIEW_LOG, VIEW_SEAL)

    with pytest.raises(PermissionDenied, match=VIEW_SEAL):
        services.user_roles_set(actor=actor, user_id=user.pk, role_ids=[role.pk])

    assert not user.rbac_roles.exists()
    assert_refused(only_entry(), AuditAction.USER_ROLES_SET, "denied", actor)


@pytest.mark.django_db
def test_user_roles_set_can_grant_a_role_the_actor_holds_through_roles(user):
    """Permissions the actor holds through their own roles count: they may hand that role on."""
    role = make_role("reviewer", VIEW_LOG)
    actor = actor_with("rbac.assign_role")
    role.users.add(actor)

    services.user_roles_set(actor=actor, user_id=user.pk, role_ids=[role.pk])

    assert list(user.rbac_roles.all()) == [role]
    assert only_entry().perms_snapshot == snapshot_of(["rbac.assign_role", VIEW_LOG])


@pytest.mark.django_db
def test_user_roles_set_superuser_may_grant_any_role(superuser, user):
    """A superuser is not limited by the escalation guard."""
    role = make_role("reviewer", VIEW_LOG, "rbac.delete_role")

    services.user_roles_set(actor=superuser, user_id=user.pk, role_ids=[role.pk])

    assert list(user.rbac_roles.all()) == [role]


@pytest.mark.django_db
def test_user_roles_set_with_an_unknown_role_fails_on_roles(superuser, user):
    """An unknown role id is a ValidationError on roles; the user's roles stay."""
    role = make_role("reviewer")

    with pytest.raises(ValidationError) as excinfo:
        services.user_roles_set(actor=superuser, user_id=user.pk, role_ids=[role.pk, 987654])

    assert "roles" in excinfo.value.message_dict
    assert not user.rbac_roles.exists()
    assert_refused(only_entry(), AuditAction.USER_ROLES_SET, "failure", superuser)


# --- group_create -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_group_create_makes_the_group_scope_and_roles_and_records_them():
    """group_create saves the group with its roles and branch scope and records all of it, with before None."""
    actor = actor_with("auth.add_group", VIEW_LOG)
    role = make_role("reviewer", VIEW_LOG)

    group = services.group_create(
        actor=actor, name="Reviewers", role_ids=[role.pk], branch_scope={"allow": [1, 2]}, reason="new team"
    )

    assert list(group.rbac_roles.all()) == [role]
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [1, 2]}
    entry = only_entry()
    assert_success(entry, AuditAction.GROUP_CREATE, "Group", group.pk, actor)
    assert entry.changes == {
        "name": {"before": None, "after": "Reviewers"},
        "roles": {"before": None, "after": ["reviewer"], "added": ["reviewer"], "removed": []},
        "members": {"before": None, "after": [], "added": [], "removed": []},
        "branch_scope": {"before": None, "after": {"allow": [1, 2]}},
    }
    assert entry.perms_snapshot == snapshot_of(["auth.add_group", VIEW_LOG])
    assert entry.meta == {"reason": "new team"}


@pytest.mark.django_db
def test_group_create_defaults_to_an_empty_scope(superuser):
    """Without a branch scope the group gets {"allow": []}."""
    group = services.group_create(actor=superuser, name="Reviewers")

    assert group.scope.branch_scope == {"allow": []}
    assert only_entry().changes["branch_scope"] == {"before": None, "after": {"allow": []}}


@pytest.mark.django_db
def test_group_create_without_the_permission_is_denied():
    """Without auth.add_group: no group and one denied GROUP.CREATE entry."""
    actor = actor_with("auth.change_group")

    with pytest.raises(PermissionDenied):
        services.group_create(actor=actor, name="Reviewers")

    assert not Group.objects.filter(name="Reviewers").exists()
    assert_refused(only_entry(), AuditAction.GROUP_CREATE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("scope", [{"allow": [0]}, {"allow": [1, 1]}, {"deny": []}, [1, 2]])
def test_group_create_with_an_invalid_scope_fails_on_branch_scope(superuser, scope):
    """An invalid branch scope is a ValidationError on branch_scope; no group, one failure entry."""
    with pytest.raises(ValidationError) as excinfo:
        services.group_create(actor=superuser, name="Reviewers", branch_scope=scope)

    assert "branch_scope" in excinfo.value.message_dict
    assert not Group.objects.filter(name="Reviewers").exists()
    assert_refused(only_entry(), AuditAction.GROUP_CREATE, "failure", superuser)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_group_create_with_a_privileged_role_needs_a_reason(superuser, reason):
    """Creating a group that carries a privileged role needs a non-blank reason."""
    role = make_role("administrator", privileged=True)

    with pytest.raises(ValidationError) as excinfo:
        services.group_create(actor=superuser, name="Admins", role_ids=[role.pk], reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not Group.objects.filter(name="Admins").exists()
    assert_refused(only_entry(), AuditAction.GROUP_CREATE, "failure", superuser)


@pytest.mark.django_db
def test_group_create_cannot_carry_a_role_with_permissions_the_actor_lacks():
    """Escalation guard: a group cannot be given a role holding a permission the creator does not have."""
    actor = actor_with("auth.add_group")
    role = make_role("reviewer", VIEW_LOG)

    with pytest.raises(PermissionDenied):
        services.group_create(actor=actor, name="Reviewers", role_ids=[role.pk])

    assert not Group.objects.filter(name="Reviewers").exists()
    assert_refused(only_entry(), AuditAction.GROUP_CREATE, "denied", actor)


# --- group_update -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_group_update_renames_and_replaces_roles_and_records_the_diff(user):
    """Renaming a group and replacing its roles records name and roles (with added/removed) only."""
    actor = actor_with("auth.change_group", VIEW_SEAL)
    old, new = make_role("old"), make_role("new", VIEW_SEAL)
    group = make_group("Reviewers", roles=(old,), members=(user,))

    services.group_update(actor=actor, group_id=group.pk, name="Auditors", role_ids=[new.pk])

    group.refresh_from_db()
    assert group.name == "Auditors"
    assert list(group.rbac_roles.all()) == [new]
    entry = only_entry()
    assert_success(entry, AuditAction.GROUP_UPDATE, "Group", group.pk, actor)
    assert entry.changes == {
        "name": {"before": "Reviewers", "after": "Auditors"},
        "roles": {"before": ["old"], "after": ["new"], "added": ["new"], "removed": ["old"]},
    }
    assert entry.perms_snapshot == snapshot_of(["auth.change_group", VIEW_SEAL])


@pytest.mark.django_db
def test_group_update_without_the_permission_is_denied():
    """Without auth.change_group: name unchanged, one denied GROUP.UPDATE entry."""
    actor = actor_with("auth.add_group")
    group = make_group("Reviewers")

    with pytest.raises(PermissionDenied):
        services.group_update(actor=actor, group_id=group.pk, name="Mine")

    assert Group.objects.get(pk=group.pk).name == "Reviewers"
    entry = only_entry()
    assert_refused(entry, AuditAction.GROUP_UPDATE, "denied", actor)
    assert entry.entity_id == str(group.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_group_update_privileged_role_for_members_needs_a_reason(superuser, user, reason):
    """Giving a group with members a privileged role grants it to them, so it needs a non-blank reason."""
    role = make_role("administrator", privileged=True)
    group = make_group("Ops", members=(user,))

    with pytest.raises(ValidationError) as excinfo:
        services.group_update(actor=superuser, group_id=group.pk, role_ids=[role.pk], reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not group.rbac_roles.exists()
    assert_refused(only_entry(), AuditAction.GROUP_UPDATE, "failure", superuser)


@pytest.mark.django_db
def test_group_update_privileged_role_with_a_reason(superuser, user):
    """With a reason the privileged role is given to the group and the reason recorded."""
    role = make_role("administrator", privileged=True)
    group = make_group("Ops", members=(user,))

    services.group_update(actor=superuser, group_id=group.pk, role_ids=[role.pk], reason="ops rotation")

    assert list(group.rbac_roles.all()) == [role]
    assert only_entry().meta == {"reason": "ops rotation"}


@pytest.mark.django_db
def test_group_update_cannot_give_members_a_role_with_permissions_the_actor_lacks(user):
    """Escalation guard: a group with members cannot be given a role holding permissions the actor lacks."""
    actor = actor_with("auth.change_group")
    role = make_role("reviewer", VIEW_LOG)
    group = make_group("Reviewers", members=(user,))

    with pytest.raises(PermissionDenied):
        services.group_update(actor=actor, group_id=group.pk, role_ids=[role.pk])

    assert not group.rbac_roles.exists()
    assert_refused(only_entry(), AuditAction.GROUP_UPDATE, "denied", actor)


# --- group_members_set --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_group_members_set_replaces_members_and_records_the_sets():
    """Replacing a group's members records the usernames before and after with added and removed."""
    actor = actor_with("auth.change_group", VIEW_LOG)
    kept, dropped, gained = (
        UserFactory(username="kept"),
        UserFactory(username="dropped"),
        UserFactory(username="gained"),
    )
    group = make_group("Reviewers", roles=(make_role("reviewer", VIEW_LOG),), members=(kept, dropped))

    services.group_members_set(actor=actor, group_id=group.pk, user_ids=[kept.pk, gained.pk], reason="reorg")

    assert sorted(group.user_set.values_list("username", flat=True)) == ["gained", "kept"]
    entry = only_entry()
    assert_success(entry, AuditAction.GROUP_MEMBERS_SET, "Group", group.pk, actor)
    assert entry.changes == {
        "members": {
            "before": ["dropped", "kept"],
            "after": ["gained", "kept"],
            "added": ["gained"],
            "removed": ["dropped"],
        }
    }
    assert entry.meta == {"reason": "reorg"}


@pytest.mark.django_db
def test_group_members_set_without_the_permission_is_denied(user):
    """Without auth.change_group: members unchanged, one denied GROUP.MEMBERS.SET entry."""
    actor = actor_with("auth.view_group")
    group = make_group("Reviewers")

    with pytest.raises(PermissionDenied):
        services.group_members_set(actor=actor, group_id=group.pk, user_ids=[user.pk])

    assert not group.user_set.exists()
    assert_refused(only_entry(), AuditAction.GROUP_MEMBERS_SET, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
@pytest.mark.parametrize("direction", ["add", "remove"])
def test_group_members_set_on_a_privileged_group_needs_a_reason(superuser, user, reason, direction):
    """Adding a member to or removing one from a group carrying a privileged role needs a non-blank reason."""
    group = make_group(
        "Admins", roles=(make_role("administrator", privileged=True),), members=(user,) if direction == "remove" else ()
    )
    before = set(group.user_set.all())

    with pytest.raises(ValidationError) as excinfo:
        services.group_members_set(
            actor=superuser, group_id=group.pk, user_ids=[user.pk] if direction == "add" else [], reason=reason
        )

    assert "reason" in excinfo.value.message_dict
    assert set(group.user_set.all()) == before
    assert_refused(only_entry(), AuditAction.GROUP_MEMBERS_SET, "failure", superuser)


@pytest.mark.django_db
def test_group_members_set_on_a_privileged_group_with_a_reason(superuser, user):
    """With a reason the member is added and the reason recorded."""
    group = make_group("Admins", roles=(make_role("administrator", privileged=True),))

    services.group_members_set(actor=superuser, group_id=group.pk, user_ids=[user.pk], reason="new admin")

    assert list(group.user_set.all()) == [user]
    assert only_entry().meta == {"reason": "new admin"}


@pytest.mark.django_db
def test_group_members_set_cannot_add_members_to_a_role_the_actor_lacks(user):
    """Escalation guard: adding a member to a group whose role holds permissions the actor lacks is denied."""
    actor = actor_with("auth.change_group")
    group = make_group("Reviewers", roles=(make_role("reviewer", VIEW_LOG),))

    with pytest.raises(PermissionDenied):
        services.group_members_set(actor=actor, group_id=group.pk, user_ids=[user.pk, actor.pk])

    assert not group.user_set.exists()
    assert_refused(only_entry(), AuditAction.GROUP_MEMBERS_SET, "denied", actor)


@pytest.mark.django_db
def test_group_members_set_cannot_add_members_to_the_groups_own_permissions(user):
    """Escalation guard: a group's own Django permissions count too; joining a group that holds a permission the
    actor lacks is denied."""
    actor = actor_with("auth.change_group")
    group = make_group("Readers")
    group.permissions.add(perm(VIEW_LOG))

    with pytest.raises(PermissionDenied, match=VIEW_LOG):
        services.group_members_set(actor=actor, group_id=group.pk, user_ids=[actor.pk])

    assert not group.user_set.exists()
    assert_refused(only_entry(), AuditAction.GROUP_MEMBERS_SET, "denied", actor)


@pytest.mark.django_db
def test_group_members_set_may_remove_members_of_a_role_the_actor_lacks(user):
    """Removing members grants nothing, so the escalation guard does not apply."""
    actor = actor_with("auth.change_group")
    group = make_group("Reviewers", roles=(make_role("reviewer", VIEW_LOG),), members=(user,))

    services.group_members_set(actor=actor, group_id=group.pk, user_ids=[])

    assert not group.user_set.exists()
    assert only_entry().outcome == "success"


@pytest.mark.django_db
def test_group_members_set_with_an_unknown_user_fails_on_members(superuser):
    """An unknown user id is a ValidationError on members."""
    group = make_group("Reviewers")

    with pytest.raises(ValidationError) as excinfo:
        services.group_members_set(actor=superuser, group_id=group.pk, user_ids=[987654])

    assert "members" in excinfo.value.message_dict
    assert_refused(only_entry(), AuditAction.GROUP_MEMBERS_SET, "failure", superuser)


# --- group_scope_set ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_group_scope_set_replaces_the_scope_and_records_it():
    """Replacing the branch scope records it before and after."""
    actor = actor_with("auth.change_group")
    group = make_group("Branch 1")

    services.group_scope_set(actor=actor, group_id=group.pk, branch_scope={"allow": [1, 4]})

    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [1, 4]}
    entry = only_entry()
    assert_success(entry, AuditAction.GROUP_SCOPE_SET, "Group", group.pk, actor)
    assert entry.changes == {"branch_scope": {"before": {"allow": []}, "after": {"allow": [1, 4]}}}
    assert entry.perms_snapshot == snapshot_of(["auth.change_group"])


@pytest.mark.django_db
def test_group_scope_set_creates_a_missing_scope(superuser):
    """A group made outside the services (no scope row yet) gets one; before is recorded as null."""
    group = Group.objects.create(name="Legacy")

    services.group_scope_set(actor=superuser, group_id=group.pk, branch_scope={"allow": [3]})

    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [3]}
    assert only_entry().changes == {"branch_scope": {"before": None, "after": {"allow": [3]}}}


@pytest.mark.django_db
def test_group_scope_set_without_the_permission_is_denied():
    """Without auth.change_group: the scope stays, one denied GROUP.SCOPE.SET entry."""
    actor = actor_with("auth.view_group")
    group = make_group("Branch 1")

    with pytest.raises(PermissionDenied):
        services.group_scope_set(actor=actor, group_id=group.pk, branch_scope={"allow": [1]})

    assert GroupScope.objects.get(group=group).branch_scope == {"allow": []}
    assert_refused(only_entry(), AuditAction.GROUP_SCOPE_SET, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("scope", [{"allow": [True]}, {"allow": [-1]}, {"allow": "1"}, None])
def test_group_scope_set_with_an_invalid_scope_fails_on_branch_scope(superuser, scope):
    """An invalid scope is a ValidationError on branch_scope; the old scope stays."""
    group = make_group("Branch 1")

    with pytest.raises(ValidationError) as excinfo:
        services.group_scope_set(actor=superuser, group_id=group.pk, branch_scope=scope)

    assert "branch_scope" in excinfo.value.message_dict
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": []}
    assert_refused(only_entry(), AuditAction.GROUP_SCOPE_SET, "failure", superuser)


# --- group_delete -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_group_delete_records_the_full_snapshot_and_the_row_goes(user):
    """Deleting a group records its name, roles, members and scope with after None, and removes group and scope."""
    actor = actor_with("auth.delete_group")
    group = make_group("Reviewers", roles=(make_role("reviewer", VIEW_LOG),), members=(user,))
    services.group_scope_set(actor=None, group_id=group.pk, branch_scope={"allow": [2]})
    group_id = group.pk
    scope_entries = AuditLog.objects.count()  # the scope entry is not under test

    services.group_delete(actor=actor, group_id=group_id, reason="team disbanded")

    assert not Group.objects.filter(pk=group_id).exists()
    assert not GroupScope.objects.filter(group_id=group_id).exists()
    assert AuditLog.objects.count() == scope_entries + 1
    entry = AuditLog.objects.get(action=AuditAction.GROUP_DELETE)
    reveal([entry])
    assert_success(entry, AuditAction.GROUP_DELETE, "Group", group_id, actor)
    assert entry.changes == {
        "name": {"before": "Reviewers", "after": None},
        "roles": {"before": ["reviewer"], "after": None, "added": [], "removed": ["reviewer"]},
        "members": {"before": [user.username], "after": None, "added": [], "removed": [user.username]},
        "branch_scope": {"before": {"allow": [2]}, "after": None},
    }
    assert entry.meta == {"reason": "team disbanded"}


@pytest.mark.django_db
def test_group_delete_entry_exists_before_the_row_goes(superuser):
    """The GROUP.DELETE entry is already written when the group row is deleted."""
    group = make_group("Reviewers")
    seen: list[list[str]] = []

    def look(sender: Any, instance: Group, **kwargs: Any) -> None:
        seen.append(
            list(AuditLog.objects.filter(entity="Group", entity_id=str(instance.pk)).values_list("action", flat=True))
        )

    pre_delete.connect(look, sender=Group, dispatch_uid="test_group_delete_look")
    try:
        services.group_delete(actor=superuser, group_id=group.pk)
    finally:
        pre_delete.disconnect(dispatch_uid="test_group_delete_look", sender=Group)

    assert seen == [[AuditAction.GROUP_DELETE]]


@pytest.mark.django_db
def test_group_delete_without_the_permission_is_denied():
    """Without auth.delete_group the group stays and only a denied entry is left."""
    actor = actor_with("auth.change_group")
    group = make_group("Reviewers")

    with pytest.raises(PermissionDenied):
        services.group_delete(actor=actor, group_id=group.pk)

    assert Group.objects.filter(pk=group.pk).exists()
    assert_refused(only_entry(), AuditAction.GROUP_DELETE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_group_delete_taking_a_privileged_role_from_members_needs_a_reason(superuser, user, reason):
    """Deleting a group whose members hold a privileged role through it needs a non-blank reason."""
    group = make_group("Admins", roles=(make_role("administrator", privileged=True),), members=(user,))

    with pytest.raises(ValidationError) as excinfo:
        services.group_delete(actor=superuser, group_id=group.pk, reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert list(Group.objects.get(pk=group.pk).user_set.all()) == [user]
    assert_refused(only_entry(), AuditAction.GROUP_DELETE, "failure", superuser)


@pytest.mark.django_db
def test_group_delete_of_an_empty_privileged_group_needs_no_reason(superuser):
    """A group without members takes nothing from anyone: no reason needed."""
    group = make_group("Admins", roles=(make_role("administrator", privileged=True),))

    services.group_delete(actor=superuser, group_id=group.pk)

    assert not Group.objects.filter(pk=group.pk).exists()
    assert only_entry().outcome == "success"


# --- user_create --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_create_makes_the_account_and_records_it_without_the_password():
    """user_create saves the user with a usable password and records the account fields, never the password."""
    actor = actor_with("auth.add_user")

    user = services.user_create(
        actor=actor,
        username="alice",
        email="alice@example.org",
        password=STRONG_PASSWORD,
        first_name="Alice",
        is_staff=True,
    )

    user = User.objects.get(pk=user.pk)
    assert user.check_password(STRONG_PASSWORD)
    entry = only_entry()
    assert_success(entry, AuditAction.USER_CREATE, "User", user.pk, actor)
    assert entry.changes == {
        "username": {"before": None, "after": "alice"},
        "first_name": {"before": None, "after": "Alice"},
        "last_name": {"before": None, "after": ""},
        "email": {"before": None, "after": "alice@example.org"},
        "is_active": {"before": None, "after": True},
        "is_staff": {"before": None, "after": True},
        "is_superuser": {"before": None, "after": False},
        "groups": {"before": None, "after": [], "added": [], "removed": []},
    }
    assert entry.perms_snapshot == snapshot_of(["auth.add_user"])
    assert STRONG_PASSWORD not in str(AuditLog.objects.values().get())


@pytest.mark.django_db
def test_user_create_without_a_password_makes_an_unusable_one(superuser):
    """Without a password the account cannot log in with one."""
    user = services.user_create(actor=superuser, username="svc")

    assert not User.objects.get(pk=user.pk).has_usable_password()
    assert only_entry().outcome == "success"


@pytest.mark.django_db
def test_user_create_without_the_permission_is_denied():
    """Without auth.add_user: no account, one denied USER.CREATE entry."""
    actor = actor_with("auth.change_user")

    with pytest.raises(PermissionDenied):
        services.user_create(actor=actor, username="alice")

    assert not User.objects.filter(username="alice").exists()
    assert_refused(only_entry(), AuditAction.USER_CREATE, "denied", actor)


@pytest.mark.django_db
def test_user_create_weak_password_fails_on_password(superuser):
    """A password the validators refuse is a ValidationError on password; no account, and the password is not in
    the failure entry."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_create(actor=superuser, username="alice", password="canary1")

    assert "password" in excinfo.value.message_dict
    assert not User.objects.filter(username="alice").exists()
    assert_refused(only_entry(), AuditAction.USER_CREATE, "failure", superuser)
    assert "canary" not in table_dump()


@pytest.mark.django_db
def test_user_create_superuser_by_a_non_superuser_is_denied():
    """Only a superuser may create a superuser, whatever the reason."""
    actor = actor_with("auth.add_user")

    with pytest.raises(PermissionDenied):
        services.user_create(actor=actor, username="root", is_superuser=True, reason="I need it")

    assert not User.objects.filter(username="root").exists()
    assert_refused(only_entry(), AuditAction.USER_CREATE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_user_create_superuser_needs_a_reason(superuser, reason):
    """A superuser creating a superuser must give a non-blank reason."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_create(actor=superuser, username="root", is_superuser=True, reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not User.objects.filter(username="root").exists()
    assert_refused(only_entry(), AuditAction.USER_CREATE, "failure", superuser)


@pytest.mark.django_db
def test_user_create_superuser_with_a_reason(superuser):
    """With a reason the superuser is created and the reason recorded."""
    user = services.user_create(actor=superuser, username="root", is_superuser=True, reason="break-glass account")

    assert User.objects.get(pk=user.pk).is_superuser
    entry = only_entry()
    assert entry.changes["is_superuser"] == {"before": None, "after": True}
    assert entry.meta == {"reason": "break-glass account"}


# --- user_update --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_update_changes_fields_and_records_only_those(user):
    """Changed account fields are recorded before/after; unchanged ones are left out."""
    actor = actor_with("auth.change_user")
    old_email = user.email

    services.user_update(actor=actor, user_id=user.pk, fields={"email": "new@example.org", "last_name": "Smith"})

    user.refresh_from_db()
    assert (user.email, user.last_name) == ("new@example.org", "Smith")
    entry = only_entry()
    assert_success(entry, AuditAction.USER_UPDATE, "User", user.pk, actor)
    assert entry.changes == {
        "email": {"before": old_email, "after": "new@example.org"},
        "last_name": {"before": "", "after": "Smith"},
    }
    assert entry.perms_snapshot == snapshot_of(["auth.change_user"])


@pytest.mark.django_db
def test_user_update_replaces_groups_and_records_the_sets(user):
    """group_ids replaces the user's groups; the entry lists group names with added and removed."""
    actor = actor_with("auth.change_user")
    kept, dropped, gained = make_group("Kept"), make_group("Dropped"), make_group("Gained")
    user.groups.set([kept, dropped])

    services.user_update(actor=actor, user_id=user.pk, fields={}, group_ids=[kept.pk, gained.pk])

    assert sorted(user.groups.values_list("name", flat=True)) == ["Gained", "Kept"]
    assert only_entry().changes == {
        "groups": {
            "before": ["Dropped", "Kept"],
            "after": ["Gained", "Kept"],
            "added": ["Gained"],
            "removed": ["Dropped"],
        }
    }


@pytest.mark.django_db
def test_user_update_without_the_permission_is_denied(user):
    """Without auth.change_user: no change, one denied USER.UPDATE entry."""
    actor = actor_with("auth.view_user")

    with pytest.raises(PermissionDenied):
        services.user_update(actor=actor, user_id=user.pk, fields={"email": "x@example.org"})

    assert User.objects.get(pk=user.pk).email == user.email
    entry = only_entry()
    assert_refused(entry, AuditAction.USER_UPDATE, "denied", actor)
    assert entry.entity_id == str(user.pk)


@pytest.mark.django_db
def test_user_update_refuses_deactivation(superuser, user):
    """is_active False is refused (ValidationError on is_active): deactivation goes through user_deactivate."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_update(actor=superuser, user_id=user.pk, fields={"is_active": False}, reason="leaver")

    assert "is_active" in excinfo.value.message_dict
    assert User.objects.get(pk=user.pk).is_active
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "failure", superuser)


@pytest.mark.django_db
def test_user_update_may_reactivate(superuser, user):
    """is_active True brings a deactivated account back and is recorded."""
    User.objects.filter(pk=user.pk).update(is_active=False)

    services.user_update(actor=superuser, user_id=user.pk, fields={"is_active": True})

    assert User.objects.get(pk=user.pk).is_active
    assert only_entry().changes == {"is_active": {"before": False, "after": True}}


@pytest.mark.django_db
@pytest.mark.parametrize("make_superuser", [True, False])
def test_user_update_superuser_flag_by_a_non_superuser_is_denied(make_superuser):
    """A non-superuser, even with auth.change_user and a reason, cannot grant or remove superuser status."""
    actor = actor_with("auth.change_user")
    target = UserFactory(is_superuser=not make_superuser)

    with pytest.raises(PermissionDenied):
        services.user_update(actor=actor, user_id=target.pk, fields={"is_superuser": make_superuser}, reason="please")

    assert User.objects.get(pk=target.pk).is_superuser is not make_superuser
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "denied", actor)


@pytest.mark.django_db
def test_user_update_non_superuser_cannot_make_themselves_superuser():
    """Not even on one's own account."""
    actor = actor_with("auth.change_user")

    with pytest.raises(PermissionDenied):
        services.user_update(actor=actor, user_id=actor.pk, fields={"is_superuser": True}, reason="me")

    assert not User.objects.get(pk=actor.pk).is_superuser
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "denied", actor)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_user_update_superuser_flag_needs_a_reason(superuser, user, reason):
    """A superuser granting superuser status must give a non-blank reason."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_update(actor=superuser, user_id=user.pk, fields={"is_superuser": True}, reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not User.objects.get(pk=user.pk).is_superuser
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "failure", superuser)


@pytest.mark.django_db
def test_user_update_superuser_flag_with_a_reason(superuser, user):
    """With a reason a superuser grants superuser status; flag and reason are recorded."""
    services.user_update(actor=superuser, user_id=user.pk, fields={"is_superuser": True}, reason="second admin")

    assert User.objects.get(pk=user.pk).is_superuser
    entry = only_entry()
    assert entry.changes == {"is_superuser": {"before": False, "after": True}}
    assert entry.meta == {"reason": "second admin"}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["password", "last_login", "date_joined", "id"])
def test_user_update_refuses_other_fields(superuser, user, field):
    """Only the account fields of USER_FIELDS can be changed: anything else is a ValidationError on that field."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_update(actor=superuser, user_id=user.pk, fields={field: "x"})

    assert field in excinfo.value.message_dict
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "failure", superuser)


@pytest.mark.django_db
@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_user_update_into_a_privileged_group_needs_a_reason(superuser, user, reason):
    """Joining a group that carries a privileged role grants it, so it needs a non-blank reason."""
    group = make_group("Admins", roles=(make_role("administrator", privileged=True),))

    with pytest.raises(ValidationError) as excinfo:
        services.user_update(actor=superuser, user_id=user.pk, fields={}, group_ids=[group.pk], reason=reason)

    assert "reason" in excinfo.value.message_dict
    assert not user.groups.exists()
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "failure", superuser)


@pytest.mark.django_db
def test_user_update_cannot_put_a_user_in_a_group_with_a_role_the_actor_lacks(user):
    """Escalation guard: joining a group whose role holds permissions the actor lacks is denied."""
    actor = actor_with("auth.change_user")
    group = make_group("Reviewers", roles=(make_role("reviewer", VIEW_LOG),))

    with pytest.raises(PermissionDenied):
        services.user_update(actor=actor, user_id=user.pk, fields={}, group_ids=[group.pk])

    assert not user.groups.exists()
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "denied", actor)


@pytest.mark.django_db
def test_user_update_cannot_put_a_user_in_a_group_with_permissions_the_actor_lacks(user):
    """Escalation guard: a group's own Django permissions count too (e.g. the compliance officers' view rights)."""
    actor = actor_with("auth.change_user")
    group = make_group("Readers")
    group.permissions.add(perm(VIEW_LOG))

    with pytest.raises(PermissionDenied, match=VIEW_LOG):
        services.user_update(actor=actor, user_id=actor.pk, fields={}, group_ids=[group.pk])

    assert not actor.groups.exists()
    assert_refused(only_entry(), AuditAction.USER_UPDATE, "denied", actor)


# --- user_deactivate ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_deactivate_records_is_active_and_the_reason(user):
    """Deactivating records is_active True -> False with the reason; the user can no longer use role rights."""
    actor = actor_with("auth.change_user")
    make_role("reviewer", VIEW_LOG).users.add(user)

    services.user_deactivate(actor=actor, user_id=user.pk, reason="left the company")

    user = User.objects.get(pk=user.pk)
    assert not user.is_active
    assert not user.has_perm(VIEW_LOG)
    entry = only_entry()
    assert_success(entry, AuditAction.USER_DEACTIVATE, "User", user.pk, actor)
    assert entry.changes == {"is_active": {"before": True, "after": False}}
    assert entry.meta == {"reason": "left the company"}
    assert entry.perms_snapshot == snapshot_of(["auth.change_user"])


@pytest.mark.django_db
def test_user_deactivate_without_the_permission_is_denied(user):
    """Without auth.change_user: the account stays active, one denied USER.DEACTIVATE entry."""
    actor = actor_with("auth.view_user")

    with pytest.raises(PermissionDenied):
        services.user_deactivate(actor=actor, user_id=user.pk)

    assert User.objects.get(pk=user.pk).is_active
    assert_refused(only_entry(), AuditAction.USER_DEACTIVATE, "denied", actor)


@pytest.mark.django_db
def test_user_deactivate_refuses_ones_own_account(superuser):
    """Nobody deactivates their own account (ValidationError on user)."""
    with pytest.raises(ValidationError) as excinfo:
        services.user_deactivate(actor=superuser, user_id=superuser.pk)

    assert "user" in excinfo.value.message_dict
    assert User.objects.get(pk=superuser.pk).is_active
    assert_refused(only_entry(), AuditAction.USER_DEACTIVATE, "failure", superuser)


# --- user_password_change -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_password_change_records_the_change_but_never_the_password_or_hash(user):
    """A password change by someone allowed to change users writes one entry naming the user, and neither the new
    password nor its hash appears anywhere in the audit table."""
    actor = actor_with("auth.change_user")
    old_hash = user.password

    services.user_password_change(actor=actor, user_id=user.pk, password=STRONG_PASSWORD)

    user.refresh_from_db()
    assert user.check_password(STRONG_PASSWORD)
    entry = only_entry()
    assert_success(entry, AuditAction.USER_PASSWORD_CHANGE, "User", user.pk, actor)
    assert (entry.changes, entry.meta) == ({}, {})
    dump = table_dump()
    assert "canary" in STRONG_PASSWORD and "canary" not in dump
    assert user.password not in dump
    assert user.password.rsplit("$", 1)[-1] not in dump
    assert old_hash.rsplit("$", 1)[-1] not in dump


@pytest.mark.django_db
def test_user_password_change_of_ones_own_password_needs_no_permission(user):
    """Users change their own password without auth.change_user."""
    services.user_password_change(actor=user, user_id=user.pk, password=STRONG_PASSWORD)

    assert User.objects.get(pk=user.pk).check_password(STRONG_PASSWORD)
    entry = only_entry()
    assert_success(entry, AuditAction.USER_PASSWORD_CHANGE, "User", user.pk, user)
    assert entry.perms_snapshot == {"perms": []}


@pytest.mark.django_db
def test_user_password_change_of_someone_else_without_the_permission_is_denied(user, other_user, password):
    """Changing another user's password without auth.change_user is refused and recorded as denied, without the
    attempted password."""
    with pytest.raises(PermissionDenied):
        services.user_password_change(actor=other_user, user_id=user.pk, password=STRONG_PASSWORD)

    assert User.objects.get(pk=user.pk).check_password(password)
    assert_refused(only_entry(), AuditAction.USER_PASSWORD_CHANGE, "denied", other_user)
    assert "canary" not in table_dump()


@pytest.mark.django_db
def test_user_password_change_weak_password_fails_without_leaking_it(user, password):
    """A password the validators refuse is a ValidationError on password; the old one stays, and the refused
    password is nowhere in the table."""
    weak = "canary1"  # shorter than the minimum length

    with pytest.raises(ValidationError) as excinfo:
        services.user_password_change(actor=user, user_id=user.pk, password=weak)

    assert "password" in excinfo.value.message_dict
    assert User.objects.get(pk=user.pk).check_password(password)
    assert_refused(only_entry(), AuditAction.USER_PASSWORD_CHANGE, "failure", user)
    assert "canary" not in table_dump()


# --- history outlives the user ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_deleting_a_user_keeps_their_history_readable_by_label(user):
    """Entries a user made, and entries about them, survive the deletion of the account: nothing is deleted or
    changed, and actor_label still names who acted."""
    actor = actor_with("rbac.add_role", "auth.change_user", "rbac.assign_role", "auth.add_group")
    actor_pk, actor_name = actor.pk, actor.username
    role = services.role_create(actor=actor, name="reviewer")
    services.user_roles_set(actor=actor, user_id=user.pk, role_ids=[role.pk])
    with pytest.raises(PermissionDenied):
        services.group_delete(actor=actor, group_id=make_group("Keep").pk)
    services.user_deactivate(actor=None, user_id=actor.pk, reason="left")
    before = list(AuditLog.objects.order_by("id").values())

    User.objects.get(pk=actor_pk).delete()

    assert not User.objects.filter(pk=actor_pk).exists()
    after = list(AuditLog.objects.order_by("id").values())
    assert after == before
    by_actor = [row for row in after if row["actor_id"] == actor_pk]
    assert [(row["action"], row["outcome"]) for row in by_actor] == [
        (AuditAction.ROLE_CREATE, "success"),
        (AuditAction.USER_ROLES_SET, "success"),
        (AuditAction.GROUP_DELETE, "denied"),
    ]
    history = list(AuditLog.objects.filter(actor_id=actor_pk))
    reveal(history)  # the label is stored encrypted under the user's key, which outlives the account
    assert {entry.actor_label for entry in history} == {actor_name}
    about = AuditLog.objects.get(entity="User", entity_id=str(actor_pk))
    assert (about.action, about.actor_label) == (AuditAction.USER_DEACTIVATE, "")


@pytest.mark.parametrize(
    "change",
    [
        lambda actor, target: services.user_update(actor=actor, user_id=target.pk, fields={"email": "x@example.org"}),
        lambda actor, target: services.user_deactivate(actor=actor, user_id=target.pk, reason="leaver"),
        lambda actor, target: services.user_password_change(actor=actor, user_id=target.pk, password="Another-pass-9x"),
    ],
    ids=["update", "deactivate", "password"],
)
def test_a_superusers_account_is_changed_only_by_a_superuser(superuser, change):
    """A non-superuser with auth.change_user cannot change, deactivate or set the password of a superuser (that
    would be a takeover); the attempt is recorded as denied and the account stays as it was."""
    actor = actor_with("auth.change_user")
    password_hash = superuser.password

    with pytest.raises(PermissionDenied):
        change(actor, superuser)

    superuser.refresh_from_db()
    assert superuser.is_active and superuser.password == password_hash and superuser.email != "x@example.org"
    assert AuditLog.objects.get().outcome == AuditLog.Outcome.DENIED


def test_user_update_with_an_unknown_group_fails_on_groups(superuser, user):
    """Unknown group ids are refused on "groups" (as unknown role and member ids are), and nothing changes."""
    with pytest.raises(ValidationError) as caught:
        services.user_update(actor=superuser, user_id=user.pk, fields={}, group_ids=[987654])
    assert "groups" in caught.value.message_dict
    assert not user.groups.exists()
