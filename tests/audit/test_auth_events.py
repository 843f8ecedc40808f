"""Authentication events land in the audit trail through Django's auth signals and the DRF authenticators."""

import base64

import pytest

from audit.actions import AuditAction
from audit.models import AuditLog
from tests.audit.read_back import read_back

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/"
ADMIN_LOGOUT = "/admin/logout/"
EVENTS = "/api/audit/events"


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def test_successful_admin_login_records_user_login_with_the_user_as_actor(client, officer, password):
    """A successful login through the admin form leaves one USER.LOGIN success entry whose actor is that user."""
    response = client.post(
        ADMIN_LOGIN,
        {"username": officer.username, "password": password, "next": "/admin/"},
        REMOTE_ADDR="198.51.100.20",
        HTTP_USER_AGENT="login-test/1.0",
    )

    assert response.status_code == 302
    entry = read_back(action=AuditAction.USER_LOGIN)
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.actor_id == officer.pk
    assert entry.actor_label == officer.username
    assert (entry.entity, entry.entity_id) == ("User", str(officer.pk))
    assert entry.ip_address == "198.51.100.20"
    assert entry.user_agent == "login-test/1.0"
    assert entry.request_id == response["X-Request-ID"]
    assert not AuditLog.objects.filter(action=AuditAction.USER_LOGIN_FAILED).exists()


def test_admin_logout_records_user_logout(client, officer, password):
    """Logging out through the admin leaves one USER.LOGOUT success entry whose actor is the user who left."""
    assert client.post(ADMIN_LOGIN, {"username": officer.username, "password": password}).status_code == 302

    response = client.post(ADMIN_LOGOUT)

    assert response.status_code == 200
    entry = read_back(action=AuditAction.USER_LOGOUT)
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.actor_id == officer.pk
    assert entry.actor_label == officer.username
    assert (entry.entity, entry.entity_id) == ("User", str(officer.pk))
    assert entry.request_id == response["X-Request-ID"]


def test_logout_without_a_session_records_nothing(client, db):
    """A logout by a visitor who was never logged in is no USER.LOGOUT event."""
    client.post(ADMIN_LOGOUT)

    assert not AuditLog.objects.filter(action=AuditAction.USER_LOGOUT).exists()


def test_wrong_password_on_admin_form_records_login_failed_with_the_attempted_username(client, officer):
    """A wrong password on the admin login form leaves USER.LOGIN_FAILED (failure, no actor) naming the attempted
    user."""
    response = client.post(
        ADMIN_LOGIN, {"username": officer.username, "password": "not-the-password"}, REMOTE_ADDR="203.0.113.9"
    )

    assert response.status_code == 200  # the form again, with an error
    entry = AuditLog.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.meta == {"username": officer.username}
    assert entry.actor_id is None
    assert entry.actor_label == ""
    assert entry.entity == "User"
    assert entry.ip_address == "203.0.113.9"
    assert entry.request_id == response["X-Request-ID"]
    assert not AuditLog.objects.filter(action=AuditAction.USER_LOGIN).exists()


def test_unknown_username_on_admin_form_records_login_failed(client, db):
    """A login attempt for a user name that does not exist is a USER.LOGIN_FAILED entry naming that name."""
    client.post(ADMIN_LOGIN, {"username": "nobody-by-this-name", "password": "whatever-it-is"})

    entry = AuditLog.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.meta == {"username": "nobody-by-this-name"}


def test_wrong_password_with_http_basic_records_login_failed(api_client, user):
    """HTTP Basic with a wrong password is refused with 401 and leaves USER.LOGIN_FAILED naming the attempted user."""
    response = api_client.get(
        EVENTS, HTTP_AUTHORIZATION=_basic(user.username, "not-the-password"), REMOTE_ADDR="192.0.2.44"
    )

    assert response.status_code == 401
    entry = AuditLog.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.meta == {"username": user.username}
    assert entry.actor_id is None
    assert entry.ip_address == "192.0.2.44"
    assert entry.request_id == response["X-Request-ID"]
    assert AuditLog.objects.count() == 1  # no AUDIT.VIEW: the list was not served


def test_correct_http_basic_records_no_login_failed(api_client, user, password):
    """HTTP Basic with the right password serves the list and leaves no USER.LOGIN_FAILED entry."""
    response = api_client.get(EVENTS, HTTP_AUTHORIZATION=_basic(user.username, password))

    assert response.status_code == 200
    assert not AuditLog.objects.filter(action=AuditAction.USER_LOGIN_FAILED).exists()
    assert AuditLog.objects.get(action=AuditAction.AUDIT_VIEW).actor_id == user.pk


def test_failed_token_authentication_records_login_failed(api_client, db):
    """An unknown API token is refused with 401 and leaves USER.LOGIN_FAILED (failure, method token)."""
    response = api_client.get(EVENTS, HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    assert response.status_code == 401
    entry = AuditLog.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.meta["method"] == "token"
    assert entry.actor_id is None
    assert entry.request_id == response["X-Request-ID"]
