"""Recording events of other systems: POST /api/audit/events and /api/audit/events/batch.

Service accounts (holders of audit.record_event) send events with token authentication; the server sets id, time,
actor and seal, checks codes against the registered catalogue, stores all events of a batch or none, and makes
retries with an Idempotency-Key return the first result.
"""

import datetime as dt
import json
import re
import threading
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.catalogue import registered_action_save
from audit.models import AuditLog, IdempotencyRecord, Seal
from audit.redaction import REDACTED
from audit.sealing import seal_pending
from audit.verify import verify_chain
from tests.audit.read_back import read_back
from tests.factories.users import UserFactory

EVENTS_URL = "/api/audit/events"
BATCH_URL = "/api/audit/events/batch"
SCHEMA_URL = "/api/schema"
CODE = "PROVIDER.CONNECT"
UTC = dt.UTC
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def detail_url(pk: int) -> str:
    return f"/api/audit/events/{pk}"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def create_service_account(username: str) -> tuple[User, str]:
    """A service account made the documented way (the management command); returns it and its token."""
    out = StringIO()
    call_command("audit_service_account", username, stdout=out)
    return User.objects.get(username=username), out.getvalue().strip()


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def registered_code(db) -> str:
    registered_action_save(actor=None, code=CODE, description="Provider connected", compliance="SOC 2 CC6.1")
    return CODE


@pytest.fixture
def service(db, registered_code) -> tuple[User, str]:
    return create_service_account("billing")


@pytest.fixture
def service_client(service) -> APIClient:
    return token_client(service[1])


def event(**fields) -> dict:
    return {"action": CODE, "entity": "Provider", "entity_id": "acme", **fields}


def ingested(**filters) -> "list[AuditLog]":
    return list(AuditLog.objects.filter(action=CODE, **filters).order_by("id"))


def post_event(client: APIClient, body, key: str | None = None, url: str = EVENTS_URL):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(url, body, format="json", **headers)


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the service account command --------------------------------------------------------------------------------


def test_service_account_command_creates_account_with_permission_and_prints_token(db):
    """audit_service_account creates a user with an unusable password and audit.record_event, and prints the
    key of its DRF token."""
    account, printed = create_service_account("billing")

    assert not account.has_usable_password()
    assert account.has_perm("audit.record_event")
    assert printed == Token.objects.get(user=account).key
    assert re.fullmatch(r"[0-9a-f]{40}", printed)


def test_service_account_command_records_user_create_with_permission_diff(db):
    """Creating the account records one USER.CREATE entry about it whose changes show the granted permission."""
    account, _ = create_service_account("billing")

    entry = AuditLog.objects.get(action=AuditAction.USER_CREATE)
    assert entry.entity == "User"
    assert entry.entity_id == str(account.pk)
    assert entry.changes == {
        "user_permissions": {
            "before": [],
            "after": ["audit.record_event"],
            "added": ["audit.record_event"],
            "removed": [],
        }
    }
    assert entry.meta["service_account"] is True


def test_service_account_command_is_idempotent(db):
    """Running the command again for the same name keeps one account, prints the same token and records nothing
    more."""
    first, first_token = create_service_account("billing")
    entries_before = AuditLog.objects.count()

    second, second_token = create_service_account("billing")

    assert second.pk == first.pk
    assert second_token == first_token
    assert User.objects.filter(username="billing").count() == 1
    assert Token.objects.filter(user=first).count() == 1
    assert AuditLog.objects.count() == entries_before


def test_service_account_command_refuses_a_persons_account(db):
    """An existing account with a usable password is a person's: CommandError, no permission, no token."""
    person = UserFactory(username="alice")

    with pytest.raises(CommandError, match="has a password"):
        call_command("audit_service_account", "alice", stdout=StringIO())

    person.refresh_from_db()
    assert person.has_usable_password()
    assert not User.objects.get(pk=person.pk).has_perm("audit.record_event")
    assert not Token.objects.filter(user=person).exists()
    assert not AuditLog.objects.filter(action__in=[AuditAction.USER_CREATE, AuditAction.USER_UPDATE]).exists()


# --- recording one event and reading it back -------------------------------------------------------------------


def test_service_account_records_an_event_with_token_auth(service, service_client):
    """A token-authenticated service account gets 201; the entry has the body's values and the account as actor."""
    account, _ = service
    body = event(
        outcome="failure",
        on_behalf_of="carol",
        client_ip="198.51.100.7",
        occurred_at="2026-11-23T09:30:00+02:00",
        changes={"plan": {"before": "basic", "after": "pro"}},
        meta={"reason": "nightly sync"},
    )

    response = post_event(service_client, body)

    assert response.status_code == 201, response.json()
    entry = read_back(pk=response.json()["id"])
    assert (entry.action, entry.entity, entry.entity_id, entry.outcome) == (CODE, "Provider", "acme", "failure")
    assert entry.actor_id == account.pk
    assert entry.actor_label == "billing"
    assert entry.on_behalf_of == "carol"
    assert entry.client_ip == "198.51.100.7"
    assert entry.occurred_at == dt.datetime(2026, 11, 23, 7, 30, tzinfo=UTC)
    assert entry.changes == {"plan": {"before": "basic", "after": "pro"}}
    assert entry.meta == {"reason": "nightly sync"}
    assert "audit.record_event" in entry.perms_snapshot["perms"]


def test_officer_reads_back_the_ingested_event(service, service_client, officer, api_client):
    """GET /api/audit/events/<id> as an officer shows action, entity, entity_id, on_behalf_of, client_ip,
    occurred_at (ISO 8601 with offset) and the service account as actor."""
    account, _ = service
    created = post_event(
        service_client,
        event(on_behalf_of="carol", client_ip="198.51.100.7", occurred_at="2026-11-23T09:30:00Z"),
    ).json()
    api_client.force_authenticate(officer)

    response = api_client.get(detail_url(created["id"]))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["action"] == CODE
    assert body["entity"] == "Provider"
    assert body["entity_id"] == "acme"
    assert body["on_behalf_of"] == "carol"
    assert body["client_ip"] == "198.51.100.7"
    assert ISO_WITH_OFFSET.match(body["occurred_at"])
    assert parse_time(body["occurred_at"]) == dt.datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert body["actor"] == account.pk
    assert body["actor_label"] == "billing"


def test_service_account_reads_back_its_own_event(service_client):
    """The service account itself can open the entry it recorded (it is the entry's actor)."""
    created = post_event(service_client, event()).json()

    response = service_client.get(detail_url(created["id"]))

    assert response.status_code == 200
    assert response.json()["action"] == CODE


def test_secrets_in_meta_and_changes_are_redacted(service_client, officer, api_client):
    """A "password" key in meta and a "token" key in changes are stored and shown as [REDACTED], exactly as for
    internal writes; the secret values appear nowhere."""
    body = event(
        meta={"password": "hunter2-canary", "nested": {"api_token": "tok-canary"}, "reason": "rotate"},
        changes={"token": {"before": "old-canary", "after": "new-canary"}, "plan": {"before": "a", "after": "b"}},
    )

    created = post_event(service_client, body)
    api_client.force_authenticate(officer)
    shown = api_client.get(detail_url(created.json()["id"]))

    assert created.status_code == 201
    for response in (created, shown):
        data = response.json()
        assert data["meta"] == {"password": REDACTED, "nested": {"api_token": REDACTED}, "reason": "rotate"}
        assert data["changes"] == {"token": REDACTED, "plan": {"before": "a", "after": "b"}}
        for canary in ("hunter2-canary", "tok-canary", "old-canary", "new-canary"):
            assert canary not in response.content.decode()
    entry = AuditLog.objects.get(pk=created.json()["id"])
    assert entry.meta["password"] == REDACTED
    assert entry.changes["token"] == REDACTED


def test_ingested_event_carries_the_request_context(service_client):
    """The server fills request_id, ip_address and user_agent from the request itself."""
    response = service_client.post(
        EVENTS_URL, event(), format="json", HTTP_X_REQUEST_ID="sync-77", HTTP_USER_AGENT="billing/2.1"
    )

    entry = read_back(pk=response.json()["id"])
    assert entry.request_id == "sync-77" == response["X-Request-ID"]
    assert entry.ip_address == "127.0.0.1"
    assert entry.user_agent == "billing/2.1"


# --- server-side fields cannot be set --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 999999),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("actor", 1),
        ("actor_label", "root"),
        ("seal", {"hash": "0" * 64}),
        ("salt", "00" * 16),
        ("request_id", "forged"),
        ("ip_address", "10.0.0.1"),
        ("user_agent", "forged"),
        ("perms_snapshot", {"perms": ["*"]}),
    ],
)
def test_server_side_field_in_body_gives_400_naming_it(service_client, field, value):
    """A body that tries to set a server-side field is refused with 400 whose message names that field; nothing
    is recorded."""
    response = post_event(service_client, event(**{field: value}))

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["message"].startswith(f"{field}:")
    assert field in body["errors"]
    assert ingested() == []


@pytest.mark.parametrize("field", ["id", "created_at", "actor", "request_id", "ip_address"])
def test_server_side_field_in_a_batch_event_gives_400_naming_index_and_field(service_client, field):
    """In a batch, a server-side field in event 2 is a 400 whose message names events[2] and the field."""
    events = [event(entity_id=str(n)) for n in range(4)]
    events[2][field] = "10.0.0.1" if field == "ip_address" else "1"

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"events[2].{field}:")
    assert ingested() == []


def test_occurred_at_is_stored_beside_created_at(service_client):
    """occurred_at is kept as the source says, while created_at is the server's own time of recording."""
    before = timezone.now()

    response = post_event(service_client, event(occurred_at="2020-05-01T12:00:00+02:00"))

    entry = AuditLog.objects.get(pk=response.json()["id"])
    assert entry.occurred_at == dt.datetime(2020, 5, 1, 10, tzinfo=UTC)
    assert before <= entry.created_at <= timezone.now()
    assert parse_time(response.json()["created_at"]) == entry.created_at
    assert parse_time(response.json()["occurred_at"]) == entry.occurred_at


def test_event_without_occurred_at_stores_null(service_client):
    """Without occurred_at the field stays empty: the server does not copy created_at into it."""
    response = post_event(service_client, event())

    assert response.json()["occurred_at"] is None
    assert AuditLog.objects.get(pk=response.json()["id"]).occurred_at is None


# --- batches ---------------------------------------------------------------------------------------------------


def test_batch_of_1000_events_lands_completely(service, service_client):
    """A batch of 1,000 events gives 201 listing 1,000 events, in order; 1,000 entries exist with the service
    account as actor and the same request_id (the request's)."""
    account, _ = service
    events = [event(entity_id=str(n)) for n in range(1000)]

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 201
    listed = response.json()["events"]
    assert len(listed) == 1000
    assert [item["entity_id"] for item in listed] == [str(n) for n in range(1000)]
    entries = ingested()
    assert len(entries) == 1000
    assert [entry.pk for entry in entries] == [item["id"] for item in listed]
    assert {entry.request_id for entry in entries} == {response["X-Request-ID"]}
    assert {entry.actor_id for entry in entries} == {account.pk}


def test_batch_of_1000_is_written_inside_one_atomic_block(service_client):
    """All INSERTs of a 1,000-event batch (multi-row, not one per event) run between one SAVEPOINT and its
    RELEASE: the batch is a single transaction (here nested in the test's own)."""
    events = [event(entity_id=str(n)) for n in range(1000)]

    with CaptureQueriesContext(connection) as queries:
        response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 201
    sqls = [query["sql"] for query in queries]
    inserts = [i for i, sql in enumerate(sqls) if sql.upper().startswith('INSERT INTO "AUDIT_AUDITLOG"')]
    # Multi-row INSERTs: 2 on PostgreSQL (500 rows each), more on SQLite (bounded by its variable limit).
    assert 1 <= len(inserts) <= 25
    savepoints = [i for i, sql in enumerate(sqls) if sql.upper().startswith("SAVEPOINT")]

    def closing(opening: int) -> int:
        name = sqls[opening].split()[-1]
        return next(i for i, sql in enumerate(sqls) if i > opening and sql.split()[-1] == name)

    # The innermost savepoint around all the INSERTs (the first write of an actor's key has one of its own before).
    opening = max(i for i in savepoints if i < inserts[0] and closing(i) > inserts[-1])
    assert sqls[closing(opening)].upper().startswith("RELEASE SAVEPOINT")


def test_batch_response_fetches_seals_in_one_query(service_client):
    """Rendering a batch's response costs the same queries for 10 events as for 40: the seals come in one
    query, not one per event."""

    def queries_for(count: int) -> int:
        events = [event(entity_id=str(n)) for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            response = post_event(service_client, {"events": events}, url=BATCH_URL)
        assert response.status_code == 201
        return len([q for q in queries if 'FROM "audit_seal"' in q["sql"] and "INSERT" not in q["sql"].upper()])

    assert queries_for(10) == queries_for(40) == 1


def test_batch_of_1001_events_gives_400(service_client):
    """More than 1,000 events is a 400 naming "events"; nothing is recorded."""
    events = [event(entity_id=str(n)) for n in range(1001)]

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith("events:")
    assert "1000" in response.json()["message"]
    assert ingested() == []


def test_empty_batch_gives_400(service_client):
    """An empty list of events is a 400 naming "events"."""
    response = post_event(service_client, {"events": []}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith("events:")


def test_batch_without_events_key_gives_400(service_client):
    """A batch body without "events" is a 400 naming "events"."""
    response = post_event(service_client, {}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith("events:")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"client_ip": "not-an-ip"}, "client_ip"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"meta": "a string"}, "meta"),
        ({"action": "provider.connect"}, "action"),
    ],
)
def test_batch_with_one_bad_event_lands_nothing_and_names_its_index(service_client, bad, field):
    """A batch of 10 whose event 3 is invalid is a 400 naming events[3] and the field; none of the 10 lands."""
    events = [event(entity_id=str(n)) for n in range(10)]
    events[3].update(bad)

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"events[3].{field}:")
    assert ingested() == []


def test_batch_with_an_unknown_action_code_names_its_index(service_client):
    """An unregistered code at index 5 of a batch is a 400 naming events[5].action and the code; nothing lands."""
    events = [event(entity_id=str(n)) for n in range(8)]
    events[5]["action"] = "PROVIDER.EXPLODE"

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("events[5].action:")
    assert "PROVIDER.EXPLODE" in message
    assert ingested() == []


def test_batch_with_unknown_top_level_field_gives_400(service_client):
    """A batch body may only hold "events": another key is a 400 naming it."""
    response = post_event(service_client, {"events": [event()], "actor": 1}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith("actor:")
    assert ingested() == []


@pytest.mark.parametrize("url", [EVENTS_URL, BATCH_URL])
def test_form_encoded_body_gives_415(service_client, url):
    """Only JSON is accepted: a form-encoded body is a 415 and nothing is recorded."""
    response = service_client.post(
        url, urlencode({"action": CODE, "entity": "Provider"}), content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert set(response.json()) >= {"message", "code"}
    assert ingested() == []


@pytest.mark.parametrize("url", [EVENTS_URL, BATCH_URL])
def test_malformed_json_gives_400(service_client, url):
    """A body that claims to be JSON but does not parse is a 400."""
    response = service_client.post(url, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert ingested() == []


# --- idempotency -----------------------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_twice_gives_one_entry(service_client):
    """The same Idempotency-Key with the same body twice records one entry: the retry gets 201, the same id and
    the header Idempotent-Replayed: true."""
    first = post_event(service_client, event(), key="sync-1")
    second = post_event(service_client, event(), key="sync-1")

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert len(ingested()) == 1


def test_retry_with_reordered_keys_is_the_same_body(service_client):
    """The body is compared as JSON, not as text: the same fields in another order and spacing replay."""
    first = service_client.post(
        EVENTS_URL,
        '{"action": "PROVIDER.CONNECT", "entity_id": "acme"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    second = service_client.post(
        EVENTS_URL,
        '{"entity_id":"acme","action":"PROVIDER.CONNECT"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )

    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert len(ingested()) == 1


def test_same_idempotency_key_for_a_batch_replays_all_its_entries(service_client):
    """A batch retried under its key returns the same entries in the same order and records nothing new."""
    body = {"events": [event(entity_id=str(n)) for n in range(5)]}

    first = post_event(service_client, body, key="batch-1", url=BATCH_URL)
    second = post_event(service_client, body, key="batch-1", url=BATCH_URL)

    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert [e["id"] for e in second.json()["events"]] == [e["id"] for e in first.json()["events"]]
    assert len(ingested()) == 5


def test_same_key_from_another_service_account_is_independent(service_client, registered_code):
    """Keys are per source account: a second account using the same key records its own entry."""
    other, other_token = create_service_account("crm")

    first = post_event(service_client, event(), key="shared-key")
    second = post_event(token_client(other_token), event(), key="shared-key")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["actor"] == other.pk
    assert len(ingested()) == 2
    assert IdempotencyRecord.objects.filter(key="shared-key").count() == 2


def test_different_body_under_a_used_key_gives_409(service_client):
    """A used Idempotency-Key with another body is a 409 with a message naming the key; nothing new is recorded."""
    post_event(service_client, event(entity_id="acme"), key="sync-2")

    response = post_event(service_client, event(entity_id="globex"), key="sync-2")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "conflict"
    assert "sync-2" in body["message"] and "different request body" in body["message"]
    assert [entry.entity_id for entry in ingested()] == ["acme"]


def test_idempotency_key_of_256_characters_gives_400(service_client):
    """A key longer than 255 characters is a 400 naming Idempotency-Key; nothing is recorded."""
    response = post_event(service_client, event(), key="k" * 256)

    assert response.status_code == 400
    assert response.json()["message"].startswith("Idempotency-Key:")
    assert ingested() == []
    assert not IdempotencyRecord.objects.exists()


def test_idempotency_key_of_255_characters_is_accepted(service_client):
    """A key of exactly 255 characters is accepted and replays."""
    first = post_event(service_client, event(), key="k" * 255)
    second = post_event(service_client, event(), key="k" * 255)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert len(ingested()) == 1


def test_blank_idempotency_key_gives_400(service_client):
    """A key of only spaces is a 400 naming Idempotency-Key."""
    response = post_event(service_client, event(), key="   ")

    assert response.status_code == 400
    assert response.json()["message"].startswith("Idempotency-Key:")


def test_without_idempotency_key_each_post_records_an_entry(service_client):
    """Without the header two identical requests are two events."""
    first = post_event(service_client, event())
    second = post_event(service_client, event())

    assert first.json()["id"] != second.json()["id"]
    assert len(ingested()) == 2


def test_rejected_request_does_not_use_up_its_key(service_client):
    """A request refused with 400 claims no key: the corrected body under the same key is recorded."""
    bad = post_event(service_client, event(outcome="maybe"), key="sync-3")
    good = post_event(service_client, event(), key="sync-3")

    assert bad.status_code == 400
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good
    assert len(ingested()) == 1


THREADS = 8


def _post_in_thread(token: str, barrier: threading.Barrier, results: list, errors: list) -> None:
    try:
        client = token_client(token)
        barrier.wait(timeout=30)
        response = post_event(client, event(entity_id="race"), key="race-key")
        results.append((response.status_code, response.json().get("id"), response.get("Idempotent-Replayed")))
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_requests_with_one_key_record_one_entry(postgres_only, committed_db, registered_code):
    """8 threads POSTing the same key and body at once get 201 each and the same entry id; exactly one entry and
    one idempotency record exist, and 7 of the responses are replays."""
    _, token = create_service_account("billing")
    barrier = threading.Barrier(THREADS)
    results: list = []
    errors: list = []
    threads = [threading.Thread(target=_post_in_thread, args=(token, barrier, results, errors)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(results) == THREADS
    assert {status for status, _, _ in results} == {201}
    entries = ingested()
    assert len(entries) == 1
    assert {pk for _, pk, _ in results} == {entries[0].pk}
    assert sorted(str(replayed) for _, _, replayed in results) == ["None"] + ["true"] * (THREADS - 1)
    assert IdempotencyRecord.objects.filter(key="race-key").count() == 1
    # The one entry was sealed when its transaction committed, and the chain holds.
    assert Seal.objects.filter(entry_id=entries[0].pk).exists()
    assert verify_chain().ok


# --- who may record --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [EVENTS_URL, BATCH_URL])
def test_ordinary_user_gets_403_and_a_denied_entry(user, api_client, registered_code, url):
    """A user without audit.record_event gets 403; a denied AUDIT.INGEST entry with them as actor is recorded and
    their event is not."""
    api_client.force_authenticate(user)
    body = {"events": [event()]} if url == BATCH_URL else event()

    response = api_client.post(url, body, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "audit.record_event" in response.json()["message"]
    denied = AuditLog.objects.get(action=AuditAction.AUDIT_INGEST)
    assert denied.outcome == AuditLog.Outcome.DENIED
    assert denied.actor_id == user.pk
    assert denied.meta == {"path": url, "method": "POST"}
    assert ingested() == []


def test_officer_without_record_permission_gets_403(officer, api_client, registered_code):
    """Reading the trail is not writing it: a compliance officer without audit.record_event gets 403."""
    api_client.force_authenticate(officer)

    response = post_event(api_client, event())

    assert response.status_code == 403
    assert AuditLog.objects.get(action=AuditAction.AUDIT_INGEST).actor_id == officer.pk


@pytest.mark.parametrize("url", [EVENTS_URL, BATCH_URL])
def test_anonymous_post_gets_401(db, api_client, registered_code, url):
    """Without credentials the POST is a 401 and nothing is recorded, no denied entry either."""
    response = api_client.post(url, event(), format="json")

    assert response.status_code == 401
    assert ingested() == []
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_INGEST).exists()


def test_unknown_token_gets_401(db, api_client, registered_code):
    """A token that does not exist is a 401 and nothing is recorded."""
    response = token_client("0" * 40).post(EVENTS_URL, event(), format="json")

    assert response.status_code == 401
    assert ingested() == []


# --- validation ------------------------------------------------------------------------------------------------


def test_unknown_action_code_gives_400_naming_action(service_client):
    """A well-formed but unregistered code is a 400 whose message names "action" and the code."""
    response = post_event(service_client, event(action="PROVIDER.EXPLODE"))

    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("action:")
    assert "PROVIDER.EXPLODE" in body["message"]
    assert "action" in body["errors"]
    assert not AuditLog.objects.filter(action="PROVIDER.EXPLODE").exists()


@pytest.mark.parametrize("code", ["provider.connect", "PROVIDER", "PROVIDER.", ".CONNECT", "PROVIDER CONNECT.X", ""])
def test_malformed_action_code_gives_400_naming_action(service_client, code):
    """A code that is not upper-case ENTITY.OPERATION is a 400 naming "action"."""
    response = post_event(service_client, event(action=code))

    assert response.status_code == 400
    assert response.json()["message"].startswith("action:")
    assert not AuditLog.objects.filter(action=code).exists()


def test_missing_action_gives_400_naming_action(service_client):
    """An event without an action is a 400 naming "action"."""
    response = post_event(service_client, {"entity": "Provider"})

    assert response.status_code == 400
    assert response.json()["message"].startswith("action:")


def test_projects_own_code_is_accepted(service_client):
    """The project's own codes need no registration (the catalogue is the union of both)."""
    response = post_event(service_client, event(action=AuditAction.USER_LOGIN))

    assert response.status_code == 201
    assert response.json()["action"] == "USER.LOGIN"


@pytest.mark.parametrize("field", ["meta", "changes"])
def test_oversized_json_object_gives_400_naming_the_field(service_client, settings, field):
    """meta or changes larger than AUDIT_MAX_JSON_BYTES is a 400 naming the field; nothing is recorded."""
    settings.AUDIT_MAX_JSON_BYTES = 200

    response = post_event(service_client, event(**{field: {"note": "x" * 300}}))

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}:")
    assert "200" in response.json()["message"]
    assert ingested() == []


def test_meta_of_64_kib_is_accepted_and_one_byte_more_is_not(service_client):
    """With the default limit, meta whose JSON is exactly 64 KiB is recorded; one byte more is a 400 naming meta."""
    padding = 64 * 1024 - len('{"note": ""}')

    at_limit = post_event(service_client, event(meta={"note": "x" * padding}))
    over = post_event(service_client, event(meta={"note": "x" * (padding + 1)}))

    assert at_limit.status_code == 201
    assert over.status_code == 400
    assert over.json()["message"].startswith("meta:")
    assert len(ingested()) == 1


def test_non_ascii_meta_under_64_kib_is_accepted(service_client):
    """The limit counts UTF-8 bytes: 40,000 bytes of accented text in meta are well under 64 KiB and recorded."""
    response = post_event(service_client, event(meta={"note": "é" * 20_000}))

    assert response.status_code == 201, response.json()
    assert AuditLog.objects.get(pk=response.json()["id"]).meta == {"note": "é" * 20_000}


def test_non_ascii_meta_under_64_kib_in_a_batch_is_accepted(service_client):
    """The same holds in a batch: accented text under 64 KiB of UTF-8 in event 3 does not fail the batch."""
    events = [event(entity_id=str(n)) for n in range(5)]
    events[3]["meta"] = {"note": "é" * 20_000}

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 201, response.json()
    assert len(ingested()) == 5


def test_oversized_meta_in_a_batch_names_the_index(service_client, settings):
    """Oversized meta in event 3 of a batch is a 400 naming events[3].meta."""
    settings.AUDIT_MAX_JSON_BYTES = 200
    events = [event(entity_id=str(n)) for n in range(5)]
    events[3]["meta"] = {"note": "x" * 300}

    response = post_event(service_client, {"events": events}, url=BATCH_URL)

    assert response.status_code == 400
    assert response.json()["message"].startswith("events[3].meta:")
    assert ingested() == []


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (EVENTS_URL, {"action": CODE, "meta": {"note": "\ud800"}}, "meta.note"),
        (EVENTS_URL, {"action": CODE, "changes": {"\udfff": 1}}, "changes"),
        (BATCH_URL, {"events": [{"action": CODE, "meta": {"note": "\ud800"}}]}, "events[0].meta.note"),
    ],
)
def test_lone_surrogate_in_a_json_object_gives_400_naming_the_field(service_client, url, body, field):
    """A lone surrogate (\\ud800) in a value or key of meta or changes, valid JSON but no text a database stores,
    is a 400 naming the field, not a 500; nothing is recorded."""
    # json.dumps writes the surrogate as the escape \\ud800 (ASCII), as a client's JSON would carry it.
    response = service_client.post(url, json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}:")
    assert ingested() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("meta", "a string"),
        ("meta", ["a", "list"]),
        ("changes", ["a", "list"]),
        ("changes", "a string"),
        ("client_ip", "not-an-ip"),
        ("occurred_at", "yesterday"),
        ("outcome", "maybe"),
        ("entity_id", {"an": "object"}),
        ("entity", ["list"]),
        ("on_behalf_of", {"user": "carol"}),
    ],
)
def test_wrong_type_gives_400_naming_the_field(service_client, field, value):
    """A value of the wrong type or form is a 400 whose message names the field; nothing is recorded."""
    response = post_event(service_client, event(**{field: value}))

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["message"].startswith(f"{field}:")
    assert field in body["errors"]
    assert ingested() == []


@pytest.mark.parametrize(
    ("field", "length"),
    [("entity", 101), ("entity_id", 256), ("on_behalf_of", 151)],
)
def test_overlong_text_gives_400_naming_the_field(service_client, field, length):
    """Text fields are bounded like the columns they land in: one character more is a 400 naming the field."""
    response = post_event(service_client, event(**{field: "x" * length}))

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}:")


def test_body_that_is_a_list_gives_400(service_client):
    """The single-event endpoint wants a JSON object; a list is a 400."""
    response = post_event(service_client, [event()])

    assert response.status_code == 400
    assert ingested() == []


# --- sealing and verification ----------------------------------------------------------------------------------


def test_ingested_entries_are_sealed_on_commit_and_verify_passes(service_client, django_capture_on_commit_callbacks):
    """Entries of a single POST and of a batch get a seal once their transaction commits, and audit_verify reports
    the chain intact (no SystemExit)."""
    with django_capture_on_commit_callbacks(execute=True):
        single = post_event(
            service_client,
            event(on_behalf_of="carol", client_ip="2001:db8::7", occurred_at="2026-01-02T03:04:05.123456+05:30"),
        )
    with django_capture_on_commit_callbacks(execute=True):
        batch = post_event(service_client, {"events": [event(entity_id=str(n)) for n in range(20)]}, url=BATCH_URL)

    ids = [single.json()["id"]] + [item["id"] for item in batch.json()["events"]]
    assert Seal.objects.filter(entry_id__in=ids).count() == 21
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    assert "Audit chain intact" in out.getvalue()


@pytest.mark.parametrize(
    ("column", "value"),
    [("on_behalf_of", "mallory"), ("client_ip", "203.0.113.9"), ("occurred_at", "2027-06-01 00:00:00")],
)
def test_ingested_fields_are_covered_by_the_seal(service_client, triggers_dropped, column, value):
    """on_behalf_of, client_ip and occurred_at are part of the sealed digest: changing one behind the
    application's back is reported as "modified" by verification."""
    response = post_event(
        service_client, event(on_behalf_of="carol", client_ip="198.51.100.7", occurred_at="2026-01-01T00:00:00Z")
    )
    seal_pending()
    assert verify_chain().ok
    pk = response.json()["id"]

    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE audit_auditlog SET {column} = %s WHERE id = %s", [value, pk])

    assert [(finding.kind, finding.entry_id) for finding in verify_chain().findings] == [("modified", pk)]


# --- OpenAPI schema --------------------------------------------------------------------------------------------


def test_schema_documents_the_ingest_endpoint(officer, api_client):
    """The OpenAPI schema documents POST /api/audit/events and /batch with the Idempotency-Key header, and the
    description carries a curl example with "Authorization: Token"."""
    api_client.force_authenticate(officer)

    response = api_client.get(SCHEMA_URL, {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    for path in (EVENTS_URL, BATCH_URL):
        post = schema["paths"][path]["post"]
        headers = [p for p in post["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"]
        assert "201" in post["responses"]
    single = schema["paths"][EVENTS_URL]["post"]
    assert "curl" in single["description"]
    assert "Authorization: Token" in single["description"]
    request_schema = single["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = schema["components"]["schemas"][request_schema]["properties"]
    assert {
        "action",
        "entity",
        "entity_id",
        "outcome",
        "changes",
        "meta",
        "on_behalf_of",
        "client_ip",
        "occurred_at",
    } == set(properties)
