"""The rbac API: /api/rbac/roles, /api/rbac/groups and /api/rbac/users/<id>/roles.

Every change goes through rbac.services, so each call leaves exactly one audit entry: the change with its diff, or
the refusal. Callers authenticate with HTTP Basic, as real clients do, so each request loads a fresh user and its
permissions go through the authentication backends (RoleBackend included).
"""

import base64
import re
from collections.abc import Iterable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.models import AuditLog
from rbac.models import GroupScope, Role
from rbac.services import resolve_permissions
from tests.factories.users import PASSWORD, UserFactory

ROLES_URL = "/api/rbac/roles"
GROUPS_URL = "/api/rbac/groups"
SUPERUSER_SNAPSHOT = {"perms": ["*"], "superuser": True}


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers --------------------------------------------------------------------------------------------------------


def role_url(role: Role) -> str:
    return f"{ROLES_URL}/{role.pk}"


def group_url(group: Group) -> str:
    return f"{GROUPS_URL}/{group.pk}"


def user_roles_url(user: User) -> str:
    return f"/api/rbac/users/{user.pk}/roles"


def login(client: APIClient, user: User) -> APIClient:
    token = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode("ascii")
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def make_role(name: str, *codes: str, privileged: bool = False, users: Iterable[User] = ()) -> Role:
    """A role made directly (no entry), so that only the call under test writes to the audit trail."""
    role = Role.objects.create(name=name, privileged=privileged)
    role.permissions.set(resolve_permissions(codes))
    role.users.set(users)
    return role


def make_group(name: str, *, roles: Iterable[Role] = (), members: Iterable[User] = (), allow=()) -> Group:
    group = Group.objects.create(name=name)
    group.rbac_roles.set(roles)
    group.user_set.set(members)
    GroupScope.objects.create(group=group, branch_scope={"allow": list(allow)})
    return group


def user_with(*codes: str) -> User:
    """A user who holds ``codes`` through a role of their own (RoleBackend), not through Django's permissions."""
    user = UserFactory()
    make_role(f"rights of {user.username}", *codes, users=[user])
    return user


def last_entry_id() -> int:
    return AuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0


def entries_after(mark: int) -> list[AuditLog]:
    return list(AuditLog.objects.filter(id__gt=mark).order_by("id"))


def only_entry_after(mark: int) -> AuditLog:
    entries = entries_after(mark)
    assert len(entries) == 1, [(entry.action, entry.outcome) for entry in entries]
    return entries[0]


def role_codes(role: Role) -> set[str]:
    return {f"{perm.content_type.app_label}.{perm.codename}" for perm in role.permissions.all()}


def assert_bad_request_naming(response: Any, field: str) -> None:
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid"
    # A list item's error names its position too: "permissions[0]: Not a valid string."
    assert re.match(rf"{field}(\[\d+\])?: ", body["message"]), body
    assert field in body["errors"]


@pytest.fixture
def superuser(db) -> User:
    return UserFactory(is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client(api_client: APIClient, superuser: User) -> APIClient:
    return login(api_client, superuser)


# --- anonymous ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", ROLES_URL),
        ("post", ROLES_URL),
        ("get", f"{ROLES_URL}/1"),
        ("patch", f"{ROLES_URL}/1"),
        ("delete", f"{ROLES_URL}/1"),
        ("put", f"{ROLES_URL}/1/permissions"),
        ("get", GROUPS_URL),
        ("post", GROUPS_URL),
        ("get", f"{GROUPS_URL}/1"),
        ("patch", f"{GROUPS_URL}/1"),
        ("delete", f"{GROUPS_URL}/1"),
        ("put", f"{GROUPS_URL}/1/members"),
        ("put", f"{GROUPS_URL}/1/scope"),
        ("put", "/api/rbac/users/1/roles"),
    ],
)
def test_anonymous_request_gets_401(db, api_client, method, url):
    """Every rbac endpoint refuses an anonymous request with 401 and a Basic challenge, and records nothing."""
    mark = last_entry_id()

    response = getattr(api_client, method)(url, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert entries_after(mark) == []


# --- roles: reads ---------------------------------------------------------------------------------------------------


def test_role_list_shows_each_role_with_its_permission_codes(db, api_client):
    """GET /roles, for a holder of rbac.view_role, lists every role with id, name, description, privileged flag,
    permission codes and timestamps."""
    reader = user_with("rbac.view_role")
    role = make_role("auditors", "audit.view_auditlog", "audit.view_seal", privileged=True)

    response = login(api_client, reader).get(ROLES_URL)

    assert response.status_code == 200
    listed = {item["name"]: item for item in response.json()}
    assert set(listed) == {"auditors", f"rights of {reader.username}"}
    assert listed["auditors"] == {
        "id": role.pk,
        "name": "auditors",
        "description": "",
        "privileged": True,
        "permissions": ["audit.view_auditlog", "audit.view_seal"],
        "created_at": listed["auditors"]["created_at"],
        "updated_at": listed["auditors"]["updated_at"],
    }
    assert listed["auditors"]["created_at"] and listed["auditors"]["updated_at"]


def test_role_detail_shows_the_role(db, api_client):
    """GET /roles/<id> returns that role."""
    reader = user_with("rbac.view_role")
    role = make_role("auditors", "audit.view_auditlog")

    response = login(api_client, reader).get(role_url(role))

    assert response.status_code == 200
    assert response.json()["id"] == role.pk
    assert response.json()["permissions"] == ["audit.view_auditlog"]


def test_role_detail_of_missing_role_is_404(db, admin_client):
    """GET /roles/<id> of an id that does not exist is a 404."""
    assert admin_client.get(f"{ROLES_URL}/987654").status_code == 404


@pytest.mark.parametrize("detail", [False, True], ids=["list", "detail"])
def test_role_read_without_view_role_is_403_and_one_denied_entry(db, api_client, detail):
    """A user without rbac.view_role gets 403 on GET /roles and /roles/<id>; the refusal is one ACCESS.DENIED
    entry on Role."""
    role = make_role("auditors")
    user = user_with("auth.view_group")
    mark = last_entry_id()

    response = login(api_client, user).get(role_url(role) if detail else ROLES_URL)

    assert response.status_code == 403
    assert "rbac.view_role" in response.json()["message"]
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.outcome, entry.actor) == (
        AuditAction.ACCESS_DENIED,
        "Role",
        AuditLog.Outcome.DENIED,
        user,
    )
    assert entry.meta["method"] == "GET"


def test_role_list_runs_the_same_number_of_queries_for_3_and_30_roles(db, api_client):
    """Listing 30 roles (with permissions) takes as many queries as listing 3: no query per role."""
    reader = user_with("rbac.view_role")
    client = login(api_client, reader)
    codes = ("audit.view_auditlog", "audit.view_seal", "auth.view_group")
    for n in range(2):
        make_role(f"role {n}", *codes)
    # The first request fills caches (content types) that the measured requests should not count.
    client.get(ROLES_URL)

    with CaptureQueriesContext(connection) as few:
        assert len(client.get(ROLES_URL).json()) == 3
    for n in range(2, 29):
        make_role(f"role {n}", *codes)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(ROLES_URL).json()) == 30

    assert len(many) == len(few)


# --- roles: create --------------------------------------------------------------------------------------------------


def test_create_role_creates_it_and_records_role_create(db, admin_client, superuser):
    """POST /roles creates the role with its permissions; one ROLE.CREATE entry holds the diff from nothing, the
    actor's perms snapshot and the reason."""
    mark = last_entry_id()

    response = admin_client.post(
        ROLES_URL,
        {
            "name": "auditors",
            "description": "Read the trail",
            "privileged": True,
            "permissions": ["audit.view_seal", "audit.view_auditlog"],
            "reason": "ticket 12",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    role = Role.objects.get(name="auditors")
    assert response.json()["id"] == role.pk
    assert response.json()["permissions"] == ["audit.view_auditlog", "audit.view_seal"]
    assert role.privileged and role.description == "Read the trail"
    assert role_codes(role) == {"audit.view_auditlog", "audit.view_seal"}
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.ROLE_CREATE,
        "Role",
        str(role.pk),
        AuditLog.Outcome.SUCCESS,
    )
    assert entry.actor == superuser
    assert entry.changes["name"] == {"before": None, "after": "auditors"}
    assert entry.changes["privileged"] == {"before": None, "after": True}
    assert entry.changes["permissions"] == {
        "before": None,
        "after": ["audit.view_auditlog", "audit.view_seal"],
        "added": ["audit.view_auditlog", "audit.view_seal"],
        "removed": [],
    }
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "ticket 12"}


def test_create_role_by_role_holder_snapshots_their_permissions(db, api_client):
    """A user holding rbac.add_role through a role may create a role; the entry's perms_snapshot lists the
    permissions they held."""
    actor = user_with("rbac.add_role", "rbac.view_role")
    mark = last_entry_id()

    response = login(api_client, actor).post(ROLES_URL, {"name": "readers"}, format="json")

    assert response.status_code == 201, response.json()
    assert Role.objects.filter(name="readers").exists()
    entry = only_entry_after(mark)
    assert entry.action == AuditAction.ROLE_CREATE
    assert entry.perms_snapshot == {"perms": ["rbac.add_role", "rbac.view_role"]}
    assert entry.meta == {}


def test_create_role_without_add_role_is_403_one_denied_entry_and_no_role(db, api_client):
    """A user without rbac.add_role gets 403; the refusal is one denied ROLE.CREATE entry and no role exists."""
    actor = user_with("rbac.view_role")
    mark = last_entry_id()

    response = login(api_client, actor).post(ROLES_URL, {"name": "sneaky"}, format="json")

    assert response.status_code == 403
    assert "rbac.add_role" in response.json()["message"]
    assert not Role.objects.filter(name="sneaky").exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.outcome, entry.actor) == (
        AuditAction.ROLE_CREATE,
        "Role",
        AuditLog.Outcome.DENIED,
        actor,
    )


def test_create_privileged_role_with_permissions_without_reason_is_400_naming_reason(db, admin_client):
    """A privileged role with permissions needs a reason: without one, 400 naming "reason" and no role."""
    response = admin_client.post(
        ROLES_URL, {"name": "admins", "privileged": True, "permissions": ["rbac.add_role"]}, format="json"
    )

    assert_bad_request_naming(response, "reason")
    assert not Role.objects.filter(name="admins").exists()


def test_create_role_with_unknown_permission_is_400_naming_permissions(db, admin_client):
    """An unknown permission code is a 400 naming "permissions", and no role is created."""
    response = admin_client.post(
        ROLES_URL, {"name": "odd", "permissions": ["audit.view_auditlog", "audit.fly"]}, format="json"
    )

    assert_bad_request_naming(response, "permissions")
    assert "audit.fly" in response.json()["message"]
    assert not Role.objects.filter(name="odd").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "permissions": "audit.view_auditlog"}, "permissions"),
        ({"name": "x", "permissions": [["audit.view_auditlog"]]}, "permissions"),
        ({"name": "x", "privileged": "maybe"}, "privileged"),
    ],
)
def test_create_role_with_wrong_types_is_400_naming_the_field(db, admin_client, body, field):
    """A missing name or a value of the wrong type is a 400 naming the field, and nothing is recorded."""
    mark = last_entry_id()

    response = admin_client.post(ROLES_URL, body, format="json")

    assert_bad_request_naming(response, field)
    assert entries_after(mark) == []
    assert not Role.objects.exists()


def test_create_role_with_a_taken_name_is_400_naming_name(db, admin_client):
    """A name another role has is a 400 naming "name"."""
    make_role("auditors")

    response = admin_client.post(ROLES_URL, {"name": "auditors"}, format="json")

    assert_bad_request_naming(response, "name")
    assert Role.objects.filter(name="auditors").count() == 1


# --- roles: update --------------------------------------------------------------------------------------------------


def test_patch_role_changes_it_and_records_role_update(db, api_client):
    """PATCH /roles/<id> changes the given fields only; one ROLE.UPDATE entry holds exactly the changed fields and
    the actor's perms snapshot."""
    actor = user_with("rbac.change_role")
    role = make_role("auditors", "audit.view_auditlog")
    mark = last_entry_id()

    response = login(api_client, actor).patch(
        role_url(role), {"description": "Read the trail", "name": "trail readers"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "trail readers"
    role.refresh_from_db()
    assert (role.name, role.description, role.privileged) == ("trail readers", "Read the trail", False)
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.ROLE_UPDATE,
        "Role",
        str(role.pk),
        AuditLog.Outcome.SUCCESS,
    )
    assert entry.changes == {
        "description": {"before": "", "after": "Read the trail"},
        "name": {"before": "auditors", "after": "trail readers"},
    }
    assert entry.perms_snapshot == {"perms": ["rbac.change_role"]}


def test_patch_role_privileged_flag_with_reason_records_it(db, admin_client):
    """Making a role privileged with a reason works, and the reason lands in meta.reason."""
    role = make_role("auditors")
    mark = last_entry_id()

    response = admin_client.patch(role_url(role), {"privileged": True, "reason": "SOX scope"}, format="json")

    assert response.status_code == 200, response.json()
    role.refresh_from_db()
    assert role.privileged
    entry = only_entry_after(mark)
    assert entry.changes == {"privileged": {"before": False, "after": True}}
    assert entry.meta == {"reason": "SOX scope"}


@pytest.mark.parametrize("privileged_before", [False, True])
def test_patch_role_privileged_flag_without_reason_is_400_naming_reason(db, admin_client, privileged_before):
    """Setting or clearing the privileged flag without a reason is a 400 naming "reason"; the role is unchanged."""
    role = make_role("auditors", privileged=privileged_before)

    response = admin_client.patch(
        role_url(role), {"privileged": not privileged_before, "description": "x"}, format="json"
    )

    assert_bad_request_naming(response, "reason")
    role.refresh_from_db()
    assert (role.privileged, role.description) == (privileged_before, "")


def test_patch_role_without_change_role_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without rbac.change_role gets 403; one denied ROLE.UPDATE entry, and the role keeps its name."""
    actor = user_with("rbac.view_role")
    role = make_role("auditors")
    mark = last_entry_id()

    response = login(api_client, actor).patch(role_url(role), {"name": "hijacked"}, format="json")

    assert response.status_code == 403
    role.refresh_from_db()
    assert role.name == "auditors"
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.ROLE_UPDATE,
        "Role",
        str(role.pk),
        AuditLog.Outcome.DENIED,
    )


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("patch", "", {"name": "x"}),
        ("delete", "", {"reason": "x"}),
        ("put", "/permissions", {"permissions": []}),
    ],
)
def test_change_of_missing_role_is_404(db, admin_client, method, suffix, body):
    """PATCH, DELETE and PUT /permissions on a role id that does not exist are 404s."""
    response = getattr(admin_client, method)(f"{ROLES_URL}/987654{suffix}", body, format="json")

    assert response.status_code == 404


# --- roles: permissions ---------------------------------------------------------------------------------------------


def test_put_permissions_replaces_them_and_records_role_perm_replace(db, admin_client, superuser):
    """PUT /roles/<id>/permissions replaces the set; one ROLE.PERM.REPLACE entry lists what was added and removed."""
    role = make_role("auditors", "audit.view_auditlog", "audit.view_seal")
    mark = last_entry_id()

    response = admin_client.put(
        f"{role_url(role)}/permissions",
        {"permissions": ["audit.view_auditlog", "auth.view_group"], "reason": "needs groups"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["permissions"] == ["audit.view_auditlog", "auth.view_group"]
    assert role_codes(role) == {"audit.view_auditlog", "auth.view_group"}
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.ROLE_PERM_REPLACE,
        "Role",
        str(role.pk),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert entry.changes == {
        "permissions": {
            "before": ["audit.view_auditlog", "audit.view_seal"],
            "after": ["audit.view_auditlog", "auth.view_group"],
            "added": ["auth.view_group"],
            "removed": ["audit.view_seal"],
        }
    }
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "needs groups"}


def test_put_permissions_of_privileged_role_without_reason_is_400_naming_reason(db, admin_client):
    """Changing a privileged role's permissions needs a reason: without one, 400 naming "reason", no change."""
    role = make_role("admins", "rbac.view_role", privileged=True)

    response = admin_client.put(
        f"{role_url(role)}/permissions", {"permissions": ["rbac.view_role", "rbac.add_role"]}, format="json"
    )

    assert_bad_request_naming(response, "reason")
    assert role_codes(role) == {"rbac.view_role"}


@pytest.mark.parametrize(
    "permissions", [["audit.nope"], ["no_dot_here"], ["rbac.view_role", "ghost.view_role"]], ids=str
)
def test_put_unknown_permission_is_400_naming_permissions(db, admin_client, permissions):
    """A code that names no permission (or is not app_label.codename) is a 400 naming "permissions", no change."""
    role = make_role("auditors", "audit.view_auditlog")

    response = admin_client.put(f"{role_url(role)}/permissions", {"permissions": permissions}, format="json")

    assert_bad_request_naming(response, "permissions")
    assert role_codes(role) == {"audit.view_auditlog"}


def test_put_permissions_without_the_list_is_400_naming_permissions(db, admin_client):
    """The permissions list is required: a body without it is a 400 naming "permissions"."""
    role = make_role("auditors", "audit.view_auditlog")

    response = admin_client.put(f"{role_url(role)}/permissions", {"reason": "x"}, format="json")

    assert_bad_request_naming(response, "permissions")
    assert role_codes(role) == {"audit.view_auditlog"}


def test_put_permissions_without_change_role_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without rbac.change_role gets 403; one denied ROLE.PERM.REPLACE entry, permissions unchanged."""
    actor = user_with("rbac.view_role")
    role = make_role("auditors", "audit.view_auditlog")
    mark = last_entry_id()

    response = login(api_client, actor).put(f"{role_url(role)}/permissions", {"permissions": []}, format="json")

    assert response.status_code == 403
    assert role_codes(role) == {"audit.view_auditlog"}
    entry = only_entry_after(mark)
    assert (entry.action, entry.outcome, entry.actor) == (
        AuditAction.ROLE_PERM_REPLACE,
        AuditLog.Outcome.DENIED,
        actor,
    )


def test_put_permission_the_actor_lacks_is_403_one_denied_entry_and_no_change(db, api_client):
    """A role editor cannot hand out a permission they do not hold themselves: 403, one denied entry, no change."""
    actor = user_with("rbac.change_role")
    role = make_role("auditors")
    mark = last_entry_id()

    response = login(api_client, actor).put(
        f"{role_url(role)}/permissions", {"permissions": ["auth.delete_user"]}, format="json"
    )

    assert response.status_code == 403
    assert "auth.delete_user" in response.json()["message"]
    assert role_codes(role) == set()
    assert only_entry_after(mark).outcome == AuditLog.Outcome.DENIED


# --- roles: delete --------------------------------------------------------------------------------------------------


def test_delete_role_removes_it_and_records_the_full_snapshot(db, admin_client, superuser):
    """DELETE /roles/<id> is a 204, the row is gone, and one ROLE.DELETE entry keeps everything the role was (name,
    description, flag, permissions, users, groups) with the reason from the JSON body."""
    holder = UserFactory(username="alice")
    role = make_role("admins", "rbac.view_role", "rbac.add_role", privileged=True, users=[holder])
    make_group("ops", roles=[role])
    role_id = role.pk
    mark = last_entry_id()

    response = admin_client.delete(role_url(role), {"reason": "replaced by SSO"}, format="json")

    assert response.status_code == 204
    assert not Role.objects.filter(pk=role_id).exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.ROLE_DELETE,
        "Role",
        str(role_id),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert {field: change["before"] for field, change in entry.changes.items()} == {
        "name": "admins",
        "description": "",
        "privileged": True,
        "permissions": ["rbac.add_role", "rbac.view_role"],
        "users": ["alice"],
        "groups": ["ops"],
    }
    assert all(change["after"] is None for change in entry.changes.values())
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "replaced by SSO"}


def test_delete_role_takes_the_reason_from_the_query_string(db, admin_client):
    """Clients that cannot send a body with DELETE give the reason as ?reason=."""
    role = make_role("admins", privileged=True)
    mark = last_entry_id()

    response = admin_client.delete(f"{role_url(role)}?reason=cleanup")

    assert response.status_code == 204
    assert not Role.objects.filter(pk=role.pk).exists()
    assert only_entry_after(mark).meta == {"reason": "cleanup"}


def test_delete_privileged_role_without_reason_is_400_naming_reason(db, admin_client):
    """Deleting a privileged role needs a reason: without one, 400 naming "reason" and the role stays."""
    role = make_role("admins", privileged=True)

    response = admin_client.delete(role_url(role))

    assert_bad_request_naming(response, "reason")
    assert Role.objects.filter(pk=role.pk).exists()


def test_delete_role_without_delete_role_is_403_one_denied_entry_and_role_stays(db, api_client):
    """A user without rbac.delete_role gets 403; one denied ROLE.DELETE entry (no success entry) and the role stays."""
    actor = user_with("rbac.view_role", "rbac.change_role")
    role = make_role("auditors")
    mark = last_entry_id()

    response = login(api_client, actor).delete(role_url(role), {"reason": "x"}, format="json")

    assert response.status_code == 403
    assert Role.objects.filter(pk=role.pk).exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity_id, entry.outcome) == (
        AuditAction.ROLE_DELETE,
        str(role.pk),
        AuditLog.Outcome.DENIED,
    )


# --- users: roles ---------------------------------------------------------------------------------------------------


def test_put_user_roles_sets_them_and_records_user_roles_set(db, admin_client, superuser):
    """PUT /users/<id>/roles replaces the user's roles; one USER.ROLES.SET entry on the user lists what was added
    and removed, with the reason."""
    target = UserFactory(username="bob")
    old = make_role("old", users=[target])
    new = make_role("new")
    mark = last_entry_id()

    response = admin_client.put(user_roles_url(target), {"roles": [new.pk], "reason": "moved team"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {"id": target.pk, "username": "bob", "roles": [{"id": new.pk, "name": "new"}]}
    assert list(target.rbac_roles.all()) == [new]
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.USER_ROLES_SET,
        "User",
        str(target.pk),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert entry.changes == {"roles": {"before": ["old"], "after": ["new"], "added": ["new"], "removed": ["old"]}}
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "moved team"}
    assert old.users.count() == 0


def test_assign_role_held_through_a_role_is_enough(db, api_client):
    """A user holding rbac.assign_role only through a role of their own (RoleBackend) may set a user's roles."""
    actor = user_with("rbac.assign_role")
    assert not actor.user_permissions.exists() and not actor.groups.exists()
    target = UserFactory()
    role = make_role("readers")
    mark = last_entry_id()

    response = login(api_client, actor).put(user_roles_url(target), {"roles": [role.pk]}, format="json")

    assert response.status_code == 200, response.json()
    assert list(target.rbac_roles.all()) == [role]
    entry = only_entry_after(mark)
    assert (entry.action, entry.outcome) == (AuditAction.USER_ROLES_SET, AuditLog.Outcome.SUCCESS)
    assert entry.perms_snapshot == {"perms": ["rbac.assign_role"]}


def test_assign_role_held_through_a_groups_role_is_enough(db, api_client):
    """A user holding rbac.assign_role only through a role of one of their groups may set a user's roles."""
    actor = UserFactory()
    make_group("role admins", roles=[make_role("assigner", "rbac.assign_role")], members=[actor])
    target = UserFactory()
    role = make_role("readers")

    response = login(api_client, actor).put(user_roles_url(target), {"roles": [role.pk]}, format="json")

    assert response.status_code == 200, response.json()
    assert list(target.rbac_roles.all()) == [role]


def test_view_permission_held_through_a_groups_role_opens_the_group_list(db, api_client):
    """auth.view_group held only through a group's role is enough to list groups."""
    actor = UserFactory()
    make_group("readers", roles=[make_role("group reader", "auth.view_group")], members=[actor])

    response = login(api_client, actor).get(GROUPS_URL)

    assert response.status_code == 200
    assert "readers" in {item["name"] for item in response.json()}


@pytest.mark.parametrize("grant", [True, False], ids=["grant", "removal"])
def test_privileged_role_grant_or_removal_without_reason_is_400_naming_reason(db, admin_client, grant):
    """Granting or removing a privileged role without a reason is a 400 naming "reason"; the roles stay as they
    were."""
    target = UserFactory()
    admins = make_role("admins", privileged=True, users=[] if grant else [target])

    response = admin_client.put(user_roles_url(target), {"roles": [admins.pk] if grant else []}, format="json")

    assert_bad_request_naming(response, "reason")
    assert list(target.rbac_roles.all()) == ([] if grant else [admins])


def test_put_user_roles_without_assign_role_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without rbac.assign_role gets 403; one denied USER.ROLES.SET entry, and no role is given."""
    actor = user_with("rbac.view_role")
    role = make_role("readers")
    mark = last_entry_id()

    response = login(api_client, actor).put(user_roles_url(actor), {"roles": [role.pk]}, format="json")

    assert response.status_code == 403
    assert not role.users.exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.USER_ROLES_SET,
        "User",
        str(actor.pk),
        AuditLog.Outcome.DENIED,
    )


def test_granting_a_role_with_rights_the_actor_lacks_is_403(db, api_client):
    """An assigner cannot give a role carrying permissions they do not hold: 403, one denied entry, no change."""
    actor = user_with("rbac.assign_role")
    mighty = make_role("mighty", "auth.delete_user")
    target = UserFactory()
    mark = last_entry_id()

    response = login(api_client, actor).put(user_roles_url(target), {"roles": [mighty.pk]}, format="json")

    assert response.status_code == 403
    assert not target.rbac_roles.exists()
    assert only_entry_after(mark).outcome == AuditLog.Outcome.DENIED


@pytest.mark.parametrize("roles", [[987654], "1", [1.5], [None]], ids=["unknown-id", "string", "float", "null"])
def test_put_user_roles_with_bad_role_ids_is_400_naming_roles(db, admin_client, roles):
    """Unknown role ids and values that are not a list of ids are 400s naming "roles"."""
    target = UserFactory()

    response = admin_client.put(user_roles_url(target), {"roles": roles}, format="json")

    assert_bad_request_naming(response, "roles")
    assert not target.rbac_roles.exists()


def test_put_roles_of_missing_user_is_404(db, admin_client):
    """PUT /users/<id>/roles for a user id that does not exist is a 404."""
    response = admin_client.put("/api/rbac/users/987654/roles", {"roles": []}, format="json")

    assert response.status_code == 404


# --- groups: reads --------------------------------------------------------------------------------------------------


def test_group_list_shows_roles_members_and_scope(db, api_client):
    """GET /groups lists each group with its roles (id, name), members (id, username) and branch scope."""
    reader = user_with("auth.view_group")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    role = make_role("auditors")
    group = make_group("ops", roles=[role], members=[bob, alice], allow=[3, 1])

    response = login(api_client, reader).get(GROUPS_URL)

    assert response.status_code == 200
    listed = {item["id"]: item for item in response.json()}
    assert listed[group.pk] == {
        "id": group.pk,
        "name": "ops",
        "roles": [{"id": role.pk, "name": "auditors"}],
        "members": [{"id": alice.pk, "username": "alice"}, {"id": bob.pk, "username": "bob"}],
        "branch_scope": {"allow": [3, 1]},
    }


def test_group_without_scope_row_shows_null_scope(db, admin_client):
    """A group made outside the services (no scope row yet) shows branch_scope null."""
    group = Group.objects.create(name="legacy")

    response = admin_client.get(group_url(group))

    assert response.status_code == 200
    assert response.json()["branch_scope"] is None


@pytest.mark.parametrize("detail", [False, True], ids=["list", "detail"])
def test_group_read_without_view_group_is_403_and_one_denied_entry(db, api_client, detail):
    """A user without auth.view_group gets 403 on GET /groups and /groups/<id>; one ACCESS.DENIED entry on Group."""
    group = make_group("ops")
    user = user_with("rbac.view_role")
    mark = last_entry_id()

    response = login(api_client, user).get(group_url(group) if detail else GROUPS_URL)

    assert response.status_code == 403
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.outcome, entry.actor) == (
        AuditAction.ACCESS_DENIED,
        "Group",
        AuditLog.Outcome.DENIED,
        user,
    )


def test_group_detail_of_missing_group_is_404(db, admin_client):
    """GET /groups/<id> of an id that does not exist is a 404."""
    assert admin_client.get(f"{GROUPS_URL}/987654").status_code == 404


def test_group_list_runs_the_same_number_of_queries_for_3_and_30_groups(db, api_client):
    """Listing 30 groups (with roles, members and scope) takes as many queries as listing 3."""
    reader = user_with("auth.view_group")
    client = login(api_client, reader)
    role, member = make_role("auditors"), UserFactory()
    # Groups that migrate creates (the compliance officers') are listed too; top up to 3.
    existing = Group.objects.count()
    for n in range(3 - existing):
        make_group(f"group {n}", roles=[role], members=[member], allow=[n + 1])
    client.get(GROUPS_URL)

    with CaptureQueriesContext(connection) as few:
        assert len(client.get(GROUPS_URL).json()) == 3
    for n in range(3, 30):
        make_group(f"group {n}", roles=[role], members=[member], allow=[n + 1])
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(GROUPS_URL).json()) == 30

    assert len(many) == len(few)


# --- groups: create and update --------------------------------------------------------------------------------------


def test_create_group_creates_it_and_records_group_create(db, admin_client, superuser):
    """POST /groups creates the group with its roles and an empty scope; one GROUP.CREATE entry holds the diff,
    the actor's perms snapshot and the reason."""
    role = make_role("auditors")
    mark = last_entry_id()

    response = admin_client.post(GROUPS_URL, {"name": "ops", "roles": [role.pk], "reason": "new team"}, format="json")

    assert response.status_code == 201, response.json()
    group = Group.objects.get(name="ops")
    assert response.json() == {
        "id": group.pk,
        "name": "ops",
        "roles": [{"id": role.pk, "name": "auditors"}],
        "members": [],
        "branch_scope": {"allow": []},
    }
    assert list(group.rbac_roles.all()) == [role]
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.GROUP_CREATE,
        "Group",
        str(group.pk),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert entry.changes["name"] == {"before": None, "after": "ops"}
    assert entry.changes["roles"] == {"before": None, "after": ["auditors"], "added": ["auditors"], "removed": []}
    assert entry.changes["branch_scope"] == {"before": None, "after": {"allow": []}}
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "new team"}


def test_create_group_without_add_group_is_403_one_denied_entry_and_no_group(db, api_client):
    """A user without auth.add_group gets 403; one denied GROUP.CREATE entry, and no group exists."""
    actor = user_with("auth.view_group")
    mark = last_entry_id()

    response = login(api_client, actor).post(GROUPS_URL, {"name": "ops"}, format="json")

    assert response.status_code == 403
    assert not Group.objects.filter(name="ops").exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.outcome) == (
        AuditAction.GROUP_CREATE,
        "Group",
        AuditLog.Outcome.DENIED,
    )


def test_create_group_with_unknown_role_is_400_naming_roles(db, admin_client):
    """An unknown role id is a 400 naming "roles", and no group is created."""
    response = admin_client.post(GROUPS_URL, {"name": "ops", "roles": [987654]}, format="json")

    assert_bad_request_naming(response, "roles")
    assert not Group.objects.filter(name="ops").exists()


def test_patch_group_changes_it_and_records_group_update(db, api_client):
    """PATCH /groups/<id> renames and replaces the roles; one GROUP.UPDATE entry with the name change, the roles
    added and removed, the perms snapshot of an actor holding auth.change_group through a role, and the reason."""
    actor = user_with("auth.change_group")
    old, new = make_role("old"), make_role("new")
    group = make_group("ops", roles=[old])
    mark = last_entry_id()

    response = login(api_client, actor).patch(
        group_url(group), {"name": "operations", "roles": [new.pk], "reason": "reorg"}, format="json"
    )

    assert response.status_code == 200, response.json()
    group.refresh_from_db()
    assert group.name == "operations"
    assert list(group.rbac_roles.all()) == [new]
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_UPDATE,
        "Group",
        str(group.pk),
        AuditLog.Outcome.SUCCESS,
    )
    assert entry.changes == {
        "name": {"before": "ops", "after": "operations"},
        "roles": {"before": ["old"], "after": ["new"], "added": ["new"], "removed": ["old"]},
    }
    assert entry.perms_snapshot == {"perms": ["auth.change_group"]}
    assert entry.meta == {"reason": "reorg"}


def test_patch_group_granting_privileged_role_to_members_without_reason_is_400(db, admin_client):
    """Giving a group with members a privileged role needs a reason: 400 naming "reason", roles unchanged."""
    group = make_group("ops", members=[UserFactory()])
    admins = make_role("admins", privileged=True)

    response = admin_client.patch(group_url(group), {"roles": [admins.pk]}, format="json")

    assert_bad_request_naming(response, "reason")
    assert not group.rbac_roles.exists()


def test_patch_group_with_unknown_role_is_400_naming_roles(db, admin_client):
    """An unknown role id in PATCH is a 400 naming "roles"; the group keeps its roles."""
    role = make_role("auditors")
    group = make_group("ops", roles=[role])

    response = admin_client.patch(group_url(group), {"roles": [role.pk, 987654]}, format="json")

    assert_bad_request_naming(response, "roles")
    assert list(group.rbac_roles.all()) == [role]


def test_patch_group_without_change_group_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without auth.change_group gets 403; one denied GROUP.UPDATE entry, and the name stays."""
    actor = user_with("auth.view_group")
    group = make_group("ops")
    mark = last_entry_id()

    response = login(api_client, actor).patch(group_url(group), {"name": "mine"}, format="json")

    assert response.status_code == 403
    group.refresh_from_db()
    assert group.name == "ops"
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_UPDATE,
        str(group.pk),
        AuditLog.Outcome.DENIED,
    )


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("patch", "", {"name": "x"}),
        ("delete", "", {}),
        ("put", "/members", {"members": []}),
        ("put", "/scope", {"branch_scope": {"allow": []}}),
    ],
)
def test_change_of_missing_group_is_404(db, admin_client, method, suffix, body):
    """PATCH, DELETE, PUT /members and PUT /scope on a group id that does not exist are 404s."""
    response = getattr(admin_client, method)(f"{GROUPS_URL}/987654{suffix}", body, format="json")

    assert response.status_code == 404


# --- groups: members ------------------------------------------------------------------------------------------------


def test_put_members_replaces_them_and_records_group_members_set(db, admin_client, superuser):
    """PUT /groups/<id>/members replaces the membership; one GROUP.MEMBERS.SET entry lists who was added and
    removed, with the reason."""
    alice, bob, carol = (UserFactory(username=name) for name in ("alice", "bob", "carol"))
    group = make_group("ops", members=[alice, bob])
    mark = last_entry_id()

    response = admin_client.put(
        f"{group_url(group)}/members", {"members": [bob.pk, carol.pk], "reason": "rotation"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert [member["username"] for member in response.json()["members"]] == ["bob", "carol"]
    assert set(group.user_set.all()) == {bob, carol}
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.GROUP_MEMBERS_SET,
        "Group",
        str(group.pk),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert entry.changes == {
        "members": {
            "before": ["alice", "bob"],
            "after": ["bob", "carol"],
            "added": ["carol"],
            "removed": ["alice"],
        }
    }
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "rotation"}


@pytest.mark.parametrize("adding", [True, False], ids=["add", "remove"])
def test_members_of_a_privileged_group_without_reason_is_400_naming_reason(db, admin_client, adding):
    """Adding or removing a member of a group that carries a privileged role needs a reason: 400, no change."""
    alice, bob = UserFactory(), UserFactory()
    group = make_group("admins", roles=[make_role("admins", privileged=True)], members=[alice])

    response = admin_client.put(
        f"{group_url(group)}/members", {"members": [alice.pk, bob.pk] if adding else []}, format="json"
    )

    assert_bad_request_naming(response, "reason")
    assert list(group.user_set.all()) == [alice]


@pytest.mark.parametrize("members", [[987654], ["alice"], {"id": 1}], ids=["unknown-id", "username", "object"])
def test_put_members_with_bad_ids_is_400_naming_members(db, admin_client, members):
    """Unknown user ids and values that are not a list of ids are 400s naming "members"; membership unchanged."""
    alice = UserFactory(username="alice")
    group = make_group("ops", members=[alice])

    response = admin_client.put(f"{group_url(group)}/members", {"members": members}, format="json")

    assert_bad_request_naming(response, "members")
    assert list(group.user_set.all()) == [alice]


def test_put_members_without_change_group_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without auth.change_group cannot join a group: 403, one denied GROUP.MEMBERS.SET entry, no change."""
    actor = user_with("auth.view_group")
    group = make_group("ops")
    mark = last_entry_id()

    response = login(api_client, actor).put(f"{group_url(group)}/members", {"members": [actor.pk]}, format="json")

    assert response.status_code == 403
    assert not group.user_set.exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_MEMBERS_SET,
        str(group.pk),
        AuditLog.Outcome.DENIED,
    )


# --- groups: scope --------------------------------------------------------------------------------------------------


def test_put_scope_replaces_it_and_records_group_scope_set(db, api_client):
    """PUT /groups/<id>/scope replaces the branch scope; one GROUP.SCOPE.SET entry with before and after."""
    actor = user_with("auth.change_group")
    group = make_group("ops", allow=[1])
    mark = last_entry_id()

    response = login(api_client, actor).put(
        f"{group_url(group)}/scope", {"branch_scope": {"allow": [1, 2]}, "reason": "branch 2 opens"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["branch_scope"] == {"allow": [1, 2]}
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [1, 2]}
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_SCOPE_SET,
        "Group",
        str(group.pk),
        AuditLog.Outcome.SUCCESS,
    )
    assert entry.changes == {"branch_scope": {"before": {"allow": [1]}, "after": {"allow": [1, 2]}}}
    assert entry.perms_snapshot == {"perms": ["auth.change_group"]}
    assert entry.meta == {"reason": "branch 2 opens"}


def test_put_scope_without_reason_is_accepted(db, admin_client):
    """A scope change needs no reason."""
    group = make_group("ops")

    response = admin_client.put(f"{group_url(group)}/scope", {"branch_scope": {"allow": [4]}}, format="json")

    assert response.status_code == 200, response.json()
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [4]}


@pytest.mark.parametrize(
    "scope",
    [
        {"allow": [1, 1]},
        {"allow": [0]},
        {"allow": [-2]},
        {"allow": ["1"]},
        {"allow": [True]},
        {"allow": [1.5]},
        {"allow": [None]},
        {"allow": 1},
        {"allow": {"1": True}},
        {"deny": [1]},
        {"allow": [1], "deny": [2]},
        {},
        [1, 2],
        "1,2",
        None,
    ],
    ids=str,
)
def test_put_bad_scope_is_400_naming_branch_scope(db, admin_client, scope):
    """Anything but {"allow": [unique positive integers]} is a 400 naming "branch_scope"; the scope is unchanged."""
    group = make_group("ops", allow=[1])

    response = admin_client.put(f"{group_url(group)}/scope", {"branch_scope": scope}, format="json")

    assert_bad_request_naming(response, "branch_scope")
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [1]}


def test_put_scope_without_branch_scope_is_400_naming_branch_scope(db, admin_client):
    """The branch_scope key is required."""
    group = make_group("ops", allow=[1])

    response = admin_client.put(f"{group_url(group)}/scope", {"reason": "x"}, format="json")

    assert_bad_request_naming(response, "branch_scope")


def test_put_scope_without_change_group_is_403_one_denied_entry_and_no_change(db, api_client):
    """A user without auth.change_group gets 403; one denied GROUP.SCOPE.SET entry, and the scope stays."""
    actor = user_with("auth.view_group")
    group = make_group("ops", allow=[1])
    mark = last_entry_id()

    response = login(api_client, actor).put(
        f"{group_url(group)}/scope", {"branch_scope": {"allow": [9]}}, format="json"
    )

    assert response.status_code == 403
    assert GroupScope.objects.get(group=group).branch_scope == {"allow": [1]}
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_SCOPE_SET,
        str(group.pk),
        AuditLog.Outcome.DENIED,
    )


# --- groups: delete -------------------------------------------------------------------------------------------------


def test_delete_group_removes_it_and_records_the_full_snapshot(db, admin_client, superuser):
    """DELETE /groups/<id> is a 204, the row is gone, and one GROUP.DELETE entry keeps the name, roles, members and
    scope the group had, with the reason."""
    alice = UserFactory(username="alice")
    group = make_group("admins", roles=[make_role("admins", privileged=True)], members=[alice], allow=[2, 5])
    group_id = group.pk
    mark = last_entry_id()

    response = admin_client.delete(group_url(group), {"reason": "team dissolved"}, format="json")

    assert response.status_code == 204
    assert not Group.objects.filter(pk=group_id).exists()
    assert not GroupScope.objects.filter(group_id=group_id).exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome, entry.actor) == (
        AuditAction.GROUP_DELETE,
        "Group",
        str(group_id),
        AuditLog.Outcome.SUCCESS,
        superuser,
    )
    assert {field: change["before"] for field, change in entry.changes.items()} == {
        "name": "admins",
        "roles": ["admins"],
        "members": ["alice"],
        "branch_scope": {"allow": [2, 5]},
    }
    assert all(change["after"] is None for change in entry.changes.values())
    assert entry.perms_snapshot == SUPERUSER_SNAPSHOT
    assert entry.meta == {"reason": "team dissolved"}


def test_delete_group_with_privileged_role_and_members_without_reason_is_400(db, admin_client):
    """Deleting a group that gives its members a privileged role needs a reason: 400 naming "reason", it stays."""
    group = make_group("admins", roles=[make_role("admins", privileged=True)], members=[UserFactory()])

    response = admin_client.delete(group_url(group))

    assert_bad_request_naming(response, "reason")
    assert Group.objects.filter(pk=group.pk).exists()


def test_delete_group_without_delete_group_is_403_one_denied_entry_and_group_stays(db, api_client):
    """A user without auth.delete_group gets 403; one denied GROUP.DELETE entry and the group stays."""
    actor = user_with("auth.view_group", "auth.change_group")
    group = make_group("ops")
    mark = last_entry_id()

    response = login(api_client, actor).delete(group_url(group))

    assert response.status_code == 403
    assert Group.objects.filter(pk=group.pk).exists()
    entry = only_entry_after(mark)
    assert (entry.action, entry.entity_id, entry.outcome) == (
        AuditAction.GROUP_DELETE,
        str(group.pk),
        AuditLog.Outcome.DENIED,
    )
