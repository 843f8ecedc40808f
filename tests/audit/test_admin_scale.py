"""The compliance console at scale: 200,000 entries, a bounded number of queries and no count of the whole table.

The entries are inserted by one SQL statement (generate_series on PostgreSQL, a recursive CTE on SQLite), so the
module stays well under a minute on both databases. One entry a minute from 2025-01-01: 200,000 entries span about
139 days. Five families in turn, and every 1000th entry a rare FOIA one.
"""

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.admin import BoundedCountPaginator
from audit.models import AuditLog
from audit.selectors import console_search, with_action_prefix
from audit.subject_access import entries_about

ROWS = 200_000
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
CHANGELIST_URL = reverse("admin:audit_auditlog_changelist")
# Measured: 5 for a changelist (session, user, bounded count, page, the AUDIT.VIEW insert), 7 for a detail page
# (its entry, content type, the insert, the two related lists); room for one-off queries such as the collation
# check, none for a query per row.
MAX_QUERIES = 8

_COLUMNS = """created_at, actor_id, actor_label, action, entity, entity_id, outcome, perms_snapshot, changes, meta,
    ip_address, user_agent, request_id, on_behalf_of, salt"""
# Shared by both databases; {created_at}, {ip} and {salt} are each vendor's own spelling.
_VALUES = """{created_at}, NULL, 'user' || (n %% 50),
    CASE WHEN n %% 1000 = 0 THEN 'FOIA.REQUEST.CREATE' ELSE
        CASE n %% 5 WHEN 0 THEN 'LOCK.CREATE' WHEN 1 THEN 'LOCK.RELEASE' WHEN 2 THEN 'USER.LOGIN'
                    WHEN 3 THEN 'ROLE.UPDATE' ELSE 'GROUP.MEMBERS.SET' END END,
    'FileLock', CAST(n %% 5000 AS TEXT), CASE WHEN n %% 7 = 0 THEN 'denied' ELSE 'success' END,
    '{{"perms": []}}', '{{}}', '{{}}', {ip}, 'pytest', 'req-' || CAST(n / 3 AS TEXT), '', {salt}"""


def insert_entries(rows: int) -> None:
    """``rows`` salted entries in one statement; entry n is at START + n minutes."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = _VALUES.format(
                created_at="timestamptz '2025-01-01 00:00:00+00' + n * interval '1 minute'",
                ip="CAST('192.0.2.' || (1 + n %% 250) AS inet)",
                salt="decode(md5(random()::text || n::text), 'hex')",
            )
            cursor.execute(
                f"INSERT INTO audit_auditlog ({_COLUMNS}) SELECT {values} FROM generate_series(1, %s) AS n", [rows]
            )
            # Fresh statistics, as autovacuum would have them: the plans are then the ones production gets.
            cursor.execute("ANALYZE audit_auditlog")
        else:
            values = _VALUES.format(
                created_at="strftime('%%Y-%%m-%%d %%H:%%M:%%S', '2025-01-01', '+' || n || ' minutes')",
                ip="'192.0.2.' || (1 + n %% 250)",
                salt="randomblob(16)",
            )
            cursor.execute(
                f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
                f"INSERT INTO audit_auditlog ({_COLUMNS}) SELECT {values} FROM seq",
                [rows],
            )


@pytest.fixture(scope="module")
def scale_db(django_db_setup, django_db_blocker) -> Iterator[None]:
    """200,000 entries for the whole module, inserted once in a transaction that is rolled back at its end."""
    with django_db_blocker.unblock():
        from django.db import transaction

        atomic = transaction.atomic()
        # Marked as Django's TestCase marks its class-wide transaction: the recorder then treats it as the test
        # wrapper it is, not as a caller's transaction to step out of (through the second connection).
        atomic._from_testcase = True
        atomic.__enter__()
        try:
            insert_entries(ROWS)
            yield
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver"]


@pytest.fixture
def console(scale_db, db, admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def get(client: Client, url: str, params: dict[str, str] | None = None) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return response, [query["sql"] for query in queries.captured_queries]


COUNT = re.compile(r"\bCOUNT\s*\(", re.IGNORECASE)
BOUNDED_COUNT = re.compile(
    r"^SELECT COUNT\(\*\) (?:AS \"__count\" )?FROM \(SELECT .* LIMIT \d+\) subquery$", re.IGNORECASE | re.DOTALL
)


def unbounded_counts(queries: list[str]) -> list[str]:
    """The queries that count, but not over a LIMITed subquery."""
    return [sql for sql in queries if COUNT.search(sql) and not BOUNDED_COUNT.match(sql.strip())]


def page_query(queries: list[str]) -> str:
    """The changelist's SELECT of the page's rows."""
    [sql] = [sql for sql in queries if sql.startswith('SELECT "audit_auditlog"."id"') and "ORDER BY" in sql]
    return sql


def at(minute: int) -> dt.datetime:
    return START + dt.timedelta(minutes=minute)


# --- the changelist -------------------------------------------------------------------------------------------


def test_changelist_over_200000_entries_counts_only_a_bounded_subquery(console):
    """The unfiltered changelist over 200,000 entries runs at most MAX_QUERIES queries, each COUNT over a LIMITed
    subquery, and shows the newest 50 entries with "10000 or more" in place of a total."""
    newest = list(AuditLog.objects.order_by("-id").values_list("id", flat=True)[:50])

    response, queries = get(console, CHANGELIST_URL)

    assert len(queries) <= MAX_QUERIES, queries
    assert [sql for sql in queries if COUNT.search(sql)], "the paginator's bounded count is expected"
    assert unbounded_counts(queries) == []
    assert [entry.pk for entry in response.context["cl"].result_list] == newest
    assert f"{BoundedCountPaginator.COUNT_CAP} or more audit entries" in response.content.decode()


def test_filtered_changelist_family_and_date_range_is_bounded(console):
    """family=LOCK with a week's date range over 200,000 entries: at most MAX_QUERIES queries, no unbounded COUNT,
    and exactly the newest 50 LOCK entries of that week, with their exact number (under the cap)."""
    params = {"family": "LOCK", "since": "2025-03-01", "until": "2025-03-07"}

    response, queries = get(console, CHANGELIST_URL, params)

    assert len(queries) <= MAX_QUERIES, queries
    assert unbounded_counts(queries) == []
    expected = AuditLog.objects.filter(
        action__startswith="LOCK.",
        created_at__gte=dt.datetime(2025, 3, 1, tzinfo=dt.UTC),
        created_at__lt=dt.datetime(2025, 3, 8, tzinfo=dt.UTC),
    )
    listed = [entry.pk for entry in response.context["cl"].result_list]
    assert listed == list(expected.order_by("-id").values_list("id", flat=True)[:50])
    assert response.context["cl"].result_count == expected.count() < BoundedCountPaginator.COUNT_CAP
    assert all(entry.action.startswith("LOCK.") for entry in response.context["cl"].result_list)


def test_filtered_changelist_rare_family_is_bounded(console):
    """A rare family (one entry in 1000) over 200,000 entries: bounded queries, no unbounded COUNT, all 200 listed
    newest first across pages (the first page here)."""
    response, queries = get(console, CHANGELIST_URL, {"family": "FOIA"})

    assert len(queries) <= MAX_QUERIES, queries
    assert unbounded_counts(queries) == []
    assert response.context["cl"].result_count == ROWS // 1000
    listed = [entry.pk for entry in response.context["cl"].result_list]
    assert listed == list(
        AuditLog.objects.filter(action="FOIA.REQUEST.CREATE").order_by("-id").values_list("id", flat=True)[:50]
    )


def test_family_filter_reads_the_action_index(console):
    """The family filter is an index condition on (action, id) on both databases: the plan of a rare family's
    page names the index (a LIKE alone is a filter over every row on SQLite and on PostgreSQL outside "C")."""
    entries = with_action_prefix(AuditLog.objects.all(), "FOIA.").order_by("-id")[:50]

    plan = entries.explain()

    # The range on action is the index's search key (whatever a partition's copy of the index is called).
    postgresql = r"Index Cond: \(\(\(?action\)?(::text)? >= 'FOIA\.'"
    sqlite = r"INDEX audit_action_id \(action>\? AND action<\?\)"
    assert re.search(f"{postgresql}|{sqlite}", plan), plan


# A read of every row in a plan: PostgreSQL's sequential scan, SQLite's SCAN (SEARCH is an index lookup). On a
# partitioned table the rows here are in the DEFAULT partition (2025 has no month partition in a fresh test
# database); a sequential scan of an empty month partition costs nothing and is what the planner rightly picks.
FULL_SCAN = re.compile(r"Seq Scan on audit_auditlog(?:_default)? |\bSCAN audit_auditlog\b")


@pytest.mark.parametrize("term", ["req-40000", "1234", "admin"])
def test_search_finds_exact_matches_through_indexes(console, admin_user, term):
    """Search matches the exact request id, entity id, entry id or the actor's username, with bounded queries, and
    its plan reads only indexes (no sequential scan of the 200,000 rows, as an OR with an unindexed column makes)."""
    match = Q(request_id=term) | Q(entity_id=term) | Q(actor__username=term)
    if term.isdigit():
        match |= Q(id=int(term))
    expected = set(AuditLog.objects.filter(match).values_list("id", flat=True))
    plan = console_search(AuditLog.objects.order_by("-id"), term)[:50].explain()

    response, queries = get(console, CHANGELIST_URL, {"q": term})

    assert 0 < len(expected) <= 50
    assert {entry.pk for entry in response.context["cl"].result_list} == expected
    assert len(queries) <= MAX_QUERIES
    assert not FULL_SCAN.search(plan), plan


@pytest.mark.parametrize("order", ["2", "-2", "3", "6.-1"])
def test_changelist_ignores_sorting_by_other_columns(console, order):
    """?o=<column> does not sort by another column (that would sort the table before the first row): the page is
    still ordered by id alone, newest first, and no column header offers sorting."""
    response, queries = get(console, CHANGELIST_URL, {"o": order})

    assert re.search(r'ORDER BY "audit_auditlog"\."id" DESC\s+LIMIT', page_query(queries)), page_query(queries)
    listed = [entry.pk for entry in response.context["cl"].result_list]
    assert listed == sorted(listed, reverse=True)
    assert 'class="sortable' not in response.content.decode()


def test_changelist_refuses_lookups_that_would_scan(console):
    """A hand-made lookup outside the filters (a substring search in meta or the user agent) is refused with 400,
    not run as a scan of 200,000 rows."""
    for params in ({"meta__icontains": "x"}, {"user_agent__contains": "py"}, {"changes__has_key": "a"}):
        with CaptureQueriesContext(connection) as queries:
            response = console.get(CHANGELIST_URL, params)
        assert response.status_code == 400, params
        assert not [q for q in queries.captured_queries if "audit_auditlog" in q["sql"]], params


def test_request_and_entity_filters_at_scale(console):
    """?request_id= and ?entity=&entity_id= list exactly that request's or that entity's entries, with bounded
    queries and no unbounded COUNT."""
    by_request = set(AuditLog.objects.filter(request_id="req-40000").values_list("id", flat=True))
    by_entity = list(
        AuditLog.objects.filter(entity="FileLock", entity_id="1234").order_by("-id").values_list("id", flat=True)
    )

    response, queries = get(console, CHANGELIST_URL, {"request_id": "req-40000"})
    assert {entry.pk for entry in response.context["cl"].result_list} == by_request
    assert len(queries) <= MAX_QUERIES
    assert unbounded_counts(queries) == []

    response, queries = get(console, CHANGELIST_URL, {"entity": "FileLock", "entity_id": "1234"})
    assert [entry.pk for entry in response.context["cl"].result_list] == by_entity
    assert len(queries) <= MAX_QUERIES
    assert unbounded_counts(queries) == []


# --- the detail page ------------------------------------------------------------------------------------------


def test_detail_page_at_scale_lists_the_newest_related_entries(console):
    """An entry's detail page among 200,000 entries lists the other entries of its request and the newest 10 others
    of its entity, with a bounded number of queries and no COUNT at all."""
    entry = AuditLog.objects.get(request_id="req-50000", created_at=at(150_001))

    response, queries = get(console, reverse("admin:audit_auditlog_change", args=[entry.pk]))

    assert len(queries) <= MAX_QUERIES, queries
    assert not [sql for sql in queries if COUNT.search(sql)]
    content = response.content.decode()
    for other in AuditLog.objects.filter(request_id="req-50000").exclude(pk=entry.pk):
        assert reverse("admin:audit_auditlog_change", args=[other.pk]) in content
    newest = AuditLog.objects.filter(entity="FileLock", entity_id=entry.entity_id).exclude(pk=entry.pk).order_by("-id")
    for other in newest[:10]:
        assert reverse("admin:audit_auditlog_change", args=[other.pk]) in content
    assert reverse("admin:audit_auditlog_change", args=[newest[10].pk]) not in content


def test_detail_page_links_to_its_request_and_entity_in_the_changelist(console):
    """The detail page shows the time as ISO 8601 in UTC and links to the changelist filtered by its request id and
    by its entity and entity id; each link lists exactly those entries."""
    entry = AuditLog.objects.get(request_id="req-50000", created_at=at(150_001))
    request_link = f"{CHANGELIST_URL}?request_id=req-50000"
    entity_link = f"{CHANGELIST_URL}?entity=FileLock&entity_id={entry.entity_id}"

    response, _ = get(console, reverse("admin:audit_auditlog_change", args=[entry.pk]))

    content = response.content.decode()
    assert (START + dt.timedelta(minutes=150_001)).strftime("%Y-%m-%dT%H:%M:%S.000000Z") in content
    assert f'href="{request_link}"' in content
    assert f'href="{entity_link.replace("&", "&amp;")}"' in content
    by_request, _ = get(console, request_link)
    assert {e.pk for e in by_request.context["cl"].result_list} == set(
        AuditLog.objects.filter(request_id="req-50000").values_list("id", flat=True)
    )
    by_entity, _ = get(console, entity_link)
    assert entry.pk in {e.pk for e in by_entity.context["cl"].result_list}
    assert {e.entity_id for e in by_entity.context["cl"].result_list} == {entry.entity_id}


def test_subject_access_finds_a_subjects_entries_through_indexes(scale_db, db, django_user_model):
    """The entries about a subject (as actor, as their account, or as the end user another system acted for) are
    found through indexes among the 200,000, the last through the partial index of entries that name one: no
    sequential scan of the table for an Art. 15 request."""
    subject = django_user_model.objects.create_user("subject-of-scale")

    plan = entries_about(subject).explain()

    assert "on_behalf_of_id" in plan, plan
    assert not FULL_SCAN.search(plan), plan
