"""Console benchmark: the compliance console and the API's filtered page on N entries, on PostgreSQL.

    .venv/bin/python bench/console.py [--rows 1000000] [--requests 30]
        [--database-url postgres://root@127.0.0.1:5432/bench_console] [--explain]

The database named in the URL is dropped and made anew. Entries are inserted by SQL (generate_series) and sealed by
the real sealer, so the changelist joins real seals. Each page is requested through django.test.Client as a logged-in
superuser, the whole stack included (middleware, session, the AUDIT.VIEW entry each read records and its seal), and
printed as p50/p95 next to a bare indexed ``SELECT ... ORDER BY id DESC LIMIT 50`` measured in the same run: the ratio
says what the console costs on top of the one query it cannot do without.
"""

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.environment import prepare  # noqa: E402

# One entry every 10 s backwards from now: 1M entries span about 116 days.
SECONDS_APART = 10
FAMILIES = ("LOCK.CREATE", "LOCK.RELEASE", "USER.LOGIN", "AUDIT.VIEW", "ROLE.UPDATE", "GROUP.MEMBERS.SET")


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples) * 1000, cuts[18] * 1000


def timed(run: Callable[[], object], times: int) -> list[float]:
    run()  # warm-up: first-use costs (URL resolver, template loading, plan cache) are not what is measured
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples


def load(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_auditlog (created_at, actor_id, actor_label, action, entity, entity_id, outcome,
                perms_snapshot, changes, meta, ip_address, user_agent, request_id, on_behalf_of, salt)
            SELECT now() - ((%s - n) * %s || ' seconds')::interval, 1 + n %% 50, 'user' || (n %% 50),
                   (%s::text[])[1 + n %% %s],
                   'FileLock', (n %% 5000)::text,
                   (ARRAY['success', 'success', 'success', 'denied', 'failure'])[1 + n %% 5],
                   '{"perms": ["locks.add_filelock"]}',
                   jsonb_build_object('path', jsonb_build_object('before', null, 'after', 'art/file' || n || '.psd')),
                   '{"repository": "game-assets"}', ('10.0.' || (n %% 250) || '.' || (1 + n %% 250))::inet,
                   'git-lfs/3.3.0', md5((n / 3)::text), '', decode(md5(random()::text), 'hex')
            FROM generate_series(1, %s) AS n
            """,
            [rows, SECONDS_APART, list(FAMILIES), len(FAMILIES), rows],
        )
        cursor.execute("ANALYZE audit_auditlog")


def split_sql_time(queries: list[dict[str, str]]) -> tuple[float, float]:
    """Milliseconds of SQL before the page's AUDIT.VIEW entry is inserted (session, user, the page's own reads) and
    from there on (the entry, its seal, whatever runs after a seal): what the page costs, and what recording costs."""
    first_write = next(
        (n for n, query in enumerate(queries) if query["sql"].startswith('INSERT INTO "audit_auditlog"')), len(queries)
    )
    read = sum(float(query["time"]) for query in queries[:first_write]) * 1000
    return read, sum(float(query["time"]) for query in queries[first_write:]) * 1000


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        # No parameters: the captured SQL has its values inlined, and its LIKE patterns hold a literal "%".
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="Requests per page measured.")
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/bench_console")
    parser.add_argument("--explain", action="store_true", help="Print the plans of the pages' main queries.")
    args = parser.parse_args()

    keys = prepare(args.database_url)
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditproject.settings")
    import django

    django.setup()
    # One log line per request would drown the table; the project's static directory is not needed here.
    logging.getLogger("audit.request").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="No directory at")
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from audit.actions import AuditAction
    from audit.sealing import seal_pending
    from audit.services import record

    call_command("migrate", verbosity=0)
    call_command("audit_keygen", "--out", keys, stdout=open(os.devnull, "w"))

    # Month partitions for the whole span, as a production table has them for its history (the migration makes them
    # only from the oldest row it found, and `audit_partitions` from this month on).
    from audit import partitions

    if partitions.supported(connection) and partitions.is_partitioned(connection):
        oldest = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=args.rows * SECONDS_APART)
        partitions.ensure_partitions(connection, first_month=partitions.month_start(oldest))

    started = time.monotonic()
    load(args.rows)
    print(f"inserted {args.rows} entries in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    sealed = seal_pending(full_scan=True)
    print(f"sealed {sealed} entries in {time.monotonic() - started:.1f}s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    admin = get_user_model().objects.create_superuser("bench-admin", "bench@example.org", "bench-password-1")
    client = Client()
    client.force_login(admin)

    # A week in the middle of the data: the filtered pages have to reach past the newest rows.
    span = dt.timedelta(seconds=args.rows * SECONDS_APART)
    until = dt.datetime.now(dt.UTC) - span / 2
    since = until - dt.timedelta(days=7)
    changelist = reverse("admin:audit_auditlog_changelist")
    pages = {
        "admin changelist": changelist,
        "admin changelist, family + date range": changelist
        + "?"
        + urlencode({"family": "LOCK", "since": since.date().isoformat(), "until": until.date().isoformat()}),
        "API page, action prefix + since": "/api/audit/events?"
        + urlencode({"action": "LOCK.", "since": since.isoformat()}),
    }

    bare_sql = (
        "SELECT id, created_at, actor_id, actor_label, action, entity, entity_id, outcome, ip_address "
        "FROM audit_auditlog ORDER BY id DESC LIMIT 50"
    )

    def bare() -> None:
        with connection.cursor() as cursor:
            cursor.execute(bare_sql)
            cursor.fetchall()

    def one_record() -> None:
        record(AuditAction.AUDIT_VIEW, entity="AuditLog", meta={"via": "bench"}, actor=admin)

    bare_p50, bare_p95 = percentiles(timed(bare, args.requests))
    print(f"\n{args.rows} entries, {args.requests} requests each, times in ms")
    print(f"{'':45} {'p50':>8} {'p95':>8}")
    print(f"{'bare SELECT ... ORDER BY id DESC LIMIT 50':45} {bare_p50:8.2f} {bare_p95:8.2f}")
    # Every read records an AUDIT.VIEW entry, sealed right after its commit: part of each page's time below.
    record_p50, record_p95 = percentiles(timed(one_record, args.requests))
    print(
        f"{'record() of one entry, sealed on commit':45} {record_p50:8.2f} {record_p95:8.2f}   "
        f"ratio to bare p50: {record_p50 / bare_p50:6.1f}x"
    )
    # The page's SQL before its AUDIT.VIEW insert (reads) and from the insert on (the entry, its seal, the rest).
    print(f"{'':45} {'p50':>8} {'p95':>8}   {'':26}   SQL p50: reads / recording")
    for name, url in pages.items():
        samples, reads, writes = [], [], []
        captured: list[str] = []
        for run in range(args.requests + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code)
            # Read now: the next request clears the connection's query log.
            captured = [query["sql"] for query in queries.captured_queries]
            read_ms, write_ms = split_sql_time(queries.captured_queries)
            if run:  # the first is the warm-up
                samples.append(elapsed)
                reads.append(read_ms)
                writes.append(write_ms)
        p50, p95 = percentiles(samples)
        print(
            f"{name:45} {p50:8.2f} {p95:8.2f}   ratio to bare p50: {p50 / bare_p50:6.1f}x   "
            f"{statistics.median(reads):6.1f} / {statistics.median(writes):6.1f} ms  ({len(captured)} queries)"
        )
        if args.explain:
            for sql in captured:
                if sql.lstrip().upper().startswith("SELECT") and "audit_auditlog" in sql:
                    print("\n" + sql + "\n" + explain(sql))


if __name__ == "__main__":
    main()
