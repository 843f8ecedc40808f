"""RoleBackend: has_perm and get_all_permissions see the permissions of a user's roles, held directly or through a
group, for active users only, with a per-object cache that forget_role_permissions clears."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission

from rbac.backends import RoleBackend, forget_role_permissions, role_permissions
from rbac.models import Role
from tests.factories.users import UserFactory

User = get_user_model()
VIEW_LOG = "audit.view_auditlog"
VIEW_SEAL = "audit.view_seal"


def _perm(code: str) -> Permission:
    app_label, codename = code.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _role(name: str, *codes: str) -> Role:
    role = Role.objects.create(name=name)
    role.permissions.set([_perm(code) for code in codes])
    return role


def _fresh(user):
    return User.objects.get(pk=user.pk)


@pytest.mark.django_db
def test_has_perm_through_a_direct_role(user):
    """A role given to the user directly grants its permissions; others stay refused."""
    _role("reviewer", VIEW_LOG).users.add(user)

    user = _fresh(user)
    assert user.has_perm(VIEW_LOG)
    assert not user.has_perm(VIEW_SEAL)
    assert user.get_all_permissions() == {VIEW_LOG}


@pytest.mark.django_db
def test_has_perm_through_a_groups_role(user):
    """A role given to a group grants its permissions to the group's members, and only to them."""
    group = Group.objects.create(name="Reviewers")
    group.user_set.add(user)
    _role("reviewer", VIEW_LOG, VIEW_SEAL).groups.add(group)
    outsider = UserFactory()

    user = _fresh(user)
    assert user.has_perm(VIEW_LOG) and user.has_perm(VIEW_SEAL)
    assert user.get_all_permissions() == {VIEW_LOG, VIEW_SEAL}
    assert not outsider.has_perm(VIEW_LOG)
    assert outsider.get_all_permissions() == set()


@pytest.mark.django_db
def test_role_permissions_unites_direct_and_group_roles_without_duplicates(user):
    """role_permissions is the union of every role the user holds, directly or through groups, as app.codename."""
    group = Group.objects.create(name="Reviewers")
    group.user_set.add(user)
    _role("direct", VIEW_LOG).users.add(user)
    _role("through group", VIEW_LOG, VIEW_SEAL).groups.add(group)
    _role("not held", "rbac.add_role")

    assert role_permissions(_fresh(user)) == {VIEW_LOG, VIEW_SEAL}


@pytest.mark.django_db
def test_get_all_permissions_adds_roles_to_djangos_own_permissions(user):
    """Permissions given the Django way (user or group permissions) and through roles are reported together."""
    user.user_permissions.add(_perm("auth.view_user"))
    _role("reviewer", VIEW_LOG).users.add(user)

    assert _fresh(user).get_all_permissions() == {"auth.view_user", VIEW_LOG}


@pytest.mark.django_db
def test_inactive_user_has_no_role_permissions(user):
    """A deactivated user gets nothing from roles, neither direct nor through a group."""
    group = Group.objects.create(name="Reviewers")
    group.user_set.add(user)
    _role("direct", VIEW_LOG).users.add(user)
    _role("through group", VIEW_SEAL).groups.add(group)
    User.objects.filter(pk=user.pk).update(is_active=False)

    user = _fresh(user)
    assert not user.has_perm(VIEW_LOG)
    assert not user.has_perm(VIEW_SEAL)
    assert user.get_all_permissions() == set()
    assert role_permissions(user) == set()


@pytest.mark.django_db
def test_anonymous_user_has_no_role_permissions():
    """The anonymous user holds no role and is refused."""
    anonymous = AnonymousUser()

    assert role_permissions(anonymous) == set()
    assert not RoleBackend().has_perm(anonymous, VIEW_LOG)


@pytest.mark.django_db
def test_removed_direct_role_no_longer_grants_to_a_fresh_user_object(user):
    """Once the role is taken away, a freshly loaded user no longer has its permissions."""
    role = _role("reviewer", VIEW_LOG)
    role.users.add(user)
    assert _fresh(user).has_perm(VIEW_LOG)

    role.users.remove(user)

    assert not _fresh(user).has_perm(VIEW_LOG)


@pytest.mark.django_db
def test_leaving_the_group_or_group_losing_the_role_removes_the_permission(user):
    """A group's role stops granting when the user leaves the group, and when the role is taken from the group."""
    group = Group.objects.create(name="Reviewers")
    role = _role("reviewer", VIEW_LOG)
    role.groups.add(group)
    group.user_set.add(user)
    assert _fresh(user).has_perm(VIEW_LOG)

    group.user_set.remove(user)
    assert not _fresh(user).has_perm(VIEW_LOG)

    group.user_set.add(user)
    role.groups.remove(group)
    assert not _fresh(user).has_perm(VIEW_LOG)


@pytest.mark.django_db
def test_permission_removed_from_the_role_is_no_longer_granted(user):
    """Changing a role's permissions changes what its holders have (on a fresh user object)."""
    role = _role("reviewer", VIEW_LOG, VIEW_SEAL)
    role.users.add(user)

    role.permissions.remove(_perm(VIEW_SEAL))

    assert _fresh(user).get_all_permissions() == {VIEW_LOG}


@pytest.mark.django_db
def test_role_permissions_are_cached_on_the_user_object_until_forgotten(user):
    """The same user object keeps its cached role permissions after the role goes; forget_role_permissions drops
    that cache (and Django's), after which has_perm sees the change."""
    role = _role("reviewer", VIEW_LOG)
    role.users.add(user)
    user = _fresh(user)
    assert user.has_perm(VIEW_LOG)

    role.users.remove(user)
    assert user.has_perm(VIEW_LOG), "still cached on this object"

    forget_role_permissions(user)

    assert not user.has_perm(VIEW_LOG)
    assert user.get_all_permissions() == set()


@pytest.mark.django_db
def test_forget_role_permissions_also_drops_djangos_permission_caches(user):
    """forget_role_permissions clears ModelBackend's caches too, so a removed user permission is seen at once."""
    user.user_permissions.add(_perm("auth.view_user"))
    user = _fresh(user)
    assert user.has_perm("auth.view_user")
    user.user_permissions.clear()
    assert user.has_perm("auth.view_user"), "still cached on this object"

    forget_role_permissions(user)

    assert not user.has_perm("auth.view_user")


@pytest.mark.django_db
def test_forget_role_permissions_on_an_object_without_cache_does_nothing(user):
    """Forgetting on a user whose permissions were never read is harmless."""
    forget_role_permissions(user)

    assert role_permissions(user) == set()


@pytest.mark.django_db
def test_superuser_has_every_permission_with_or_without_roles(user):
    """Superusers are unaffected by roles: every permission, with no role, and after a role is removed."""
    superuser = UserFactory(is_superuser=True)
    role = _role("reviewer", VIEW_LOG)
    assert superuser.has_perm("rbac.delete_role")

    role.users.add(superuser)
    role.users.remove(superuser)

    superuser = _fresh(superuser)
    assert superuser.has_perm(VIEW_LOG)
    assert superuser.has_perm("rbac.delete_role")
    assert superuser.get_all_permissions() == {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }


@pytest.mark.django_db
def test_roles_give_no_object_permissions(user):
    """Roles grant model-wide permissions only: asked about an object, RoleBackend grants nothing."""
    role = _role("reviewer", VIEW_LOG)
    role.users.add(user)
    backend = RoleBackend()

    assert backend.has_perm(_fresh(user), VIEW_LOG)
    assert not backend.has_perm(_fresh(user), VIEW_LOG, obj=role)
    assert backend.get_all_permissions(_fresh(user), obj=role) == set()


@pytest.mark.django_db
def test_role_backend_authenticates_nobody(user, password):
    """RoleBackend only answers permission questions; logging in is ModelBackend's job."""
    assert RoleBackend().authenticate(None, username=user.username, password=password) is None
