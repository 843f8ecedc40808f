"""The officers' dashboard in the compliance console: activity chart, chain status, recent refusals and failures,
open anomalies with their acknowledgement; who may open it; its reads recorded; a constant number of queries."""

import datetime as dt
import os
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.actions import AuditAction
from audit.context import RequestContext, bound
from audit.dashboard import chart_days, daily_counts
from audit.models import Anomaly, AuditLog, SignedDigest
from audit.sealing import seal_pending
from audit.services import Outcome, record
from tests.factories.users import UserFactory

DASHBOARD_URL = reverse("admin:audit_dashboard")


def acknowledge_url(pk: int) -> str:
    return reverse("admin:audit_anomaly_acknowledge", args=[pk])


def change_url(pk: int) -> str:
    return reverse("admin:audit_auditlog_change", args=[pk])


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    settings.AUDIT_ANOMALY_WINDOW_MINUTES = 15
    settings.AUDIT_ANOMALY_FAILED_LOGINS = 5


@pytest.fixture
def officer_client(officer) -> Client:
    client = Client()
    client.force_login(officer)
    return client


def with_acknowledge_right(user: User) -> User:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="audit", codename="acknowledge_anomaly"))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def acknowledger_client(officer) -> Client:
    client = Client()
    client.force_login(with_acknowledge_right(officer))
    return client


def make_entry(created_at: dt.datetime, action: str, outcome: str = Outcome.SUCCESS, **fields) -> AuditLog:
    """An entry at a chosen time (record() stamps "now"), stored as the recorder stores it (salted)."""
    return AuditLog.objects.create(
        created_at=created_at, action=action, outcome=outcome, entity="Role", salt=os.urandom(16), **fields
    )


def raise_failed_login_anomaly(username: str = "alice") -> Anomaly:
    with bound(RequestContext(request_id="r", ip_address="203.0.113.9", user_agent="pytest")):
        for _ in range(6):
            record(AuditAction.USER_LOGIN_FAILED, entity="User", outcome=Outcome.FAILURE, meta={"username": username})
    seal_pending()
    return Anomaly.objects.get(subject=f"username:{username}")


def section(content: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', content, re.DOTALL)
    assert match, section_id
    return match.group(1)


def bars(content: str) -> dict[tuple[str, str], int]:
    """{(family, day): count} of the chart's bars."""
    svg = re.search(r'<svg class="audit-chart" .*?</svg>', content, re.DOTALL)
    assert svg, "no inline SVG"
    return {
        (family, day): int(count)
        for family, day, count in re.findall(
            r'<rect class="bar" [^>]*data-family="([^"]+)" data-day="([^"]+)" data-count="(\d+)"', svg.group()
        )
    }


# --- the chart ------------------------------------------------------------------------------------------------------


def test_officer_sees_svg_chart_with_bars_for_the_families_present(db, officer_client, user):
    """An officer gets 200 and an inline SVG with one bar segment per family and day (ROLE and LOCK today, GROUP
    three days ago), a legend naming exactly those families with their totals, and both axis titles; an entry
    older than 30 days is not drawn."""
    now = timezone.now()
    record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=user)
    record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=1, actor=user)
    record(AuditAction.LOCK_RELEASE, entity="FileLock", entity_id=1, actor=user)
    make_entry(now - dt.timedelta(days=3), AuditAction.GROUP_CREATE)
    make_entry(now - dt.timedelta(days=40), AuditAction.FOIA_REQUEST_CREATE)

    response = officer_client.get(DASHBOARD_URL)

    assert response.status_code == 200
    content = response.content.decode()
    today = f"{timezone.localdate(now):%Y-%m-%d}"
    three_days_ago = f"{timezone.localdate(now - dt.timedelta(days=3)):%Y-%m-%d}"
    drawn = bars(content)
    assert drawn[("ROLE", today)] == 1
    assert drawn[("LOCK", today)] == 2
    assert drawn[("GROUP", three_days_ago)] == 1
    # force_login is a USER.LOGIN of the officer, today.
    assert {family for family, _ in drawn} == {"GROUP", "LOCK", "ROLE", "USER"}
    legend = re.findall(r'<g class="legend-item" data-family="([^"]+)">.*?<text [^>]*>([^<]+)</text>', content)
    assert legend == [("GROUP", "GROUP (1)"), ("LOCK", "LOCK (2)"), ("ROLE", "ROLE (1)"), ("USER", "USER (1)")]
    assert ">Entries per day</text>" in content
    assert ">Day (UTC)</text>" in content
    assert "<script" not in content.split('<div class="audit-dashboard">')[1]


def test_daily_counts_group_by_day_and_family_since_the_start(db):
    """daily_counts returns one count per (day, family) for entries at or after ``since`` and ignores older ones."""
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    make_entry(start - dt.timedelta(seconds=1), AuditAction.ROLE_CREATE)
    make_entry(start, AuditAction.ROLE_CREATE)
    make_entry(start + dt.timedelta(hours=23), AuditAction.ROLE_PERM_REPLACE)
    make_entry(start + dt.timedelta(hours=23), AuditAction.LOCK_CREATE)
    make_entry(start + dt.timedelta(days=1), AuditAction.ROLE_UPDATE)

    counts = {(c.day, c.family): c.count for c in daily_counts(since=start)}

    assert counts == {
        (dt.date(2026, 3, 1), "ROLE"): 2,
        (dt.date(2026, 3, 1), "LOCK"): 1,
        (dt.date(2026, 3, 2), "ROLE"): 1,
    }


def test_daily_counts_is_one_grouped_query_bounded_by_created_at(db):
    """The chart's data is one SELECT with a GROUP BY and a lower bound on created_at (no full-table scan)."""
    make_entry(timezone.now(), AuditAction.ROLE_CREATE)
    since = timezone.now() - dt.timedelta(days=30)

    with CaptureQueriesContext(connection) as queries:
        daily_counts(since=since)

    [query] = queries.captured_queries
    assert "GROUP BY" in query["sql"].upper()
    assert re.search(r'"created_at" >= ', query["sql"])


def test_chart_covers_the_last_30_days_up_to_today(db):
    """The chart's days are the 30 calendar days ending today, oldest first."""
    days = chart_days()

    assert len(days) == 30
    assert days[-1] == timezone.localdate()
    assert days[0] == timezone.localdate() - dt.timedelta(days=29)


# --- chain status ---------------------------------------------------------------------------------------------------


def test_chain_status_shows_last_verify_and_latest_signed_digest(db, officer_client, settings, tmp_path):
    """After `audit_verify` and a signed digest, the dashboard says "Intact" with the verify entry's time and link,
    and names the digest's chain position and key fingerprint."""
    out = tmp_path / "keys"
    call_command("audit_keygen", "--out", out, stdout=open(os.devnull, "w"))
    settings.AUDIT_SIGNING_KEY_FILE = str(out / "audit-signing.key")
    record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1)
    seal_pending()  # signs the first digest: one is due once a key is configured
    digest = SignedDigest.objects.latest("chain_index")
    call_command("audit_verify", "--no-progress", stdout=open(os.devnull, "w"))
    verify = AuditLog.objects.get(action=AuditAction.AUDIT_VERIFY)

    content = officer_client.get(DASHBOARD_URL).content.decode()

    status = section(content, "chain-status")
    assert '<span class="status-ok">Intact</span>' in status
    assert verify.created_at.isoformat() in status
    assert f'href="{change_url(verify.pk)}"' in status
    assert f"chain position #{digest.chain_index}" in status
    assert digest.key_fingerprint in status


def test_chain_status_shows_a_failed_verify_as_not_intact(db, officer_client):
    """A last AUDIT.VERIFY with outcome failure shows as "NOT intact" with its number of findings."""
    record(AuditAction.AUDIT_VERIFY, entity="AuditLog", outcome=Outcome.SUCCESS, meta={"findings": 0})
    record(AuditAction.AUDIT_VERIFY, entity="AuditLog", outcome=Outcome.FAILURE, meta={"findings": 2})

    status = section(officer_client.get(DASHBOARD_URL).content.decode(), "chain-status")

    assert "NOT intact: 2 finding(s)" in status
    assert "status-ok" not in status


def test_opening_the_dashboard_never_runs_a_verify(db, officer_client):
    """With no verify ever run, the page says "Never verified" and opening it records no AUDIT.VERIFY."""
    content = officer_client.get(DASHBOARD_URL).content.decode()

    assert "Never verified." in section(content, "chain-status")
    assert "No signed digest yet." in section(content, "chain-status")
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_VERIFY).exists()


# --- recent refused and failed entries ------------------------------------------------------------------------------


def test_latest_ten_denied_and_ten_failed_entries_are_listed_with_links(db, officer_client, user):
    """The refused and the failed section each list the newest ten of their outcome, linked to their admin pages;
    older ones and entries of the other outcome are not in the section."""
    denied = [
        record(AuditAction.LOCK_FORCE_RELEASE, entity="FileLock", entity_id=n, outcome=Outcome.DENIED, actor=user)
        for n in range(12)
    ]
    failed = [
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=n, outcome=Outcome.FAILURE, actor=user)
        for n in range(12)
    ]

    content = officer_client.get(DASHBOARD_URL).content.decode()

    def listed(section_id: str) -> list[int]:
        return [int(pk) for pk in re.findall(r'data-entry="(\d+)"', section(content, section_id))]

    assert listed("recent-denied") == [entry.pk for entry in reversed(denied[2:])]
    assert listed("recent-failed") == [entry.pk for entry in reversed(failed[2:])]
    for entry in denied[2:]:
        assert f'<a href="{change_url(entry.pk)}">{entry.pk}</a>' in section(content, "recent-denied")


def test_entry_text_is_escaped_in_the_lists(db, officer_client):
    """Markup and control characters stored in an entry show as text and escape codes, never raw."""
    with bound(RequestContext(request_id="r", ip_address="192.0.2.1", user_agent="x")):
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="<b>x</b>\x1b[31m", outcome=Outcome.DENIED)

    denied = section(officer_client.get(DASHBOARD_URL).content.decode(), "recent-denied")

    assert "&lt;b&gt;x&lt;/b&gt;\\x1b[31m" in denied
    assert "\x1b" not in denied
    assert "<b>x</b>" not in denied


# --- anomalies ------------------------------------------------------------------------------------------------------


def test_open_anomalies_are_listed_with_an_acknowledge_form(db, acknowledger_client):
    """An open anomaly is listed with its summary and a POST form to its acknowledge URL with a CSRF token and a
    required note field."""
    anomaly = raise_failed_login_anomaly()

    anomalies = section(acknowledger_client.get(DASHBOARD_URL).content.decode(), "anomalies")

    assert f'data-anomaly="{anomaly.pk}"' in anomalies
    assert "6 failed logins for the user name &quot;alice&quot;" in anomalies
    assert f'<a href="{change_url(anomaly.entry_id)}">{anomaly.pk}</a>' in anomalies
    form = re.search(
        rf'<form class="acknowledge" method="post" action="{acknowledge_url(anomaly.pk)}">(.*?)</form>',
        anomalies,
        re.DOTALL,
    )
    assert form
    assert 'name="csrfmiddlewaretoken"' in form.group(1)
    assert re.search(r'<input type="text" [^>]*name="note" required', form.group(1))


def test_officer_without_acknowledge_right_sees_anomalies_without_form(db, officer_client):
    """An officer with view rights only sees the open anomaly but no acknowledge form."""
    anomaly = raise_failed_login_anomaly()

    anomalies = section(officer_client.get(DASHBOARD_URL).content.decode(), "anomalies")

    assert f'data-anomaly="{anomaly.pk}"' in anomalies
    assert "<form" not in anomalies


def test_acknowledged_anomalies_are_not_listed(db, acknowledger_client):
    """Once acknowledged an anomaly leaves the open list."""
    anomaly = raise_failed_login_anomaly()
    acknowledger_client.post(acknowledge_url(anomaly.pk), {"note": "known test account"})

    anomalies = section(acknowledger_client.get(DASHBOARD_URL).content.decode(), "anomalies")

    assert f'data-anomaly="{anomaly.pk}"' not in anomalies
    assert "No open anomalies." in anomalies


def test_acknowledge_form_acknowledges_through_the_service(db, acknowledger_client, officer):
    """POSTing a note acknowledges the anomaly, records AUDIT.ANOMALY.ACK by the officer and redirects to the
    dashboard with a success message."""
    anomaly = raise_failed_login_anomaly()

    response = acknowledger_client.post(acknowledge_url(anomaly.pk), {"note": "known test account"}, follow=True)

    assert response.redirect_chain == [(DASHBOARD_URL, 302)]
    anomaly.refresh_from_db()
    assert (anomaly.acknowledged_by_id, anomaly.note) == (officer.pk, "known test account")
    [entry] = AuditLog.objects.filter(action=AuditAction.AUDIT_ANOMALY_ACK)
    assert (entry.actor_id, entry.outcome, entry.entity_id) == (officer.pk, Outcome.SUCCESS, str(anomaly.pk))
    assert f"Anomaly #{anomaly.pk} acknowledged." in response.content.decode()


def test_acknowledge_without_note_is_refused_with_a_message(db, acknowledger_client):
    """POSTing an empty note leaves the anomaly open and shows why on the dashboard."""
    anomaly = raise_failed_login_anomaly()

    response = acknowledger_client.post(acknowledge_url(anomaly.pk), {"note": " "}, follow=True)

    anomaly.refresh_from_db()
    assert anomaly.acknowledged_at is None
    assert "an acknowledgement needs a note" in response.content.decode()


def test_acknowledge_without_the_right_is_403(db, officer_client, officer):
    """An officer without audit.acknowledge_anomaly gets 403; the anomaly stays open and the attempt is recorded
    as denied."""
    anomaly = raise_failed_login_anomaly()

    response = officer_client.post(acknowledge_url(anomaly.pk), {"note": "fine"})

    assert response.status_code == 403
    anomaly.refresh_from_db()
    assert anomaly.acknowledged_at is None
    [entry] = AuditLog.objects.filter(action=AuditAction.AUDIT_ANOMALY_ACK)
    assert (entry.actor_id, entry.outcome) == (officer.pk, Outcome.DENIED)


def test_acknowledge_needs_the_csrf_token(db, officer):
    """Without the CSRF token the POST is refused with 403 and nothing is acknowledged."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(with_acknowledge_right(officer))
    anomaly = raise_failed_login_anomaly()

    response = client.post(acknowledge_url(anomaly.pk), {"note": "fine"})

    assert response.status_code == 403
    anomaly.refresh_from_db()
    assert anomaly.acknowledged_at is None


def test_acknowledge_by_get_is_not_allowed(db, acknowledger_client):
    """The acknowledge URL answers GET with 405: only a POST changes state."""
    anomaly = raise_failed_login_anomaly()

    assert acknowledger_client.get(acknowledge_url(anomaly.pk)).status_code == 405


def test_acknowledge_unknown_anomaly_is_404(db, acknowledger_client):
    """Acknowledging an id that is no anomaly answers 404."""
    assert acknowledger_client.post(acknowledge_url(999999), {"note": "x"}).status_code == 404


# --- who gets in, what is recorded ----------------------------------------------------------------------------------


def test_opening_the_dashboard_records_one_audit_view(db, officer_client, officer):
    """Opening the dashboard writes exactly one entry: AUDIT.VIEW by the officer with meta {"via": "dashboard"}."""
    before = AuditLog.objects.count()

    response = officer_client.get(DASHBOARD_URL)

    assert response.status_code == 200
    assert AuditLog.objects.count() == before + 1
    view = AuditLog.objects.latest("id")
    assert (view.action, view.actor_id, view.entity, view.meta) == (
        AuditAction.AUDIT_VIEW,
        officer.pk,
        "AuditLog",
        {"via": "dashboard"},
    )


def test_superuser_gets_the_dashboard(db, admin_client):
    """A superuser holds every right, audit.view_auditlog included: 200."""
    assert admin_client.get(DASHBOARD_URL).status_code == 200


def test_staff_without_view_permission_gets_403(db, client):
    """A staff user without audit.view_auditlog gets 403 and no AUDIT.VIEW is recorded."""
    client.force_login(UserFactory(is_staff=True))

    response = client.get(DASHBOARD_URL)

    assert response.status_code == 403
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).exists()


def test_non_staff_user_is_sent_to_the_login_page(db, client, user):
    """A logged-in user who is not staff is redirected to the admin login, as for every console page."""
    client.force_login(user)

    response = client.get(DASHBOARD_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_index_links_the_dashboard_for_officers_only(db, officer_client, client):
    """The admin index lists "Dashboard" in the Audit trail section for an officer; staff without the view right
    see no link to it."""
    officer_index = officer_client.get(reverse("admin:index")).content.decode()
    client.force_login(UserFactory(is_staff=True))
    staff_index = client.get(reverse("admin:index")).content.decode()

    assert re.search(rf'<a href="{DASHBOARD_URL}"[^>]*>Dashboard</a>', officer_index)
    assert DASHBOARD_URL not in staff_index


# --- queries --------------------------------------------------------------------------------------------------------


def populate(count: int) -> None:
    """``count`` entries over the last 30 days in five families and all three outcomes, plus an open anomaly."""
    now = timezone.now()
    actions = [AuditAction.ROLE_UPDATE, AuditAction.LOCK_CREATE, AuditAction.GROUP_UPDATE, AuditAction.USER_LOGIN]
    outcomes = [Outcome.SUCCESS, Outcome.DENIED, Outcome.FAILURE]
    AuditLog.objects.bulk_create(
        AuditLog(
            created_at=now - dt.timedelta(hours=7 * n),
            action=actions[n % len(actions)],
            outcome=outcomes[n % len(outcomes)],
            entity="Role",
            entity_id=str(n),
            actor_label=f"user{n}",
            salt=os.urandom(16),
        )
        for n in range(count)
    )
    raise_failed_login_anomaly(f"victim{count}")


def dashboard_queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(DASHBOARD_URL)
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def test_dashboard_runs_the_same_small_number_of_queries_for_10_and_100_entries(db, acknowledger_client):
    """The dashboard runs as many queries over 100 entries as over 10 (at most 20), and none of them counts or
    reads the audit table without a bound."""
    populate(10)
    small = dashboard_queries(acknowledger_client)
    populate(90)
    large = dashboard_queries(acknowledger_client)

    assert len(large) == len(small) <= 20
    assert not [sql for sql in large if re.search(r"COUNT\(\*\)", sql) and "GROUP BY" not in sql.upper()]
    reads = [sql for sql in large if sql.lstrip().upper().startswith("SELECT") and '"audit_auditlog"' in sql]
    assert all(re.search(r"LIMIT \d+|\"created_at\" >= ", sql) for sql in reads), reads
