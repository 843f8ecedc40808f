"""record(): what one entry holds, what is refused, and what it takes from the request."""

import datetime as dt
import re
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test import RequestFactory
from django.utils import timezone

from audit import context, services
from audit.actions import AuditAction
from audit.exceptions import InvalidAuditEntry
from audit.models import AuditLog, Seal
from audit.services import EventSpec, _new_entry, record, record_many
from rbac.backends import forget_role_permissions
from tests.audit.read_back import read_back

pytestmark = pytest.mark.django_db

EVENTS = "/api/audit/events"
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _permission(app_label: str, codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _assert_nothing_written() -> None:
    assert AuditLog.objects.count() == 0
    assert Seal.objects.count() == 0


# --- what an entry holds -------------------------------------------------------------------------------------------


def test_created_at_is_set_by_the_recorder_in_utc():
    """created_at is filled by record() with an aware UTC timestamp of the moment of the call."""
    before = timezone.now()
    entry = record(AuditAction.AUDIT_VERIFY, entity="AuditLog")
    after = timezone.now()

    stored = AuditLog.objects.get(pk=entry.pk).created_at
    assert timezone.is_aware(stored)
    assert stored.utcoffset() == dt.timedelta(0)
    assert before <= stored <= after
    assert stored == entry.created_at


def test_actor_and_actor_label_are_recorded(user):
    """The actor is stored with a snapshot of the user name, so history stays readable after a rename."""
    original = user.username
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    user.username = "renamed-later"
    user.save()

    stored = read_back(pk=entry.pk)
    assert stored.actor_id == user.pk
    assert stored.actor_label == entry.actor_label == original


def test_no_actor_outside_a_request_records_a_system_entry():
    """Without an actor and without a request the entry has no actor, no label, no address and no request id."""
    stored = AuditLog.objects.get(pk=record(AuditAction.AUDIT_VERIFY, entity="AuditLog").pk)

    assert stored.actor_id is None
    assert stored.actor_label == ""
    assert stored.perms_snapshot == {"perms": []}
    assert stored.ip_address is None
    assert stored.user_agent == ""
    assert stored.request_id == ""


def test_anonymous_actor_is_recorded_as_no_actor():
    """An AnonymousUser passed as actor is no actor: nothing is attributed to it."""
    stored = AuditLog.objects.get(pk=record(AuditAction.AUDIT_VIEW, actor=AnonymousUser()).pk)

    assert stored.actor_id is None
    assert stored.actor_label == ""


def test_perms_snapshot_lists_an_ordinary_users_effective_permissions(user):
    """perms_snapshot is {"perms": [...]}: the actor's own and group permissions as sorted app_label.codename."""
    user.user_permissions.add(_permission("auth", "change_group"))
    group = Group.objects.create(name="Reviewers")
    group.permissions.add(_permission("audit", "view_auditlog"))
    user.groups.add(group)
    actor = User.objects.get(pk=user.pk)  # a fresh object: no permission cache from before the grants

    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=actor)

    stored = AuditLog.objects.get(pk=entry.pk).perms_snapshot
    assert stored == {"perms": ["audit.view_auditlog", "auth.change_group"]}


def test_perms_snapshot_follows_the_users_permission_cache(user):
    """Entries of one user object record the permissions its checks see: the same until its permission cache is
    dropped (as after a change of roles), the new ones after."""
    user.user_permissions.add(_permission("auth", "change_group"))
    first = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    user.user_permissions.add(_permission("audit", "view_auditlog"))
    cached = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    forget_role_permissions(user)
    after = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)

    snapshots = [AuditLog.objects.get(pk=entry.pk).perms_snapshot["perms"] for entry in (first, cached, after)]
    assert snapshots == [["auth.change_group"], ["auth.change_group"], ["audit.view_auditlog", "auth.change_group"]]
    assert user.has_perm("audit.view_auditlog")


def test_perms_snapshot_of_a_deactivated_user_is_empty_whatever_was_cached(user):
    """A user deactivated in place holds no permission any more, as Django's checks answer, even while the
    permissions read before are still cached on the object."""
    user.user_permissions.add(_permission("auth", "change_group"))
    record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    user.is_active = False

    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)

    assert AuditLog.objects.get(pk=entry.pk).perms_snapshot == {"perms": []}
    assert not user.has_perm("auth.change_group")


def test_a_snapshot_changed_by_a_caller_is_not_the_next_entrys(user):
    """Each entry gets a snapshot of its own: what a caller does to one returned entry reaches no other."""
    user.user_permissions.add(_permission("auth", "change_group"))
    first = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    first.perms_snapshot["perms"].append("everything")

    second = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)

    assert AuditLog.objects.get(pk=second.pk).perms_snapshot == {"perms": ["auth.change_group"]}


def test_perms_snapshot_of_a_user_without_permissions_is_empty(user):
    """A user holding no permission has an empty list, not a missing key."""
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)

    assert AuditLog.objects.get(pk=entry.pk).perms_snapshot == {"perms": []}


def test_perms_snapshot_of_a_superuser_is_the_wildcard(db):
    """A superuser's snapshot says so instead of listing every permission of the project."""
    admin = User.objects.create_superuser("root-admin", "root@example.org", "x-Very-long-pass-1")

    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=admin)

    assert AuditLog.objects.get(pk=entry.pk).perms_snapshot == {"perms": ["*"], "superuser": True}


def test_salt_is_sixteen_random_bytes():
    """Every entry gets its own 16-byte salt."""
    first = record(AuditAction.AUDIT_VERIFY, entity="AuditLog")
    second = record(AuditAction.AUDIT_VERIFY, entity="AuditLog")

    salts = [bytes(AuditLog.objects.get(pk=entry.pk).salt) for entry in (first, second)]
    assert [len(salt) for salt in salts] == [16, 16]
    assert salts[0] != salts[1]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (42, "42"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        ("repo/path/file.txt", "repo/path/file.txt"),
        (None, ""),
        ("x" * 255, "x" * 255),
    ],
)
def test_entity_id_is_stored_as_text(given, stored):
    """entity_id accepts any id (int, UUID, path) and stores its text, so every entity fits one column."""
    entry = record(AuditAction.GROUP_UPDATE, entity="Group", entity_id=given)

    assert AuditLog.objects.get(pk=entry.pk).entity_id == stored
    assert AuditLog.objects.filter(entity="Group", entity_id=stored).count() == 1


def test_changes_and_meta_are_stored_as_given():
    """changes and meta land as plain JSON objects, untouched when they hold no secrets."""
    changes = {"name": {"before": "Old", "after": "New"}}
    meta = {"reason": "ticket 7", "count": 3, "when": dt.date(2024, 5, 1)}

    entry = record(AuditAction.GROUP_UPDATE, entity="Group", entity_id=1, changes=changes, meta=meta)

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.changes == changes
    assert stored.meta == {"reason": "ticket 7", "count": 3, "when": "2024-05-01"}
    assert stored.outcome == AuditLog.Outcome.SUCCESS


@pytest.mark.parametrize("outcome", ["success", "failure", "denied"])
def test_each_outcome_is_accepted(outcome):
    """The three outcomes are stored as given."""
    entry = record(AuditAction.AUDIT_VERIFY, entity="AuditLog", outcome=outcome)

    assert AuditLog.objects.get(pk=entry.pk).outcome == outcome


# --- what is refused -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "FOO.BAR",  # well formed but not in the catalogue
        "AUDIT.VIEWED",
        "audit.view",  # lower case
        "AUDIT",  # no operation
        "AUDIT.",
        ".VIEW",
        "AUDIT VIEW",
        "AUDIT.VIEW\n",
        "AUDIT.VIEW; DROP TABLE audit_auditlog",
        "",
    ],
)
def test_unknown_or_malformed_action_is_refused(action):
    """A code outside the catalogue, or not shaped ENTITY.OPERATION, raises InvalidAuditEntry and writes nothing."""
    with pytest.raises(InvalidAuditEntry):
        record(action, entity="AuditLog")

    _assert_nothing_written()


@pytest.mark.parametrize("outcome", ["ok", "SUCCESS", "", None, "allowed"])
def test_bad_outcome_is_refused(outcome):
    """An outcome other than success, failure or denied raises InvalidAuditEntry and writes nothing."""
    with pytest.raises(InvalidAuditEntry):
        record(AuditAction.AUDIT_VIEW, entity="AuditLog", outcome=outcome)

    _assert_nothing_written()


@pytest.mark.parametrize(
    ("occurred_at", "message"),
    [
        (dt.datetime(2026, 11, 23, 9, 30), "must carry a time zone"),
        (dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1))), "out of range in UTC"),
        (dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), "out of range in UTC"),
    ],
    ids=["naive", "after-9999-in-utc", "before-year-1-in-utc"],
)
def test_an_occurred_at_that_cannot_be_hashed_is_refused(occurred_at, message):
    """The digest takes ``occurred_at`` in UTC: a naive time, or one that UTC would push off the calendar, is
    refused before anything is written (once committed, such an entry could never be sealed)."""
    spec = EventSpec(action=AuditAction.AUDIT_VIEW, entity="AuditLog", occurred_at=occurred_at)
    with pytest.raises(InvalidAuditEntry, match=message):
        record_many([spec])

    _assert_nothing_written()


def test_an_entry_built_by_position_is_the_entry_built_by_keyword(user):
    """Built by position for speed, an entry holds what ``AuditLog(...)`` with the same values holds, the fields
    left out included; leaving out a field with a default of its own, or naming no field, is refused."""
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", entity_id=7, meta={"reason": "r"}, actor=user)
    values = {
        field.attname: getattr(entry, field.attname)
        for field in AuditLog._meta.concrete_fields
        if field.attname not in {"id", "actor_id", "personal", "personal_commitments", "ip_bucket", "occurred_at"}
    }
    built, reference = _new_entry(user, **values), AuditLog(actor=user, **values)

    for field in AuditLog._meta.concrete_fields:
        assert getattr(built, field.attname) == getattr(reference, field.attname), field.name
    assert built.actor is user
    with pytest.raises(TypeError, match="'outcome'"):
        _new_entry(user, **{name: value for name, value in values.items() if name != "outcome"})
    with pytest.raises(TypeError, match="'actor'"):
        _new_entry(user, **values, actor=user)


@pytest.mark.parametrize(
    "field",
    ["meta", "changes"],
)
@pytest.mark.parametrize(
    "value",
    [
        {"thing": object()},
        {"nested": [{"deeper": {1, 2}}]},
        {"ratio": float("nan")},
        {"ratio": float("inf")},
        ["not", "a", "mapping"],
        "just text",
    ],
    ids=["object", "set-in-list", "nan", "inf", "list", "str"],
)
def test_values_that_are_not_a_json_object_are_refused(field, value):
    """meta and changes must be JSON objects of JSON values; anything else raises InvalidAuditEntry, writes nothing."""
    with pytest.raises(InvalidAuditEntry):
        record(AuditAction.AUDIT_VIEW, entity="AuditLog", **{field: value})

    _assert_nothing_written()


@pytest.mark.parametrize("field", ["meta", "changes"])
def test_oversized_json_is_refused(settings, field):
    """meta or changes larger than AUDIT_MAX_JSON_BYTES once serialised raise InvalidAuditEntry and write nothing."""
    settings.AUDIT_MAX_JSON_BYTES = 200

    with pytest.raises(InvalidAuditEntry, match="larger than 200 bytes"):
        record(AuditAction.AUDIT_VIEW, entity="AuditLog", **{field: {"note": "x" * 300}})

    _assert_nothing_written()


@pytest.mark.parametrize("field", ["meta", "changes"])
def test_json_within_the_limit_is_accepted(settings, field):
    """The size limit refuses only what exceeds it: a value just below it is stored."""
    settings.AUDIT_MAX_JSON_BYTES = 200
    value = {"note": "x" * 150}  # 164 bytes serialised

    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", **{field: value})

    assert getattr(AuditLog.objects.get(pk=entry.pk), field) == value


def test_over_long_entity_id_is_refused():
    """An entity_id over 255 characters raises InvalidAuditEntry instead of being cut or failing in the database."""
    with pytest.raises(InvalidAuditEntry, match="entity_id"):
        record(AuditAction.GROUP_UPDATE, entity="Group", entity_id="x" * 256)

    _assert_nothing_written()


def test_over_long_entity_is_refused():
    """An entity label over 100 characters raises InvalidAuditEntry and writes nothing."""
    with pytest.raises(InvalidAuditEntry, match="entity"):
        record(AuditAction.GROUP_UPDATE, entity="G" * 101, entity_id=1)

    _assert_nothing_written()


# --- the transaction it is written in ------------------------------------------------------------------------------


@pytest.fixture
def transactions_at_insert(monkeypatch) -> list[bool]:
    """For each INSERT of entries, whether a transaction was open on its connection."""
    seen: list[bool] = []
    insert = services.insert_entries

    def spy(entries, using):
        seen.append(connection.in_atomic_block)
        return insert(entries, using)

    monkeypatch.setattr(services, "insert_entries", spy)
    return seen


def test_an_entry_recorded_outside_a_transaction_is_written_without_one(committed_db, transactions_at_insert):
    """In autocommit the entry's INSERT commits by itself, with no BEGIN and COMMIT around it, and the entry is
    sealed at once, as after a commit."""
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="1")

    assert transactions_at_insert == [False]
    assert not connection.in_atomic_block
    assert Seal.objects.filter(entry_id=entry.pk).exists()


def test_an_entry_recorded_in_the_callers_transaction_is_written_in_it(transactions_at_insert):
    """Inside the caller's transaction the entry is part of it: rolled back with it."""
    with transaction.atomic():
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="1")
        transaction.set_rollback(True)

    assert transactions_at_insert == [True]
    _assert_nothing_written()


def test_a_failed_insert_leaves_the_callers_transaction_unable_to_commit(monkeypatch):
    """If the entry cannot be written, a caller that catches the error still cannot commit its change unaudited:
    the transaction refuses every further statement until it is rolled back."""

    def failing(entries, using):
        raise DatabaseError("the audit table is unavailable")

    monkeypatch.setattr(services, "insert_entries", failing)
    with pytest.raises(TransactionManagementError), transaction.atomic():
        with pytest.raises(DatabaseError):
            record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="1")
        Group.objects.create(name="changed without its entry")

    assert not Group.objects.filter(name="changed without its entry").exists()


# --- the request context -------------------------------------------------------------------------------------------


def _factory_request(user, **extra):
    request = RequestFactory().get(
        "/somewhere",
        REMOTE_ADDR="192.0.2.10",
        HTTP_USER_AGENT="ctx-agent/1.0",
        HTTP_X_REQUEST_ID="ctx-request-1",
        **extra,
    )
    request.user = user
    return request


def test_bound_request_context_supplies_actor_ip_agent_and_request_id(user):
    """Inside a request bound by the middleware, an entry recorded without an actor takes the request's user,
    client address, user agent and request id."""
    with context.bound(context.from_request(_factory_request(user))):
        entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog")

    stored = read_back(pk=entry.pk)
    assert stored.actor_id == user.pk
    assert stored.actor_label == user.username
    assert stored.ip_address == "192.0.2.10"
    assert stored.user_agent == "ctx-agent/1.0"
    assert stored.request_id == "ctx-request-1"


def test_request_argument_supplies_the_context_when_none_is_bound(user):
    """A caller holding a request the middleware never saw (signals) passes it, and its context is used."""
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", request=_factory_request(user))

    stored = read_back(pk=entry.pk)
    assert (stored.actor_id, stored.ip_address, stored.user_agent, stored.request_id) == (
        user.pk,
        "192.0.2.10",
        "ctx-agent/1.0",
        "ctx-request-1",
    )


def test_explicit_actor_wins_over_the_request_user(user, other_user):
    """An actor passed by the caller is recorded even inside another user's request; the request still gives the
    address and request id."""
    with context.bound(context.from_request(_factory_request(user))):
        entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=other_user)

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.actor_id == other_user.pk
    assert stored.request_id == "ctx-request-1"


def test_anonymous_request_records_no_actor(db):
    """In a request of an anonymous visitor, an entry without an actor has none, but keeps the address."""
    with context.bound(context.from_request(_factory_request(AnonymousUser()))):
        entry = record(AuditAction.USER_LOGIN_FAILED, entity="User", outcome="failure")

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.actor_id is None
    assert stored.ip_address == "192.0.2.10"


def test_real_request_entry_carries_request_id_address_and_user_agent(client, user):
    """An entry written while serving a real request (GET /api/audit/events) carries the request's actor,
    X-Request-ID, REMOTE_ADDR and User-Agent, and the response echoes the request id."""
    client.force_login(user)

    response = client.get(
        EVENTS,
        HTTP_X_REQUEST_ID="trace-2024.abc:42",
        REMOTE_ADDR="203.0.113.77",
        HTTP_USER_AGENT="AuditTest/2.0 (pytest)",
    )

    assert response.status_code == 200
    assert response["X-Request-ID"] == "trace-2024.abc:42"
    entry = read_back(action=AuditAction.AUDIT_VIEW)
    assert entry.actor_id == user.pk
    assert entry.request_id == "trace-2024.abc:42"
    assert entry.ip_address == "203.0.113.77"
    assert entry.user_agent == "AuditTest/2.0 (pytest)"


def test_request_id_of_64_token_characters_is_kept(client, user):
    """A request id at the length limit made of token characters is used as given (correlation across services)."""
    client.force_login(user)
    given = "A-z0._:" + "9" * 57

    response = client.get(EVENTS, HTTP_X_REQUEST_ID=given)

    assert response["X-Request-ID"] == given
    assert AuditLog.objects.get(action=AuditAction.AUDIT_VIEW).request_id == given


@pytest.mark.parametrize(
    "bad",
    [
        "has spaces in it",
        "x" * 200,
        "x" * 65,
        "line\nbreak",
        "semi;colon",
        "<script>",
        "ünïcode",
    ],
    ids=["spaces", "200-chars", "65-chars", "newline", "semicolon", "markup", "non-ascii"],
)
def test_bad_request_id_is_replaced_by_a_generated_one(client, user, bad):
    """An X-Request-ID that is not a short token is not trusted: a generated id is used in the entry and echoed."""
    client.force_login(user)

    response = client.get(EVENTS, HTTP_X_REQUEST_ID=bad)

    assert response.status_code == 200
    generated = response["X-Request-ID"]
    assert GENERATED_REQUEST_ID.match(generated)
    assert AuditLog.objects.get(action=AuditAction.AUDIT_VIEW).request_id == generated


def test_missing_request_id_is_generated_and_echoed(client, user):
    """Without X-Request-ID a new id is generated, echoed in the response and stored with the entry."""
    client.force_login(user)

    response = client.get(EVENTS)

    generated = response["X-Request-ID"]
    assert GENERATED_REQUEST_ID.match(generated)
    assert AuditLog.objects.get(action=AuditAction.AUDIT_VIEW).request_id == generated
