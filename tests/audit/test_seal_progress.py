"""`manage.py audit_seal` shows a progress bar on a terminal, and only there."""

import datetime as dt
import fcntl
import io
import os
import struct
import sys
import termios
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import call_command

from audit.actions import AuditAction
from audit.models import AuditLog, Seal


def unsealed_entries(count: int) -> None:
    AuditLog.objects.bulk_create(
        AuditLog(
            created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            action=AuditAction.ROLE_UPDATE,
            entity="Role",
            entity_id=str(n),
            salt=os.urandom(16),
        )
        for n in range(count)
    )


@contextmanager
def stderr_on_a_terminal() -> Iterator[list[str]]:
    """sys.stderr is the slave side of a real pseudo-terminal while inside; what was written to it is collected
    from the master side into the list yielded, once the block ends."""
    master, slave = os.openpty()
    # A fresh pty is 0 columns wide, and tqdm fits its bar to that: give it the size of a usual terminal.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    terminal = os.fdopen(slave, "w", encoding="utf-8")
    written: list[str] = []
    saved, sys.stderr = sys.stderr, terminal
    try:
        yield written
    finally:
        sys.stderr = saved
        terminal.close()
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        written.append(b"".join(chunks).decode("utf-8", "replace"))


@pytest.fixture
def small_batches(settings):
    # Several batches, so the bar moves more than once.
    settings.AUDIT_SEAL_BATCH_SIZE = 10


def test_audit_seal_full_draws_a_progress_bar_on_a_terminal(db, small_batches):
    """With stderr on a terminal, `audit_seal --full` draws a tqdm bar there that reaches all the entries it sealed;
    the summary line stays on stdout."""
    unsealed_entries(35)
    out = io.StringIO()

    with stderr_on_a_terminal() as written:
        call_command("audit_seal", "--full", stdout=out)

    assert Seal.objects.count() == 35
    assert out.getvalue() == "Sealed 35 entries.\n"
    assert "35/35" in written[0]
    assert "entries" in written[0]


def test_audit_seal_draws_no_bar_when_not_on_a_terminal(db, small_batches):
    """With stderr redirected (cron, a pipe), nothing but the summary is written."""
    unsealed_entries(15)
    out, err = io.StringIO(), io.StringIO()
    saved, sys.stderr = sys.stderr, err
    try:
        call_command("audit_seal", "--full", stdout=out)
    finally:
        sys.stderr = saved

    assert out.getvalue() == "Sealed 15 entries.\n"
    assert err.getvalue() == ""


def test_audit_seal_no_progress_keeps_the_terminal_quiet(db, small_batches):
    """--no-progress draws no bar even on a terminal."""
    unsealed_entries(15)

    with stderr_on_a_terminal() as written:
        call_command("audit_seal", "--full", "--no-progress", stdout=io.StringIO())

    assert Seal.objects.count() == 15
    assert written[0] == ""
