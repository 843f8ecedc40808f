"""The per-repository right to force-release locks: given and taken away only through the audited service."""

from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from audit.actions import AuditAction
from audit.models import AuditLog
from locks import services
from locks.models import Repository
from tests.factories.users import UserFactory


@pytest.fixture
def repository(db) -> Repository:
    return Repository.objects.create(slug="game-assets", name="Game assets")


@pytest.fixture
def admin_user(db):
    return UserFactory(is_superuser=True, is_staff=True)


def test_grant_gives_the_right_on_that_repository_only_and_is_recorded(repository, admin_user, user):
    """A grant lets the user force-release in this repository (not in another) and records REPOSITORY.PERM.GRANT
    with the holders before and after and the reason."""
    other = Repository.objects.create(slug="handbook", name="Handbook")

    services.repository_force_unlock_grant(
        actor=admin_user, repository_id=repository.pk, user=user, reason="covers the release weekend"
    )

    assert services.can_force_unlock(user, repository)
    assert not services.can_force_unlock(user, other)
    entry = AuditLog.objects.get()
    assert (entry.action, entry.outcome, entry.entity, entry.entity_id) == (
        AuditAction.REPOSITORY_PERM_GRANT,
        "success",
        "Repository",
        str(repository.pk),
    )
    assert entry.changes == {
        "force_unlock": {"before": [], "after": [user.username], "added": [user.username], "removed": []}
    }
    assert entry.meta == {"reason": "covers the release weekend"}


def test_revoke_takes_the_right_away_and_is_recorded(repository, admin_user, user):
    """A revoke removes the right and records REPOSITORY.PERM.REVOKE with the holder removed."""
    services.repository_force_unlock_grant(actor=admin_user, repository_id=repository.pk, user=user, reason="cover")

    services.repository_force_unlock_revoke(actor=admin_user, repository_id=repository.pk, user=user, reason="back")

    assert not services.can_force_unlock(type(user).objects.get(pk=user.pk), repository)
    entry = AuditLog.objects.order_by("-id").first()
    assert entry.action == AuditAction.REPOSITORY_PERM_REVOKE
    assert entry.changes["force_unlock"]["removed"] == [user.username]


def test_a_grant_without_a_reason_is_refused(repository, admin_user, user):
    """No reason, no right: a validation error on "reason", and the user cannot force-release."""
    with pytest.raises(ValidationError) as caught:
        services.repository_force_unlock_grant(actor=admin_user, repository_id=repository.pk, user=user, reason=" ")
    assert "reason" in caught.value.message_dict
    assert not services.can_force_unlock(user, repository)


def test_a_grant_by_someone_without_the_right_is_denied_and_recorded(repository, user, other_user):
    """Only those who may hand out rights (rbac.assign_role) grant this one; others are refused and recorded."""
    with pytest.raises(PermissionDenied):
        services.repository_force_unlock_grant(actor=other_user, repository_id=repository.pk, user=user, reason="x")
    assert not services.can_force_unlock(user, repository)
    entry = AuditLog.objects.get()
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.REPOSITORY_PERM_GRANT, "denied", other_user.pk)


def test_the_command_grants_through_the_service(repository, admin_user, user):
    """`manage.py locks_right grant` gives the right and leaves the same entry as the service."""
    out = StringIO()
    call_command(
        "locks_right",
        "grant",
        repository.slug,
        user.username,
        "--reason",
        "on call",
        "--as",
        admin_user.username,
        stdout=out,
    )
    assert "may now force-release" in out.getvalue()
    assert services.can_force_unlock(user, repository)
    assert AuditLog.objects.get().action == AuditAction.REPOSITORY_PERM_GRANT


def test_the_command_names_an_unknown_repository(admin_user, user):
    """An unknown repository is a one-line error."""
    with pytest.raises(CommandError, match="no such repository"):
        call_command("locks_right", "grant", "nope", user.username, "--reason", "x", "--as", admin_user.username)
