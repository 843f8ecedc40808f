"""Append benchmark: audited writes per second with 1, 4 and 8 writer processes on PostgreSQL.

    .venv/bin/pip install -r bench/requirements.txt      # django-auditlog, for (d) only
    .venv/bin/python bench/append.py [--writers 1,4,8] [--seconds 5] [--repeat 3]
                                     [--database-url postgres://root@127.0.0.1:5432/bench_append]

The database named in the URL is dropped and made anew. Each writer is a process with its own connection that
commits one transaction after another for a fixed time; the clock runs from the moment all writers start until
all of them have stopped and, for the recorder, until every entry is sealed. Per transaction, one ``Widget`` is
saved and:

    (a) plain      nothing else (one autocommit INSERT)
    (b) baseline   one plain audit row inserted in the same transaction (hand-written, no digest, no seal)
    (c) recorder   ``audit.services.record`` in the same transaction: the entry, then its seal after commit
    (d) auditlog   django-auditlog registered on ``Widget``, in a transaction as (b) and (c)

Writer counts are measured one after another, the four scenarios back to back within each, so that the ratios
compare runs made under the same load. With ``--repeat``, each figure is the median of the repeats. Each run also
prints the CPU time a write cost: in the writer processes (their sealer threads included), and in the rest of the
machine (the database, mostly; read from /proc/stat, so anything else running counts too).
"""

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.environment import prepare  # noqa: E402

SCENARIOS = {
    "a": "plain save",
    "b": "save + plain audit row",
    "c": "save + recorder (entry + seal)",
    "d": "save + django-auditlog",
}
WARMUP_TRANSACTIONS = 20
BASE = "b"


def make_writes(scenario: str, user):
    """The function that commits one audited write of ``scenario``, and a context to run it in."""
    from django.db import transaction

    from audit.actions import AuditAction
    from audit.services import record
    from bench.benchapp.models import PlainAudit, Widget

    pid = os.getpid()
    counter = iter(range(10**9))

    def save() -> Widget:
        n = next(counter)
        widget = Widget(name=f"widget-{pid}-{n}", value=n)
        widget.save()
        return widget

    def changes(widget: Widget) -> dict:
        return {"name": {"before": None, "after": widget.name}, "value": {"before": None, "after": widget.value}}

    def plain() -> None:
        save()

    def baseline() -> None:
        with transaction.atomic():
            widget = save()
            PlainAudit.objects.create(
                actor_id=user.pk,
                action="WIDGET.CREATE",
                entity="Widget",
                entity_id=str(widget.pk),
                changes=changes(widget),
            )

    def recorder() -> None:
        with transaction.atomic():
            widget = save()
            # A code of the catalogue, as the project's own services use (no registry look-up).
            record(AuditAction.LOCK_CREATE, entity="Widget", entity_id=widget.pk, changes=changes(widget), actor=user)

    def auditlog() -> None:
        with transaction.atomic():
            save()

    return {"a": plain, "b": baseline, "c": recorder, "d": auditlog}[scenario]


def writer(scenario: str, seconds: float, user_id: int, barrier, results) -> None:
    import contextlib

    from django.contrib.auth import get_user_model
    from django.db import connections

    connections.close_all()  # never a connection inherited from the parent
    user = get_user_model().objects.get(pk=user_id)
    context = contextlib.nullcontext()
    if scenario == "d":
        from auditlog.context import set_actor
        from auditlog.registry import auditlog

        from bench.benchapp.models import Widget

        auditlog.register(Widget)
        context = set_actor(user)
    write = make_writes(scenario, user)
    with context:
        for _ in range(WARMUP_TRANSACTIONS):
            write()
        barrier.wait()
        started, cpu = time.monotonic(), time.process_time()
        done = 0
        while time.monotonic() - started < seconds:
            write()
            done += 1
    if scenario == "c":
        # A forked process ends without its exit handlers: hand the last entries to the sealer ourselves.
        from audit.background_sealing import flush_all

        flush_all(timeout=60)
    connections.close_all()
    results.put((done, time.process_time() - cpu))  # process time: the sealer thread's too


def newest_entry() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM audit_auditlog")
        return cursor.fetchone()[0]


def unsealed(after_id: int) -> int:
    """Entries above ``after_id`` without a seal. Only those of the run being timed: a look over the whole table
    would time the tables the earlier runs left, more each run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM audit_auditlog a WHERE a.id > %s AND NOT EXISTS "
            "(SELECT 1 FROM audit_seal s WHERE s.entry_id = a.id)",
            [after_id],
        )
        return cursor.fetchone()[0]


def busy_seconds() -> float:
    """CPU time the whole machine has spent since boot (Linux), every process and the database's included."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    rate: float  # writes per second
    writer_cpu: float  # µs of the writer processes' CPU per write
    other_cpu: float  # µs of the rest of the machine's CPU per write: the database, mostly


def run(scenario: str, writers: int, seconds: float, user_id: int) -> Sample:
    """Writes per second of ``writers`` processes, for the recorder until the last entry is sealed, and the CPU time
    each write cost."""
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    newest_before = newest_entry()
    connections.close_all()
    context = mp.get_context("fork")
    barrier = context.Barrier(writers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=writer, args=(scenario, seconds, user_id, barrier, results)) for _ in range(writers)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started, busy = time.monotonic(), busy_seconds()
    reports = [results.get() for _ in processes]
    done, writer_cpu = sum(report[0] for report in reports), sum(report[1] for report in reports)
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a writer of ({scenario}) failed with exit code {process.exitcode}")
    if scenario == "c":
        # Sealing runs after commit in the writers; anything left would be sealing work not yet paid for.
        deadline = time.monotonic() + 60
        while (left := unsealed(newest_before)) and time.monotonic() < deadline:
            time.sleep(0.01)
        if left:
            raise SystemExit(f"{left} committed entries are still unsealed 60 s after the writers stopped")
    elapsed, machine_cpu = time.monotonic() - started, busy_seconds() - busy
    connections.close_all()
    return Sample(done / elapsed, writer_cpu / done * 1e6, (machine_cpu - writer_cpu) / done * 1e6)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,4,8", help="comma-separated writer counts (default 1,4,8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure, median taken (default 3)")
    parser.add_argument("--scenarios", default="abcd", help="which of a, b, c, d to run (default abcd)")
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/bench_append")
    parser.add_argument(
        "--sealing",
        choices=("background", "inline"),
        default="background",
        help="how (c) seals: by a sealer thread per process, as in production (default), or by each writer after "
        "its commit (AUDIT_SEALING)",
    )
    parser.add_argument(
        "--without-anomaly-scan",
        action="store_true",
        help="turn off the anomaly scan the sealer runs after each batch (AUDIT_ANOMALY_SCAN_AFTER_SEAL), to tell "
        "its cost from the recorder's",
    )
    args = parser.parse_args()
    counts = [int(item) for item in args.writers.split(",")]
    scenarios = [item for item in args.scenarios if item in SCENARIOS]
    if "b" not in scenarios:
        raise SystemExit("the ratios need the baseline (b)")
    if "d" in scenarios:
        try:
            import auditlog  # noqa: F401
        except ImportError:
            raise SystemExit("(d) needs django-auditlog: .venv/bin/pip install -r bench/requirements.txt") from None

    keys = prepare(args.database_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["AUDIT_SEALING"] = args.sealing
    import django

    django.setup()
    from django.test import override_settings

    if args.without_anomaly_scan:
        # Announced to the audit app, which reads each knob once per change of it.
        override_settings(AUDIT_ANOMALY_SCAN_AFTER_SEAL=False).enable()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command

    from audit.verify import verify_chain

    call_command("migrate", run_syncdb=True, verbosity=0)
    call_command("audit_keygen", "--out", keys, stdout=open(os.devnull, "w"))
    # An ordinary user with a few permissions: the recorder snapshots them into every entry.
    user = get_user_model().objects.create_user("bench-writer", password="unused-password-4c1e")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="locks"))

    scan = "off" if args.without_anomaly_scan else "on"
    print(
        f"append benchmark: {os.cpu_count()} cores, load {load()}, {args.seconds:g} s per run, "
        f"median of {args.repeat}, {args.sealing} sealing, anomaly scan after sealing {scan}",
        flush=True,
    )
    rates: dict[tuple[str, int], float] = {}
    for writers in counts:
        samples: dict[str, list[Sample]] = {scenario: [] for scenario in scenarios}
        for _ in range(args.repeat):
            for scenario in scenarios:
                samples[scenario].append(run(scenario, writers, args.seconds, user.pk))
        for scenario in scenarios:
            taken = samples[scenario]
            rates[scenario, writers] = statistics.median(sample.rate for sample in taken)
            spread = ", ".join(f"{sample.rate:.0f}" for sample in taken)
            print(
                f"  ({scenario}) {writers} writers: {rates[scenario, writers]:.0f}/s  [{spread}]  CPU per write: "
                f"writers {statistics.median(sample.writer_cpu for sample in taken):.0f} µs, database and rest "
                f"{statistics.median(sample.other_cpu for sample in taken):.0f} µs",
                flush=True,
            )
        # Each repeat runs the scenarios back to back: a pair's ratio compares runs made under the same load.
        paired = {
            scenario: " ".join(f"{one.rate / base.rate:.2f}" for one, base in zip(taken, samples[BASE], strict=True))
            for scenario, taken in samples.items()
            if scenario != BASE
        }
        print(
            "  ratios to (b) repeat by repeat: " + "; ".join(f"{name}/b {ratios}" for name, ratios in paired.items()),
            flush=True,
        )

    report = verify_chain()
    print(f"chain verified: {'ok' if report.ok else 'FAILED'}; load {load()}")
    print()
    header = f"{'writes/s (ratio to b)':34}" + "".join(f"{f'{w} writers':>20}" for w in counts)
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        cells = "".join(
            f"{f'{rates[scenario, w]:.0f} ({rates[scenario, w] / rates[BASE, w]:.2f})':>20}" for w in counts
        )
        print(f"{f'({scenario}) {SCENARIOS[scenario]}':34}{cells}")
    print()
    for w in counts:
        ratios = [f"{scenario}/b {rates[scenario, w] / rates['b', w]:.2f}" for scenario in scenarios if scenario != "b"]
        if "c" in scenarios and "d" in scenarios:
            ratios.append(f"c/d {rates['c', w] / rates['d', w]:.2f}")
        print(f"{w} writers: " + ", ".join(ratios))
    if not report.ok:
        raise SystemExit("the chain does not verify")
    if "c" in scenarios and 4 in counts:
        print(f"recorder/baseline at 4 writers: {rates['c', 4] / rates['b', 4]:.2f}")


if __name__ == "__main__":
    main()
