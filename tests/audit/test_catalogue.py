"""The catalogue of other systems' action codes: registered by administrators, every change audited."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.catalogue import registered_action_save
from audit.models import AuditLog, RegisteredAction

ADD_URL = reverse("admin:audit_registeredaction_add")
CHANGELIST_URL = reverse("admin:audit_registeredaction_changelist")
EVENTS_URL = "/api/audit/events"


def change_url(pk: int) -> str:
    return reverse("admin:audit_registeredaction_change", args=[pk])


def delete_url(pk: int) -> str:
    return reverse("admin:audit_registeredaction_delete", args=[pk])


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def catalogue_entries(action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=action).order_by("id"))


# --- the service function --------------------------------------------------------------------------------------


def test_registering_a_code_records_action_register_with_after_values(user):
    """A new code is saved and one ACTION.REGISTER entry records it: actor, entity, and for each field
    before None and after the value."""
    action = registered_action_save(
        actor=user, code="PROVIDER.CONNECT", description="Provider connected", compliance="SOC 2 CC6.1"
    )

    assert RegisteredAction.objects.get(code="PROVIDER.CONNECT").pk == action.pk
    [entry] = catalogue_entries(AuditAction.ACTION_REGISTER)
    assert entry.actor_id == user.pk
    assert entry.entity == "RegisteredAction"
    assert entry.entity_id == str(action.pk)
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.changes == {
        "code": {"before": None, "after": "PROVIDER.CONNECT"},
        "description": {"before": None, "after": "Provider connected"},
        "compliance": {"before": None, "after": "SOC 2 CC6.1"},
    }
    assert catalogue_entries(AuditAction.ACTION_UPDATE) == []


def test_changing_the_description_records_action_update_with_only_that_field(user, other_user):
    """Saving an existing code with a new description records ACTION.UPDATE whose diff holds only description."""
    registered_action_save(actor=user, code="PROVIDER.CONNECT", description="Provider connected", compliance="SOC 2")

    action = registered_action_save(
        actor=other_user, code="PROVIDER.CONNECT", description="Provider account linked", compliance="SOC 2"
    )

    assert RegisteredAction.objects.count() == 1
    assert RegisteredAction.objects.get().description == "Provider account linked"
    [entry] = catalogue_entries(AuditAction.ACTION_UPDATE)
    assert entry.actor_id == other_user.pk
    assert entry.entity_id == str(action.pk)
    assert entry.changes == {"description": {"before": "Provider connected", "after": "Provider account linked"}}
    assert len(catalogue_entries(AuditAction.ACTION_REGISTER)) == 1


def test_changing_the_compliance_mapping_records_only_that_field(user):
    """A changed compliance mapping alone is the diff of its ACTION.UPDATE."""
    registered_action_save(actor=user, code="PROVIDER.CONNECT", description="Provider connected")

    registered_action_save(
        actor=user, code="PROVIDER.CONNECT", description="Provider connected", compliance="PCI DSS 10.2.1.1"
    )

    [entry] = catalogue_entries(AuditAction.ACTION_UPDATE)
    assert entry.changes == {"compliance": {"before": "", "after": "PCI DSS 10.2.1.1"}}


@pytest.mark.parametrize(
    "code", ["provider.connect", "PROVIDER", "PROVIDER.", ".CONNECT", "PROVIDER-X.CONNECT", "1PROVIDER.CONNECT", ""]
)
def test_malformed_code_raises_validation_error_and_records_nothing(user, code):
    """A code that is not upper-case ENTITY.OPERATION raises ValidationError on "code"; nothing is saved or
    recorded."""
    with pytest.raises(ValidationError) as raised:
        registered_action_save(actor=user, code=code, description="Something")

    assert "code" in raised.value.message_dict
    assert not RegisteredAction.objects.exists()
    assert catalogue_entries(AuditAction.ACTION_REGISTER) == []


@pytest.mark.parametrize("code", ["AUDIT.VIEW", "USER.LOGIN", "ROLE.PERM.REPLACE"])
def test_projects_own_code_raises_validation_error(user, code):
    """The project's own codes cannot be registered (they need no registration): ValidationError on "code"."""
    with pytest.raises(ValidationError) as raised:
        registered_action_save(actor=user, code=code, description="Mine now")

    assert "code" in raised.value.message_dict
    assert not RegisteredAction.objects.exists()
    assert catalogue_entries(AuditAction.ACTION_REGISTER) == []


def test_blank_description_raises_validation_error(user):
    """A description is required: a blank one raises ValidationError and nothing is saved."""
    with pytest.raises(ValidationError) as raised:
        registered_action_save(actor=user, code="PROVIDER.CONNECT", description="")

    assert "description" in raised.value.message_dict
    assert not RegisteredAction.objects.exists()


# --- through the admin ----------------------------------------------------------------------------------------


def test_admin_add_registers_the_code_and_records_action_register(admin_client, admin_user):
    """POSTing the admin add form saves the code and writes the same ACTION.REGISTER entry, by the admin."""
    response = admin_client.post(
        ADD_URL, {"code": "PROVIDER.CONNECT", "description": "Provider connected", "compliance": "SOC 2 CC6.1"}
    )

    assert response.status_code == 302
    action = RegisteredAction.objects.get(code="PROVIDER.CONNECT")
    [entry] = catalogue_entries(AuditAction.ACTION_REGISTER)
    assert entry.actor_id == admin_user.pk
    assert entry.entity_id == str(action.pk)
    assert entry.changes == {
        "code": {"before": None, "after": "PROVIDER.CONNECT"},
        "description": {"before": None, "after": "Provider connected"},
        "compliance": {"before": None, "after": "SOC 2 CC6.1"},
    }


def test_admin_change_records_action_update_with_only_the_changed_field(admin_client, admin_user):
    """Changing the description in the admin change form writes ACTION.UPDATE whose diff holds only description."""
    admin_client.post(ADD_URL, {"code": "PROVIDER.CONNECT", "description": "Provider connected", "compliance": "x"})
    action = RegisteredAction.objects.get()

    response = admin_client.post(change_url(action.pk), {"description": "Provider account linked", "compliance": "x"})

    assert response.status_code == 302
    action.refresh_from_db()
    assert action.description == "Provider account linked"
    [entry] = catalogue_entries(AuditAction.ACTION_UPDATE)
    assert entry.actor_id == admin_user.pk
    assert entry.entity_id == str(action.pk)
    assert entry.changes == {"description": {"before": "Provider connected", "after": "Provider account linked"}}


def test_admin_code_is_read_only_once_saved(admin_client):
    """The add form has a code input; the change form shows the code read-only, and a code POSTed to it is
    ignored."""
    add_form = admin_client.get(ADD_URL)
    assert "code" in add_form.context["adminform"].form.fields
    admin_client.post(ADD_URL, {"code": "PROVIDER.CONNECT", "description": "Provider connected"})
    action = RegisteredAction.objects.get()

    change_form = admin_client.get(change_url(action.pk))

    assert change_form.status_code == 200
    assert "code" not in change_form.context["adminform"].form.fields
    assert "code" in change_form.context["adminform"].readonly_fields
    assert 'name="code"' not in change_form.content.decode()
    assert "PROVIDER.CONNECT" in change_form.content.decode()

    admin_client.post(change_url(action.pk), {"code": "PROVIDER.RENAMED", "description": "Provider connected"})
    action.refresh_from_db()
    assert action.code == "PROVIDER.CONNECT"
    assert not RegisteredAction.objects.filter(code="PROVIDER.RENAMED").exists()


def test_admin_has_no_delete_permission(admin_client, admin_user):
    """Not even a superuser can delete a registered code: the delete view is refused and no delete action is
    offered."""
    action = registered_action_save(actor=admin_user, code="PROVIDER.CONNECT", description="Provider connected")

    delete_page = admin_client.get(delete_url(action.pk))
    delete_post = admin_client.post(delete_url(action.pk), {"post": "yes"})
    changelist = admin_client.get(CHANGELIST_URL)

    assert delete_page.status_code == 403
    assert delete_post.status_code == 403
    assert RegisteredAction.objects.filter(pk=action.pk).exists()
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()


@pytest.mark.parametrize(("code", "message"), [("provider.connect", "ENTITY.OPERATION"), ("AUDIT.VIEW", "own codes")])
def test_admin_add_refuses_malformed_and_own_codes(admin_client, code, message):
    """The admin add form shows an error on the code for a malformed or own code; nothing is saved or recorded."""
    response = admin_client.post(ADD_URL, {"code": code, "description": "Something"})

    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["code"])
    assert not RegisteredAction.objects.exists()
    assert catalogue_entries(AuditAction.ACTION_REGISTER) == []


# --- the catalogue and the ingestion API ---------------------------------------------------------------------


def test_newly_registered_code_is_accepted_by_the_api_right_away(admin_client):
    """A code is refused by POST /api/audit/events until registered in the admin, and accepted immediately after."""
    out = StringIO()
    call_command("audit_service_account", "billing", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    body = {"action": "PROVIDER.CONNECT", "entity": "Provider", "entity_id": "acme"}

    before = client.post(EVENTS_URL, body, format="json")
    admin_client.post(ADD_URL, {"code": "PROVIDER.CONNECT", "description": "Provider connected"})
    after = client.post(EVENTS_URL, body, format="json")

    assert before.status_code == 400
    assert before.json()["message"].startswith("action:")
    assert after.status_code == 201
    entry = AuditLog.objects.get(action="PROVIDER.CONNECT")
    assert entry.pk == after.json()["id"]
    assert entry.actor_id == User.objects.get(username="billing").pk
