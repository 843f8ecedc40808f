"""Export benchmark: a verifiable bundle of N entries on PostgreSQL, with rows/s and peak memory.

    .venv/bin/python bench/export.py [--rows 1000000] [--database-url postgres://root@127.0.0.1:5432/bench_export]

The database named in the URL is dropped and made anew. Entries are inserted by SQL and sealed by the real sealer;
the export streams into a sink that only counts bytes. Printed against baselines measured in the same run: a plain
server-side-cursor read of the same rows (speed) and the process's memory before the export (memory).
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.environment import prepare  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/bench_export")
    args = parser.parse_args()

    keys = prepare(args.database_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditproject.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from audit.export.bundle import ExportScope, plan, stream_bundle
    from audit.export.rules import RedactionRule
    from audit.models import AuditLog
    from audit.sealing import seal_pending

    call_command("migrate", verbosity=0)
    call_command("audit_keygen", "--out", keys, stdout=open(os.devnull, "w"))

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_auditlog (created_at, actor_id, actor_label, action, entity, entity_id, outcome,
                perms_snapshot, changes, meta, ip_address, user_agent, request_id, on_behalf_of, salt)
            SELECT now() - (n || ' seconds')::interval, 1 + n %% 50, 'user' || (n %% 50),
                   (ARRAY['LOCK.CREATE', 'LOCK.RELEASE', 'USER.LOGIN', 'AUDIT.VIEW'])[1 + n %% 4],
                   'FileLock', (n %% 5000)::text, 'success', '{"perms": ["locks.add_filelock"]}',
                   jsonb_build_object('path', jsonb_build_object('before', null, 'after', 'art/file' || n || '.psd')),
                   '{"repository": "game-assets"}', ('10.0.' || (n %% 250) || '.' || (1 + n %% 250))::inet,
                   'git-lfs/3.3.0', md5(n::text), '', decode(md5(random()::text), 'hex')
            FROM generate_series(1, %s) AS n
            """,
            [args.rows],
        )
    print(f"inserted {args.rows} entries in {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    sealed = seal_pending(full_scan=True)
    print(
        f"sealed {sealed} entries in {time.monotonic() - started:.1f}s ({sealed / (time.monotonic() - started):.0f}/s)"
    )

    # Baseline: the same rows read through a server-side cursor and thrown away.
    started = time.monotonic()
    count = sum(1 for _ in AuditLog.objects.order_by("id").iterator(chunk_size=2000))
    baseline = count / (time.monotonic() - started)
    print(f"baseline read: {count} rows at {baseline:.0f} rows/s")

    scope = ExportScope(
        entries=AuditLog.objects.filter(action__startswith="LOCK."),
        rules=[RedactionRule("ip_address", "(b)(6)"), RedactionRule("user_agent", "(b)(6)")],
        filters={"action_prefix": "LOCK."},
        tracking_number="FOIA-2026-000001",
    )
    rss_before = peak_rss_mib()
    started = time.monotonic()
    summary = plan(scope)
    size = 0
    for chunk in stream_bundle(scope, summary, cover_pdf=lambda _: b"%PDF-1.4 bench", on_complete=lambda *_: None):
        size += len(chunk)
    elapsed = time.monotonic() - started
    positions = summary.last_index - summary.first_index + 1
    rate = positions / elapsed
    print(
        f"export: {positions} chain positions ({summary.released} released) in {elapsed:.1f}s, {size / 2**20:.0f} MiB"
    )
    print(f"export rows/s: {rate:.0f} (ratio to baseline read: {rate / baseline:.2f})")
    print(
        f"peak RSS: {peak_rss_mib():.0f} MiB (before the export: {rss_before:.0f} MiB, "
        f"ratio {peak_rss_mib() / rss_before:.2f})"
    )


if __name__ == "__main__":
    main()
