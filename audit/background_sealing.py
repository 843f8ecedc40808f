"""Sealing in the background: a writer hands its committed entries to a sealer thread of its process and returns.

Used on PostgreSQL when ``AUDIT_SEALING = "background"``. A writer's audited change is then one transaction, as an
unaudited change would be; the thread seals what accumulated while it waited or worked in one batch, so one seal
transaction (and one commit) serves many writes. It seals with ``sealing.seal_known``: under the sealer lock, once
per entry, after the chain head the last sealer committed, with the digests of the values the writers' INSERTs
stored.

What a writer gives up is waiting for its seal: an entry is committed before it is sealed, as it always was, and
sealed some milliseconds later. An entry this thread never seals (its process was killed first) is found by the
look-back every sealer runs (``AUDIT_SEAL_LOOKBACK_EVERY_SECONDS``) or by ``manage.py audit_seal``; ``audit_verify``
reports it once the grace period has passed.
"""

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)

# A committed entry as the writer hands it over: its id, and its digest or what to take it from.
Handed = tuple[int, Any]
# After a failed batch its entries are tried again, waiting longer each time up to this (the database may be down).
MAX_RETRY_PAUSE_SECONDS = 30.0
# While its batches find a sealer of another process holding the lock, or new entries already waiting when they
# end, a sealer lingers twice as long each time, up to this many times the configured linger; after a batch with
# neither, half as long, down to it. Under a steady stream of writes, or with many processes, it then seals fewer,
# larger batches (each batch costs a transaction and a commit, whatever its size); once writes stop, the linger is
# back to the configured one after a few batches. Measured with bench/append.py at 4 writers: (c)/(b) from 0.75 to
# 0.77-0.80.
MAX_LINGER_FACTOR = 10


class BackgroundSealer:
    """The sealer thread of one process and database alias.

    ``seal(handed)`` seals a batch and says whether another sealer held the lock first; ``review(final)`` is the work
    after sealing that need not follow every batch (the anomaly scan), run at most once per ``review_every``
    seconds and at the latest that long after the last batch, and once more before the thread ends (``final``). A
    review that says it is not done (it left the work to another process, which has not done it yet) is run again
    ``review_every`` seconds later. A batch starts ``linger`` seconds after its first entry came (longer under a
    steady stream of writes or while other processes' sealers compete, see ``MAX_LINGER_FACTOR``), once ``enough``
    entries are waiting, or at once while someone waits in ``flush``.
    """

    def __init__(
        self,
        using: str,
        *,
        seal: Callable[[list[Handed]], bool],
        review: Callable[[bool], bool],
        review_every: float,
        linger: float,
        enough: int,
    ) -> None:
        self.using = using
        self._seal = seal
        self._review = review
        self._review_every = review_every
        self._condition = threading.Condition()
        self._waiting: list[Handed] = []
        self._oldest = 0.0  # when the oldest of ``_waiting`` was submitted
        self._base_linger = self._linger = linger
        self._enough = enough
        self._hurrying = 0  # callers waiting in flush()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, handed: list[Handed]) -> None:
        """Have ``handed`` (committed entries, each with its digest or what to take it from) sealed; returns at
        once."""
        with self._condition:
            self._start_if_needed()
            first = not self._waiting
            if first:
                self._oldest = time.monotonic()
            self._waiting.extend(handed)
            # The thread waits out the linger by itself: waking it for every write would cost a switch per write.
            if first or len(self._waiting) >= self._enough:
                self._condition.notify_all()

    @property
    def linger(self) -> float:
        """How long a batch now waits for company after its first entry, in seconds."""
        return self._linger

    def flush(self, timeout: float | None = None) -> bool:
        """Have what is waiting sealed now, without lingering, and wait until every submitted id went through a
        batch; False if ``timeout`` passed first."""
        with self._condition:
            self._hurrying += 1
            self._condition.notify_all()
            try:
                return self._condition.wait_for(lambda: not self._waiting and not self._busy, timeout)
            finally:
                self._hurrying -= 1

    def stop(self, timeout: float | None = None) -> None:
        """Seal what was given, then end the thread (and close its connection); a later ``submit`` starts it anew."""
        with self._condition:
            thread, self._stopping = self._thread, True
            self._condition.notify_all()
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        with self._condition:
            self._stopping, self._thread = False, None

    def _start_if_needed(self) -> None:
        if self._pid != os.getpid():
            # A forked child inherits the parent's waiting entries but not its thread: those are the parent's.
            self._pid, self._waiting, self._busy, self._thread = os.getpid(), [], False, None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"audit-sealer-{self.using}", daemon=True)
            self._thread.start()

    def _take_batch(self, review_due: float | None) -> list[Handed] | None:
        """The entries waiting, once there are any; None when it is time for the review instead, or to stop."""
        with self._condition:
            while True:
                if self._stopping:
                    if not self._waiting:
                        return None
                    break
                # Checked first: under a steady stream of writes there are always entries waiting.
                timeout = None if review_due is None else review_due - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return None
                if self._waiting:
                    # Let a batch gather: one seal transaction per few writes is what makes this pay.
                    linger = self._oldest + self._linger - time.monotonic()
                    if linger <= 0 or self._hurrying or len(self._waiting) >= self._enough:
                        break
                    timeout = linger if timeout is None else min(timeout, linger)
                self._condition.wait(timeout)
            handed, self._waiting = self._waiting, []
            self._busy = True
            return handed

    def _run(self) -> None:
        # Django gives every thread a connection of its own: this one is the thread's, closed when it ends.
        last_review = time.monotonic()
        review_due: float | None = None
        failures = 0
        try:
            while True:
                handed = self._take_batch(review_due)
                if handed is None:
                    done = self._run_review(final=self._stopping)
                    if self._stopping:
                        return
                    last_review = time.monotonic()
                    review_due = None if done else last_review + self._review_every
                    continue
                try:
                    contended = self._seal(handed)
                    failures = 0
                    with self._condition:
                        streaming = bool(self._waiting)  # writes came in while this batch was sealed
                    self._linger = (
                        min(self._linger * 2, self._base_linger * MAX_LINGER_FACTOR)
                        if contended or streaming
                        else max(self._linger / 2, self._base_linger)
                    )
                except Exception:
                    failures += 1
                    logger.exception("background sealing of %d entries failed (attempt %d)", len(handed), failures)
                    if not self._stopping:
                        self._give_back(handed, pause=min(2.0 ** (failures - 1), MAX_RETRY_PAUSE_SECONDS))
                    # Stopping: left to the look-back of the next sealer or `audit_seal`, as a killed process's.
                    continue
                finally:
                    with self._condition:
                        self._busy = False
                        self._condition.notify_all()
                review_due = last_review + self._review_every if review_due is None else review_due
        finally:
            connections.close_all()

    def _give_back(self, handed: list[Handed], *, pause: float) -> None:
        # The connection may be broken: drop it so that the next attempt opens a new one.
        connections[self.using].close()
        time.sleep(pause)
        with self._condition:
            self._waiting[:0] = handed

    def _run_review(self, *, final: bool) -> bool:
        try:
            return self._review(final)
        except Exception:
            # The entries are sealed; a failing review is reported, and the next one starts from the same place.
            logger.exception("the review after background sealing failed")
            return True


_sealers: dict[str, BackgroundSealer] = {}
_sealers_lock = threading.Lock()


def sealer_for(using: str, options: Callable[[], dict[str, Any]]) -> BackgroundSealer:
    """The sealer of ``using``, made with ``options()`` (see ``BackgroundSealer``) the first time: every write
    asks for it, and reading the settings each time cost more than the hand-over itself."""
    sealer = _sealers.get(using)
    if sealer is not None:
        return sealer
    with _sealers_lock:
        if using not in _sealers:
            _sealers[using] = BackgroundSealer(using, **options())
        return _sealers[using]


def stop_all(timeout: float | None = None) -> None:
    """End every sealer thread of this process once it has sealed what it was given; the next hand-over starts
    a new sealer, with the settings of then."""
    with _sealers_lock:
        sealers = list(_sealers.values())
        _sealers.clear()
    for sealer in sealers:
        sealer.stop(timeout)


def flush_all(timeout: float | None = None) -> bool:
    """Wait until every sealer of this process has sealed what it was given (e.g. before the process exits)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for sealer in list(_sealers.values()):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = sealer.flush(remaining) and done
    return done


# A process that ends normally seals what it committed before it goes; a killed one leaves it to the next batch.
atexit.register(stop_all, 10.0)
