"""The compliance console in a real browser: Playwright drives Debian's Chromium against the live server.

A compliance officer (staff, in the "Compliance officers" group, nothing else) logs in through the login form and
works with a small, sealed trail: role changes (one with a before/after diff), lock events, failed logins, and one
role entry from ten days ago that the date range must leave out.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``); Playwright never downloads a browser. A
missing Chromium is a failure, never a skip. Every step leaves a screenshot in ``tests/artifacts/`` (ignored by
git), named after the test and the step; the CSV export is saved there too.
"""

import csv
import datetime as dt
import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from audit.actions import AuditAction
from audit.export.flat import COLUMNS
from audit.models import AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import record
from tests.factories.users import PASSWORD, OfficerFactory, UserFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Generous for a loaded CI machine; a page of the console renders in well under a second.
TIMEOUT_MS = 15_000

CHANGELIST_URL = reverse("admin:audit_auditlog_changelist")
ADD_URL = reverse("admin:audit_auditlog_add")


def change_url(pk: int) -> str:
    return reverse("admin:audit_auditlog_change", args=[pk])


def delete_url(pk: int) -> str:
    return reverse("admin:audit_auditlog_delete", args=[pk])


# --- the browser ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for the module. Missing or broken: the tests fail, saying why.

    Playwright's sync API keeps its asyncio loop marked as running on the main thread for as long as it is open,
    and Django refuses ORM calls there (SynchronousOnlyOperation): the tests' own set-up, checks and the flush
    after each test all query the database. DJANGO_ALLOW_ASYNC_UNSAFE lifts that check for exactly the lifetime of
    Playwright (as Playwright's documentation for Django advises); nothing else runs on that loop while a test
    queries, and the live server answers from threads of its own, where the check never applied.
    """
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"The console's browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
            ".ci/run installs it). Playwright's own browser download is not used."
        )
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start under Playwright: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class Screens:
    """Saves full-page screenshots as ``tests/artifacts/<test>--<nn>-<step>.png``."""

    page: Page
    folder: Path
    test_name: str
    taken: int = 0

    def __post_init__(self) -> None:
        # A rerun replaces the test's files instead of piling up next to them.
        for old in self.folder.glob(f"{self.test_name}--*"):
            old.unlink()

    def shot(self, step: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.test_name}--{self.taken:02}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


# --- the trail and the officer --------------------------------------------------------------------------------------


@dataclass
class Console:
    url: str
    officer: User
    role_today: list[AuditLog]
    role_old: AuditLog
    role_diff: AuditLog
    locks: list[AuditLog]
    failed_logins: list[AuditLog]


@pytest.fixture
def console(settings, committed_db, live_server) -> Console:
    """The live server with a compliance officer and a sealed trail of several families.

    Entries are written by ``audit.services.record``, as the services write them, except one ROLE.CREATE of ten
    days ago: ``record`` always stamps the current time, so that entry is stored directly (salted, as the recorder
    stores it), before the others, so that ids still grow with time.
    """
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    officer = OfficerFactory(username="olivia.officer")
    admin = UserFactory(username="alice.admin")
    bob = UserFactory(username="bob")
    carol = UserFactory(username="carol")

    role_old = AuditLog.objects.create(
        created_at=timezone.now() - dt.timedelta(days=10),
        actor=admin,
        actor_label=admin.username,
        action=AuditAction.ROLE_CREATE,
        entity="Role",
        entity_id="2",
        meta={"name": "auditor (temporary)"},
        perms_snapshot={"perms": ["rbac.add_role"]},
        salt=os.urandom(16),
    )
    role_today = [
        record(
            AuditAction.ROLE_CREATE,
            entity="Role",
            entity_id=5,
            meta={"name": "release manager", "reason": "CHG-2211"},
            actor=admin,
        ),
        record(
            AuditAction.ROLE_UPDATE,
            entity="Role",
            entity_id=5,
            changes={
                "description": {"before": "Approves releases.", "after": "Approves releases and hotfixes."},
                "privileged": {"before": False, "after": True},
            },
            meta={"reason": "CHG-2217"},
            actor=admin,
        ),
        record(
            AuditAction.ROLE_PERM_REPLACE,
            entity="Role",
            entity_id=5,
            changes={"permissions": {"before": ["locks.view_filelock"], "after": ["locks.force_unlock"]}},
            actor=admin,
        ),
    ]
    locks = [
        record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=11, meta={"path": "design/model.psd"}, actor=bob),
        record(
            AuditAction.LOCK_CREATE,
            entity="FileLock",
            entity_id=11,
            outcome=AuditLog.Outcome.DENIED,
            meta={"path": "design/model.psd", "message": "locked by bob"},
            actor=carol,
        ),
        record(
            AuditAction.LOCK_FORCE_RELEASE,
            entity="FileLock",
            entity_id=11,
            meta={"path": "design/model.psd", "override": True, "previous_owner": "bob"},
            actor=carol,
        ),
    ]
    failed_logins = [
        record(AuditAction.USER_LOGIN_FAILED, entity="User", outcome=AuditLog.Outcome.FAILURE, meta={"username": name})
        for name in ("mallory", "olivia.oficer")
    ]
    seal_pending(full_scan=True)
    assert not AuditLog.objects.filter(seal__isnull=True).exists()
    return Console(
        url=live_server.url,
        officer=officer,
        role_today=role_today,
        role_old=role_old,
        role_diff=role_today[1],
        locks=locks,
        failed_logins=failed_logins,
    )


@pytest.fixture
def page(browser, console) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the live server, accepting downloads."""
    context = browser.new_context(base_url=console.url, accept_downloads=True, viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def screens(page, artifacts, request) -> Screens:
    return Screens(page=page, folder=artifacts, test_name=request.node.name)


def log_in(page: Page, console: Console, screens: Screens) -> None:
    """Through the console's login form, as the officer would; ends on the console's index page."""
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    page.get_by_label("Username").fill(console.officer.username)
    page.get_by_label("Password").fill(PASSWORD)
    screens.shot("login-form")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text(
        re.compile(rf"Welcome,\s*{re.escape(console.officer.username)}")
    )


def result_rows(page: Page) -> list[dict[str, str]]:
    """The changelist's rows as the officer reads them: entry id and the text of each column."""
    rows = []
    for row in page.locator("#result_list tbody tr").all():
        rows.append(
            {
                "id": row.locator("th.field-id").inner_text().strip(),
                "action": row.locator("td.field-action").inner_text().strip(),
                "time": row.locator(".field-created_at_iso").inner_text().strip(),
            }
        )
    return rows


# --- the tests ------------------------------------------------------------------------------------------------------


def test_officer_logs_in_through_the_login_form_and_sees_the_audit_trail_section(page, console, screens):
    """An anonymous visit to /admin/ lands on the login form; after the officer's user name and password, the index
    greets the officer and lists the "Audit trail" section with the dashboard and the audit entries, read-only (no
    "Add" link), and the login itself is in the trail as USER.LOGIN."""
    log_in(page, console, screens)
    screens.shot("index")

    audit_section = page.locator("#content-main .app-audit")
    expect(audit_section.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(audit_section.get_by_role("link", name="Audit entries")).to_be_visible()
    expect(audit_section.locator("a.addlink")).to_have_count(0)
    assert AuditLog.objects.filter(
        action=AuditAction.USER_LOGIN, actor=console.officer, outcome=AuditLog.Outcome.SUCCESS
    ).exists()


def test_dashboard_shows_the_activity_chart_with_bars_and_legend(page, console, screens):
    """From the index the officer opens the dashboard: an inline SVG chart with one stacked bar segment per day and
    family (ROLE ten days ago; ROLE, LOCK and USER today), each of visible size and counting that day's entries of
    the family, and a legend naming the families with their totals; the chain status names the chain head."""
    log_in(page, console, screens)
    # What the page will show: the dashboard records its own AUDIT.VIEW only after rendering. (Whether the sealer
    # also raised an AUDIT.ANOMALY depends on the hour: a forced lock release outside working hours is one.)
    trail = list(AuditLog.objects.all())
    expected_bars = Counter((entry.created_at.date().isoformat(), entry.action.split(".")[0]) for entry in trail)
    expected_totals = Counter(entry.action.split(".")[0] for entry in trail)
    head = Seal.objects.order_by("-chain_index").first()

    page.locator("#content-main .app-audit").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Compliance dashboard")).to_be_visible()
    chart = page.locator("svg.audit-chart")
    expect(chart).to_be_visible()
    screens.shot("dashboard")

    bar_elements = chart.locator("rect.bar").all()
    bars = {
        (bar.get_attribute("data-day"), bar.get_attribute("data-family")): int(bar.get_attribute("data-count"))
        for bar in bar_elements
    }
    assert bars == dict(expected_bars)
    assert bars[(console.role_old.created_at.date().isoformat(), "ROLE")] == 1
    assert {"ROLE", "LOCK", "USER"} <= {family for _, family in bars}
    for bar in bar_elements:
        box = bar.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    legend = [item.locator("text").text_content() for item in chart.locator(".legend-item").all()]
    assert legend == [f"{family} ({total})" for family, total in sorted(expected_totals.items())]
    # Three role entries today and one ten days ago; three lock events; two failed logins and the officer's login.
    assert {"ROLE (4)", "LOCK (3)", "USER (3)"} <= set(legend)
    expect(page.locator("#chain-status")).to_contain_text(f"position #{head.chain_index}, hash {head.hash}")


def test_changelist_filtered_by_role_family_and_date_range_shows_only_those_entries(page, console, screens):
    """On the changelist the officer clicks the action family "ROLE": only ROLE.* entries are listed, the one of
    ten days ago among them. Then the officer fills the date range form with the days of today's role changes and
    applies it: the family filter is kept, only today's three ROLE entries remain and the form shows the range."""
    log_in(page, console, screens)
    # The changelist records its AUDIT.VIEW only after rendering: it lists what the trail holds now.
    everything = AuditLog.objects.count()
    page.locator("#content-main .app-audit").get_by_role("link", name="Audit entries").click()
    expect(page.get_by_role("heading", name="Select audit entry to view")).to_be_visible()
    expect(page.locator("#result_list tbody tr")).to_have_count(everything)
    families = {row["action"].split(".")[0] for row in result_rows(page)}
    assert {"ROLE", "LOCK", "USER"} <= families
    screens.shot("changelist")

    filters = page.locator("#changelist-filter")
    filters.locator("details[data-filter-title='action family']").get_by_role("link", name="ROLE", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]family=ROLE(&|$)"))
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    shown = result_rows(page)
    assert all(row["action"].startswith("ROLE.") for row in shown)
    newest_first = [*reversed(console.role_today), console.role_old]
    assert [int(row["id"]) for row in shown] == [entry.pk for entry in newest_first]
    screens.shot("family-role")

    # The days of today's entries (one day, unless they were recorded across midnight UTC).
    since = console.role_today[0].created_at.date().isoformat()
    until = console.role_today[-1].created_at.date().isoformat()
    date_form = filters.locator("form.audit-date-range")
    date_form.get_by_label("From").fill(since)
    date_form.get_by_label("Until").fill(until)
    date_form.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"[?&]since={since}(&|$)"))
    expect(page).to_have_url(re.compile(rf"[?&]until={until}(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]family=ROLE(&|$)"))
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    screens.shot("family-role-date-range")

    shown = result_rows(page)
    assert [row["action"] for row in shown] == ["ROLE.PERM.REPLACE", "ROLE.UPDATE", "ROLE.CREATE"]
    assert [int(row["id"]) for row in shown] == [entry.pk for entry in reversed(console.role_today)]
    assert all(since <= row["time"][:10] <= until for row in shown)
    assert str(console.role_old.pk) not in {row["id"] for row in shown}
    # The form shows the range that is applied, and the family is still the one picked in the sidebar.
    expect(date_form.get_by_label("From")).to_have_value(since)
    expect(date_form.get_by_label("Until")).to_have_value(until)
    expect(filters.locator("details[data-filter-title='action family'] li.selected")).to_have_text("ROLE")


def test_entry_detail_shows_the_before_after_diff_and_the_seal(page, console, screens):
    """The officer opens the ROLE.UPDATE entry from the changelist: its "changes" table has the columns field,
    before and after with the two changed fields, and the seal status says "Sealed at chain position #n" with the
    entry's own chain position and hash."""
    log_in(page, console, screens)
    page.goto(f"{CHANGELIST_URL}?family=ROLE")
    page.locator("#result_list th.field-id").get_by_role("link", name=str(console.role_diff.pk), exact=True).click()
    expect(page).to_have_url(re.compile(rf"{change_url(console.role_diff.pk)}(\?|$)"))
    expect(page.locator("h1")).to_have_text("View audit entry")
    screens.shot("entry-detail")

    diff = page.locator("table.audit-diff")
    expect(diff).to_be_visible()
    expect(diff.locator("thead th")).to_have_text(["field", "before", "after"])
    expect(diff.locator("tbody tr")).to_have_count(2)
    # Row order is the stored object's: PostgreSQL's jsonb keeps keys by length, SQLite as written.
    rows = {
        row.locator("th").inner_text().strip(): [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in diff.locator("tbody tr").all()
    }
    assert rows == {
        "description": ["Approves releases.", "Approves releases and hotfixes."],
        "privileged": ["False", "True"],
    }

    seal = Seal.objects.get(entry=console.role_diff)
    seal_field = page.locator(".field-seal_status")
    expect(seal_field).to_contain_text(f"Sealed at chain position #{seal.chain_index}")
    expect(seal_field).to_contain_text(seal.hash)
    seal_field.scroll_into_view_if_needed()
    screens.shot("entry-seal")


def test_console_offers_no_add_change_or_delete_control(page, console, screens):
    """Read-only for the officer: the changelist has no "Add" button and its actions are the three exports only
    (no "Delete selected"); an entry's page has no Save or Delete button and no editable field; the add and delete
    URLs answer 403 Forbidden."""
    log_in(page, console, screens)
    page.goto(CHANGELIST_URL)
    expect(page.locator("#result_list")).to_be_visible()
    expect(page.locator("#content-main .object-tools a.addlink")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile(r"^Add\b"))).to_have_count(0)
    options = page.locator("select[name=action] option").all_text_contents()
    assert [text for text in options if not text.startswith("-")] == [
        "Export selected as CSV",
        "Export selected as JSON",
        "Export selected as a verifiable bundle (ZIP)",
    ]
    screens.shot("changelist-no-add")

    page.goto(change_url(console.role_diff.pk))
    expect(page.locator("h1")).to_have_text("View audit entry")
    form = page.locator("#auditlog_form")
    expect(form.locator("input[type=submit], button[type=submit]")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Save|Delete"))).to_have_count(0)
    expect(page.get_by_role("link", name="Delete", exact=True)).to_have_count(0)
    expect(form.locator("input:not([type=hidden]), textarea, select")).to_have_count(0)
    expect(page.locator(".field-action .readonly")).to_have_text("ROLE.UPDATE")
    screens.shot("detail-read-only")

    added = page.goto(ADD_URL)
    assert added is not None and added.status == 403
    expect(page.locator("h1")).to_have_text("403 Forbidden")
    screens.shot("add-forbidden")
    deleted = page.goto(delete_url(console.role_diff.pk))
    assert deleted is not None and deleted.status == 403
    assert AuditLog.objects.filter(pk=console.role_diff.pk).exists()


def test_csv_export_action_downloads_the_selected_rows(page, console, screens, artifacts):
    """The officer filters on LOCK, ticks two rows, picks "Export selected as CSV" and presses Go: the download is
    a CSV with the export's header and exactly the two ticked entries (oldest first, with their chain positions),
    and the export is recorded as one AUDIT.EXPORT entry of the officer."""
    log_in(page, console, screens)
    page.goto(f"{CHANGELIST_URL}?family=LOCK")
    ticked = [console.locks[0], console.locks[2]]
    for entry in ticked:
        page.locator(f"#result_list input.action-select[value='{entry.pk}']").check()
    expect(page.locator(".action-counter")).to_contain_text("2 of 3 selected")
    page.locator("select[name=action]").select_option(label="Export selected as CSV")
    screens.shot("export-selection")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Go").click()
    download = download_info.value
    assert re.fullmatch(r"audit-entries-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    saved = artifacts / f"{screens.test_name}--{download.suggested_filename}"
    download.save_as(saved)
    screens.shot("after-export")

    table = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    header, rows = table[0], table[1:]
    assert tuple(header) == COLUMNS
    exported = [dict(zip(header, row, strict=True)) for row in rows]
    assert [int(row["id"]) for row in exported] == [entry.pk for entry in ticked]
    assert [row["action"] for row in exported] == ["LOCK.CREATE", "LOCK.FORCE_RELEASE"]
    assert [row["actor_label"] for row in exported] == ["bob", "carol"]
    seals = {seal.entry_id: seal.chain_index for seal in Seal.objects.filter(entry__in=ticked)}
    assert [int(row["chain_index"]) for row in exported] == [seals[entry.pk] for entry in ticked]

    [export] = AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT, actor=console.officer)
    assert export.meta["format"] == "csv"
    assert export.meta["count"] == 2
    assert export.meta["selection"] == {"ids": "selected"}
