"""Fixtures shared by the lock tests: the default roles, a repository, two members, a lock administrator, a lock."""

import pytest

from locks import services
from locks.models import FileLock, Repository
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.factories.users import UserFactory


@pytest.fixture
def roles(db) -> dict[str, Role]:
    bootstrap_default_roles()
    return {role.name: role for role in Role.objects.all()}


@pytest.fixture
def repository(db) -> Repository:
    return Repository.objects.create(slug="game-art", name="Game art")


@pytest.fixture
def owner(user, roles):
    """A member: may check files out and in."""
    roles["member"].users.add(user)
    return user


@pytest.fixture
def rival(other_user, roles):
    """Another member."""
    roles["member"].users.add(other_user)
    return other_user


@pytest.fixture
def lock_admin(roles):
    """Holds locks.force_unlock globally, through the "lock administrator" role."""
    admin = UserFactory(username="lockadmin")
    roles["lock administrator"].users.add(admin)
    return admin


@pytest.fixture
def lock(owner, repository) -> FileLock:
    """A lock held by ``owner``; its LOCK.CREATE entry exists."""
    return services.checkout(actor=owner, repository=repository, path="design/model.psd", ref_name="refs/heads/main")
