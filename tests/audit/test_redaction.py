"""Secrets never reach the audit trail: redact() itself, and a canary secret sent through every path."""

import base64
import json
import uuid

import pytest
from django.db import connection

from audit.actions import AuditAction
from audit.models import AuditLog, Seal
from audit.redaction import REDACTED, _remembered, is_sensitive_key, redact
from audit.services import record

EVENTS = "/api/audit/events"


# --- redact() ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "new_password1",
        "passwd",
        "pwd",
        "token",
        "access_token",
        "Refresh-Token",
        "secret",
        "client_secret",
        "Authorization",
        "HTTP_AUTHORIZATION",
        "api_key",
        "API_KEY",
        "X-Api-Key",
        "api key",
        "apiKey",
        "cookie",
        "Set-Cookie",
        "sessionid",
        "session_key",
        "SESSION",
        "credentials",
        "private_key",
    ],
)
def test_sensitive_keys_are_recognised_whatever_their_case_and_separators(key):
    """Keys naming passwords, tokens, secrets, authorization, API keys, cookies or sessions are sensitive, with
    case, dashes, underscores and spaces ignored."""
    assert is_sensitive_key(key)
    assert redact({key: "value"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key", ["username", "email", "name", "reason", "path", "method", "filters", "returned", "id", "monkey", "author"]
)
def test_ordinary_keys_are_left_alone(key):
    """Keys that name no secret keep their values."""
    assert not is_sensitive_key(key)
    assert redact({key: "value"}) == {key: "value"}


@pytest.mark.parametrize("key", ["x" * 100 + "_password", "user_" + "y" * 100])
def test_keys_too_long_to_be_remembered_are_judged_the_same(key):
    """Long keys get the same answer as short ones and are not kept among the remembered answers (short ones are):
    what a caller sends cannot fill the process's memory."""
    remembered = _remembered.cache_info().currsize
    assert is_sensitive_key(key) == key.endswith("password")
    assert _remembered.cache_info().currsize == remembered
    assert not is_sensitive_key(f"unseen_{uuid.uuid4().hex}")
    assert _remembered.cache_info().currsize == remembered + 1


def test_redaction_reaches_any_depth():
    """Sensitive keys are redacted in dicts inside lists inside dicts, at any depth; other values stay."""
    value = {
        "user": "alice",
        "items": [
            {"name": "first", "password": "p1"},
            [{"X-Api-Key": "k1", "keep": 1}, {"deeper": {"API_KEY": "k2", "size": 2}}],
            ("tuple", {"session_id": "s1"}),
        ],
        "headers": {"Authorization": "Basic abc", "Accept": "application/json"},
    }

    assert redact(value) == {
        "user": "alice",
        "items": [
            {"name": "first", "password": REDACTED},
            [{"X-Api-Key": REDACTED, "keep": 1}, {"deeper": {"API_KEY": REDACTED, "size": 2}}],
            ["tuple", {"session_id": REDACTED}],
        ],
        "headers": {"Authorization": REDACTED, "Accept": "application/json"},
    }


def test_a_sensitive_key_hides_its_whole_subtree():
    """The value under a sensitive key is replaced whole, even when it is a dict or list."""
    assert redact({"token": {"value": "abc", "expires": 5}, "secrets": ["a", "b"]}) == {
        "token": REDACTED,
        "secrets": REDACTED,
    }


def test_redact_does_not_change_its_argument():
    """redact() returns a copy; the caller's data keeps its secrets for its own use."""
    original = {"password": "p", "nested": [{"token": "t"}]}

    redact(original)

    assert original == {"password": "p", "nested": [{"token": "t"}]}


def test_values_that_merely_look_secret_are_not_touched():
    """Redaction goes by key: a value is never searched or altered, so non-secret text stays exact."""
    assert redact({"note": "my password is in the vault", "list": ["token"]}) == {
        "note": "my password is in the vault",
        "list": ["token"],
    }


def test_record_redacts_meta_and_changes(db):
    """record() stores meta and changes redacted at every depth."""
    entry = record(
        AuditAction.USER_UPDATE,
        entity="User",
        entity_id=1,
        changes={"password": {"before": "old", "after": "new"}, "email": {"before": "a@x", "after": "b@x"}},
        meta={"reason": "reset", "request": {"headers": [{"Cookie": "sessionid=abc"}]}},
    )

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.changes == {"password": REDACTED, "email": {"before": "a@x", "after": "b@x"}}
    assert stored.meta == {"reason": "reset", "request": {"headers": [{"Cookie": REDACTED}]}}


# --- the canary ----------------------------------------------------------------------------------------------------


def _table_dumps(model) -> tuple[str, str]:
    """Every column of every row of ``model``'s table: through the ORM (JSON), and as raw SQL rows (repr)."""
    orm_rows = [
        {key: bytes(value).hex() if isinstance(value, (bytes, memoryview)) else value for key, value in row.items()}
        for row in model.objects.values()
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)}")  # noqa: S608
        raw_rows = [repr(row) for row in cursor.fetchall()]
    return json.dumps(orm_rows, default=str), "\n".join(raw_rows)


def _table_dump(model) -> str:
    return "\n".join(_table_dumps(model))


@pytest.mark.django_db
def test_the_table_dump_sees_a_value_that_is_stored():
    """Control for the canary test: a canary stored in a text column and in a JSON column shows up in both dumps."""
    canary = f"canary-{uuid.uuid4().hex}"
    record(AuditAction.AUDIT_VIEW, entity=canary[:100], meta={"note": canary})

    orm_dump, raw_dump = _table_dumps(AuditLog)
    assert orm_dump.count(canary) == 2
    assert raw_dump.count(canary) == 2


@pytest.mark.django_db
def test_canary_secret_sent_through_every_path_is_nowhere_in_the_audit_table(
    client, api_client, officer, user, password
):
    """A unique secret sent as a failed admin password, a failed Basic password, a bad API token, a query parameter
    named like a key, and inside record()'s meta and changes is found in no column of the audit tables, while the
    entries those paths write do exist."""
    canary = f"canary-{uuid.uuid4().hex}"

    # (a) the password of a failed login on the admin form
    response = client.post("/admin/login/", {"username": officer.username, "password": canary})
    assert response.status_code == 200
    # (b) the password of HTTP Basic authentication
    basic = base64.b64encode(f"{user.username}:{canary}".encode()).decode("ascii")
    assert api_client.get(EVENTS, HTTP_AUTHORIZATION=f"Basic {basic}").status_code == 401
    # (c) a bad API token
    assert api_client.get(EVENTS, HTTP_AUTHORIZATION=f"Token {canary}").status_code == 401
    # (d) meta and changes of record()
    record(
        AuditAction.USER_PASSWORD_CHANGE,
        entity="User",
        entity_id=user.pk,
        actor=user,
        changes={
            "password": {"before": canary, "after": canary},
            "profile": {"before": {"session_key": canary}, "after": [{"Authorization": f"Bearer {canary}"}]},
        },
        meta={"password": canary, "nested": [{"api_key": canary}], "X-Api-Key": canary},
    )
    # (e) a query parameter named like a secret, which the list view records among its filters
    client.force_login(user)
    assert client.get(EVENTS, {"api_key": canary, "outcome": "success"}).status_code == 200

    dump = _table_dump(AuditLog) + _table_dump(Seal)
    assert canary not in dump
    assert canary.upper() not in dump.upper()

    # The paths did record: the test cannot pass by recording nothing.
    failed = AuditLog.objects.filter(action=AuditAction.USER_LOGIN_FAILED)
    assert failed.count() == 3
    assert sorted(entry.meta.get("username", "") for entry in failed) == sorted(["", officer.username, user.username])
    assert failed.filter(meta__method="token").count() == 1
    recorded = AuditLog.objects.get(action=AuditAction.USER_PASSWORD_CHANGE)
    assert recorded.meta == {"password": REDACTED, "nested": [{"api_key": REDACTED}], "X-Api-Key": REDACTED}
    assert recorded.changes == {
        "password": REDACTED,
        "profile": {"before": {"session_key": REDACTED}, "after": [{"Authorization": REDACTED}]},
    }
    view = AuditLog.objects.get(action=AuditAction.AUDIT_VIEW)
    assert view.meta["filters"] == {"api_key": REDACTED, "outcome": "success"}
