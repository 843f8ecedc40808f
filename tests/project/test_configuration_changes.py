"""Changes to the console's configuration made in the admin (redaction profiles, repositories, API tokens) are
audited like every other change: a before/after diff, the actor, refusals recorded, and never a token."""

import json
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db.models import ProtectedError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from audit.actions import COMPLIANCE, AuditAction
from audit.foia_models import RedactionProfile
from audit.models import AuditLog
from audit.redaction_profiles import redaction_profile_create, redaction_profile_delete
from audit.tokens import token_create
from locks import services as lock_services
from locks.models import Repository
from tests.factories.users import UserFactory

RULES = [{"field": "ip_address", "exemption": "(b)(6)", "staff_only": False}]


@pytest.fixture(autouse=True)
def _hosts(settings):
    settings.ALLOWED_HOSTS = ["testserver"]


def entries(action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=action).order_by("id"))


def test_every_new_code_answers_a_requirement():
    for code in (
        AuditAction.REDACTION_PROFILE_CREATE,
        AuditAction.REDACTION_PROFILE_UPDATE,
        AuditAction.REDACTION_PROFILE_DELETE,
        AuditAction.REPOSITORY_CREATE,
        AuditAction.REPOSITORY_UPDATE,
        AuditAction.REPOSITORY_DELETE,
        AuditAction.USER_TOKEN_CREATE,
        AuditAction.USER_TOKEN_DELETE,
    ):
        assert COMPLIANCE[code], code


# --- redaction profiles --------------------------------------------------------------------------------------------


def test_admin_add_change_and_delete_of_a_redaction_profile_are_recorded(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:audit_redactionprofile_add"),
        {"name": "press", "description": "For the public", "rules": json.dumps(RULES)},
    )
    assert response.status_code == 302, response.content
    profile = RedactionProfile.objects.get(name="press")
    [created] = entries(AuditAction.REDACTION_PROFILE_CREATE)
    assert (created.actor_id, created.entity, created.entity_id) == (admin_user.pk, "RedactionProfile", str(profile.pk))
    assert created.changes["rules"]["after"] == RULES

    response = admin_client.post(
        reverse("admin:audit_redactionprofile_change", args=[profile.pk]),
        {"name": "press", "description": "For the public", "rules": "[]"},
    )
    assert response.status_code == 302, response.content
    [updated] = entries(AuditAction.REDACTION_PROFILE_UPDATE)
    assert updated.changes == {"rules": {"before": RULES, "after": []}}

    response = admin_client.post(reverse("admin:audit_redactionprofile_delete", args=[profile.pk]), {"post": "yes"})
    assert response.status_code == 302, response.content
    assert not RedactionProfile.objects.filter(pk=profile.pk).exists()
    [deleted] = entries(AuditAction.REDACTION_PROFILE_DELETE)
    assert deleted.changes["name"] == {"before": "press", "after": None}


def test_redaction_profile_change_without_the_right_is_refused_and_recorded_as_denied(user):
    with pytest.raises(PermissionDenied):
        redaction_profile_create(actor=user, name="sneaky", rules=[])
    assert not RedactionProfile.objects.filter(name="sneaky").exists()
    [denied] = entries(AuditAction.REDACTION_PROFILE_CREATE)
    assert (denied.outcome, denied.actor_id) == ("denied", user.pk)


def test_a_profile_in_use_is_not_deleted_and_the_attempt_is_recorded(db):
    from audit.foia import foia_request_create

    profile = redaction_profile_create(actor=None, name="press", rules=RULES)
    foia_request_create(actor=None, requester="A. Requester", description="All", redaction_profile=profile)
    with pytest.raises(ProtectedError):
        redaction_profile_delete(actor=None, profile_id=profile.pk)
    assert RedactionProfile.objects.filter(pk=profile.pk).exists()
    assert [entry.outcome for entry in entries(AuditAction.REDACTION_PROFILE_DELETE)] == ["failure"]


# --- repositories --------------------------------------------------------------------------------------------------


def test_admin_add_rename_and_delete_of_a_repository_are_recorded(admin_client, admin_user):
    response = admin_client.post(reverse("admin:locks_repository_add"), {"slug": "handbook", "name": "Handbook"})
    assert response.status_code == 302, response.content
    repository = Repository.objects.get(slug="handbook")
    [created] = entries(AuditAction.REPOSITORY_CREATE)
    assert created.changes == {
        "slug": {"before": None, "after": "handbook"},
        "name": {"before": None, "after": "Handbook"},
    }
    assert created.actor_id == admin_user.pk

    response = admin_client.post(
        reverse("admin:locks_repository_change", args=[repository.pk]), {"name": "Employee handbook"}
    )
    assert response.status_code == 302, response.content
    [renamed] = entries(AuditAction.REPOSITORY_UPDATE)
    assert renamed.changes == {"name": {"before": "Handbook", "after": "Employee handbook"}}

    response = admin_client.post(reverse("admin:locks_repository_delete", args=[repository.pk]), {"post": "yes"})
    assert response.status_code == 302, response.content
    assert not Repository.objects.exists()
    [deleted] = entries(AuditAction.REPOSITORY_DELETE)
    assert deleted.entity_id == str(repository.pk)
    assert deleted.changes["slug"] == {"before": "handbook", "after": None}


def test_a_repository_with_locks_is_not_deleted(admin_user):
    repository = lock_services.repository_create(actor=admin_user, slug="art", name="Art")
    lock_services.checkout(actor=admin_user, repository=repository, path="hero.blend")
    with pytest.raises(ProtectedError):
        lock_services.repository_delete(actor=admin_user, repository_id=repository.pk)
    assert Repository.objects.filter(pk=repository.pk).exists()
    assert [entry.outcome for entry in entries(AuditAction.REPOSITORY_DELETE)] == ["failure"]


def test_repository_creation_without_the_right_is_refused_and_recorded(user):
    with pytest.raises(PermissionDenied):
        lock_services.repository_create(actor=user, slug="art", name="Art")
    assert not Repository.objects.exists()
    assert [entry.outcome for entry in entries(AuditAction.REPOSITORY_CREATE)] == ["denied"]


# --- API tokens ----------------------------------------------------------------------------------------------------


def _mentions(entry: AuditLog, secret: str) -> bool:
    return secret in json.dumps([entry.changes, entry.meta, entry.entity_id, entry.perms_snapshot])


def test_admin_issue_and_revoke_of_a_token_are_recorded_without_the_token(admin_client, admin_user):
    target = UserFactory(username="billing")
    response = admin_client.post(reverse("admin:authtoken_tokenproxy_add"), {"user": target.pk})
    assert response.status_code == 302, response.content
    key = Token.objects.get(user=target).key
    [issued] = entries(AuditAction.USER_TOKEN_CREATE)
    assert (issued.actor_id, issued.entity, issued.entity_id) == (admin_user.pk, "User", str(target.pk))
    assert issued.changes["issued"] == {"before": False, "after": True}
    assert not _mentions(issued, key)

    response = admin_client.post(reverse("admin:authtoken_tokenproxy_delete", args=[target.pk]), {"post": "yes"})
    assert response.status_code == 302, response.content
    assert not Token.objects.filter(user=target).exists()
    [revoked] = entries(AuditAction.USER_TOKEN_DELETE)
    assert revoked.changes["issued"] == {"before": True, "after": False}
    assert not _mentions(revoked, key)


def test_token_issue_without_the_right_is_refused_and_recorded(user, other_user):
    with pytest.raises(PermissionDenied):
        token_create(actor=user, user_id=other_user.pk)
    assert not Token.objects.exists()
    assert [entry.outcome for entry in entries(AuditAction.USER_TOKEN_CREATE)] == ["denied"]


def test_service_account_command_records_the_token_it_issues(db):
    out = StringIO()
    call_command("audit_service_account", "billing-service", stdout=out)
    key = out.getvalue().strip()
    [issued] = entries(AuditAction.USER_TOKEN_CREATE)
    assert issued.changes["issued"]["after"] is True
    assert not _mentions(issued, key)
