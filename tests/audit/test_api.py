"""The read API of the audit trail: GET /api/audit/events, /api/audit/events/<id> and /api/audit/verify."""

import base64
import datetime as dt
import os
import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from audit import context
from audit.actions import AuditAction
from audit.models import AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import record
from tests.audit.read_back import read_back

LIST_URL = "/api/audit/events"
VERIFY_URL = "/api/audit/verify"
UTC = dt.timezone.utc
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def detail_url(pk: int) -> str:
    return f"/api/audit/events/{pk}"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_entry(**fields) -> AuditLog:
    """An entry with chosen values (a fixed time included), stored like the recorder stores it (salted)."""
    values = {
        "created_at": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "action": AuditAction.AUDIT_VIEW,
        "entity": "AuditLog",
        "outcome": AuditLog.Outcome.SUCCESS,
        "salt": os.urandom(16),
        **fields,
    }
    if values.get("actor") is not None and "actor_label" not in fields:
        values["actor_label"] = values["actor"].username
    return AuditLog.objects.create(**values)


def bulk_entries(count: int, *, actor=None) -> list[AuditLog]:
    return AuditLog.objects.bulk_create(
        AuditLog(
            created_at=dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=n),
            actor=actor,
            actor_label=actor.username if actor else "",
            action=AuditAction.ROLE_UPDATE,
            entity="Role",
            entity_id=str(n),
            salt=os.urandom(16),
        )
        for n in range(count)
    )


def ids_of(response) -> list[int]:
    return [item["id"] for item in response.json()["results"]]


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def views_by(person) -> int:
    return AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW, actor=person).count()


@pytest.fixture
def dataset(user, other_user):
    """Four entries with distinct actors, actions, entities, outcomes, request ids and days."""
    return {
        "role_create": make_entry(
            created_at=dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
            actor=user,
            action=AuditAction.ROLE_CREATE,
            entity="Role",
            entity_id="7",
            request_id="req-a",
        ),
        "role_perm_replace": make_entry(
            created_at=dt.datetime(2024, 1, 2, 10, tzinfo=UTC),
            actor=other_user,
            action=AuditAction.ROLE_PERM_REPLACE,
            entity="Role",
            entity_id="8",
            outcome=AuditLog.Outcome.DENIED,
            request_id="req-b",
        ),
        "group_create": make_entry(
            created_at=dt.datetime(2024, 1, 3, 10, tzinfo=UTC),
            actor=user,
            action=AuditAction.GROUP_CREATE,
            entity="Group",
            entity_id="7",
            outcome=AuditLog.Outcome.FAILURE,
            request_id="req-c",
        ),
        "login_failed": make_entry(
            created_at=dt.datetime(2024, 1, 4, 10, tzinfo=UTC),
            actor=None,
            action=AuditAction.USER_LOGIN_FAILED,
            entity="User",
            entity_id="",
            outcome=AuditLog.Outcome.FAILURE,
            request_id="req-d",
        ),
    }


# --- authentication and visibility ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST_URL, detail_url(1), VERIFY_URL])
def test_anonymous_gets_401_with_www_authenticate(db, api_client, url):
    """An anonymous request to any audit endpoint is refused with 401 and a WWW-Authenticate challenge."""
    response = api_client.get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert set(response.json()) >= {"message", "code"}


def test_anonymous_request_reveals_no_entries(db, api_client, dataset):
    """The 401 body of an anonymous list request contains no entries."""
    response = api_client.get(LIST_URL)

    assert response.status_code == 401
    assert "results" not in response.json()


def test_officer_lists_every_entry(db, api_client, officer, dataset):
    """An officer (audit.view_auditlog) sees the entries of every actor, anonymous ones included."""
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert set(ids_of(response)) == {entry.pk for entry in dataset.values()}


def test_officer_opens_any_entry(db, api_client, officer, dataset):
    """An officer can open the detail of an entry whose actor is someone else."""
    api_client.force_authenticate(officer)
    entry = dataset["role_perm_replace"]

    response = api_client.get(detail_url(entry.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == entry.pk
    assert body["action"] == "ROLE.PERM.REPLACE"
    assert body["outcome"] == "denied"


def test_ordinary_user_lists_only_own_entries(db, api_client, user, dataset):
    """A user without audit.view_auditlog sees only the entries where they are the actor."""
    api_client.force_authenticate(user)

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert set(ids_of(response)) == {dataset["role_create"].pk, dataset["group_create"].pk}
    assert {item["actor"] for item in response.json()["results"]} == {user.pk}


def test_ordinary_user_opens_own_entry(db, api_client, user, dataset):
    """A user can open the detail of an entry where they are the actor."""
    api_client.force_authenticate(user)

    response = api_client.get(detail_url(dataset["role_create"].pk))

    assert response.status_code == 200
    assert response.json()["id"] == dataset["role_create"].pk


@pytest.mark.parametrize("name", ["role_perm_replace", "login_failed"])
def test_ordinary_user_gets_404_for_someone_elses_entry(db, api_client, user, dataset, name):
    """Another actor's entry (or one without an actor) is a 404 for an ordinary user, never a 403 that confirms it."""
    api_client.force_authenticate(user)

    response = api_client.get(detail_url(dataset[name].pk))

    assert response.status_code == 404
    assert set(response.json()) >= {"message", "code"}


def test_unknown_entry_id_gives_404(db, api_client, officer):
    """An id that does not exist is a 404 for an officer too."""
    api_client.force_authenticate(officer)

    response = api_client.get(detail_url(987654321))

    assert response.status_code == 404


# --- filters --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(lambda d, u, o: {"actor": u.pk}, {"role_create", "group_create"}, id="actor"),
        pytest.param(lambda d, u, o: {"actor": o.pk}, {"role_perm_replace"}, id="actor-other"),
        pytest.param(lambda d, u, o: {"action": "ROLE.CREATE"}, {"role_create"}, id="action-exact"),
        pytest.param(lambda d, u, o: {"action": "ROLE."}, {"role_create", "role_perm_replace"}, id="action-prefix"),
        pytest.param(lambda d, u, o: {"action": "ROLE.PERM."}, {"role_perm_replace"}, id="action-deep-prefix"),
        pytest.param(lambda d, u, o: {"action": "ROLE"}, set(), id="action-without-dot-is-exact"),
        pytest.param(lambda d, u, o: {"entity": "Role"}, {"role_create", "role_perm_replace"}, id="entity"),
        pytest.param(lambda d, u, o: {"entity_id": "7"}, {"role_create", "group_create"}, id="entity_id"),
        pytest.param(lambda d, u, o: {"entity": "Role", "entity_id": "7"}, {"role_create"}, id="entity+entity_id"),
        pytest.param(lambda d, u, o: {"outcome": "denied"}, {"role_perm_replace"}, id="outcome-denied"),
        pytest.param(lambda d, u, o: {"outcome": "failure"}, {"group_create", "login_failed"}, id="outcome-failure"),
        pytest.param(lambda d, u, o: {"request_id": "req-c"}, {"group_create"}, id="request_id"),
        pytest.param(lambda d, u, o: {"request_id": "req"}, set(), id="request_id-is-exact"),
        pytest.param(
            lambda d, u, o: {"since": "2024-01-03T10:00:00Z"}, {"group_create", "login_failed"}, id="since-inclusive"
        ),
        pytest.param(lambda d, u, o: {"until": "2024-01-02T10:00:00Z"}, {"role_create"}, id="until-exclusive"),
        pytest.param(
            lambda d, u, o: {"since": "2024-01-02T00:00:00Z", "until": "2024-01-04T00:00:00Z"},
            {"role_perm_replace", "group_create"},
            id="since+until",
        ),
        pytest.param(
            lambda d, u, o: {"since": "2024-01-02T12:00:00+02:00", "until": "2024-01-02T12:00:01+02:00"},
            {"role_perm_replace"},
            id="since+until-with-offset",
        ),
        pytest.param(
            # Offsets beyond ±15:59 are valid ISO 8601 that PostgreSQL refuses in a query: compared in UTC.
            lambda d, u, o: {"since": "2024-01-03T04:00:00+18:00", "until": "2024-01-03T00:00:00-18:00"},
            {"role_perm_replace", "group_create"},
            id="since+until-with-offset-beyond-15-hours",
        ),
        pytest.param(lambda d, u, o: {"action": "ROLE.", "outcome": "success"}, {"role_create"}, id="filters-combine"),
    ],
)
def test_officer_filter_returns_only_matching_entries(
    db, api_client, officer, user, other_user, dataset, params, expected
):
    """Each filter (actor, action exact or prefix ending in ".", entity, entity_id, outcome, request_id, since
    inclusive, until exclusive) returns exactly the matching entries; several filters combine with AND."""
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL, params(dataset, user, other_user))

    assert response.status_code == 200
    assert set(ids_of(response)) == {dataset[name].pk for name in expected}


def test_filters_apply_within_an_ordinary_users_scope(db, api_client, user, other_user, dataset):
    """A filter never widens what an ordinary user sees: actor=<someone else> returns nothing."""
    api_client.force_authenticate(user)

    assert ids_of(api_client.get(LIST_URL, {"actor": other_user.pk})) == []
    assert ids_of(api_client.get(LIST_URL, {"action": "ROLE."})) == [dataset["role_create"].pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "garbage"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"until": "0001-01-01T00:00:00+01:00"}, "until"),  # before year 1 in UTC
        ({"outcome": "nope"}, "outcome"),
        ({"actor": "someone"}, "actor"),
    ],
)
def test_bad_filter_value_gives_400_naming_the_field(db, api_client, officer, dataset, params, field):
    """A filter value that does not parse is a 400 in the API's error shape whose message names the field."""
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL, params)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["message"].startswith(f"{field}:")
    assert field in body["errors"]


# --- pagination -----------------------------------------------------------------------------------------------


def test_list_is_newest_first(db, api_client, officer, dataset):
    """Entries come ordered by id, highest (newest) first."""
    api_client.force_authenticate(officer)

    ids = ids_of(api_client.get(LIST_URL))

    assert ids == sorted(ids, reverse=True)
    assert ids[0] == dataset["login_failed"].pk


def test_page_size_limits_the_page(db, api_client, officer):
    """page_size sets how many entries a page holds."""
    bulk_entries(7)
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL, {"page_size": 3})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_default_page_size_is_50(db, api_client, officer):
    """Without page_size a page holds 50 entries."""
    bulk_entries(60)
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL)

    assert len(response.json()["results"]) == 50
    assert response.json()["next"]


def test_page_size_is_capped_at_1000(db, api_client, officer):
    """A page_size above 1000 yields pages of 1000 entries."""
    bulk_entries(1005)
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL, {"page_size": 5000})

    assert len(response.json()["results"]) == 1000


def test_next_links_walk_every_entry_exactly_once_without_count(db, api_client, officer):
    """Following "next" from the first page visits every entry once, newest first; no page carries a "count"."""
    entries = bulk_entries(11)
    expected = sorted((entry.pk for entry in entries), reverse=True)
    api_client.force_authenticate(officer)

    seen: list[int] = []
    url = f"{LIST_URL}?{urlencode({'page_size': 3, 'until': '2030-01-01T00:00:00Z'})}"
    pages = 0
    while url:
        body = api_client.get(url).json()
        assert "count" not in body
        assert set(body) == {"next", "previous", "results"}
        seen.extend(item["id"] for item in body["results"])
        url = body["next"]
        pages += 1
        assert pages <= 10, "pagination does not end"

    assert seen == expected
    assert pages == 4


def test_cursor_is_opaque_not_an_offset(db, api_client, officer):
    """The next link carries a cursor, never an offset or page number."""
    bulk_entries(5)
    api_client.force_authenticate(officer)

    next_url = api_client.get(LIST_URL, {"page_size": 2}).json()["next"]

    assert "cursor=" in next_url
    assert "offset=" not in next_url and "page=" not in next_url


# --- representation -------------------------------------------------------------------------------------------


def test_times_are_iso_8601_with_offset(db, api_client, officer):
    """created_at and the seal's sealed_at are ISO 8601 with a UTC offset ("Z" or "+00:00")."""
    entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=officer)
    seal_pending()
    api_client.force_authenticate(officer)

    body = api_client.get(detail_url(entry.pk)).json()

    for value in (body["created_at"], body["seal"]["sealed_at"]):
        assert ISO_WITH_OFFSET.match(value), value
        assert dt.datetime.fromisoformat(value.replace("Z", "+00:00")).utcoffset() == dt.timedelta(0)
    assert dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")) == entry.created_at


def test_list_times_are_iso_8601_with_offset(db, api_client, officer, dataset):
    """Every created_at in the list carries an offset and means the stored instant."""
    api_client.force_authenticate(officer)

    results = api_client.get(LIST_URL).json()["results"]

    stored = {entry.pk: entry.created_at for entry in dataset.values()}
    for item in results:
        assert ISO_WITH_OFFSET.match(item["created_at"])
        assert dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) == stored[item["id"]]


def test_salt_never_appears_in_output(db, api_client, officer):
    """Neither the salt field nor its bytes (raw, hex or base64) appear in list, detail or verify output."""
    entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=officer)
    seal_pending()
    salt = bytes(AuditLog.objects.get(pk=entry.pk).salt)
    api_client.force_authenticate(officer)

    responses = [api_client.get(LIST_URL), api_client.get(detail_url(entry.pk)), api_client.get(VERIFY_URL)]

    for response in responses:
        assert response.status_code == 200
        text = response.content.decode()
        assert "salt" not in text
        for form in (
            salt.hex(),
            salt.hex().upper(),
            base64.b64encode(salt).decode(),
            base64.urlsafe_b64encode(salt).decode(),
        ):
            assert form not in text
        assert salt not in response.content


def test_seal_is_null_until_sealed_then_shown(db, api_client, officer):
    """An unsealed entry shows "seal": null; once sealed it shows its chain index, hash and time."""
    entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=officer)
    api_client.force_authenticate(officer)

    assert api_client.get(detail_url(entry.pk)).json()["seal"] is None

    seal_pending()
    seal = Seal.objects.get(entry_id=entry.pk)
    shown = api_client.get(detail_url(entry.pk)).json()["seal"]

    assert shown["chain_index"] == seal.chain_index
    assert shown["hash"] == seal.hash
    assert dt.datetime.fromisoformat(shown["sealed_at"].replace("Z", "+00:00")) == seal.sealed_at


def test_list_shows_each_entrys_own_seal(db, api_client, officer):
    """In the list, each sealed entry carries its own seal and entries sealed later carry none yet."""
    first = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=officer)
    second = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1, actor=officer)
    seal_pending()
    third = record(AuditAction.ROLE_DELETE, entity="Role", entity_id=1, actor=officer)
    api_client.force_authenticate(officer)

    results = {item["id"]: item for item in api_client.get(LIST_URL).json()["results"]}

    for entry in (first, second):
        seal = Seal.objects.get(entry_id=entry.pk)
        shown = results[entry.pk]["seal"]
        assert set(shown) == {"chain_index", "hash", "sealed_at"}
        assert (shown["chain_index"], shown["hash"]) == (seal.chain_index, seal.hash)
    assert results[first.pk]["seal"]["hash"] != results[second.pk]["seal"]["hash"]
    assert results[third.pk]["seal"] is None


# --- authentication methods -----------------------------------------------------------------------------------


def test_http_basic_authentication_works(db, api_client, user, password):
    """HTTP Basic credentials authenticate the user: 200 and the view is recorded under their name."""
    api_client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, password))

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert views_by(user) == 1


def test_http_basic_with_wrong_password_gets_401_and_records_failed_login(db, api_client, user):
    """Wrong Basic credentials are a 401 (not a crash), recorded as one USER.LOGIN_FAILED entry of this request,
    without actor or password; no AUDIT.VIEW is recorded."""
    api_client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, "wrong-password"))

    response = api_client.get(LIST_URL)

    assert response.status_code == 401
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).exists()
    failed = AuditLog.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert failed.outcome == AuditLog.Outcome.FAILURE
    assert failed.actor_id is None
    assert failed.meta == {"username": user.username}
    assert failed.request_id == response["X-Request-ID"]


def test_session_authentication_works(db, api_client, user, password):
    """A logged-in session authenticates the user: 200 and the view is recorded under their name."""
    assert api_client.login(username=user.username, password=password)

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert views_by(user) == 1


def test_token_authentication_works(db, api_client, user):
    """A DRF token ("Authorization: Token <key>") authenticates the user: 200 and the view is recorded."""
    token = Token.objects.create(user=user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert views_by(user) == 1


def test_unknown_token_gets_401(db, api_client, user):
    """A token that does not exist is a 401."""
    api_client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = api_client.get(LIST_URL)

    assert response.status_code == 401


# --- reads are audited ----------------------------------------------------------------------------------------


def test_list_request_records_one_audit_view(db, api_client, user, dataset):
    """One list request writes exactly one AUDIT.VIEW entry, by the reader, however many rows it returned."""
    api_client.force_authenticate(user)
    before = AuditLog.objects.count()

    response = api_client.get(LIST_URL, {"action": "ROLE."})

    assert response.status_code == 200
    assert AuditLog.objects.count() == before + 1
    view = AuditLog.objects.latest("id")
    assert view.action == AuditAction.AUDIT_VIEW
    assert view.actor_id == user.pk
    assert view.outcome == AuditLog.Outcome.SUCCESS
    assert view.meta["filters"] == {"action": "ROLE."}
    assert view.meta["returned"] == 1


def test_detail_request_records_one_audit_view(db, api_client, officer, dataset):
    """One detail request writes exactly one AUDIT.VIEW entry by the reader, naming the entry opened."""
    api_client.force_authenticate(officer)
    entry = dataset["group_create"]
    before = AuditLog.objects.count()

    response = api_client.get(detail_url(entry.pk))

    assert response.status_code == 200
    assert AuditLog.objects.count() == before + 1
    view = AuditLog.objects.latest("id")
    assert view.action == AuditAction.AUDIT_VIEW
    assert view.actor_id == officer.pk
    assert view.entity == "AuditLog"
    assert view.entity_id == str(entry.pk)


def test_audit_view_entry_carries_the_request_context(db, api_client, user):
    """The AUDIT.VIEW entry of an API call has the caller's request id, IP address and user agent."""
    api_client.force_authenticate(user)

    response = api_client.get(LIST_URL, HTTP_X_REQUEST_ID="corr-42", HTTP_USER_AGENT="pytest-agent")

    view = read_back(action=AuditAction.AUDIT_VIEW)
    assert response["X-Request-ID"] == "corr-42"
    assert view.request_id == "corr-42"
    assert view.user_agent == "pytest-agent"
    assert view.ip_address == "127.0.0.1"


def test_bad_filter_records_no_audit_view(db, api_client, officer):
    """A rejected list request (400) returns no entries and records no AUDIT.VIEW."""
    api_client.force_authenticate(officer)

    response = api_client.get(LIST_URL, {"since": "garbage"})

    assert response.status_code == 400
    assert views_by(officer) == 0


def test_secret_filter_values_are_redacted_in_the_view_entry(db, api_client, user):
    """A query parameter with a sensitive name is stored as [REDACTED] in the AUDIT.VIEW entry."""
    api_client.force_authenticate(user)

    api_client.get(LIST_URL, {"token": "canary-secret-123"})

    view = AuditLog.objects.get(action=AuditAction.AUDIT_VIEW)
    assert view.meta["filters"]["token"] == "[REDACTED]"
    assert "canary-secret-123" not in str(view.meta)


# --- verify ---------------------------------------------------------------------------------------------------


def test_verify_refuses_ordinary_user_and_records_denied(db, api_client, user):
    """An ordinary user gets 403 from /verify, and the refusal is recorded as a denied AUDIT.VERIFY entry."""
    api_client.force_authenticate(user)

    response = api_client.get(VERIFY_URL)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    entry = AuditLog.objects.get(action=AuditAction.AUDIT_VERIFY)
    assert entry.actor_id == user.pk
    assert entry.outcome == AuditLog.Outcome.DENIED
    assert entry.meta == {"path": VERIFY_URL, "method": "GET"}


def test_verify_for_officer_reports_ok_and_records_entry(db, api_client, officer, user):
    """An officer gets 200 with ok true for an intact chain, and an AUDIT.VERIFY success entry is recorded."""
    for n in range(3):
        record(AuditAction.ROLE_CREATE, entity="Role", entity_id=n, actor=user)
    seal_pending()
    api_client.force_authenticate(officer)

    response = api_client.get(VERIFY_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["entries_checked"] == 3
    assert body["findings"] == []
    assert body["head_index"] == Seal.objects.order_by("-chain_index").first().chain_index
    assert ISO_WITH_OFFSET.match(body["verified_at"])
    entry = AuditLog.objects.get(action=AuditAction.AUDIT_VERIFY)
    assert entry.actor_id == officer.pk
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.meta["entries_checked"] == 3


# --- query counts ---------------------------------------------------------------------------------------------


def _list_queries(api_client, officer_pk: int) -> tuple[int, int]:
    # A fresh user object per request, so that no permission cache carries over between the two measurements.
    api_client.force_authenticate(User.objects.get(pk=officer_pk))
    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(LIST_URL, {"page_size": 1000})
    assert response.status_code == 200
    # The keys of a page's encrypted entries take one query, run only when the page holds any.
    page_keys = [
        q
        for q in queries.captured_queries
        if 'FROM "audit_subjectkey" WHERE "audit_subjectkey"."subject_id" IN' in q["sql"]
    ]
    assert len(page_keys) <= 1
    return len(queries) - len(page_keys), len(response.json()["results"])


def test_list_runs_a_constant_number_of_queries(db, api_client, officer, user):
    """Listing 10 or 1,000 entries (half of them sealed) in one page runs the same number of queries."""
    bulk_entries(10, actor=user)
    seal_pending()
    _list_queries(api_client, officer.pk)  # the officer's first AUDIT.VIEW makes their key
    small_queries, small_rows = _list_queries(api_client, officer.pk)

    bulk_entries(500, actor=user)
    seal_pending()
    bulk_entries(500, actor=user)
    large_queries, large_rows = _list_queries(api_client, officer.pk)

    assert small_rows == 11  # and the officer's first AUDIT.VIEW
    assert large_rows == 1000
    assert large_queries == small_queries


def test_list_runs_no_count_query(db, api_client, officer):
    """The list never counts the table (no COUNT in any query of the request)."""
    bulk_entries(20)
    api_client.force_authenticate(officer)

    with CaptureQueriesContext(connection) as queries:
        api_client.get(LIST_URL)

    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]


def test_request_context_binding_fills_request_id(db, api_client, officer):
    """Entries recorded under a bound request context are found by their request_id filter."""
    with context.bound(context.RequestContext(request_id="bound-1", ip_address="10.0.0.1", user_agent="x")):
        entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=officer)
    api_client.force_authenticate(officer)

    assert ids_of(api_client.get(LIST_URL, {"request_id": "bound-1"})) == [entry.pk]
