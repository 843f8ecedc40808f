"""Automated review (PCI DSS 10.4.1.1, SOC 2 CC7.2): the anomaly rules, their dedupe, the scan after sealing, the
audit_scan command and the audited acknowledgement."""

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone

from audit import conf
from audit.actions import AuditAction
from audit.anomalies import anomaly_acknowledge, is_privileged, is_working_time, scan_new_entries
from audit.context import RequestContext, bound
from audit.models import Anomaly, AnomalyScanState, AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import Outcome, record
from rbac.defaults import bootstrap_default_roles
from tests.factories.users import UserFactory

UTC = dt.UTC
Rule = Anomaly.Rule
ALL_DAYS = [0, 1, 2, 3, 4, 5, 6]
# Long enough to wait out in a test, short enough for the wait to stay well under a second.
SHORT_WINDOW_MINUTES = 0.01
SHORT_WINDOW_WAIT = 0.8


@pytest.fixture(autouse=True)
def _rule_settings(settings):
    """The documented defaults, stated here so that a change of the project's settings does not move these tests."""
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.AUDIT_ANOMALY_WINDOW_MINUTES = 15
    settings.AUDIT_ANOMALY_DENIED_COUNT = 3
    settings.AUDIT_ANOMALY_FAILED_LOGINS = 5
    settings.AUDIT_WORKING_HOURS = "08:00-18:00"
    settings.AUDIT_WORKING_DAYS = [0, 1, 2, 3, 4]
    settings.AUDIT_WORKING_TIMEZONE = "UTC"
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = True


@contextmanager
def from_ip(address: str | None) -> Iterator[None]:
    """Entries recorded inside carry ``address`` as their client IP, as the middleware would bind it."""
    with bound(RequestContext(request_id=f"req-{address}", ip_address=address, user_agent="pytest")):
        yield


def refused(actor: User | None, count: int, ip: str | None = None) -> list[AuditLog]:
    with from_ip(ip):
        return [
            record(AuditAction.ROLE_PERM_REPLACE, entity="Role", entity_id=7, outcome=Outcome.DENIED, actor=actor)
            for _ in range(count)
        ]


def grant_roles(actor: User, ip: str | None = None) -> AuditLog:
    with from_ip(ip):
        return record(AuditAction.USER_ROLES_SET, entity="User", entity_id=actor.pk, actor=actor)


def failed_login(username: str, ip: str | None) -> AuditLog:
    with from_ip(ip):
        return record(
            AuditAction.USER_LOGIN_FAILED, entity="User", outcome=Outcome.FAILURE, meta={"username": username}
        )


def force_release(actor: User, outcome: str = Outcome.SUCCESS) -> AuditLog:
    with from_ip("192.0.2.50"):
        return record(
            AuditAction.LOCK_FORCE_RELEASE,
            entity="FileLock",
            entity_id=3,
            outcome=outcome,
            meta={"override": True, "reason": "owner on leave", "previous_owner": "bob"},
            actor=actor,
        )


def seal_and_scan() -> list[Anomaly]:
    """Seal what is pending, as the sealer does after each commit (the scan runs after it); the anomalies, oldest
    first."""
    seal_pending()
    return list(Anomaly.objects.order_by("id"))


def anomaly_entries() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.AUDIT_ANOMALY).order_by("id"))


def ack_entries() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.AUDIT_ANOMALY_ACK).order_by("id"))


def hours_around_now(*, starts_in: dt.timedelta, lasts: dt.timedelta, tz: str = "UTC") -> str:
    """A working-hours setting starting ``starts_in`` from now (read in ``tz``); it may span midnight."""
    now = timezone.now().astimezone(ZoneInfo(tz))
    return f"{now + starts_in:%H:%M}-{now + starts_in + lasts:%H:%M}"


def with_acknowledge_right(user: User) -> User:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="audit", codename="acknowledge_anomaly"))
    return User.objects.get(pk=user.pk)  # a fresh object: the old one cached its permissions


# --- rule 1: refused attempts, then a privileged action ----------------------------------------------------------


def test_denied_attempts_then_privileged_action_by_same_actor_raise_one_anomaly(db, user):
    """Three refused attempts by one actor, then a successful USER.ROLES.SET by that actor: one anomaly for
    "actor:<id>" and one AUDIT.ANOMALY entry naming the rule, the subject, the four entries and the window."""
    attempts = refused(user, 3)
    elevated = grant_roles(user)

    [anomaly] = seal_and_scan()

    assert (anomaly.rule, anomaly.subject) == (Rule.DENIED_THEN_PRIVILEGED, f"actor:{user.pk}")
    assert (anomaly.first_evidence_id, anomaly.last_evidence_id) == (attempts[0].pk, elevated.pk)
    assert anomaly.acknowledged_at is None
    [entry] = anomaly_entries()
    assert anomaly.entry_id == entry.pk
    assert (entry.entity, entry.entity_id, entry.outcome) == ("Anomaly", str(anomaly.pk), Outcome.SUCCESS)
    assert entry.meta["rule"] == "denied_then_privileged"
    assert entry.meta["subject"] == f"actor:{user.pk}"
    assert entry.meta["evidence"] == [*(a.pk for a in attempts), elevated.pk]
    assert dt.datetime.fromisoformat(entry.meta["window"]["start"]) == attempts[0].created_at
    assert dt.datetime.fromisoformat(entry.meta["window"]["end"]) == attempts[0].created_at + dt.timedelta(minutes=15)
    assert "3 refused attempts" in entry.meta["summary"]
    assert "USER.ROLES.SET" in entry.meta["summary"]


def test_denied_attempts_from_one_ip_then_privileged_action_by_another_actor_raise_ip_anomaly(db, user, other_user):
    """Refusals of one account and the privileged action of another, all from one address: an anomaly for
    "ip:<address>" (the actor alone had no refusals)."""
    refused(other_user, 3, ip="192.0.2.7")
    grant_roles(user, ip="192.0.2.7")

    [anomaly] = seal_and_scan()

    assert (anomaly.rule, anomaly.subject) == (Rule.DENIED_THEN_PRIVILEGED, "ip:192.0.2.7")
    assert "the address 192.0.2.7" in anomaly.summary


def test_sequence_seen_by_actor_and_ip_raises_one_anomaly_for_the_actor(db, user):
    """Refusals and the privileged action by one actor from one address match both ways; only the actor's
    anomaly is raised, not a second one for the address."""
    refused(user, 3, ip="192.0.2.8")
    grant_roles(user, ip="192.0.2.8")

    assert [(a.rule, a.subject) for a in seal_and_scan()] == [(Rule.DENIED_THEN_PRIVILEGED, f"actor:{user.pk}")]


def test_two_denied_attempts_below_threshold_raise_nothing(db, user):
    """Two refusals (the threshold is three) before a privileged action raise no anomaly."""
    refused(user, 2)
    grant_roles(user)

    assert seal_and_scan() == []
    assert anomaly_entries() == []


def test_denied_attempts_by_a_different_actor_raise_nothing(db, user, other_user):
    """Refusals of one actor and a privileged action of another, from different addresses, raise nothing."""
    refused(other_user, 3, ip="192.0.2.1")
    grant_roles(user, ip="192.0.2.2")

    assert seal_and_scan() == []


def test_denied_attempts_outside_the_window_raise_nothing(db, settings, user):
    """Refusals that lie longer than the window before the privileged action raise nothing."""
    settings.AUDIT_ANOMALY_WINDOW_MINUTES = SHORT_WINDOW_MINUTES
    refused(user, 3)
    time.sleep(SHORT_WINDOW_WAIT)
    grant_roles(user)

    assert seal_and_scan() == []


def test_privileged_action_before_the_denied_attempts_raises_nothing(db, user):
    """Only refusals *followed by* a privileged action count: the reverse order raises nothing."""
    grant_roles(user)
    refused(user, 3)

    assert seal_and_scan() == []


def test_denied_attempts_then_an_unprivileged_action_raise_nothing(db, user):
    """Refusals followed by an ordinary action (LOCK.CREATE) raise nothing."""
    refused(user, 3)
    record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=1, actor=user)

    assert seal_and_scan() == []


def test_denied_count_setting_is_read_at_scan_time(db, settings, user):
    """With AUDIT_ANOMALY_DENIED_COUNT = 2, two refusals before a privileged action are enough."""
    settings.AUDIT_ANOMALY_DENIED_COUNT = 2
    refused(user, 2)
    grant_roles(user)

    assert [a.rule for a in seal_and_scan()] == [Rule.DENIED_THEN_PRIVILEGED]


@pytest.mark.parametrize(
    ("action", "privileged"),
    [
        ("ROLE.PERM.REPLACE", True),
        ("ROLE.CREATE", True),
        ("USER.ROLES.SET", True),
        ("USER.UPDATE", True),
        ("USER.CREATE", True),
        ("GROUP.MEMBERS.SET", True),
        ("GROUP.UPDATE", True),
        ("LOCK.FORCE_RELEASE", True),
        ("ACTION.REGISTER", True),
        ("USER.LOGIN", False),
        ("USER.PASSWORD.CHANGE", False),
        ("GROUP.CREATE", False),
        ("LOCK.RELEASE", False),
        ("ROLEX.CREATE", False),
    ],
)
def test_privileged_actions_are_the_documented_ones(action, privileged):
    """ROLE.*, USER.ROLES.SET, USER.UPDATE, USER.CREATE, GROUP.MEMBERS.SET, GROUP.UPDATE, LOCK.FORCE_RELEASE and
    ACTION.* are privileged; other codes (and a family that only starts with the same letters) are not."""
    assert is_privileged(action, conf.anomaly_privileged_actions()) is privileged


# --- rule 2: failed logins -----------------------------------------------------------------------------------------


def test_six_failed_logins_for_one_username_raise_an_anomaly(db):
    """Six failed logins for "alice" from six addresses (above the limit of five) raise one anomaly for
    "username:alice" whose evidence is the six entries."""
    failures = [failed_login("alice", f"198.51.100.{n}") for n in range(6)]

    [anomaly] = seal_and_scan()

    assert (anomaly.rule, anomaly.subject) == (Rule.FAILED_LOGINS, "username:alice")
    [entry] = anomaly_entries()
    assert entry.meta["evidence"] == [f.pk for f in failures]
    assert entry.meta["evidence_count"] == 6
    assert "6 failed logins" in entry.meta["summary"]


def test_six_failed_logins_from_one_ip_raise_an_anomaly(db):
    """Six failed logins for six user names from one address raise one anomaly for "ip:<address>"."""
    for n in range(6):
        failed_login(f"user-{n}", "203.0.113.9")

    [anomaly] = seal_and_scan()

    assert (anomaly.rule, anomaly.subject) == (Rule.FAILED_LOGINS, "ip:203.0.113.9")


def test_five_failed_logins_raise_nothing(db):
    """Five failed logins for one user name from one address (exactly the limit) raise nothing."""
    for _ in range(5):
        failed_login("alice", "203.0.113.9")

    assert seal_and_scan() == []


def test_failed_logins_for_different_usernames_from_different_ips_raise_nothing(db):
    """Six failed logins, each for another user name from another address, raise nothing."""
    for n in range(6):
        failed_login(f"user-{n}", f"198.51.100.{n}")

    assert seal_and_scan() == []


def test_failed_logins_spread_beyond_the_window_raise_nothing(db, settings):
    """Three failed logins, a pause longer than the window, three more: never more than five within the window."""
    settings.AUDIT_ANOMALY_WINDOW_MINUTES = SHORT_WINDOW_MINUTES
    for _ in range(3):
        failed_login("alice", "203.0.113.9")
    time.sleep(SHORT_WINDOW_WAIT)
    for _ in range(3):
        failed_login("alice", "203.0.113.9")

    assert seal_and_scan() == []


def test_failed_logins_limit_setting_is_read_at_scan_time(db, settings):
    """With AUDIT_ANOMALY_FAILED_LOGINS = 2, three failed logins for one user name are an anomaly."""
    settings.AUDIT_ANOMALY_FAILED_LOGINS = 2
    for n in range(3):
        failed_login("alice", f"198.51.100.{n}")

    assert [(a.rule, a.subject) for a in seal_and_scan()] == [(Rule.FAILED_LOGINS, "username:alice")]


# --- rule 3: force release outside working hours ---------------------------------------------------------------------


def test_force_release_outside_working_hours_raises_an_anomaly(db, settings, user):
    """A successful LOCK.FORCE_RELEASE while the working hours (every day) are still an hour away raises an
    anomaly for the actor that says so."""
    settings.AUDIT_WORKING_DAYS = ALL_DAYS
    settings.AUDIT_WORKING_HOURS = hours_around_now(starts_in=dt.timedelta(hours=1), lasts=dt.timedelta(hours=8))
    release = force_release(user)

    [anomaly] = seal_and_scan()

    assert (anomaly.rule, anomaly.subject) == (Rule.FORCE_RELEASE_OFF_HOURS, f"actor:{user.pk}")
    assert anomaly.first_evidence_id == anomaly.last_evidence_id == release.pk
    assert "outside working hours" in anomaly.summary
    [entry] = anomaly_entries()
    assert entry.meta["evidence"] == [release.pk]
    assert entry.meta["parameters"]["timezone"] == "UTC"


def test_force_release_inside_working_hours_raises_nothing(db, settings, user):
    """A force release in the middle of the working hours of a working day raises nothing."""
    settings.AUDIT_WORKING_DAYS = ALL_DAYS
    settings.AUDIT_WORKING_HOURS = hours_around_now(starts_in=-dt.timedelta(hours=1), lasts=dt.timedelta(hours=2))
    force_release(user)

    assert seal_and_scan() == []


def test_force_release_on_a_day_off_raises_an_anomaly(db, settings, user):
    """Inside the working hours but on a day that is not a working day: an anomaly."""
    starts_in = -dt.timedelta(hours=1)
    # The day the shift starts on: just after midnight, the hours span midnight and belong to yesterday.
    shift_day = (timezone.now() + starts_in).weekday()
    settings.AUDIT_WORKING_DAYS = [day for day in ALL_DAYS if day != shift_day]
    settings.AUDIT_WORKING_HOURS = hours_around_now(starts_in=starts_in, lasts=dt.timedelta(hours=2))
    force_release(user)

    assert [a.rule for a in seal_and_scan()] == [Rule.FORCE_RELEASE_OFF_HOURS]


def test_working_hours_are_read_in_the_working_timezone(db, settings, user):
    """Hours around now on the UTC clock are outside working time in Kathmandu (UTC+05:45): an anomaly."""
    settings.AUDIT_WORKING_DAYS = ALL_DAYS
    settings.AUDIT_WORKING_HOURS = hours_around_now(starts_in=-dt.timedelta(hours=1), lasts=dt.timedelta(hours=2))
    settings.AUDIT_WORKING_TIMEZONE = "Asia/Kathmandu"
    force_release(user)

    [anomaly] = seal_and_scan()

    assert anomaly.rule == Rule.FORCE_RELEASE_OFF_HOURS
    assert "Asia/Kathmandu" in anomaly.summary


def test_refused_force_release_outside_working_hours_raises_nothing(db, settings, user):
    """Only a force release that happened counts: a refused one at night is not this rule's anomaly."""
    settings.AUDIT_WORKING_DAYS = ALL_DAYS
    settings.AUDIT_WORKING_HOURS = hours_around_now(starts_in=dt.timedelta(hours=1), lasts=dt.timedelta(hours=8))
    force_release(user, outcome=Outcome.DENIED)

    assert seal_and_scan() == []


MON_FRI = frozenset({0, 1, 2, 3, 4})


@pytest.mark.parametrize(
    ("moment", "hours", "tz", "working"),
    [
        pytest.param(dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC), ("08:00", "18:00"), "UTC", True, id="monday-9"),
        pytest.param(dt.datetime(2026, 1, 5, 8, 0, tzinfo=UTC), ("08:00", "18:00"), "UTC", True, id="start-inclusive"),
        pytest.param(dt.datetime(2026, 1, 5, 18, 0, tzinfo=UTC), ("08:00", "18:00"), "UTC", False, id="end-exclusive"),
        pytest.param(dt.datetime(2026, 1, 5, 7, 59, tzinfo=UTC), ("08:00", "18:00"), "UTC", False, id="before-start"),
        pytest.param(dt.datetime(2026, 1, 10, 10, 0, tzinfo=UTC), ("08:00", "18:00"), "UTC", False, id="saturday"),
        pytest.param(
            dt.datetime(2026, 1, 5, 7, 30, tzinfo=UTC), ("08:00", "18:00"), "Europe/Berlin", True, id="berlin"
        ),
        pytest.param(
            dt.datetime(2026, 1, 9, 23, 30, tzinfo=UTC), ("08:00", "18:00"), "Asia/Tokyo", False, id="tokyo-sat"
        ),
        pytest.param(dt.datetime(2026, 1, 9, 2, 0, tzinfo=UTC), ("22:00", "06:00"), "UTC", True, id="night-thu-shift"),
        pytest.param(dt.datetime(2026, 1, 10, 2, 0, tzinfo=UTC), ("22:00", "06:00"), "UTC", True, id="night-fri-shift"),
        pytest.param(dt.datetime(2026, 1, 5, 2, 0, tzinfo=UTC), ("22:00", "06:00"), "UTC", False, id="night-sun-shift"),
        pytest.param(dt.datetime(2026, 1, 5, 12, 0, tzinfo=UTC), ("22:00", "06:00"), "UTC", False, id="night-midday"),
    ],
)
def test_is_working_time(moment, hours, tz, working):
    """Working time is [start, end) on a working day, read in the configured zone; a range across midnight belongs to
    the day it starts on."""
    span = tuple(dt.time.fromisoformat(h) for h in hours)
    assert is_working_time(moment, hours=span, days=MON_FRI, tz=ZoneInfo(tz)) is working


def test_working_days_setting_accepts_day_names_and_numbers(settings):
    """AUDIT_WORKING_DAYS takes weekday numbers (Monday 0) or English names and abbreviations."""
    settings.AUDIT_WORKING_DAYS = ["Mon", "tuesday", 4, "SUN"]
    assert conf.working_days() == frozenset({0, 1, 4, 6})


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUDIT_WORKING_HOURS", "8 to 6"), ("AUDIT_WORKING_DAYS", ["Funday"]), ("AUDIT_WORKING_TIMEZONE", "Mars/Base")],
)
def test_bad_working_time_settings_are_refused(settings, name, value):
    """A malformed working-hours, working-days or time-zone setting raises ImproperlyConfigured, naming it."""
    setattr(settings, name, value)
    getter = {
        "AUDIT_WORKING_HOURS": conf.working_hours,
        "AUDIT_WORKING_DAYS": conf.working_days,
        "AUDIT_WORKING_TIMEZONE": conf.working_timezone,
    }[name]
    with pytest.raises(ImproperlyConfigured, match=name):
        getter()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDIT_ANOMALY_WINDOW_MINUTES", 0),
        ("AUDIT_ANOMALY_DENIED_COUNT", "three"),
        ("AUDIT_ANOMALY_FAILED_LOGINS", -1),
        ("AUDIT_WORKING_HOURS", "18:00-18:00"),
        ("AUDIT_WORKING_DAYS", [7]),
        ("AUDIT_WORKING_TIMEZONE", "Nowhere/Special"),
    ],
)
def test_system_check_names_a_bad_anomaly_setting(settings, name, value):
    """`manage.py check` fails on a bad anomaly or working-time setting and names it, so that a typo cannot quietly
    switch a rule off."""
    setattr(settings, name, value)

    with pytest.raises(SystemCheckError, match=name):
        call_command("check", stdout=StringIO(), stderr=StringIO())


# --- dedupe -------------------------------------------------------------------------------------------------------


def test_scanning_twice_raises_once(db, user):
    """A hit examined by the scan after sealing and again by `audit_scan --since-id 0` is raised once: one
    Anomaly, one AUDIT.ANOMALY entry."""
    refused(user, 3)
    grant_roles(user)
    seal_and_scan()

    call_command("audit_scan", "--since-id", "0", stdout=StringIO())
    scan_new_entries()

    assert Anomaly.objects.count() == 1
    assert len(anomaly_entries()) == 1


def test_very_long_username_is_raised_once(db):
    """A user name longer than the stored subject still dedupes: two scans of seven failures raise one anomaly."""
    name = "x" * 300
    for _ in range(7):
        failed_login(name, None)
    seal_and_scan()

    call_command("audit_scan", "--since-id", "0", stdout=StringIO())

    [anomaly] = Anomaly.objects.all()
    assert anomaly.subject == f"username:{name}"[:200]


def test_more_events_in_the_same_window_extend_the_anomaly_instead_of_raising_again(db):
    """Failed logins that go on within the window of the raised anomaly move its last evidence id on; no second
    anomaly and no second entry."""
    for _ in range(6):
        failed_login("alice", "203.0.113.9")
    seal_and_scan()
    later = [failed_login("alice", "203.0.113.9") for _ in range(3)]

    [anomaly] = seal_and_scan()

    assert anomaly.last_evidence_id == later[-1].pk
    assert len(anomaly_entries()) == 1


def test_attack_going_on_after_the_window_raises_the_next_anomaly(db, settings):
    """Failed logins that go on past the raised anomaly's window raise a second anomaly, whose window starts where
    the first ended."""
    settings.AUDIT_ANOMALY_WINDOW_MINUTES = SHORT_WINDOW_MINUTES
    for _ in range(6):
        failed_login("alice", "203.0.113.9")
    [first] = seal_and_scan()
    time.sleep(SHORT_WINDOW_WAIT)
    for _ in range(6):
        failed_login("alice", "203.0.113.9")

    first_again, second = seal_and_scan()

    assert first_again.pk == first.pk
    assert (second.rule, second.subject) == (first.rule, first.subject)
    assert second.window_start >= first.window_end
    assert len(anomaly_entries()) == 2


# --- the scan after sealing, the watermark, the command --------------------------------------------------------------


def test_sealing_runs_the_scan_over_the_new_entries(db, user):
    """Recorded but not yet sealed, a hit is not examined; the sealer's next batch runs the scan, which raises it."""
    refused(user, 3)
    grant_roles(user)
    assert Anomaly.objects.count() == 0

    sealed = seal_pending()

    assert sealed == 4
    assert [a.rule for a in Anomaly.objects.all()] == [Rule.DENIED_THEN_PRIVILEGED]


def test_scan_examines_each_sealed_entry_once(db, user):
    """After the scan that followed sealing, a further scan examines nothing; new entries are examined once each,
    and the watermark is the chain head."""
    refused(user, 2)
    seal_pending()

    assert scan_new_entries().examined == 0
    record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=1, actor=user)
    record(AuditAction.LOCK_RELEASE, entity="FileLock", entity_id=1, actor=user)
    seal_pending()
    assert scan_new_entries().examined == 0
    head = Seal.objects.order_by("-chain_index").values_list("chain_index", flat=True).first()
    assert AnomalyScanState.objects.get().last_chain_index == head


def test_scan_reads_from_its_watermark(db, user, settings):
    """With the scan after sealing switched off, `scan_new_entries` examines exactly the entries sealed since the
    last scan: all of them once, none the second time."""
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = False
    refused(user, 3)
    seal_pending()
    assert scan_new_entries().examined == 3

    refused(user, 2)
    seal_pending()

    assert scan_new_entries().examined == 2
    assert scan_new_entries().examined == 0


def test_scan_after_seal_can_be_switched_off(db, settings, user):
    """With AUDIT_ANOMALY_SCAN_AFTER_SEAL = False sealing raises nothing; `audit_scan` then finds the hit."""
    settings.AUDIT_ANOMALY_SCAN_AFTER_SEAL = False
    refused(user, 3)
    grant_roles(user)

    assert seal_and_scan() == []
    out = StringIO()
    call_command("audit_scan", stdout=out)

    assert [a.rule for a in Anomaly.objects.all()] == [Rule.DENIED_THEN_PRIVILEGED]
    assert out.getvalue().splitlines()[-1] == "Examined 4 entries, raised 1 anomalies."


def test_rescan_since_id_examines_old_entries_again(db, settings):
    """Entries the scan already examined are not examined by `audit_scan` again; `--since-id` examines them under
    the thresholds in force now (here a lower limit) and raises what they show."""
    before = AuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for n in range(3):
        failed_login("alice", f"198.51.100.{n}")
    assert seal_and_scan() == []
    settings.AUDIT_ANOMALY_FAILED_LOGINS = 2

    call_command("audit_scan", stdout=StringIO())
    assert Anomaly.objects.count() == 0
    out = StringIO()
    call_command("audit_scan", "--since-id", str(before), stdout=out)

    assert [(a.rule, a.subject) for a in Anomaly.objects.all()] == [(Rule.FAILED_LOGINS, "username:alice")]
    assert out.getvalue().splitlines()[-1] == "Examined 3 entries, raised 1 anomalies."


def test_anomaly_is_recorded_by_the_system_not_by_the_request_that_sealed(db, user, officer):
    """The scan runs in whichever request's commit sealed the entries; its AUDIT.ANOMALY entry has no actor and
    no address of that request."""
    refused(user, 3)
    grant_roles(user)
    request = RequestFactory().get("/api/locks", REMOTE_ADDR="192.0.2.99")
    request.user = officer

    with bound(RequestContext(request_id="officer-req", ip_address="192.0.2.99", user_agent="ua", request=request)):
        seal_pending()

    [entry] = anomaly_entries()
    assert (entry.actor_id, entry.actor_label, entry.ip_address, entry.request_id) == (None, "", None, "")


@pytest.mark.django_db(transaction=True)
def test_committed_entries_are_scanned_after_their_commit(committed_db):
    """With real commits (no explicit seal), each entry is sealed after its commit and the scan runs then: six
    failed logins leave an anomaly whose own AUDIT.ANOMALY entry is sealed as well."""
    for _ in range(6):
        failed_login("mallory", "203.0.113.66")

    [anomaly] = Anomaly.objects.all()
    assert anomaly.subject == "username:mallory"
    assert Seal.objects.filter(entry_id=anomaly.entry_id).exists()
    assert not AuditLog.objects.filter(seal__isnull=True).exists()


WRITERS = 6
ATTEMPTS_PER_WRITER = 10


def _guesser(number: int, errors: list[BaseException]) -> None:
    try:
        for _ in range(ATTEMPTS_PER_WRITER):
            failed_login("mallory", f"198.51.100.{number}")
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_writers_raise_one_anomaly_and_examine_each_entry_once(postgres_only, committed_db):
    """Six threads recording failed logins for one user name at once, each sealing and scanning after its own
    commits: one anomaly and one AUDIT.ANOMALY entry, and the scan's watermark ends at the chain head."""
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_guesser, args=(number, errors)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    [anomaly] = Anomaly.objects.all()
    assert anomaly.subject == "username:mallory"
    assert len(anomaly_entries()) == 1
    head = Seal.objects.order_by("-chain_index").values_list("chain_index", flat=True).first()
    assert AnomalyScanState.objects.get().last_chain_index == head
    assert AuditLog.objects.filter(action=AuditAction.USER_LOGIN_FAILED).count() == WRITERS * ATTEMPTS_PER_WRITER


# --- acknowledgement -------------------------------------------------------------------------------------------------


@pytest.fixture
def raised_anomaly(db) -> Anomaly:
    """An anomaly raised by the rules: six failed logins for "alice"."""
    for _ in range(6):
        failed_login("alice", "203.0.113.9")
    [anomaly] = seal_and_scan()
    return anomaly


@pytest.fixture
def acknowledger(officer) -> User:
    return with_acknowledge_right(officer)


def test_acknowledging_closes_the_anomaly_and_records_ack(db, raised_anomaly, acknowledger):
    """anomaly_acknowledge with a note sets acknowledged_at/by and the note, and records one AUDIT.ANOMALY.ACK by
    the officer with the diff and the anomaly's rule, subject and entry."""
    anomaly = anomaly_acknowledge(
        actor=acknowledger, anomaly_id=raised_anomaly.pk, note="  Pen test by the red team.  "
    )

    anomaly.refresh_from_db()
    assert anomaly.acknowledged_by_id == acknowledger.pk
    assert anomaly.acknowledged_at is not None
    assert anomaly.note == "Pen test by the red team."
    [entry] = ack_entries()
    assert (entry.actor_id, entry.outcome, entry.entity, entry.entity_id) == (
        acknowledger.pk,
        Outcome.SUCCESS,
        "Anomaly",
        str(anomaly.pk),
    )
    assert entry.changes["note"] == {"before": "", "after": "Pen test by the red team."}
    assert entry.changes["acknowledged_by"] == {"before": None, "after": acknowledger.pk}
    assert entry.meta == {
        "anomaly_id": anomaly.pk,
        "rule": "failed_logins",
        "subject": "username:alice",
        "anomaly_entry_id": raised_anomaly.entry_id,
    }


@pytest.mark.parametrize("note", ["", "   "])
def test_acknowledging_needs_a_note(db, raised_anomaly, acknowledger, note):
    """An empty or blank note is refused (ValidationError on "note"); the anomaly stays open and the attempt is an
    AUDIT.ANOMALY.ACK failure."""
    with pytest.raises(ValidationError) as error:
        anomaly_acknowledge(actor=acknowledger, anomaly_id=raised_anomaly.pk, note=note)

    assert "note" in error.value.message_dict
    raised_anomaly.refresh_from_db()
    assert raised_anomaly.acknowledged_at is None
    assert [(e.outcome, e.actor_id) for e in ack_entries()] == [(Outcome.FAILURE, acknowledger.pk)]


def test_acknowledging_needs_the_right(db, raised_anomaly, officer):
    """An officer without audit.acknowledge_anomaly is refused; the anomaly stays open and the attempt is an
    AUDIT.ANOMALY.ACK "denied" entry."""
    with pytest.raises(PermissionDenied):
        anomaly_acknowledge(actor=officer, anomaly_id=raised_anomaly.pk, note="looks fine")

    raised_anomaly.refresh_from_db()
    assert raised_anomaly.acknowledged_at is None
    [entry] = ack_entries()
    assert (entry.outcome, entry.actor_id, entry.meta["anomaly_id"]) == (Outcome.DENIED, officer.pk, raised_anomaly.pk)


def test_compliance_officer_role_may_acknowledge(db, raised_anomaly, officer):
    """Once the default roles exist, a member of the "Compliance officers" group holds the compliance officer role's
    audit.acknowledge_anomaly and may acknowledge."""
    bootstrap_default_roles()
    officer = User.objects.get(pk=officer.pk)

    anomaly_acknowledge(actor=officer, anomaly_id=raised_anomaly.pk, note="reviewed with the service desk")

    raised_anomaly.refresh_from_db()
    assert raised_anomaly.acknowledged_by_id == officer.pk


def test_the_system_cannot_acknowledge(db, raised_anomaly):
    """Acknowledging is a person's act: actor=None is refused."""
    with pytest.raises(PermissionDenied):
        anomaly_acknowledge(actor=None, anomaly_id=raised_anomaly.pk, note="auto")

    raised_anomaly.refresh_from_db()
    assert raised_anomaly.acknowledged_at is None


def test_acknowledging_twice_is_refused(db, raised_anomaly, acknowledger):
    """A second acknowledgement is refused and leaves the first one's note and officer in place."""
    anomaly_acknowledge(actor=acknowledger, anomaly_id=raised_anomaly.pk, note="first")
    other = with_acknowledge_right(UserFactory(is_staff=True))

    with pytest.raises(ValidationError, match="acknowledged already"):
        anomaly_acknowledge(actor=other, anomaly_id=raised_anomaly.pk, note="second")

    raised_anomaly.refresh_from_db()
    assert (raised_anomaly.note, raised_anomaly.acknowledged_by_id) == ("first", acknowledger.pk)
    assert [e.outcome for e in ack_entries()] == [Outcome.SUCCESS, Outcome.FAILURE]


def test_acknowledging_an_unknown_anomaly_raises_does_not_exist(db, acknowledger):
    """An id with no anomaly raises Anomaly.DoesNotExist and is recorded as a failure naming the id."""
    with pytest.raises(Anomaly.DoesNotExist):
        anomaly_acknowledge(actor=acknowledger, anomaly_id=999999, note="?")

    [entry] = ack_entries()
    assert (entry.outcome, entry.meta["anomaly_id"]) == (Outcome.FAILURE, 999999)


def test_scan_loads_exactly_the_entries_that_can_trigger_a_rule(db, user):
    """The scan reads only possible triggers from the database (`_can_trigger`), and that filter selects the same
    entries the rules themselves take as triggers: successful privileged actions (exact codes and "ROLE.*"
    patterns) and force releases, and failed logins of any outcome; refusals and ordinary writes are left out."""
    from audit.anomalies import _can_trigger, _events  # noqa: PLC0415

    entries = [
        grant_roles(user),
        record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=user),
        record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, outcome=Outcome.DENIED, actor=user),
        failed_login("mallory", "192.0.2.9"),
        force_release(user),
        force_release(user, Outcome.DENIED),
        record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=1, actor=user),
        *refused(user, 1),
    ]
    ids = [entry.pk for entry in entries]

    loaded = {event.id for event in _events(AuditLog.objects.filter(_can_trigger(), id__in=ids))}
    privileged = conf.anomaly_privileged_actions()  # LOCK.FORCE_RELEASE among them
    triggers = {
        event.id
        for event in _events(AuditLog.objects.filter(id__in=ids))
        if (event.outcome == Outcome.SUCCESS and is_privileged(event.action, privileged))
        or event.action == AuditAction.USER_LOGIN_FAILED
    }

    assert loaded == triggers == {ids[0], ids[1], ids[3], ids[4]}


def test_anomaly_names_the_actor_by_id_not_by_their_encrypted_label(db, user):
    """The AUDIT.ANOMALY entry belongs to the system, so no subject's key covers it: its summary names the actor
    as "user #<id>" and never copies the user name that their own entries hold only encrypted, which would
    outlive an erasure."""
    refused(user, 3)
    grant_roles(user)

    [anomaly] = seal_and_scan()

    [entry] = anomaly_entries()
    assert f"user #{user.pk}" in entry.meta["summary"]
    assert user.username not in entry.meta["summary"]
    assert user.username not in anomaly.summary
