"""The admin of roles, groups and users: every form saves through the audited services, one entry per call."""

import json
from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from audit.actions import AuditAction
from audit.models import AuditLog
from rbac.models import GroupScope, Role
from tests.factories.users import PASSWORD, UserFactory

REASON = "approved in ticket SEC-42"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers --------------------------------------------------------------------------------------------------------


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def perm(code: str) -> Permission:
    app_label, codename = code.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def make_role(name: str, *codes: str, privileged: bool = False) -> Role:
    role = Role.objects.create(name=name, privileged=privileged)
    role.permissions.set([perm(code) for code in codes])
    return role


def make_group(name: str, roles: Sequence[Role] = (), members: Sequence[User] = ()) -> Group:
    group = Group.objects.create(name=name)
    group.rbac_roles.set(roles)
    group.user_set.set(members)
    return group


def mark() -> int:
    """The id of the newest entry: what a test's action writes comes after it."""
    return AuditLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def entries_since(last: int) -> list[AuditLog]:
    return list(AuditLog.objects.filter(pk__gt=last).order_by("pk"))


def form_data(client: Client, page: str, **changes: Any) -> dict[str, Any]:
    """The admin form on ``page`` as a browser posts it unchanged, with ``changes`` applied.

    Models stand for their ids, True ticks a checkbox and False or None leaves the field out.
    """
    response = client.get(page)
    assert response.status_code == 200
    form = response.context["adminform"].form
    values = {name: form[name].value() for name, field in form.fields.items() if not field.disabled}
    values.update(changes)
    data = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            value = "on"
        elif isinstance(value, (list, tuple)):
            value = [getattr(item, "pk", item) for item in value]
        data[name] = value
    return data


def errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def assert_entry(entry: AuditLog, action: str, *, actor: User, entity: str, entity_id: Any, reason: str = "") -> None:
    assert entry.action == action
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.actor_id == actor.pk
    assert (entry.entity, entry.entity_id) == (entity, str(entity_id))
    assert entry.meta.get("reason", "") == reason


@pytest.fixture
def staff_client(db):
    """A client logged in as a staff user whose only rights are those of the roles a test gives them."""

    def login(*codes: str) -> tuple[Client, User]:
        staff = UserFactory(is_staff=True)
        if codes:
            make_role(f"role of {staff.username}", *codes).users.add(staff)
        client = Client()
        client.force_login(staff)
        return client, staff

    return login


# --- roles ----------------------------------------------------------------------------------------------------------


def test_role_add_creates_the_role_through_role_create(admin_client, admin_user):
    """Adding a role with permissions writes the role and exactly one ROLE.CREATE entry by the admin, with the
    permissions in the diff and the reason in meta."""
    last = mark()

    response = admin_client.post(
        url("rbac_role_add"),
        {
            "name": "auditors",
            "description": "Read the trail",
            "permissions": [perm("audit.view_auditlog").pk, perm("rbac.view_role").pk],
            "reason": REASON,
        },
    )

    assert response.status_code == 302
    role = Role.objects.get(name="auditors")
    assert {p.codename for p in role.permissions.all()} == {"view_auditlog", "view_role"}
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.ROLE_CREATE, actor=admin_user, entity="Role", entity_id=role.pk, reason=REASON)
    assert entry.changes["permissions"]["after"] == ["audit.view_auditlog", "rbac.view_role"]
    assert entry.changes["name"] == {"before": None, "after": "auditors"}


def test_privileged_role_created_without_reason_is_a_form_error(admin_client):
    """A privileged role with permissions and no reason: an error on "reason", no role and no entry."""
    last = mark()

    response = admin_client.post(
        url("rbac_role_add"), {"name": "root", "privileged": "on", "permissions": [perm("auth.change_user").pk]}
    )

    assert "reason" in errors(response)
    assert not Role.objects.filter(name="root").exists()
    assert entries_since(last) == []


def test_role_change_of_fields_records_role_update_only(admin_client, admin_user):
    """Changing the name and description calls role_update alone: one ROLE.UPDATE entry with the diff."""
    role = make_role("readers", "rbac.view_role")
    page = url("rbac_role_change", role.pk)
    data = form_data(admin_client, page, name="viewers", description="Look, don't touch")
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    role.refresh_from_db()
    assert (role.name, role.description) == ("viewers", "Look, don't touch")
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.ROLE_UPDATE, actor=admin_user, entity="Role", entity_id=role.pk)
    assert entry.changes == {
        "name": {"before": "readers", "after": "viewers"},
        "description": {"before": "", "after": "Look, don't touch"},
    }


def test_role_change_of_permissions_records_role_perm_replace_only(admin_client, admin_user):
    """Changing only the permissions calls role_permissions_replace alone: one ROLE.PERM.REPLACE entry."""
    role = make_role("readers", "rbac.view_role")
    page = url("rbac_role_change", role.pk)
    data = form_data(admin_client, page, permissions=[perm("rbac.view_role"), perm("auth.view_group")], reason=REASON)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert {p.codename for p in role.permissions.all()} == {"view_role", "view_group"}
    [entry] = entries_since(last)
    assert_entry(
        entry, AuditAction.ROLE_PERM_REPLACE, actor=admin_user, entity="Role", entity_id=role.pk, reason=REASON
    )
    assert entry.changes["permissions"]["added"] == ["auth.view_group"]
    assert entry.changes["permissions"]["removed"] == []


def test_role_change_of_fields_and_permissions_records_one_entry_per_service(admin_client, admin_user):
    """Privileged flag and permissions changed together, with a reason: ROLE.UPDATE then ROLE.PERM.REPLACE."""
    role = make_role("operators", "rbac.view_role")
    page = url("rbac_role_change", role.pk)
    data = form_data(admin_client, page, privileged=True, permissions=[perm("auth.change_user")], reason=REASON)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    role.refresh_from_db()
    assert role.privileged
    assert [p.codename for p in role.permissions.all()] == ["change_user"]
    update, replace = entries_since(last)
    assert_entry(update, AuditAction.ROLE_UPDATE, actor=admin_user, entity="Role", entity_id=role.pk, reason=REASON)
    assert update.changes == {"privileged": {"before": False, "after": True}}
    assert_entry(
        replace, AuditAction.ROLE_PERM_REPLACE, actor=admin_user, entity="Role", entity_id=role.pk, reason=REASON
    )


def test_role_saved_unchanged_calls_no_service(admin_client):
    """Saving a role form without a change writes no entry."""
    role = make_role("readers", "rbac.view_role")
    page = url("rbac_role_change", role.pk)
    data = form_data(admin_client, page)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert entries_since(last) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"permissions": []}, id="permissions-of-privileged-role"),
        pytest.param({"privileged": False}, id="privileged-flag"),
    ],
)
def test_privileged_role_change_without_reason_is_a_form_error(admin_client, change):
    """Changing a privileged role's permissions or flag without a reason: an error on "reason", nothing changed,
    no entry."""
    role = make_role("admins", "auth.change_user", privileged=True)
    page = url("rbac_role_change", role.pk)
    data = form_data(admin_client, page, **change)
    last = mark()

    response = admin_client.post(page, data)

    assert errors(response)["reason"] == [
        "A reason is required because "
        + ("admins is a privileged role." if "permissions" in change else "the privileged flag changes.")
    ]
    role.refresh_from_db()
    assert role.privileged
    assert [p.codename for p in role.permissions.all()] == ["change_user"]
    assert entries_since(last) == []


def test_role_changelist_shows_name_privileged_description_and_permission_count(admin_client):
    """The role list has the columns name, privileged, description and the number of permissions."""
    make_role("readers", "rbac.view_role", "auth.view_group")

    response = admin_client.get(url("rbac_role_changelist"))

    content = response.content.decode()
    for column in ("name", "privileged", "description", "permission_count"):
        assert f"column-{column}" in content, column
    assert '<td class="field-permission_count">2</td>' in content


def test_role_form_has_the_permissions_selector_and_a_reason(admin_client):
    """The role form offers name, description, privileged, the permissions (filter_horizontal) and a reason."""
    response = admin_client.get(url("rbac_role_add"))

    form = response.context["adminform"].form
    assert list(form.fields) == ["name", "description", "privileged", "permissions", "reason"]
    assert 'class="selectfilter"' in response.content.decode()


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_service_refusal_is_a_form_error_and_is_recorded_as_denied(committed_db, staff_client):
    """A staff user who may add roles but does not hold a permission they put in one gets the service's refusal as
    a form error, not a 500; no role is created and one ROLE.CREATE entry by them says "denied"."""
    client, staff = staff_client("rbac.add_role", "rbac.change_role", "rbac.view_role")
    last = mark()

    response = client.post(url("rbac_role_add"), {"name": "escalate", "permissions": [perm("auth.change_user").pk]})

    assert errors(response)["__all__"] == ["cannot grant permissions you do not hold: auth.change_user"]
    assert not Role.objects.filter(name="escalate").exists()
    [entry] = entries_since(last)
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.ROLE_CREATE, "denied", staff.pk)


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_refusal_of_a_later_service_undoes_the_earlier_ones(committed_db, staff_client):
    """A rename (role_update, allowed) with a permission the user does not hold (role_permissions_replace, refused)
    saves neither: the role keeps its name and permissions and no success entry remains."""
    client, _ = staff_client("rbac.change_role", "rbac.view_role")
    role = make_role("readers", "rbac.view_role")
    page = url("rbac_role_change", role.pk)
    data = form_data(client, page, name="writers", permissions=[perm("rbac.view_role"), perm("auth.change_user")])
    last = mark()

    response = client.post(page, data)

    assert errors(response)["__all__"] == ["cannot grant permissions you do not hold: auth.change_user"]
    role.refresh_from_db()
    assert role.name == "readers"
    assert [p.codename for p in role.permissions.all()] == ["view_role"]
    assert [entry for entry in entries_since(last) if entry.outcome == AuditLog.Outcome.SUCCESS] == []


# --- deleting roles -------------------------------------------------------------------------------------------------


def test_delete_confirmation_asks_for_a_reason(admin_client):
    """The delete confirmation page of a role has a reason field, said to be required for a privileged role."""
    role = make_role("admins", "auth.change_user", privileged=True)

    response = admin_client.get(url("rbac_role_delete", role.pk))

    content = response.content.decode()
    assert 'name="reason"' in content
    assert "Required here: admins is a privileged role." in content


def test_role_delete_records_role_delete_with_the_reason(admin_client, admin_user):
    """Confirming a deletion with a reason deletes the role through role_delete: one ROLE.DELETE entry with the
    role's last state and the reason."""
    role = make_role("admins", "auth.change_user", privileged=True)
    role_id = role.pk
    last = mark()

    response = admin_client.post(url("rbac_role_delete", role_id), {"post": "yes", "reason": REASON})

    assert response.status_code == 302
    assert not Role.objects.filter(pk=role_id).exists()
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.ROLE_DELETE, actor=admin_user, entity="Role", entity_id=role_id, reason=REASON)
    assert entry.changes["permissions"] == {
        "before": ["auth.change_user"],
        "after": None,
        "added": [],
        "removed": ["auth.change_user"],
    }


def test_privileged_role_delete_without_reason_shows_the_confirmation_again(admin_client):
    """Confirming the deletion of a privileged role without a reason shows the confirmation page again with an
    error on "reason"; the role stays and nothing is recorded."""
    role = make_role("admins", "auth.change_user", privileged=True)
    last = mark()

    response = admin_client.post(url("rbac_role_delete", role.pk), {"post": "yes", "reason": "  "})

    assert response.status_code == 200
    assert response.context["deletion_form"].errors["reason"] == [
        "A reason is required because admins is a privileged role."
    ]
    assert Role.objects.filter(pk=role.pk).exists()
    assert entries_since(last) == []


def test_bulk_delete_records_one_role_delete_per_role(admin_client, admin_user):
    """The "delete selected" action, confirmed with a reason, deletes each role through role_delete: one
    ROLE.DELETE entry per role, each with the reason."""
    roles = [make_role("readers", "rbac.view_role"), make_role("admins", "auth.change_user", privileged=True)]
    ids = [role.pk for role in roles]
    last = mark()

    response = admin_client.post(
        url("rbac_role_changelist"),
        {"action": "delete_selected", "_selected_action": ids, "post": "yes", "reason": REASON},
    )

    assert response.status_code == 302
    assert not Role.objects.filter(pk__in=ids).exists()
    deletions = entries_since(last)
    assert sorted(int(entry.entity_id) for entry in deletions) == sorted(ids)
    for entry in deletions:
        assert_entry(
            entry, AuditAction.ROLE_DELETE, actor=admin_user, entity="Role", entity_id=entry.entity_id, reason=REASON
        )


def test_bulk_delete_asks_for_the_reason_first(admin_client):
    """Choosing "delete selected" shows the confirmation page with the reason field and deletes nothing yet."""
    role = make_role("readers", "rbac.view_role")

    response = admin_client.post(
        url("rbac_role_changelist"), {"action": "delete_selected", "_selected_action": [role.pk]}
    )

    assert response.status_code == 200
    assert 'name="reason"' in response.content.decode()
    assert Role.objects.filter(pk=role.pk).exists()


def test_bulk_delete_of_a_privileged_role_without_reason_deletes_nothing(admin_client):
    """Confirming a bulk deletion that includes a privileged role without a reason shows the confirmation again
    with an error on "reason"; no role is deleted and nothing is recorded."""
    roles = [make_role("readers", "rbac.view_role"), make_role("admins", "auth.change_user", privileged=True)]
    last = mark()

    response = admin_client.post(
        url("rbac_role_changelist"),
        {"action": "delete_selected", "_selected_action": [role.pk for role in roles], "post": "yes"},
    )

    assert response.status_code == 200
    assert "reason" in response.context["deletion_form"].errors
    assert Role.objects.filter(pk__in=[role.pk for role in roles]).count() == 2
    assert entries_since(last) == []


# --- groups ---------------------------------------------------------------------------------------------------------


def test_group_add_records_group_create_then_group_members_set(admin_client, admin_user, user):
    """Adding a group with roles, members and a scope: GROUP.CREATE (name, roles, scope) then GROUP.MEMBERS.SET,
    both by the admin with the reason."""
    role = make_role("admins", "auth.change_user", privileged=True)
    last = mark()

    response = admin_client.post(
        url("auth_group_add"),
        {"name": "ops", "roles": [role.pk], "members": [user.pk], "branch_scope": "3, 1", "reason": REASON},
    )

    assert response.status_code == 302
    group = Group.objects.get(name="ops")
    assert list(group.rbac_roles.all()) == [role]
    assert list(group.user_set.all()) == [user]
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [3, 1]}
    create, members = entries_since(last)
    assert_entry(create, AuditAction.GROUP_CREATE, actor=admin_user, entity="Group", entity_id=group.pk, reason=REASON)
    assert create.changes["roles"]["after"] == ["admins"]
    assert create.changes["branch_scope"]["after"] == {"allow": [3, 1]}
    assert_entry(
        members, AuditAction.GROUP_MEMBERS_SET, actor=admin_user, entity="Group", entity_id=group.pk, reason=REASON
    )
    assert members.changes["members"]["added"] == [user.username]


def test_group_add_without_members_records_group_create_only(admin_client, admin_user):
    """A new group without members is one GROUP.CREATE entry; its empty scope is {"allow": []}."""
    last = mark()

    response = admin_client.post(url("auth_group_add"), {"name": "empty"})

    assert response.status_code == 302
    group = Group.objects.get(name="empty")
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.GROUP_CREATE, actor=admin_user, entity="Group", entity_id=group.pk)
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": []}


def test_group_add_with_a_privileged_role_without_reason_is_a_form_error(admin_client):
    """A new group carrying a privileged role needs a reason: an error on "reason", no group, no entry."""
    role = make_role("admins", "auth.change_user", privileged=True)
    last = mark()

    response = admin_client.post(url("auth_group_add"), {"name": "ops", "roles": [role.pk]})

    assert "reason" in errors(response)
    assert not Group.objects.filter(name="ops").exists()
    assert entries_since(last) == []


def test_group_change_of_name_and_roles_records_group_update(admin_client, admin_user, user):
    """Renaming a group and giving it a role is one GROUP.UPDATE entry with both in the diff."""
    group = make_group("ops", members=[user])
    role = make_role("readers", "rbac.view_role")
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, name="operations", roles=[role])
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    group.refresh_from_db()
    assert group.name == "operations"
    assert list(group.rbac_roles.all()) == [role]
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.GROUP_UPDATE, actor=admin_user, entity="Group", entity_id=group.pk)
    assert entry.changes["name"] == {"before": "ops", "after": "operations"}
    assert entry.changes["roles"]["added"] == ["readers"]


def test_group_change_of_members_records_group_members_set(admin_client, admin_user, user, other_user):
    """Replacing a group's members is one GROUP.MEMBERS.SET entry with who came and who went."""
    group = make_group("ops", members=[user])
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, members=[other_user])
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert list(group.user_set.all()) == [other_user]
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.GROUP_MEMBERS_SET, actor=admin_user, entity="Group", entity_id=group.pk)
    assert (entry.changes["members"]["added"], entry.changes["members"]["removed"]) == (
        [other_user.username],
        [user.username],
    )


@pytest.mark.parametrize("typed", ['{"allow": [7, 2]}', "7,2", " 7 , 2 "])
def test_group_change_of_scope_records_group_scope_set(admin_client, admin_user, typed):
    """A scope typed as JSON or as comma-separated ids is saved through group_scope_set: one GROUP.SCOPE.SET."""
    group = make_group("ops")
    GroupScope.objects.create(group=group, branch_scope={"allow": [1]})
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, branch_scope=typed)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [7, 2]}
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.GROUP_SCOPE_SET, actor=admin_user, entity="Group", entity_id=group.pk)
    assert entry.changes["branch_scope"] == {"before": {"allow": [1]}, "after": {"allow": [7, 2]}}


def test_group_scope_typed_otherwise_but_equal_records_nothing(admin_client):
    """The stored scope typed as JSON instead of "1, 2" is no change: no service is called."""
    group = make_group("ops")
    GroupScope.objects.create(group=group, branch_scope={"allow": [1, 2]})
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, branch_scope='{"allow": [1, 2]}')
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert entries_since(last) == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        pytest.param("1, two", 'Enter branch ids separated by commas (1, 2) or JSON ({"allow": [1, 2]}).', id="text"),
        pytest.param("1, -2", '"allow" may hold positive integers only.', id="negative"),
        pytest.param("1, 1", '"allow" lists a branch id twice.', id="twice"),
        pytest.param('{"deny": [1]}', 'Must be an object with exactly one key, "allow".', id="json-key"),
    ],
)
def test_bad_scope_is_a_form_error_on_branch_scope(admin_client, typed, message):
    """A scope that is not a list of distinct positive branch ids is an error on "branch_scope"; nothing is saved."""
    group = make_group("ops")
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, branch_scope=typed)
    last = mark()

    response = admin_client.post(page, data)

    assert errors(response)["branch_scope"] == [message]
    assert not GroupScope.objects.filter(group=group).exists()
    assert entries_since(last) == []


def test_members_change_of_a_privileged_group_without_reason_is_a_form_error(admin_client, user):
    """Adding a member to a group carrying a privileged role without a reason: an error on "reason", the members
    stay as they were, no entry."""
    group = make_group("ops", roles=[make_role("admins", "auth.change_user", privileged=True)])
    page = url("auth_group_change", group.pk)
    data = form_data(admin_client, page, members=[user])
    last = mark()

    response = admin_client.post(page, data)

    assert errors(response)["reason"] == ["A reason is required because ops carries a privileged role."]
    assert not group.user_set.exists()
    assert entries_since(last) == []


def test_group_delete_records_group_delete_with_the_reason(admin_client, admin_user, user):
    """Deleting a group whose members hold a privileged role through it, with a reason: one GROUP.DELETE entry."""
    group = make_group("ops", roles=[make_role("admins", "auth.change_user", privileged=True)], members=[user])
    group_id = group.pk
    last = mark()

    response = admin_client.post(url("auth_group_delete", group_id), {"post": "yes", "reason": REASON})

    assert response.status_code == 302
    assert not Group.objects.filter(pk=group_id).exists()
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.GROUP_DELETE, actor=admin_user, entity="Group", entity_id=group_id, reason=REASON)
    assert entry.changes["members"]["before"] == [user.username]


def test_privileged_group_delete_without_reason_shows_the_confirmation_again(admin_client, user):
    """Deleting a group that gives its members a privileged role needs a reason: the confirmation again with an
    error on "reason", the group stays, no entry."""
    group = make_group("ops", roles=[make_role("admins", "auth.change_user", privileged=True)], members=[user])
    last = mark()

    response = admin_client.post(url("auth_group_delete", group.pk), {"post": "yes"})

    assert response.status_code == 200
    assert response.context["deletion_form"].errors["reason"] == [
        "A reason is required because ops gives its members a privileged role."
    ]
    assert Group.objects.filter(pk=group.pk).exists()
    assert entries_since(last) == []


def test_group_bulk_delete_records_one_group_delete_per_group(admin_client, admin_user):
    """The "delete selected" action on groups deletes each through group_delete: one GROUP.DELETE entry each."""
    groups = [make_group("ops"), make_group("dev")]
    last = mark()

    response = admin_client.post(
        url("auth_group_changelist"),
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes", "reason": REASON},
    )

    assert response.status_code == 302
    assert not Group.objects.filter(pk__in=[g.pk for g in groups]).exists()
    assert sorted(entry.action for entry in entries_since(last)) == [AuditAction.GROUP_DELETE] * 2


def test_group_form_offers_roles_members_scope_and_reason_but_no_raw_permissions(admin_client):
    """The group form has name, roles, members, branch scope and reason; Django's group permissions are gone."""
    response = admin_client.get(url("auth_group_add"))

    assert list(response.context["adminform"].form.fields) == ["name", "roles", "members", "branch_scope", "reason"]


# --- users ----------------------------------------------------------------------------------------------------------


def test_user_add_creates_the_user_through_user_create(admin_client, admin_user):
    """The add-user form creates the account through user_create: one USER.CREATE entry by the admin, the
    password set (the user can log in) and absent from the entry."""
    new_password = "a-long-and-new-passphrase-7"
    last = mark()

    response = admin_client.post(
        url("auth_user_add"), {"username": "newcomer", "password1": new_password, "password2": new_password}
    )

    assert response.status_code == 302
    newcomer = User.objects.get(username="newcomer")
    assert newcomer.check_password(new_password)
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_CREATE, actor=admin_user, entity="User", entity_id=newcomer.pk)
    assert entry.changes["username"] == {"before": None, "after": "newcomer"}
    assert "password" not in entry.changes


def test_user_add_with_password_authentication_disabled_sets_an_unusable_password(admin_client):
    """ "Password-based authentication: disabled" creates the user with an unusable password, through user_create."""
    response = admin_client.post(url("auth_user_add"), {"username": "sso-only", "usable_password": "false"})

    assert response.status_code == 302
    assert not User.objects.get(username="sso-only").has_usable_password()
    assert AuditLog.objects.filter(action=AuditAction.USER_CREATE, changes__username__after="sso-only").count() == 1


def test_user_change_of_fields_and_groups_records_user_update(admin_client, admin_user, user):
    """Changing a user's name, staff flag and groups is one USER.UPDATE entry with each in the diff."""
    group = make_group("ops", roles=[make_role("readers", "rbac.view_role")])
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, first_name="Ada", is_staff=True, groups=[group])
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.first_name, user.is_staff, list(user.groups.all())) == ("Ada", True, [group])
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_UPDATE, actor=admin_user, entity="User", entity_id=user.pk)
    assert entry.changes == {
        "first_name": {"before": "", "after": "Ada"},
        "is_staff": {"before": False, "after": True},
        "groups": {"before": [], "after": ["ops"], "added": ["ops"], "removed": []},
    }


def test_user_change_of_roles_with_reason_records_user_roles_set(admin_client, admin_user, user):
    """Granting a privileged role with a reason is one USER.ROLES.SET entry with the role and the reason."""
    role = make_role("admins", "auth.change_user", privileged=True)
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, roles=[role], reason=REASON)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert list(user.rbac_roles.all()) == [role]
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_ROLES_SET, actor=admin_user, entity="User", entity_id=user.pk, reason=REASON)
    assert entry.changes == {"roles": {"before": [], "after": ["admins"], "added": ["admins"], "removed": []}}


def test_user_change_of_fields_and_roles_records_one_entry_per_service(admin_client, admin_user, user):
    """An email change and a role in one submission: USER.UPDATE then USER.ROLES.SET, one entry each."""
    role = make_role("readers", "rbac.view_role")
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, email="new@example.org", roles=[role])
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    assert [entry.action for entry in entries_since(last)] == [AuditAction.USER_UPDATE, AuditAction.USER_ROLES_SET]


@pytest.mark.parametrize(
    "grant",
    [
        pytest.param(lambda role: {"roles": [role]}, id="role"),
        pytest.param(lambda role: {"groups": [make_group("ops", roles=[role])]}, id="group-carrying-the-role"),
        pytest.param(lambda role: {"is_superuser": True}, id="superuser"),
    ],
)
def test_privileged_grant_without_reason_is_a_form_error_and_changes_nothing(admin_client, user, grant):
    """A privileged role (directly or through a group) or superuser status granted without a reason: an error on
    "reason"; the user keeps their roles, groups and flags, and no entry is written."""
    role = make_role("admins", "auth.change_user", privileged=True)
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, first_name="Changed", **grant(role))
    last = mark()

    response = admin_client.post(page, data)

    assert "reason" in errors(response)
    user.refresh_from_db()
    assert (user.first_name, user.is_superuser) == ("", False)
    assert not user.rbac_roles.exists()
    assert not user.groups.exists()
    assert entries_since(last) == []


@pytest.mark.parametrize(
    ("grant", "action"),
    [
        pytest.param(lambda role: {"roles": [role]}, AuditAction.USER_ROLES_SET, id="role"),
        pytest.param(
            lambda role: {"groups": [make_group("ops", roles=[role])]}, AuditAction.USER_UPDATE, id="group-with-role"
        ),
        pytest.param(lambda role: {"is_superuser": True}, AuditAction.USER_UPDATE, id="superuser"),
    ],
)
def test_privileged_grant_with_reason_is_recorded_with_it(admin_client, admin_user, user, grant, action):
    """The same grants with a reason go through: one entry (USER.ROLES.SET or USER.UPDATE) carrying the reason."""
    role = make_role("admins", "auth.change_user", privileged=True)
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, reason=REASON, **grant(role))
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    [entry] = entries_since(last)
    assert_entry(entry, action, actor=admin_user, entity="User", entity_id=user.pk, reason=REASON)


def test_unticking_active_records_user_deactivate(admin_client, admin_user, user):
    """Unticking "active" deactivates the account through user_deactivate: one USER.DEACTIVATE entry with the
    reason given."""
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, is_active=False, reason="left the company")
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    [entry] = entries_since(last)
    assert_entry(
        entry,
        AuditAction.USER_DEACTIVATE,
        actor=admin_user,
        entity="User",
        entity_id=user.pk,
        reason="left the company",
    )
    assert entry.changes == {"is_active": {"before": True, "after": False}}


def test_ticking_active_again_records_user_update(admin_client, admin_user, user):
    """Reactivating an account goes through user_update: one USER.UPDATE entry."""
    user.is_active = False
    user.save()
    page = url("auth_user_change", user.pk)
    data = form_data(admin_client, page, is_active=True)
    last = mark()

    response = admin_client.post(page, data)

    assert response.status_code == 302
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_UPDATE, actor=admin_user, entity="User", entity_id=user.pk)
    assert entry.changes == {"is_active": {"before": False, "after": True}}


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_deactivating_oneself_is_a_form_error(committed_db, admin_client, admin_user):
    """The admin unticking their own "active" gets the service's refusal as a form error, stays active, and the
    attempt is one USER.DEACTIVATE entry with outcome "failure"."""
    page = url("auth_user_change", admin_user.pk)
    data = form_data(admin_client, page, is_active=False)
    last = mark()

    response = admin_client.post(page, data)

    assert errors(response)["__all__"] == ["You cannot deactivate your own account."]
    admin_user.refresh_from_db()
    assert admin_user.is_active
    [entry] = entries_since(last)
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.USER_DEACTIVATE, "failure", admin_user.pk)


def test_user_form_has_roles_and_reason_but_no_user_permissions(admin_client, user):
    """The user form offers roles and a reason; Django's raw user_permissions field is not there."""
    response = admin_client.get(url("auth_user_change", user.pk))

    fields = response.context["adminform"].form.fields
    assert "roles" in fields and "reason" in fields
    assert "user_permissions" not in fields
    assert 'name="user_permissions"' not in response.content.decode()


def test_users_cannot_be_deleted_in_the_admin(admin_client, user):
    """No service deletes a user: the delete view is refused and the changelist offers no delete action."""
    assert admin_client.post(url("auth_user_delete", user.pk), {"post": "yes"}).status_code == 403
    assert "delete_selected" not in admin_client.get(url("auth_user_changelist")).content.decode()
    assert User.objects.filter(pk=user.pk).exists()


# --- passwords ------------------------------------------------------------------------------------------------------


def test_admin_password_change_records_user_password_change(admin_client, admin_user, user):
    """An admin setting a user's password goes through user_password_change: one USER.PASSWORD.CHANGE entry by the
    admin about the user, with no changes recorded; the new password works."""
    new_password = "another-long-passphrase-8"
    last = mark()

    response = admin_client.post(
        url("auth_user_password_change", user.pk), {"password1": new_password, "password2": new_password}
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password)
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_PASSWORD_CHANGE, actor=admin_user, entity="User", entity_id=user.pk)
    assert entry.changes == {}


def test_admin_password_form_rejects_a_weak_password(admin_client, user):
    """A password the validators refuse is an error on the form; the password and the trail stay as they were."""
    last = mark()

    response = admin_client.post(url("auth_user_password_change", user.pk), {"password1": "123", "password2": "123"})

    assert response.status_code == 200
    assert response.context["form"].errors["password2"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert entries_since(last) == []


def test_self_service_password_change_records_user_password_change(db, client):
    """A staff user changing their own password on /admin/password_change/ goes through user_password_change: one
    USER.PASSWORD.CHANGE entry by themselves; the new password works and they stay logged in."""
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    new_password = "my-own-new-passphrase-9"
    last = mark()

    response = client.post(
        url("password_change"),
        {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
    )

    assert response.status_code == 302
    assert response["Location"] == url("password_change_done")
    staff.refresh_from_db()
    assert staff.check_password(new_password)
    [entry] = entries_since(last)
    assert_entry(entry, AuditAction.USER_PASSWORD_CHANGE, actor=staff, entity="User", entity_id=staff.pk)
    assert client.get(url("index")).status_code == 200


def test_self_service_password_change_with_a_wrong_old_password_changes_nothing(db, client):
    """A wrong old password is an error on the form; no service is called."""
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    last = mark()

    response = client.post(
        url("password_change"),
        {
            "old_password": "wrong",
            "new_password1": "my-own-new-passphrase-9",
            "new_password2": "my-own-new-passphrase-9",
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors["old_password"]
    assert entries_since(last) == []


def test_no_password_or_hash_appears_in_any_audit_entry(admin_client, client):
    """After a user is created with a password, has it set by an admin and changes it themselves, no audit entry
    holds any of the passwords or any password hash."""
    passwords = ["canary-created-passphrase-1", "canary-admin-set-passphrase-2", "canary-self-chosen-passphrase-3"]
    admin_client.post(
        url("auth_user_add"), {"username": "canary", "password1": passwords[0], "password2": passwords[0]}
    )
    canary = User.objects.get(username="canary")
    hashes = [canary.password]
    admin_client.post(
        url("auth_user_password_change", canary.pk), {"password1": passwords[1], "password2": passwords[1]}
    )
    canary.refresh_from_db()
    hashes.append(canary.password)
    canary.is_staff = True
    canary.save()
    client.force_login(canary)
    client.post(
        url("password_change"),
        {"old_password": passwords[1], "new_password1": passwords[2], "new_password2": passwords[2]},
    )
    canary.refresh_from_db()
    hashes.append(canary.password)
    assert canary.check_password(passwords[2])

    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {AuditAction.USER_CREATE, AuditAction.USER_PASSWORD_CHANGE} <= actions
    trail = json.dumps([{**row, "salt": None} for row in AuditLog.objects.values()], default=str)
    for secret in passwords + hashes + ["md5$"]:
        assert secret not in trail


# --- the audit console and rights through roles ---------------------------------------------------------------------


def test_role_grant_by_the_admin_appears_in_the_audit_console_with_its_reason(admin_client, admin_user, user):
    """The "admin" user grants a privileged role with a reason; the console's USER family lists USER.ROLES.SET and
    the entry's page shows the reason."""
    assert admin_user.username == "admin"
    role = make_role("administrator", "auth.change_user", privileged=True)
    page = url("auth_user_change", user.pk)
    admin_client.post(page, form_data(admin_client, page, roles=[role], reason="on call for the audit week"))
    entry = AuditLog.objects.get(action=AuditAction.USER_ROLES_SET)

    listing = admin_client.get(url("audit_auditlog_changelist"), {"family": "USER"})
    detail = admin_client.get(url("audit_auditlog_change", entry.pk))

    assert entry.pk in {row.pk for row in listing.context["cl"].result_list}
    assert "USER.ROLES.SET" in listing.content.decode()
    assert detail.status_code == 200
    assert "on call for the audit week" in detail.content.decode()


def test_staff_whose_only_right_comes_from_a_role_can_open_the_role_admin(staff_client):
    """rbac.view_role given through a role (no Django permission, no group) opens the role changelist and a
    role's page read-only, and the admin index lists Roles."""
    client, staff = staff_client("rbac.view_role")
    role = make_role("readers", "rbac.view_role")
    assert not staff.user_permissions.exists() and not staff.groups.exists()

    changelist = client.get(url("rbac_role_changelist"))
    detail = client.get(url("rbac_role_change", role.pk))
    index = client.get(url("index"))

    assert changelist.status_code == 200
    assert role in changelist.context["cl"].result_list
    assert detail.status_code == 200
    assert 'name="name"' not in detail.content.decode() and 'name="reason"' not in detail.content.decode()
    assert url("rbac_role_changelist") in index.content.decode()


def test_staff_without_the_role_gets_403_from_the_role_admin(staff_client):
    """The same staff user without the role is refused the role changelist."""
    client, _ = staff_client()

    assert client.get(url("rbac_role_changelist")).status_code == 403


def test_viewer_of_groups_and_users_sees_roles_members_and_scope_read_only(staff_client, user):
    """A viewer (auth.view_group and auth.view_user through a role) sees a group's roles, members and scope and a
    user's roles as text, with no reason field."""
    client, _ = staff_client("auth.view_group", "auth.view_user")
    group = make_group("ops", roles=[make_role("readers", "rbac.view_role")], members=[user])
    GroupScope.objects.create(group=group, branch_scope={"allow": [4, 5]})
    user.rbac_roles.add(make_role("auditors"))

    group_page = client.get(url("auth_group_change", group.pk)).content.decode()
    user_page = client.get(url("auth_user_change", user.pk)).content.decode()

    assert "readers" in group_page and user.username in group_page and "4, 5" in group_page
    assert "auditors" in user_page
    assert 'name="reason"' not in group_page and 'name="reason"' not in user_page


def test_every_page_of_the_three_admins_renders_for_the_admin(admin_client, user):
    """Lists, add, change, delete and password pages of roles, groups and users all render (200)."""
    role = make_role("readers", "rbac.view_role")
    group = make_group("ops", roles=[role], members=[user])
    pages = [
        url("rbac_role_changelist"),
        url("rbac_role_add"),
        url("rbac_role_change", role.pk),
        url("rbac_role_delete", role.pk),
        url("auth_group_changelist"),
        url("auth_group_add"),
        url("auth_group_change", group.pk),
        url("auth_group_delete", group.pk),
        url("auth_user_changelist"),
        url("auth_user_add"),
        url("auth_user_change", user.pk),
        url("auth_user_password_change", user.pk),
        url("password_change"),
    ]

    assert {page: admin_client.get(page).status_code for page in pages} == dict.fromkeys(pages, 200)
