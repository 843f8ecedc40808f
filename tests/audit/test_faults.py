"""Faults: a database connection dropped in the middle of an audited change, a sealer killed mid-batch, a disk that
fills while an archive is written, an export stream that breaks off.

The faults are real: a PostgreSQL backend terminated from a second connection, a process killed with SIGKILL, a
file size limit (RLIMIT_FSIZE, the kernel's EFBIG) standing in for a full disk, a seal removed under a running
export. Hooks only pick the moment (``connection.execute_wrapper``, the archive's progress callback); nothing is
mocked.
"""

import errno
import os
import resource
import select
import signal
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import Error, connection

from audit.actions import AuditAction
from audit.archive import approve_archive, execute_archive, request_archive
from audit.export.bundle import ExportError, ExportScope
from audit.export.service import cover_for, export_response
from audit.export.verify_bundle import verify_bundle
from audit.models import ArchiveCheckpoint, ArchiveRequest, AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import record
from audit.signing import load_public_key
from audit.verify import verify_chain
from locks import services as lock_services
from locks.models import Repository
from rbac import services as rbac_services
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.audit.archive_helpers import CUTOFF, Trail, grant
from tests.factories.users import UserFactory

AUDIT_INSERT = 'INSERT INTO "audit_auditlog"'
PROJECT_DIR = Path(django_settings.BASE_DIR)
SUBPROCESS_TIMEOUT = 60


def audit_verify_output() -> str:
    out = StringIO()
    try:
        call_command("audit_verify", "--no-progress", stdout=out)
    except SystemExit:
        pass
    return out.getvalue()


# --- 1. the connection drops in the middle of an audited change (PostgreSQL) ------------------------------------------


def _terminate(pid: int) -> None:
    """End backend ``pid`` from a connection of its own, and wait until it is gone: the server drops the session
    exactly as it does on a crash, a failover or an administrator's pg_terminate_backend."""
    killer = connection.get_new_connection(connection.get_connection_params())
    try:
        killer.autocommit = True
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            assert cursor.fetchone()[0], f"backend {pid} did not end"
    finally:
        killer.close()


@contextmanager
def backend_killed_at(statement: str, *, after: bool) -> Iterator[list[str]]:
    """Terminate this connection's backend once, right before (or right ``after``) the first statement starting
    with ``statement``; yields the statements it fired at (empty if it never did)."""
    fired: list[str] = []

    def kill(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if fired or not sql.startswith(statement):
            return execute(sql, params, many, context)
        fired.append(sql)
        pid = context["connection"].connection.info.backend_pid
        if not after:
            _terminate(pid)
            return execute(sql, params, many, context)
        result = execute(sql, params, many, context)
        _terminate(pid)
        return result

    with connection.execute_wrapper(kill):
        yield fired


def fresh_rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """What another client sees: a new connection of its own, not Django's (which the fault closed)."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    finally:
        other.close()


@dataclass(frozen=True)
class AuditedChange:
    action: str
    run: Callable[[], Any]
    table: str
    key: str


def lock_checkout() -> AuditedChange:
    bootstrap_default_roles()
    owner = UserFactory()
    Role.objects.get(name="member").users.add(owner)
    repository = Repository.objects.create(slug="game-art", name="Game art")
    path = "design/model.psd"
    return AuditedChange(
        AuditAction.LOCK_CREATE,
        lambda: lock_services.checkout(actor=owner, repository=repository, path=path),
        "locks_filelock",
        path,
    )


def role_creation() -> AuditedChange:
    admin = UserFactory(is_superuser=True, is_staff=True)
    name = "release managers"
    return AuditedChange(
        AuditAction.ROLE_CREATE, lambda: rbac_services.role_create(actor=admin, name=name), "rbac_role", name
    )


CHANGES = {"lock checkout": lock_checkout, "role creation": role_creation}
KILL_POINTS = {"before the entry's INSERT": False, "between the entry's INSERT and COMMIT": True}


@pytest.mark.parametrize("kill_after_insert", KILL_POINTS.values(), ids=KILL_POINTS.keys())
@pytest.mark.parametrize("make_change", CHANGES.values(), ids=CHANGES.keys())
def test_connection_dropped_mid_change_leaves_neither_change_nor_entry(
    postgres_only, committed_db, make_change, kill_after_insert
):
    """The backend is terminated after the change's rows were written, before or after its audit entry: the
    service raises, another client sees neither the change nor a success entry, the only entry is the recorder's
    ``failure`` record of the attempt (written afterwards on a new connection), the chain verifies, and the same
    change then succeeds on the new connection."""
    change = make_change()
    name_column = "path" if change.table == "locks_filelock" else "name"
    count_sql = f'SELECT count(*) FROM "{change.table}" WHERE "{name_column}" = %s'

    with backend_killed_at(AUDIT_INSERT, after=kill_after_insert) as fired:
        with pytest.raises(Error):
            change.run()
    assert fired, "the audited change never wrote its entry"

    assert fresh_rows(count_sql, [change.key]) == [(0,)]
    entries = fresh_rows("SELECT outcome, meta->>'error' FROM audit_auditlog WHERE action = %s", [change.action])
    assert entries in ([(AuditLog.Outcome.FAILURE, "OperationalError")], [(AuditLog.Outcome.FAILURE, "InterfaceError")])
    assert audit_verify_output().startswith("Audit chain intact")

    change.run()
    assert fresh_rows(count_sql, [change.key]) == [(1,)]
    success = AuditLog.objects.get(action=change.action, outcome=AuditLog.Outcome.SUCCESS)
    seal_pending()  # a no-op when the recorder sealed it already
    assert Seal.objects.filter(entry_id=success.pk).count() == 1
    assert audit_verify_output().startswith("Audit chain intact")


def test_a_standalone_entry_whose_backend_dies_leaves_the_next_one_a_new_connection(postgres_only, committed_db):
    """An entry recorded outside a transaction is its INSERT alone; when the backend dies under it, the dead
    connection is dropped (as an atomic block drops it when its rollback fails), so the next entry is written on a
    new one, committed and sealed, instead of failing on the dead connection."""
    with backend_killed_at(AUDIT_INSERT, after=False) as fired, pytest.raises(Error):
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="lost")
    assert fired

    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="next")

    assert fresh_rows("SELECT entity_id FROM audit_auditlog WHERE id = %s", [entry.pk]) == [("next",)]
    assert Seal.objects.filter(entry_id=entry.pk).count() == 1


# --- 2. the sealer killed mid-batch -----------------------------------------------------------------------------------

# Run in a child process: adds ``count`` unsealed entries (as writers whose own sealer never ran), then runs
# `audit_seal` with small batches and stops, inside the transaction of the ``stop_at``-th seal INSERT (its rows
# written, not committed), until the test kills it.
SEALER = """
import os, sys
import django

django.setup()
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from audit.models import AuditLog

count, batch_size, stop_at = map(int, sys.argv[1:4])
settings.AUDIT_SEAL_BATCH_SIZE = batch_size
AuditLog.objects.bulk_create(
    AuditLog(created_at=timezone.now(), action="ROLE.UPDATE", entity="Role", entity_id=str(n), salt=os.urandom(16))
    for n in range(count)
)
inserts = 0

def stop_mid_batch(execute, sql, params, many, context):
    global inserts
    result = execute(sql, params, many, context)
    if sql.startswith('INSERT INTO "audit_seal"'):
        inserts += 1
        if inserts == stop_at:
            pid = connection.connection.info.backend_pid if connection.vendor == "postgresql" else 0
            print("mid-batch", pid, flush=True)
            sys.stdin.read()
    return result

with connection.execute_wrapper(stop_mid_batch):
    call_command("audit_seal", "--no-progress")
"""


@dataclass(frozen=True)
class ChildDatabase:
    """The database the child processes use: the test database itself on PostgreSQL; on SQLite (whose test
    database lives in this process's memory) a file of its own, migrated by `manage.py migrate`."""

    url: str
    sqlite_path: Path | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite_path is None:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        with sqlite3.connect(self.sqlite_path) as db:
            return list(db.execute(sql).fetchall())


def child_env(database: ChildDatabase) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database.url, "DJANGO_SETTINGS_MODULE": "auditproject.settings"}


def manage(database: ChildDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=child_env(database),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


@pytest.fixture
def child_database(committed_db: None, tmp_path: Path) -> ChildDatabase:
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
        url = f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
        return ChildDatabase(url)
    path = tmp_path / "sealer.sqlite3"
    database = ChildDatabase(f"sqlite:///{path}", path)
    migrated = manage(database, "migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    return database


def start_sealer(database: ChildDatabase, *, count: int, batch_size: int, stop_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SEALER, str(count), str(batch_size), str(stop_at)],
        cwd=PROJECT_DIR,
        env=child_env(database),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_mid_batch(sealer: subprocess.Popen[str]) -> int:
    """Block until the child says it is inside a batch; its backend's pid (0 on SQLite)."""
    ready, _, _ = select.select([sealer.stdout], [], [], SUBPROCESS_TIMEOUT)
    line = sealer.stdout.readline() if ready else ""  # type: ignore[union-attr]
    if not line.startswith("mid-batch"):
        sealer.kill()
        raise AssertionError(f"the sealer never reached the batch: {line!r} {sealer.communicate()[1]}")
    return int(line.split()[1])


def assert_one_seal_each(database: ChildDatabase, count: int) -> None:
    seals = database.rows("SELECT chain_index, entry_id FROM audit_seal ORDER BY chain_index")
    entries = database.rows("SELECT id FROM audit_auditlog ORDER BY id")
    assert len(entries) == count
    assert [index for index, _ in seals] == list(range(count))
    assert sorted(entry_id for _, entry_id in seals) == [entry_id for (entry_id,) in entries]


def interrupt_sealer(database: ChildDatabase, *, how: str, count: int) -> None:
    """Stop a sealer in its third batch by ``how``: ``sigkill`` (the process dies) or ``backend`` (PostgreSQL
    drops its session; the process carries on and must fail)."""
    sealer = start_sealer(database, count=count, batch_size=20, stop_at=3)
    try:
        pid = wait_mid_batch(sealer)
        sealed_before = database.rows("SELECT count(*) FROM audit_seal")[0][0]
        assert 0 < sealed_before < count
        if how == "sigkill":
            sealer.send_signal(signal.SIGKILL)
            sealer.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert sealer.returncode == -signal.SIGKILL
        else:
            _terminate(pid)
            _, stderr = sealer.communicate(input="", timeout=SUBPROCESS_TIMEOUT)
            assert sealer.returncode != 0
            assert "terminating connection" in stderr or "server closed the connection" in stderr, stderr
    finally:
        # A sealer left waiting would hold its locks and block the database's clean-up after the test.
        if sealer.poll() is None:
            sealer.kill()
            sealer.communicate()
    # The batch in flight is gone with its transaction; the ones before it stay.
    assert database.rows("SELECT count(*) FROM audit_seal")[0][0] == sealed_before


@pytest.mark.parametrize("how", ["sigkill", "backend"])
def test_sealer_interrupted_mid_batch_resumes_without_gaps_or_doubles(child_database, how):
    """A sealer stopped mid-batch (SIGKILL; on PostgreSQL also its backend terminated) leaves the committed
    batches and nothing of the one in flight; `audit_seal` run again seals every entry exactly once at chain
    positions 0..n-1, and `audit_verify` passes."""
    if how == "backend" and connection.vendor != "postgresql":
        pytest.skip("terminating a backend needs PostgreSQL")
    count = 100
    interrupt_sealer(child_database, how=how, count=count)

    resumed = manage(child_database, "audit_seal", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert_one_seal_each(child_database, count)
    verified = manage(child_database, "audit_verify", "--no-progress")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("Audit chain intact")


# --- 3. a full disk while an archive is written ---------------------------------------------------------------------


@contextmanager
def disk_full_after(calls: int) -> Iterator[Callable[[int], None]]:
    """A progress callback for the archive that, from its ``calls``-th call (one per segment written), leaves no
    room for more than a few bytes per file: RLIMIT_FSIZE makes the kernel refuse further writes with EFBIG, as a
    full disk does with ENOSPC. SIGXFSZ is ignored so that the write fails instead of the process dying."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    seen = 0

    def progress(_: int) -> None:
        nonlocal seen
        seen += 1
        if seen == calls:
            resource.setrlimit(resource.RLIMIT_FSIZE, (16, hard))

    try:
        yield progress
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


@pytest.fixture
def approved_archive(trail: Trail) -> ArchiveRequest:
    alice = grant(UserFactory(username="alice-officer"), "request_archive", "approve_archive")
    bob = grant(UserFactory(username="bob-officer"), "request_archive", "approve_archive")
    request = request_archive(actor=alice, before=CUTOFF, reason="Older than the retention period")
    return approve_archive(actor=bob, request_id=request.pk)


# The trail's archive writes two segments (January, February): the data of the second, or the manifests.
DISK_FULL = {"after the first segment's data": 1, "after both segments' data": 2}


@pytest.mark.parametrize("calls", DISK_FULL.values(), ids=DISK_FULL.keys())
def test_archive_on_a_full_disk_removes_nothing_and_leaves_no_segment(approved_archive, trail, archive_dir, calls):
    """A write that fails part way (the second segment's data, or the manifests) fails the archive: no segment,
    manifest or temporary file is left, every entry and seal is still in the table, no checkpoint was stored, the
    request is still approved, the failure is in the trail, and the archive succeeds once there is room again."""
    with disk_full_after(calls) as progress, pytest.raises(OSError) as failed:
        execute_archive(request_id=approved_archive.pk, progress=progress)
    assert failed.value.errno == errno.EFBIG

    assert sorted(path.name for path in archive_dir.iterdir()) == [".audit-archive.lock"]
    archivable = [entry.pk for entry in trail.archivable]
    assert AuditLog.objects.filter(pk__in=archivable).count() == len(archivable)
    assert Seal.objects.filter(entry_id__in=archivable).count() == len(archivable)
    assert not ArchiveCheckpoint.objects.exists()
    assert ArchiveRequest.objects.get(pk=approved_archive.pk).status == ArchiveRequest.Status.APPROVED
    [failure] = AuditLog.objects.filter(action=AuditAction.AUDIT_ARCHIVE, outcome=AuditLog.Outcome.FAILURE)
    assert failure.meta["error"] == "OSError"
    report = verify_chain()
    assert report.ok, [finding.line() for finding in report.findings]

    result = execute_archive(request_id=approved_archive.pk)
    assert result.count == len(archivable)
    assert len(list(archive_dir.glob("*.manifest.json"))) == 2
    assert not list(archive_dir.glob("*.partial"))


def test_connection_dropped_while_an_archive_removes_rows_keeps_every_row_and_no_segment(
    postgres_only, committed_db, approved_archive, trail, archive_dir
):
    """The backend is terminated as the archive starts removing the entries it has written and verified: the
    removal rolls back, the segments it wrote are taken back, and another client still sees every entry, its seal,
    no checkpoint and the request approved."""
    with backend_killed_at("DELETE FROM audit_auditlog", after=False) as fired, pytest.raises(Error):
        execute_archive(request_id=approved_archive.pk)
    assert fired

    assert sorted(path.name for path in archive_dir.iterdir()) == [".audit-archive.lock"]
    archivable = [entry.pk for entry in trail.archivable]
    assert fresh_rows("SELECT count(*) FROM audit_auditlog WHERE id = ANY(%s)", [archivable]) == [(len(archivable),)]
    assert fresh_rows("SELECT count(*) FROM audit_seal WHERE entry_id = ANY(%s)", [archivable]) == [(len(archivable),)]
    assert fresh_rows("SELECT count(*) FROM audit_archivecheckpoint", []) == [(0,)]
    assert ArchiveRequest.objects.get(pk=approved_archive.pk).status == ArchiveRequest.Status.APPROVED
    assert audit_verify_output().startswith("Audit chain intact")


# --- 4. an export stream that breaks off ------------------------------------------------------------------------------


def export_of_everything(actor: Any) -> Any:
    scope = ExportScope(entries=AuditLog.objects.all(), rules=[], filters={})
    return export_response(scope=scope, actor=actor, cover=lambda summary: cover_for(scope, summary))


def assert_rejected_as_incomplete(body: bytes, tmp_path: Path) -> None:
    """Whatever reached the client is no bundle: no ZIP a reader opens, no manifest, and the verifier says so."""
    path = tmp_path / "cut-short.zip"
    path.write_bytes(body)
    assert not zipfile.is_zipfile(path)
    report = verify_bundle(str(path), load_public_key())
    assert not report.ok
    assert report.problems == [f"{path}: not a readable ZIP, perhaps cut short (File is not a zip file)"]


def test_export_whose_chain_breaks_mid_stream_is_not_finished_as_a_bundle(db, keys, triggers_dropped, user, tmp_path):
    """A seal removed while the bundle streams (the chain turns out broken after the first member went out): the
    stream raises instead of closing the ZIP, what was sent is rejected by `audit_verify_bundle`, and no export
    is recorded."""
    for number in range(5):
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=number)
    stream = iter(export_of_everything(user).streaming_content)
    body = next(stream)
    assert body.startswith(b"PK")
    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_seal WHERE chain_index = 2")

    with pytest.raises(ExportError, match="broken at position 2"):
        for chunk in stream:
            body += chunk
    assert b"manifest.json" not in body
    assert_rejected_as_incomplete(body, tmp_path)
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()


def test_export_whose_record_cannot_be_written_is_not_finished_as_a_bundle(
    postgres_only, committed_db, keys, user, tmp_path
):
    """The connection drops as the export's AUDIT.EXPORT entry is written, after the manifest was signed: the
    last bytes (the manifest and the ZIP's directory) never go out, so an unrecorded export is never a complete
    bundle, and the verifier rejects what was sent."""
    for number in range(5):
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=number)
    response = export_of_everything(user)
    body = b""
    with backend_killed_at(AUDIT_INSERT, after=False) as fired, pytest.raises(Error):
        for chunk in response.streaming_content:
            body += chunk
    assert fired
    assert body.startswith(b"PK")
    assert_rejected_as_incomplete(body, tmp_path)
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()
