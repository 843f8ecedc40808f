"""FOIA requests: the 20-working-day deadline, tracking numbers, the audited services, the scope of a request,
redaction profiles and the admin a FOIA officer works in."""

import datetime as dt
import json
import os
import threading
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from audit.actions import COMPLIANCE, ENTITIES, AuditAction
from audit.bootstrap import ensure_default_redaction_profile
from audit.export.rules import RedactionRule
from audit.foia import (
    describe_scope,
    entries_in_scope,
    foia_request_create,
    foia_request_update,
    foia_scope,
    next_tracking_number,
    working_days_after,
    working_days_left,
)
from audit.foia_models import DEFAULT_PROFILE_NAME, FoiaRequest, RedactionProfile
from audit.models import AuditLog
from tests.factories.users import UserFactory

UTC = dt.timezone.utc
Status = FoiaRequest.Status
MANIFEST = "ab" * 32
ADD_URL = reverse("admin:audit_foiarequest_add")
CHANGELIST_URL = reverse("admin:audit_foiarequest_changelist")
PROFILE_ADD_URL = reverse("admin:audit_redactionprofile_add")


def change_url(pk: int) -> str:
    return reverse("admin:audit_foiarequest_change", args=[pk])


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def new_request(actor: Any = None, **fields: Any) -> FoiaRequest:
    values = {
        "requester": "Jane Doe",
        "requester_email": "jane@example.org",
        "description": "All lock events of January 2026",
        "received_on": dt.date(2026, 11, 20),
        **fields,
    }
    return foia_request_create(actor=actor, **values)


def foia_entries(action: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=action).order_by("id"))


def with_perms(user: User, *codenames: str) -> User:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="audit", codename__in=codenames))
    # A fresh instance: the backends cache permissions on the object they were asked through.
    return User.objects.get(pk=user.pk)


# --- working days -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "days", "expected"),
    [
        (dt.date(2026, 11, 20), 20, dt.date(2026, 12, 18)),  # Friday: four whole weeks later
        (dt.date(2026, 11, 23), 20, dt.date(2026, 12, 21)),  # Monday
        (dt.date(2026, 11, 21), 20, dt.date(2026, 12, 18)),  # Saturday counts from Monday, as Friday does
        (dt.date(2026, 11, 22), 20, dt.date(2026, 12, 18)),  # Sunday
        (dt.date(2026, 11, 20), 1, dt.date(2026, 11, 23)),  # Friday + 1 is Monday
        (dt.date(2026, 11, 19), 1, dt.date(2026, 11, 20)),  # Thursday + 1 is Friday
        (dt.date(2026, 11, 21), 1, dt.date(2026, 11, 23)),  # Saturday + 1 is Monday
        (dt.date(2026, 11, 21), 0, dt.date(2026, 11, 21)),  # zero days: the day itself
        (dt.date(2026, 12, 30), 3, dt.date(2027, 1, 4)),  # across the year end
        (dt.date(2028, 2, 25), 3, dt.date(2028, 3, 1)),  # across a leap day (Tuesday 29 February counts)
    ],
)
def test_working_days_after_skips_weekends(day, days, expected):
    """working_days_after counts only Monday to Friday and never counts the start day itself."""
    assert working_days_after(day, days) == expected


def test_working_days_after_never_lands_on_a_weekend_and_counts_exactly():
    """For every start day of a year and 1..25 days, the result is a weekday with exactly that many weekdays after
    the start day up to it."""
    start = dt.date(2026, 1, 1)
    for offset in range(365):
        day = start + dt.timedelta(days=offset)
        for days in range(1, 26):
            due = working_days_after(day, days)
            span = [day + dt.timedelta(days=n) for n in range(1, (due - day).days + 1)]
            assert due.weekday() < 5
            assert sum(d.weekday() < 5 for d in span) == days


def test_working_days_after_skips_given_holidays_and_refuses_negative_days():
    """Holidays given are skipped like weekends (Thanksgiving 2026 moves the Friday deadline to Monday); a negative
    number of days is a ValueError."""
    assert working_days_after(dt.date(2026, 11, 20), 20, holidays={dt.date(2026, 11, 26)}) == dt.date(2026, 12, 21)
    with pytest.raises(ValueError):
        working_days_after(dt.date(2026, 11, 20), -1)


@pytest.mark.parametrize(
    ("due", "today", "expected"),
    [
        (dt.date(2026, 12, 18), dt.date(2026, 12, 18), 0),
        (dt.date(2026, 11, 23), dt.date(2026, 11, 20), 1),  # Friday to Monday: one working day
        (dt.date(2026, 12, 18), dt.date(2026, 11, 20), 20),
        (dt.date(2026, 11, 20), dt.date(2026, 11, 24), -2),  # overdue since Monday and Tuesday
    ],
)
def test_working_days_left(due, today, expected):
    """working_days_left counts the working days after today up to the due day; negative once overdue."""
    assert working_days_left(due, today) == expected


# --- tracking numbers and creation --------------------------------------------------------------------------------


def test_tracking_numbers_are_sequential_per_year(db):
    """Requests get FOIA-<year of receipt>-000001, -000002, ...; a new year starts again at 000001."""
    first = new_request(received_on=dt.date(2026, 1, 2))
    second = new_request(received_on=dt.date(2026, 12, 31))
    next_year = new_request(received_on=dt.date(2027, 1, 4))
    third = new_request(received_on=dt.date(2026, 6, 1))

    assert [first.tracking_number, second.tracking_number, third.tracking_number] == [
        "FOIA-2026-000001",
        "FOIA-2026-000002",
        "FOIA-2026-000003",
    ]
    assert next_year.tracking_number == "FOIA-2027-000001"
    assert next_tracking_number(2026) == "FOIA-2026-000004"
    assert next_tracking_number(2025) == "FOIA-2025-000001"


def test_tracking_number_follows_the_highest_of_the_year(db):
    """After FOIA-2026-000041 (e.g. numbers carried over from another system) the next is FOIA-2026-000042."""
    carried = new_request()
    FoiaRequest.objects.filter(pk=carried.pk).update(tracking_number="FOIA-2026-000041")

    assert new_request().tracking_number == "FOIA-2026-000042"


def test_tracking_number_is_unique_in_the_database(db):
    """The database itself refuses a second request with the same tracking number."""
    existing = new_request()
    duplicate = FoiaRequest(
        tracking_number=existing.tracking_number,
        requester="Someone else",
        description="x",
        received_on=existing.received_on,
        due_on=existing.due_on,
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_create_sets_due_date_status_and_records_the_request(user):
    """A new request is "received", due 20 working days after receipt, and one FOIA.REQUEST.CREATE entry by the
    actor records every field with before None."""
    user = with_perms(user, "add_foiarequest")

    foia = new_request(actor=user)

    assert foia.status == Status.RECEIVED
    assert foia.due_on == dt.date(2026, 12, 18)
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_CREATE)
    assert entry.actor_id == user.pk
    assert entry.entity == "FoiaRequest"
    assert entry.entity_id == str(foia.pk)
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.changes["tracking_number"] == {"before": None, "after": "FOIA-2026-000001"}
    assert entry.changes["status"] == {"before": None, "after": "received"}
    assert entry.changes["due_on"] == {"before": None, "after": "2026-12-18"}
    assert entry.changes["requester"] == {"before": None, "after": "Jane Doe"}
    assert entry.changes["redaction_profile"] == {"before": None, "after": None}


def test_create_without_received_on_uses_today(db):
    """received_on defaults to today, and the due date follows from it."""
    foia = foia_request_create(actor=None, requester="Jane Doe", description="Everything")

    assert foia.received_on == timezone.localdate()
    assert foia.due_on == working_days_after(timezone.localdate(), 20)
    assert foia.tracking_number == f"FOIA-{timezone.localdate().year}-000001"


def test_create_refused_without_permission_records_denied(user):
    """A user without audit.add_foiarequest gets PermissionDenied; nothing is created and a denied entry names
    them."""
    with pytest.raises(PermissionDenied):
        new_request(actor=user)

    assert not FoiaRequest.objects.exists()
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_CREATE)
    assert entry.outcome == AuditLog.Outcome.DENIED
    assert entry.actor_id == user.pk
    assert "audit.add_foiarequest" in entry.meta["message"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"requester": ""}, "requester"),
        ({"requester_email": "not-an-email"}, "requester_email"),
        ({"scope_action_prefix": "lock."}, "scope_action_prefix"),
        (
            {"scope_since": dt.datetime(2026, 2, 1, tzinfo=UTC), "scope_until": dt.datetime(2026, 1, 1, tzinfo=UTC)},
            "scope_until",
        ),
        ({"redaction_profile": 999_999}, "redaction_profile"),
    ],
)
def test_create_refuses_bad_values_with_the_field_named(db, fields, field):
    """Bad values raise ValidationError on the field; nothing is created and a failure entry is recorded."""
    with pytest.raises(ValidationError) as raised:
        new_request(**fields)

    assert field in raised.value.message_dict
    assert not FoiaRequest.objects.exists()
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_CREATE)
    assert entry.outcome == AuditLog.Outcome.FAILURE


def test_create_refuses_unknown_fields(db):
    """A field the request does not have (or may not be set at creation, e.g. status) is a TypeError."""
    with pytest.raises(TypeError):
        new_request(status=Status.RELEASED)
    assert not FoiaRequest.objects.exists()


def test_redaction_profile_can_be_given_as_object_or_id(db):
    """redaction_profile accepts the profile or its id; the entry shows the profile by name."""
    profile = RedactionProfile.objects.get(name=DEFAULT_PROFILE_NAME)

    by_object = new_request(redaction_profile=profile)
    by_id = new_request(redaction_profile=profile.pk)

    assert by_object.redaction_profile == by_id.redaction_profile == profile
    entry = foia_entries(AuditAction.FOIA_REQUEST_CREATE)[-1]
    assert entry.changes["redaction_profile"] == {"before": None, "after": DEFAULT_PROFILE_NAME}


def test_concurrent_creates_get_distinct_sequential_numbers(postgres_only, committed_db):
    """8 requests created at the same moment in 8 connections all succeed with FOIA-2026-000001..000008: a number
    taken meanwhile is retried, never given twice."""
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    numbers: list[str] = []
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            numbers.append(new_request(requester=f"Requester {n}").tracking_number)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(numbers) == [f"FOIA-2026-{n:06d}" for n in range(1, threads_count + 1)]
    created = AuditLog.objects.filter(action=AuditAction.FOIA_REQUEST_CREATE, outcome=AuditLog.Outcome.SUCCESS)
    assert created.count() == threads_count


# --- updates and status transitions -------------------------------------------------------------------------------


def test_status_change_is_recorded_with_before_and_after(user):
    """received -> processing records FOIA.REQUEST.UPDATE whose diff holds only the status, with the reason and
    the tracking number in meta."""
    user = with_perms(user, "change_foiarequest")
    foia = new_request()

    updated = foia_request_update(actor=user, request_id=foia.pk, status=Status.PROCESSING, reason="search started")

    assert updated.status == Status.PROCESSING
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.actor_id == user.pk
    assert entry.entity_id == str(foia.pk)
    assert entry.changes == {"status": {"before": "received", "after": "processing"}}
    assert entry.meta == {"reason": "search started", "tracking_number": "FOIA-2026-000001"}


def test_changed_receipt_date_moves_the_due_date(db):
    """Correcting received_on recomputes due_on; both changes are in the diff, the tracking number stays."""
    foia = new_request()

    updated = foia_request_update(actor=None, request_id=foia.pk, received_on=dt.date(2026, 11, 23))

    assert updated.due_on == dt.date(2026, 12, 21)
    assert updated.tracking_number == foia.tracking_number
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.changes == {
        "received_on": {"before": "2026-11-20", "after": "2026-11-23"},
        "due_on": {"before": "2026-12-18", "after": "2026-12-21"},
    }


def test_none_clears_an_optional_scope_filter(db):
    """None clears an optional filter: a text one becomes "", a time one None; the diff shows both."""
    foia = new_request(scope_actor="alice", scope_since=dt.datetime(2026, 1, 1, tzinfo=UTC))

    updated = foia_request_update(actor=None, request_id=foia.pk, scope_actor=None, scope_since=None)

    assert (updated.scope_actor, updated.scope_since) == ("", None)
    assert updated.scope_filters() == {}
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.changes == {
        "scope_actor": {"before": "alice", "after": ""},
        "scope_since": {"before": "2026-01-01T00:00:00Z", "after": None},
    }


def test_full_lifecycle_through_release_by_the_export(db):
    """received -> processing -> released (with the manifest hash, as the export does) -> closed: released_at is
    set, and each step is one entry with its status diff."""
    foia = new_request()
    foia_request_update(actor=None, request_id=foia.pk, status=Status.PROCESSING)

    released = foia_request_update(actor=None, request_id=foia.pk, status=Status.RELEASED, manifest_sha256=MANIFEST)
    closed = foia_request_update(actor=None, request_id=foia.pk, status=Status.CLOSED)

    assert released.released_at is not None
    assert closed.status == Status.CLOSED
    assert closed.manifest_sha256 == MANIFEST
    steps = [entry.changes["status"] for entry in foia_entries(AuditAction.FOIA_REQUEST_UPDATE)]
    assert steps == [
        {"before": "received", "after": "processing"},
        {"before": "processing", "after": "released"},
        {"before": "released", "after": "closed"},
    ]
    release_entry = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)[1]
    assert release_entry.changes["manifest_sha256"] == {"before": "", "after": MANIFEST}
    assert release_entry.changes["released_at"]["before"] is None


def test_received_request_can_be_closed_directly(db):
    """received -> closed is allowed (e.g. withdrawn before processing)."""
    foia = new_request()

    assert foia_request_update(actor=None, request_id=foia.pk, status=Status.CLOSED).status == Status.CLOSED


def test_released_request_can_be_released_again_with_a_new_manifest(db):
    """A second export of a released request records its new manifest hash; the status stays released."""
    foia = new_request()
    foia_request_update(actor=None, request_id=foia.pk, status=Status.PROCESSING)
    foia_request_update(actor=None, request_id=foia.pk, status=Status.RELEASED, manifest_sha256=MANIFEST)

    again = foia_request_update(actor=None, request_id=foia.pk, status=Status.RELEASED, manifest_sha256="cd" * 32)

    assert again.manifest_sha256 == "cd" * 32
    last = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)[-1]
    assert last.changes["manifest_sha256"] == {"before": MANIFEST, "after": "cd" * 32}
    assert "status" not in last.changes


def _move_to(foia: FoiaRequest, status: str) -> None:
    path = {
        Status.RECEIVED: [],
        Status.PROCESSING: [Status.PROCESSING],
        Status.RELEASED: [Status.PROCESSING, Status.RELEASED],
        Status.CLOSED: [Status.CLOSED],
    }[status]
    for step in path:
        extra = {"manifest_sha256": MANIFEST} if step == Status.RELEASED else {}
        foia_request_update(actor=None, request_id=foia.pk, status=step, **extra)


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Status.RECEIVED, Status.RELEASED),  # not without processing
        (Status.PROCESSING, Status.RECEIVED),
        (Status.PROCESSING, Status.CLOSED),
        (Status.RELEASED, Status.PROCESSING),
        (Status.RELEASED, Status.RECEIVED),
        (Status.CLOSED, Status.RECEIVED),
        (Status.CLOSED, Status.PROCESSING),
        (Status.PROCESSING, "archived"),
    ],
)
def test_invalid_transition_is_refused_on_status(db, start, target):
    """A transition outside received->processing->released->closed (and received->closed) raises ValidationError
    on "status"; the status is unchanged and a failure entry is recorded."""
    foia = new_request()
    _move_to(foia, start)
    before = len(foia_entries(AuditAction.FOIA_REQUEST_UPDATE))
    extra = {"manifest_sha256": MANIFEST} if target == Status.RELEASED else {}

    with pytest.raises(ValidationError) as raised:
        foia_request_update(actor=None, request_id=foia.pk, status=target, **extra)

    assert "status" in raised.value.message_dict
    foia.refresh_from_db()
    assert foia.status == start
    entries = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert len(entries) == before + 1
    assert entries[-1].outcome == AuditLog.Outcome.FAILURE


def test_release_needs_the_manifest_hash_and_only_a_release_takes_one(db):
    """status "released" without a valid manifest_sha256, or a manifest without the release, is refused on
    manifest_sha256."""
    foia = new_request()
    foia_request_update(actor=None, request_id=foia.pk, status=Status.PROCESSING)

    for fields in ({"status": Status.RELEASED}, {"status": Status.RELEASED, "manifest_sha256": "XYZ"}):
        with pytest.raises(ValidationError) as raised:
            foia_request_update(actor=None, request_id=foia.pk, **fields)
        assert "manifest_sha256" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        foia_request_update(actor=None, request_id=foia.pk, manifest_sha256=MANIFEST)
    assert "manifest_sha256" in raised.value.message_dict
    foia.refresh_from_db()
    assert (foia.status, foia.manifest_sha256, foia.released_at) == (Status.PROCESSING, "", None)


def test_scope_is_frozen_after_release_and_everything_after_closing(db):
    """Once released the scope and profile cannot change (the requester's email can); once closed nothing can."""
    foia = new_request(scope_action_prefix="LOCK.")
    _move_to(foia, Status.RELEASED)

    with pytest.raises(ValidationError) as raised:
        foia_request_update(actor=None, request_id=foia.pk, scope_action_prefix="USER.")
    assert "scope_action_prefix" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        foia_request_update(actor=None, request_id=foia.pk, redaction_profile=RedactionProfile.objects.get())
    assert "redaction_profile" in raised.value.message_dict
    same = foia_request_update(actor=None, request_id=foia.pk, scope_action_prefix="LOCK.", requester_email="j@x.org")
    assert same.requester_email == "j@x.org"

    foia_request_update(actor=None, request_id=foia.pk, status=Status.CLOSED)
    with pytest.raises(ValidationError) as raised:
        foia_request_update(actor=None, request_id=foia.pk, requester="Someone else")
    assert "requester" in raised.value.message_dict


def test_update_refused_without_permission_records_denied(user):
    """A user without audit.change_foiarequest gets PermissionDenied; the status is unchanged and a denied entry
    names the request."""
    foia = new_request()

    with pytest.raises(PermissionDenied):
        foia_request_update(actor=user, request_id=foia.pk, status=Status.PROCESSING)

    foia.refresh_from_db()
    assert foia.status == Status.RECEIVED
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.outcome == AuditLog.Outcome.DENIED
    assert entry.actor_id == user.pk
    assert entry.entity_id == str(foia.pk)


def test_update_without_changes_records_an_empty_diff_and_unknown_fields_are_refused(db):
    """Setting a field to its value records an entry with an empty diff; a field that is not settable is a
    TypeError."""
    foia = new_request()

    foia_request_update(actor=None, request_id=foia.pk, requester="Jane Doe")
    with pytest.raises(TypeError):
        foia_request_update(actor=None, request_id=foia.pk, tracking_number="FOIA-2026-999999")

    [entry, failed] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.changes == {}
    assert failed.outcome == AuditLog.Outcome.FAILURE
    foia.refresh_from_db()
    assert foia.tracking_number == "FOIA-2026-000001"


# --- the scope of a request ---------------------------------------------------------------------------------------


def make_entry(created_at: dt.datetime, action: str, actor_label: str = "", entity: str = "") -> AuditLog:
    return AuditLog.objects.create(
        created_at=created_at, action=action, actor_label=actor_label, entity=entity, salt=os.urandom(16)
    )


@pytest.fixture
def trail(db) -> dict[str, AuditLog]:
    """Five entries of different actors, actions, entities and times (two on the edges of January 2026)."""
    return {
        "before": make_entry(dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), "LOCK.CREATE", "alice", "FileLock"),
        "start": make_entry(dt.datetime(2026, 1, 1, tzinfo=UTC), "LOCK.RELEASE", "alice", "FileLock"),
        "login": make_entry(dt.datetime(2026, 1, 15, tzinfo=UTC), "USER.LOGIN", "bob", "User"),
        "failed": make_entry(dt.datetime(2026, 1, 16, tzinfo=UTC), "USER.LOGIN_FAILED", "", "User"),
        "end": make_entry(dt.datetime(2026, 2, 1, tzinfo=UTC), "LOCK.FORCE_RELEASE", "bob", "FileLock"),
    }


def scoped(trail: dict[str, AuditLog], **scope: Any) -> list[str]:
    foia = new_request(**scope)
    names = {entry.pk: name for name, entry in trail.items()}
    # Creating the request is itself an entry (FOIA.REQUEST.CREATE, newest): only the trail's are compared.
    return [names[entry.pk] for entry in foia_scope(foia) if entry.pk in names]


def test_scope_without_filters_is_the_whole_trail_in_id_order(trail):
    """A request without scope filters covers every entry, oldest id first."""
    assert scoped(trail) == ["before", "start", "login", "failed", "end"]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"scope_actor": "alice"}, ["before", "start"]),
        ({"scope_action_prefix": "LOCK."}, ["before", "start", "end"]),
        ({"scope_action_prefix": "USER.LOGIN"}, ["login", "failed"]),  # a prefix, not an exact code
        ({"scope_action_prefix": "LOCK.RELEASE"}, ["start"]),
        ({"scope_entity": "User"}, ["login", "failed"]),
        ({"scope_since": dt.datetime(2026, 1, 1, tzinfo=UTC)}, ["start", "login", "failed", "end"]),  # inclusive
        ({"scope_until": dt.datetime(2026, 2, 1, tzinfo=UTC)}, ["before", "start", "login", "failed"]),  # exclusive
        (
            {
                "scope_action_prefix": "LOCK.",
                "scope_since": dt.datetime(2026, 1, 1, tzinfo=UTC),
                "scope_until": dt.datetime(2026, 2, 1, tzinfo=UTC),
            },
            ["start"],
        ),
        ({"scope_actor": "bob", "scope_entity": "User"}, ["login"]),
    ],
)
def test_foia_scope_applies_each_filter(trail, scope, expected):
    """foia_scope: actor by the recorded username, action by prefix, entity exact, since inclusive, until
    exclusive; filters combine with AND."""
    assert scoped(trail, **scope) == expected


def test_scope_filters_hold_only_the_set_filters_as_json(db):
    """scope_filters() names only the set filters, times in ISO 8601 UTC; entries_in_scope reads it back to the
    same entries as foia_scope."""
    foia = new_request(
        scope_action_prefix="LOCK.",
        scope_since=dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    )

    filters = foia.scope_filters()

    assert filters == {"action_prefix": "LOCK.", "since": "2026-01-01T00:00:00+00:00"}
    assert json.loads(json.dumps(filters)) == filters
    assert list(entries_in_scope(filters)) == list(foia_scope(foia))


def test_describe_scope_is_a_readable_sentence():
    """describe_scope says what was searched, for the cover letter."""
    assert describe_scope({}) == "all audit entries"
    assert (
        describe_scope(
            {"action_prefix": "LOCK.", "since": "2026-01-01T00:00:00+00:00", "until": "2026-02-01T00:00:00+00:00"}
        )
        == "audit entries with action starting LOCK., from 2026-01-01 to 2026-02-01 (exclusive)"
    )
    assert (
        describe_scope({"actor": "alice", "entity": "Role", "since": "2026-01-01T09:30:00+00:00"})
        == "audit entries by the user alice, about Role, from 2026-01-01 09:30:00 UTC"
    )


# --- redaction profiles -------------------------------------------------------------------------------------------


def test_default_profile_exists_after_migrate(db):
    """migrate leaves the "Standard (b)(6)/(b)(7)(C)" profile: network fields under (b)(6), staff identities under
    (b)(7)(C) for staff actors only."""
    profile = RedactionProfile.objects.get(name=DEFAULT_PROFILE_NAME)

    assert profile.redaction_rules() == [
        RedactionRule("ip_address", "(b)(6)", False),
        RedactionRule("user_agent", "(b)(6)", False),
        RedactionRule("client_ip", "(b)(6)", False),
        RedactionRule("actor_label", "(b)(7)(C)", True),
        RedactionRule("actor_id", "(b)(7)(C)", True),
    ]


def test_default_profile_bootstrap_is_idempotent_and_keeps_edits(db):
    """Running the bootstrap again creates no second profile and leaves an officer's edits alone."""
    profile = RedactionProfile.objects.get(name=DEFAULT_PROFILE_NAME)
    profile.rules = [{"field": "ip_address", "exemption": "(b)(6)", "staff_only": False}]
    profile.save()

    ensure_default_redaction_profile(apps=django_apps.get_app_config("audit").apps)
    ensure_default_redaction_profile()

    assert RedactionProfile.objects.count() == 1
    profile.refresh_from_db()
    assert len(profile.rules) == 1


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"field": "ip_address", "exemption": "(b)(6)"}, {"field": "password", "exemption": "(b)(6)"}], "Rule 2 of 2"),
        ([{"field": "ip_address", "exemption": " "}], "Rule 1 of 1"),
        (
            [{"field": "ip_address", "exemption": "(b)(6)"}, {"field": "ip_address", "exemption": "(b)(7)(C)"}],
            "already",
        ),
        (["ip_address"], "must be an object"),
        ({"field": "ip_address", "exemption": "(b)(6)"}, "JSON list"),
    ],
)
def test_profile_rules_are_validated_with_the_rule_named(db, rules, message):
    """full_clean() refuses bad rules with an error on "rules" that names the rule (1-based) and says what is
    wrong."""
    profile = RedactionProfile(name="Custom", rules=rules)

    with pytest.raises(ValidationError) as raised:
        profile.full_clean()

    assert message in " ".join(raised.value.message_dict["rules"])


def test_profile_rules_are_stored_in_canonical_shape(db):
    """Valid rules are normalised: staff_only defaults to false, the exemption is stripped."""
    profile = RedactionProfile(name="Custom", rules=[{"field": "user_agent", "exemption": " (b)(6) "}])

    profile.full_clean()

    assert profile.rules == [{"field": "user_agent", "exemption": "(b)(6)", "staff_only": False}]


def test_profile_in_use_cannot_be_deleted(db):
    """A request's redaction profile is protected from deletion."""
    profile = RedactionProfile.objects.get()
    new_request(redaction_profile=profile)

    with pytest.raises(ProtectedError):
        profile.delete()


# --- the catalogue ------------------------------------------------------------------------------------------------


def test_foia_actions_are_in_the_catalogue():
    """FOIA.REQUEST.CREATE and UPDATE are catalogued with the 552(a)(7) mapping; both entity labels are offered."""
    assert AuditAction.FOIA_REQUEST_CREATE == "FOIA.REQUEST.CREATE"
    assert AuditAction.FOIA_REQUEST_UPDATE == "FOIA.REQUEST.UPDATE"
    assert COMPLIANCE[AuditAction.FOIA_REQUEST_CREATE] == ("FOIA 5 U.S.C. 552(a)(7)",)
    assert COMPLIANCE[AuditAction.FOIA_REQUEST_UPDATE] == ("FOIA 5 U.S.C. 552(a)(7)",)
    assert {"FoiaRequest", "RedactionProfile"} <= set(ENTITIES)


# --- the admin ----------------------------------------------------------------------------------------------------


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "requester": "Jane Doe",
        "requester_email": "jane@example.org",
        "description": "All lock events of January 2026",
        "received_on": "2026-11-20",
        "scope_actor": "",
        "scope_action_prefix": "LOCK.",
        "scope_entity": "",
        "scope_since_0": "2026-01-01",
        "scope_since_1": "00:00:00",
        "scope_until_0": "",
        "scope_until_1": "",
        "redaction_profile": "",
        "reason": "",
    }
    return {**data, **overrides}


def test_admin_add_creates_through_the_service(admin_client, admin_user):
    """The add form has no tracking number or due date input; POSTing it creates the request with both computed
    and one FOIA.REQUEST.CREATE entry by the admin."""
    form = admin_client.get(ADD_URL).context["adminform"].form
    assert {"tracking_number", "due_on", "status"}.isdisjoint(form.fields)
    profile = RedactionProfile.objects.get()

    response = admin_client.post(ADD_URL, form_data(redaction_profile=str(profile.pk), reason="new request"))

    assert response.status_code == 302
    foia = FoiaRequest.objects.get()
    assert (foia.tracking_number, foia.due_on, foia.status) == ("FOIA-2026-000001", dt.date(2026, 12, 18), "received")
    assert foia.scope_since == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert foia.redaction_profile == profile
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_CREATE)
    assert entry.actor_id == admin_user.pk
    assert entry.entity_id == str(foia.pk)
    assert entry.meta == {"reason": "new request"}


def test_admin_add_shows_service_errors_on_the_form(admin_client):
    """An invalid scope is an error on its field; nothing is created."""
    response = admin_client.post(ADD_URL, form_data(scope_until_0="2025-01-01", scope_until_1="00:00:00"))

    assert response.status_code == 200
    assert "scope_until" in response.context["adminform"].form.errors
    assert not FoiaRequest.objects.exists()


def test_admin_change_updates_through_the_service(admin_client, admin_user):
    """Changing the status in the change form records FOIA.REQUEST.UPDATE with only the status diff and the
    reason; the tracking number and due date are read-only."""
    foia = new_request(scope_action_prefix="LOCK.", scope_since=dt.datetime(2026, 1, 1, tzinfo=UTC))
    page = admin_client.get(change_url(foia.pk))
    assert {"tracking_number", "due_on"} <= set(page.context["adminform"].readonly_fields)
    assert {"tracking_number", "due_on"}.isdisjoint(page.context["adminform"].form.fields)
    offered = [value for value, _ in page.context["adminform"].form.fields["status"].choices]
    assert offered == ["received", "processing", "closed"]

    response = admin_client.post(change_url(foia.pk), form_data(status="processing", reason="search started"))

    assert response.status_code == 302
    foia.refresh_from_db()
    assert foia.status == Status.PROCESSING
    [entry] = foia_entries(AuditAction.FOIA_REQUEST_UPDATE)
    assert entry.actor_id == admin_user.pk
    assert entry.changes == {"status": {"before": "received", "after": "processing"}}
    assert entry.meta["reason"] == "search started"


def test_admin_does_not_offer_release(admin_client):
    """ "released" is the export's: a processing request's form offers only "processing", and POSTing "released" is
    a form error that changes nothing."""
    foia = new_request(scope_action_prefix="LOCK.", scope_since=dt.datetime(2026, 1, 1, tzinfo=UTC))
    foia_request_update(actor=None, request_id=foia.pk, status=Status.PROCESSING)

    response = admin_client.post(change_url(foia.pk), form_data(status="released"))

    assert response.status_code == 200
    assert "status" in response.context["adminform"].form.errors
    foia.refresh_from_db()
    assert foia.status == Status.PROCESSING
    assert len(foia_entries(AuditAction.FOIA_REQUEST_UPDATE)) == 1


def test_admin_released_request_has_its_scope_read_only(admin_client):
    """After release the scope fields are shown read-only; closing still works."""
    foia = new_request(scope_action_prefix="LOCK.")
    _move_to(foia, Status.RELEASED)

    page = admin_client.get(change_url(foia.pk))

    assert "scope_action_prefix" in page.context["adminform"].readonly_fields
    assert "scope_action_prefix" not in page.context["adminform"].form.fields
    data = {key: value for key, value in form_data(status="closed").items() if not key.startswith(("scope", "red"))}
    assert admin_client.post(change_url(foia.pk), data).status_code == 302
    foia.refresh_from_db()
    assert foia.status == Status.CLOSED


def test_admin_changelist_search_filter_and_days_left(admin_client):
    """The list searches the exact tracking number (case forgiven), filters by status and shows working days
    left for open requests."""
    today = timezone.localdate()
    fresh = new_request(received_on=today)
    late = new_request(received_on=today - dt.timedelta(days=60))
    _move_to(late, Status.PROCESSING)

    found = admin_client.get(CHANGELIST_URL, {"q": fresh.tracking_number.lower()})
    partial = admin_client.get(CHANGELIST_URL, {"q": fresh.tracking_number[:-1]})
    processing = admin_client.get(CHANGELIST_URL, {"status__exact": "processing"})

    assert [obj.pk for obj in found.context["cl"].result_list] == [fresh.pk]
    assert list(partial.context["cl"].result_list) == []
    assert [obj.pk for obj in processing.context["cl"].result_list] == [late.pk]
    model_admin = admin.site._registry[FoiaRequest]
    assert model_admin.days_left(fresh) == "20"
    assert model_admin.days_left(FoiaRequest.objects.get(pk=late.pk)).endswith("overdue")
    assert "working days left" in found.content.decode().lower()


def test_admin_cannot_delete_requests(admin_client):
    """Not even a superuser deletes a FOIA request: the delete view is refused."""
    foia = new_request()

    response = admin_client.post(reverse("admin:audit_foiarequest_delete", args=[foia.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert FoiaRequest.objects.filter(pk=foia.pk).exists()


def test_admin_user_with_view_right_only_cannot_change(db, client):
    """A user who may only view FOIA requests sees the form read-only and cannot POST a change."""
    viewer = with_perms(UserFactory(is_staff=True), "view_foiarequest")
    client.force_login(viewer)
    foia = new_request()

    page = client.get(change_url(foia.pk))
    response = client.post(change_url(foia.pk), form_data(status="processing"))

    assert page.status_code == 200
    assert response.status_code == 403
    foia.refresh_from_db()
    assert foia.status == Status.RECEIVED


def test_admin_profile_rules_errors_name_the_rule(admin_client):
    """The profile form shows an error on "rules" naming the bad rule, and one for text that is not JSON."""
    bad_rule = json.dumps([{"field": "ip_address", "exemption": "(b)(6)"}, {"field": "email", "exemption": "(b)(6)"}])

    response = admin_client.post(PROFILE_ADD_URL, {"name": "Custom", "description": "", "rules": bad_rule})
    not_json = admin_client.post(PROFILE_ADD_URL, {"name": "Custom", "description": "", "rules": "[{field: 1"})

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["rules"])
    assert 'Rule 2 of 2 {"field": "email", "exemption": "(b)(6)"}' in errors
    assert "field must be one of" in errors
    assert not_json.status_code == 200
    assert "rules" in not_json.context["adminform"].form.errors
    assert not RedactionProfile.objects.filter(name="Custom").exists()


def test_admin_profile_saves_valid_rules(admin_client):
    """Valid rules are saved in canonical shape; the profile's rules then parse to RedactionRule objects."""
    rules = json.dumps([{"field": "user_agent", "exemption": "(b)(6)"}])

    response = admin_client.post(PROFILE_ADD_URL, {"name": "Custom", "description": "UA only", "rules": rules})

    assert response.status_code == 302
    profile = RedactionProfile.objects.get(name="Custom")
    assert profile.rules == [{"field": "user_agent", "exemption": "(b)(6)", "staff_only": False}]
    assert profile.redaction_rules() == [RedactionRule("user_agent", "(b)(6)", False)]
