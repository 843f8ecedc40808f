"""The compliance console: the read-only Django admin of the audit trail."""

import datetime as dt
import os
import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.actions import AuditAction
from audit.bootstrap import COMPLIANCE_OFFICERS
from audit.models import AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import record
from tests.factories.users import UserFactory

UTC = dt.timezone.utc
CHANGELIST_URL = reverse("admin:audit_auditlog_changelist")
ADD_URL = reverse("admin:audit_auditlog_add")


def change_url(pk: int) -> str:
    return reverse("admin:audit_auditlog_change", args=[pk])


def delete_url(pk: int) -> str:
    return reverse("admin:audit_auditlog_delete", args=[pk])


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def officer_client(officer) -> Client:
    client = Client()
    client.force_login(officer)
    return client


@pytest.fixture(params=["superuser", "officer"])
def console_client(request) -> Client:
    """A client logged in as a superuser (pytest-django's admin_client) or as a compliance officer."""
    return request.getfixturevalue("admin_client" if request.param == "superuser" else "officer_client")


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


def bulk_entries(count: int) -> list[AuditLog]:
    return AuditLog.objects.bulk_create(
        AuditLog(
            created_at=dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=n),
            action=AuditAction.ROLE_UPDATE,
            entity="Role",
            entity_id=str(n),
            ip_address="192.0.2.1",
            salt=os.urandom(16),
        )
        for n in range(count)
    )


def listed_ids(response) -> set[int]:
    assert response.status_code == 200
    return {entry.pk for entry in response.context["cl"].result_list}


@pytest.fixture
def dataset(user, other_user):
    """Four entries of different families, outcomes, entities, request ids and days (one at each day's edge)."""
    return {
        "role_create": make_entry(
            created_at=dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
            actor=user,
            action=AuditAction.ROLE_CREATE,
            entity="Role",
            entity_id="role-7",
            request_id="req-a",
            ip_address="192.0.2.10",
        ),
        "role_perm_replace": make_entry(
            created_at=dt.datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
            actor=other_user,
            action=AuditAction.ROLE_PERM_REPLACE,
            entity="Role",
            entity_id="role-8",
            outcome=AuditLog.Outcome.DENIED,
            request_id="req-b",
        ),
        "group_create": make_entry(
            created_at=dt.datetime(2024, 1, 3, 23, 59, 59, tzinfo=UTC),
            actor=user,
            action=AuditAction.GROUP_CREATE,
            entity="Group",
            entity_id="group-7",
            outcome=AuditLog.Outcome.DENIED,
            request_id="req-c",
        ),
        "login_failed": make_entry(
            created_at=dt.datetime(2024, 1, 4, 0, 0, tzinfo=UTC),
            action=AuditAction.USER_LOGIN_FAILED,
            entity="User",
            outcome=AuditLog.Outcome.FAILURE,
            request_id="req-d",
        ),
    }


# --- the officers' group --------------------------------------------------------------------------------------


def test_compliance_officers_group_exists_after_migrate_with_view_rights_only(db):
    """migrate leaves a "Compliance officers" group holding audit.view_auditlog and no add, change or delete right."""
    group = Group.objects.get(name=COMPLIANCE_OFFICERS)
    perms = {(p.content_type.app_label, p.codename) for p in group.permissions.select_related("content_type")}

    assert ("audit", "view_auditlog") in perms
    assert all(codename.startswith("view_") for _, codename in perms)
    assert not [codename for _, codename in perms if codename.split("_", 1)[0] in {"add", "change", "delete"}]


def test_officer_has_view_but_no_write_permission(db, officer):
    """A member of the group may view audit entries but holds no add, change or delete permission on them."""
    assert officer.has_perm("audit.view_auditlog")
    for right in ("add", "change", "delete"):
        assert not officer.has_perm(f"audit.{right}_auditlog")
        assert not officer.has_perm(f"audit.{right}_seal")


# --- read-only for everyone -----------------------------------------------------------------------------------


def test_nobody_gets_the_add_view(db, console_client):
    """GET of the add view is 403, for a superuser too."""
    response = console_client.get(ADD_URL)

    assert response.status_code == 403


def test_nobody_can_add_by_post(db, console_client):
    """POST to the add view is 403 and creates no entry."""
    before = AuditLog.objects.count()

    response = console_client.post(ADD_URL, {"action": "ROLE.CREATE", "entity": "Role", "outcome": "success"})

    assert response.status_code == 403
    assert AuditLog.objects.filter(action=AuditAction.ROLE_CREATE).count() == 0
    assert AuditLog.objects.exclude(action=AuditAction.AUDIT_VIEW).count() == before


def test_post_to_change_view_does_not_change_the_entry(db, console_client, dataset):
    """POST with new values to an entry's change view is refused (403) and leaves every stored value as it was."""
    entry = dataset["role_create"]
    stored = {field.attname: getattr(entry, field.attname) for field in AuditLog._meta.concrete_fields}

    response = console_client.post(
        change_url(entry.pk),
        {"action": "ROLE.DELETE", "entity": "Group", "entity_id": "x", "outcome": "failure", "request_id": "forged"},
    )

    assert response.status_code == 403
    entry.refresh_from_db()
    assert {field.attname: getattr(entry, field.attname) for field in AuditLog._meta.concrete_fields} == stored


def test_change_view_offers_no_save_button(db, console_client, dataset):
    """The detail page is read-only: no form fields to edit and no save or delete button."""
    response = console_client.get(change_url(dataset["role_create"].pk))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert "deletelink" not in content
    assert not re.search(r'<(input|textarea|select)[^>]+name="(action|entity|outcome|changes)"', content)


def test_nobody_gets_the_delete_view(db, console_client, dataset):
    """GET of an entry's delete view is 403, for a superuser too."""
    response = console_client.get(delete_url(dataset["role_create"].pk))

    assert response.status_code == 403


def test_nobody_can_delete_by_post(db, console_client, dataset):
    """POST to the delete view is 403 and the entry stays."""
    entry = dataset["role_create"]

    response = console_client.post(delete_url(entry.pk), {"post": "yes"})

    assert response.status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_changelist_has_no_bulk_delete_action(db, console_client, dataset):
    """The changelist offers only the export actions, no "delete selected"; posting that action deletes nothing."""
    response = console_client.get(CHANGELIST_URL)

    assert response.status_code == 200
    offered = {name for name, _ in response.context["action_form"].fields["action"].choices if name}
    assert offered == {"export_csv", "export_json", "export_bundle"}
    assert "delete_selected" not in response.content.decode()

    ids = [str(entry.pk) for entry in dataset.values()]
    console_client.post(CHANGELIST_URL, {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert AuditLog.objects.filter(pk__in=ids).count() == len(ids)


def test_changelist_offers_no_add_link(db, console_client):
    """The changelist shows no "Add audit entry" button."""
    response = console_client.get(CHANGELIST_URL)

    assert response.status_code == 200
    assert ADD_URL not in response.content.decode()


# --- changelist -----------------------------------------------------------------------------------------------


def test_officer_changelist_lists_entries_with_the_columns(db, officer_client, dataset):
    """An officer's changelist shows every entry with the columns time (ISO 8601, UTC), actor, action, entity,
    entity id, outcome, IP address and sealed."""
    response = officer_client.get(CHANGELIST_URL)

    assert {entry.pk for entry in dataset.values()} <= listed_ids(response)
    content = response.content.decode()
    for column in (
        "id",
        "created_at_iso",
        "actor_text",
        "action",
        "entity_text",
        "entity_id_text",
        "outcome",
        "ip_address",
        "sealed",
    ):
        assert re.search(rf'<th scope="col" class="[^"]*\bcolumn-{column}\b', content), column
        assert f'class="field-{column}' in content, column
    entry = dataset["role_create"]
    assert f"{entry.actor_label} (#{entry.actor_id})" in content
    assert "ROLE.CREATE" in content
    assert "role-7" in content
    assert "192.0.2.10" in content
    assert "2024-01-01T10:00:00Z" in content


def test_changelist_sealed_column_follows_the_seal(db, officer_client, user):
    """The "sealed" column shows a yes icon for a sealed entry and a no icon for one not sealed yet."""
    sealed = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=user)
    seal_pending()
    unsealed = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1, actor=user)

    content = officer_client.get(CHANGELIST_URL).content.decode()

    def row(entry: AuditLog) -> str:
        # The row starts with the action checkbox, then the linked id.
        match = re.search(
            rf'<tr>(?:(?!</tr>).)*?<th class="field-id"><a href="{change_url(entry.pk)}">.*?</tr>', content, re.DOTALL
        )
        assert match, entry.pk
        return match.group()

    assert 'class="field-sealed"><img src="/static/admin/img/icon-yes.svg" alt="True">' in row(sealed)
    assert 'class="field-sealed"><img src="/static/admin/img/icon-no.svg" alt="False">' in row(unsealed)


def test_changelist_is_newest_first(db, officer_client, dataset):
    """The changelist is ordered by id, newest first."""
    response = officer_client.get(CHANGELIST_URL)

    ids = [entry.pk for entry in response.context["cl"].result_list]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"family": "ROLE"}, {"role_create", "role_perm_replace"}, id="family=ROLE"),
        pytest.param({"family": "GROUP"}, {"group_create"}, id="family=GROUP"),
        pytest.param({"outcome__exact": "denied"}, {"role_perm_replace", "group_create"}, id="outcome=denied"),
        pytest.param({"outcome__exact": "failure"}, {"login_failed"}, id="outcome=failure"),
        pytest.param({"entity": "Role"}, {"role_create", "role_perm_replace"}, id="entity=Role"),
        pytest.param({"entity": "User"}, {"login_failed"}, id="entity=User"),
        pytest.param(
            {"since": "2024-01-02", "until": "2024-01-03"}, {"role_perm_replace", "group_create"}, id="date-range"
        ),
        pytest.param({"since": "2024-01-02T00:00:01", "until": "2024-01-03T23:59:59"}, set(), id="datetime-bounds"),
        pytest.param(
            {"since": "2024-01-02T00:00:00", "until": "2024-01-04T00:00:00"},
            {"role_perm_replace", "group_create"},
            id="datetime-until-exclusive",
        ),
        pytest.param({"until": "2024-01-01"}, {"role_create"}, id="until-only-whole-day"),
        pytest.param(
            # Offsets beyond ±15:59, which PostgreSQL refuses in a query: compared as the same instants in UTC.
            {"since": "2024-01-02T18:00:00+18:00", "until": "2024-01-03T06:00:00-18:00"},
            {"role_perm_replace", "group_create"},
            id="offsets-beyond-15-hours",
        ),
        pytest.param({"family": "ROLE", "outcome__exact": "denied"}, {"role_perm_replace"}, id="combined"),
    ],
)
def test_changelist_filters_return_only_matching_rows(db, officer_client, dataset, params, expected):
    """Filters by action family, outcome, entity and date range (since/until as YYYY-MM-DD, until inclusive of its
    whole day) list exactly the matching rows."""
    if "since" not in params and "until" not in params:
        # Keep the officer's own login and view entries (recorded today) out of the comparison.
        params = {**params, "until": "2024-12-31"}

    response = officer_client.get(CHANGELIST_URL, params)

    assert listed_ids(response) == {dataset[name].pk for name in expected}


def test_since_alone_includes_everything_after(db, officer_client, officer, dataset):
    """since without until lists every entry from that day on, today's included (the officer's own login)."""
    login = AuditLog.objects.get(action=AuditAction.USER_LOGIN, actor=officer)

    response = officer_client.get(CHANGELIST_URL, {"since": "2024-01-04"})

    assert listed_ids(response) == {dataset["login_failed"].pk, login.pk}


def test_changelist_offers_the_filters(db, officer_client):
    """The filter sidebar offers action family, outcome, entity and the date range form."""
    response = officer_client.get(CHANGELIST_URL)

    content = response.content.decode()
    assert "?family=ROLE" in content
    assert "?outcome__exact=denied" in content
    assert "?entity=Role" in content
    assert 'type="date" name="since"' in content
    assert 'type="date" name="until"' in content


def test_date_range_form_keeps_the_other_filters(db, officer_client):
    """The date range form carries the other active filters as hidden fields."""
    response = officer_client.get(CHANGELIST_URL, {"family": "ROLE", "since": "2024-01-02"})

    content = response.content.decode()
    assert '<input type="hidden" name="family" value="ROLE">' in content
    assert 'name="since" value="2024-01-02"' in content


def test_bad_date_is_rejected_not_a_crash(db, officer_client):
    """since=garbage makes the changelist redirect with the admin's error marker (?e=1), not raise a 500."""
    response = officer_client.get(CHANGELIST_URL, {"since": "garbage"})

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"since": "2024-13-01"}, id="no-month-13"),
        pytest.param({"since": "2024-02-30T10:00:00"}, id="no-february-30"),
        pytest.param({"until": "2024-01-01T25:00:00"}, id="no-hour-25"),
        pytest.param({"until": "9999-12-31"}, id="end-of-day-beyond-year-9999"),
        pytest.param({"since": "0001-01-01T00:00:00+01:00"}, id="before-year-1-in-utc"),
    ],
)
def test_date_that_does_not_exist_or_cannot_be_stored_is_rejected_not_a_crash(db, officer_client, params):
    """A well-formed date that does not exist (month 13, February 30, hour 25) or lies outside the times a database
    stores makes the changelist redirect with ?e=1, as garbage does, not raise a 500."""
    response = officer_client.get(CHANGELIST_URL, params)

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        pytest.param(lambda d: "req-b", {"role_perm_replace"}, id="request-id"),
        pytest.param(lambda d: f"  {'req-c'}  ", {"group_create"}, id="request-id-trimmed"),
        pytest.param(lambda d: str(d["login_failed"].pk), {"login_failed"}, id="entry-id"),
        pytest.param(lambda d: "role-7", {"role_create"}, id="entity-id"),
        pytest.param(lambda d: "req", set(), id="no-partial-match"),
        pytest.param(lambda d: "REQ-B", set(), id="case-sensitive"),
        pytest.param(lambda d: "²", set(), id="superscript-digit-is-no-entry-id"),  # isdigit(), yet not for int()
    ],
)
def test_search_matches_exactly(db, officer_client, dataset, term, expected):
    """Search finds an entry by its exact request id, entry id or entity id; a part of a value finds nothing."""
    response = officer_client.get(CHANGELIST_URL, {"q": term(dataset)})

    assert listed_ids(response) == {dataset[name].pk for name in expected}


def _changelist_queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST_URL)
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def _page_key_queries(queries: list[str]) -> int:
    return sum('FROM "audit_subjectkey" WHERE "audit_subjectkey"."subject_id" IN' in sql for sql in queries)


def _unbounded_counts(queries: list[str]) -> list[str]:
    counts = [sql for sql in queries if re.search(r"COUNT\(\s*\*?\s*\)", sql, re.IGNORECASE)]
    return [sql for sql in counts if not re.search(r"\(\s*SELECT .* LIMIT \d+", sql, re.IGNORECASE | re.DOTALL)]


def test_changelist_never_counts_the_whole_table(db, officer_client):
    """Every COUNT the changelist runs is over a LIMITed subquery; none counts the whole table."""
    bulk_entries(60)

    queries = _changelist_queries(officer_client)

    assert [sql for sql in queries if "COUNT(" in sql.upper()], "the paginator's bounded count is expected"
    assert _unbounded_counts(queries) == []


def test_changelist_query_count_does_not_grow_with_entries(db, officer_client):
    """The changelist runs as many queries for 200 entries (a full page, half sealed) as for 5: seals are joined,
    and the keys of the page's encrypted entries are read in one query."""
    bulk_entries(5)
    seal_pending()
    small = _changelist_queries(officer_client)

    bulk_entries(100)
    seal_pending()
    bulk_entries(95)
    large = _changelist_queries(officer_client)

    # The keys of a page's encrypted entries take one query, run only when the page holds any.
    small_keys, large_keys = _page_key_queries(small), _page_key_queries(large)
    assert small_keys <= 1 and large_keys <= 1
    assert len(large) - large_keys == len(small) - small_keys
    assert _unbounded_counts(small) == _unbounded_counts(large) == []


# --- detail page ----------------------------------------------------------------------------------------------


def test_detail_shows_changes_as_before_after_table(db, officer_client, user):
    """The detail page shows the changes as a table with a field, before and after cell per changed field."""
    entry = record(
        AuditAction.ROLE_UPDATE,
        entity="Role",
        entity_id=3,
        changes={"name": {"before": "Editors", "after": "Reviewers"}, "perms": {"before": [1, 2], "after": [2]}},
        actor=user,
    )

    response = officer_client.get(change_url(entry.pk))

    assert response.status_code == 200
    content = response.content.decode()
    assert '<table class="audit-diff"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>' in content
    assert "<tr><th>name</th><td>Editors</td><td>Reviewers</td></tr>" in content
    assert "<tr><th>perms</th><td>[1, 2]</td><td>[2]</td></tr>" in content


def test_detail_escapes_control_characters_in_changes(db, officer_client, user):
    """A value with a newline and an ANSI escape renders as the visible escapes "\\n" and "\\x1b", never raw."""
    entry = record(
        AuditAction.ROLE_UPDATE,
        entity="Role",
        entity_id=3,
        changes={"na\rme": {"before": "plain", "after": "a\nb\x1b[31m"}},
        actor=user,
    )

    response = officer_client.get(change_url(entry.pk))

    content = response.content.decode()
    assert r"<tr><th>na\rme</th><td>plain</td><td>a\nb\x1b[31m</td></tr>" in content
    assert "\x1b" not in content
    assert "a\nb" not in content
    assert "na\rme" not in content


def test_detail_escapes_html_in_changes(db, officer_client, user):
    """Markup stored in an entry is shown as text, not rendered."""
    entry = record(
        AuditAction.ROLE_UPDATE,
        entity="Role",
        entity_id=3,
        changes={"name": {"before": "<b>x</b>", "after": "<script>alert(1)</script>"}},
        actor=user,
    )

    content = officer_client.get(change_url(entry.pk)).content.decode()

    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_detail_shows_not_sealed_yet_before_sealing(db, officer_client, user):
    """Before the sealer ran, the detail page says the entry is not sealed yet."""
    entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=user)

    content = officer_client.get(change_url(entry.pk)).content.decode()

    assert "Not sealed yet" in content
    assert "Sealed at chain position" not in content


def test_detail_shows_chain_position_once_sealed(db, officer_client, user):
    """Once sealed, the detail page shows "Sealed at chain position #N" with the entry's own position and hash."""
    record(AuditAction.ROLE_CREATE, entity="Role", entity_id=1, actor=user)
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=1, actor=user)
    seal_pending()
    seal = Seal.objects.get(entry_id=entry.pk)

    content = officer_client.get(change_url(entry.pk)).content.decode()

    assert f"Sealed at chain position #{seal.chain_index} " in content
    assert seal.hash in content
    assert "Not sealed yet" not in content


# --- reads are audited ----------------------------------------------------------------------------------------


def test_opening_the_changelist_records_one_audit_view(db, officer_client, officer, dataset):
    """Opening the changelist writes exactly one AUDIT.VIEW entry by the officer, with the filters used and the
    users whose entries the page showed."""
    before = AuditLog.objects.count()
    shown = AuditLog.objects.filter(action__startswith="ROLE.", actor_id__isnull=False)

    response = officer_client.get(CHANGELIST_URL, {"family": "ROLE"})

    assert response.status_code == 200
    assert AuditLog.objects.count() == before + 1
    view = AuditLog.objects.latest("id")
    assert view.action == AuditAction.AUDIT_VIEW
    assert view.actor_id == officer.pk
    subjects = sorted(set(shown.values_list("actor_id", flat=True)))
    assert subjects
    assert view.meta == {"filters": {"family": "ROLE"}, "via": "admin", "subjects": subjects}


def test_opening_a_detail_page_records_one_audit_view(db, officer_client, officer, dataset):
    """Opening an entry's detail page writes exactly one AUDIT.VIEW entry by the officer, naming the entry."""
    entry = dataset["group_create"]
    before = AuditLog.objects.count()

    response = officer_client.get(change_url(entry.pk))

    assert response.status_code == 200
    assert AuditLog.objects.count() == before + 1
    view = AuditLog.objects.latest("id")
    assert view.action == AuditAction.AUDIT_VIEW
    assert view.actor_id == officer.pk
    assert view.entity == "AuditLog"
    assert view.entity_id == str(entry.pk)


# --- who gets in ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [lambda d: CHANGELIST_URL, lambda d: change_url(d["role_create"].pk)])
def test_ordinary_user_is_redirected_to_login(db, client, user, dataset, url):
    """A logged-in user who is not staff is sent to the admin login page, and nothing is recorded as viewed."""
    client.force_login(user)
    target = url(dataset)

    response = client.get(target)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert f"next={target}" in response["Location"]
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).exists()


def test_anonymous_is_redirected_to_login(db, client):
    """An anonymous visitor is sent to the admin login page."""
    response = client.get(CHANGELIST_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_view_permission_is_refused(db, client):
    """A staff user who is not an officer gets 403 from the changelist and records no AUDIT.VIEW."""
    staff = UserFactory(is_staff=True)
    client.force_login(staff)

    response = client.get(CHANGELIST_URL)

    assert response.status_code == 403
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).exists()
