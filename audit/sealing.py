"""Sealing: appending committed entries to the hash chain.

Writers never touch the chain. After their transaction commits, the sealer takes the entries that have no seal
yet and appends them in one batch, under a lock that lets one sealer run at a time: two sealers would link two
entries to the same ``prev_hash``. The unique chain index and the unique entry of the seal table make a double
seal impossible even if that lock were bypassed.

After a commit on PostgreSQL, a writer does not queue for that lock (``seal_committed``): it tries it, and if
another sealer holds it, waits until that sealer has committed, without taking the lock, and looks whether its own
entries are sealed now. The holder's batch takes every entry committed before it read, the writer's among them, so
under load one transaction seals the entries of many writers. A writer returns only once its own entries are
sealed, by itself or by another; if they are not (the holder read before the writer committed), it starts again.
"""

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import conf, digests
from .background_sealing import BackgroundSealer, sealer_for
from .hashing import COMMITTED_FIELDS, GENESIS_HASH, chain_hash, entry_digest
from .models import AuditLog, Seal, SignedDigest
from .signing import has_signing_key
from .writing import SentEntry, bound_cursor

logger = logging.getLogger(__name__)

# Advisory lock key of the sealer: the ASCII of "audt".
SEALER_LOCK_KEY = 0x61756474
_PENDING_ATTR = "audit_unsealed_ids"
# Seals per INSERT statement, 5 parameters each, where the backend sets no lower bound (SQLite: 999 parameters).
SEAL_INSERT_ROWS = 1000
# Per process and database alias: when the sealer after a commit last looked back over the recent chain positions.
_last_lookback: dict[str, float] = {}
# Per process and database alias: the newest chain position this process's sealers wrote, and where the last anomaly
# scan this process ran left the scan's watermark.
_newest_sealed: dict[str, int] = {}
_own_scan_watermark: dict[str, int] = {}

SealRow = tuple[int, int, str, str, str]  # chain_index, entry_id, digest, prev_hash, hash


def committed_fields(entry: AuditLog) -> dict[str, Any]:
    """The values an entry's digest covers, as stored."""
    return {name: getattr(entry, name) for name in COMMITTED_FIELDS}


def digest_of(entry: AuditLog) -> str:
    return entry_digest(bytes(entry.salt), committed_fields(entry), entry.personal_commitments)


@dataclass(frozen=True)
class _Head:
    """The chain as a batch left it: head position and hash, and the last signed digest it found."""

    chain_index: int
    hash: str
    digest_index: int | None
    digest_signed_at: dt.datetime | None


# --- SQL of the sealer ------------------------------------------------------------------------------------------
# Written out rather than built through the ORM: it runs after every commit, and building these queries cost more
# CPU than running them.


def _id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ids: the entries of one ``record_many`` are a handful of ranges."""
    ranges: list[tuple[int, int]] = []
    for pk in sorted(set(ids)):
        if ranges and pk == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], pk)
        else:
            ranges.append((pk, pk))
    return ranges


def _names(using: str) -> dict[str, str]:
    qn = connections[using].ops.quote_name
    names = {name: qn(name) for name in ("id", "entry_id", "chain_index", "hash", "signed_at")}
    names.update(entries=qn(AuditLog._meta.db_table), seals=qn(Seal._meta.db_table))
    names["signed"] = qn(SignedDigest._meta.db_table)
    return names


def _within(ranges: list[tuple[int, int]], q: dict[str, str]) -> tuple[list[str], list[int]]:
    return [f"a.{q['id']} BETWEEN %s AND %s"] * len(ranges), [bound for pair in ranges for bound in pair]


def _no_seal(q: dict[str, str]) -> str:
    # A correlated lookup, not NOT EXISTS: PostgreSQL turns that into an anti-join, and since it cannot estimate the
    # window (a subquery's result) it picked a hash anti-join reading the whole seal table on every batch.
    return f"(SELECT 1 FROM {q['seals']} s WHERE s.{q['entry_id']} = a.{q['id']}) IS NULL"


@dataclass(frozen=True)
class _Window:
    """Where a batch looks: above ``top`` (the newest sealed entry), from ``floor`` (the lowest entry of the recent
    chain positions) when looking back, and at the ids a transaction reported. Read before the batch, with the
    lock; a value read a moment too early is only lower, which widens the window, never narrows it."""

    top: int
    floor: int | None


def _take_lock_and_window(using: str, *, wait: bool, lookback: bool) -> _Window | None:
    """Take the sealer lock for the current transaction (without ``wait``: None if another sealer holds it) and
    read the window's bounds in the same statement.

    The bounds go into the batch query as values: PostgreSQL cannot estimate a bound that is a subquery, and took
    a third of the table as its guess, which made it compile the query (JIT) on every batch.
    """
    connection = connections[using]
    q = _names(using)
    top = f"(SELECT COALESCE(MAX({q['entry_id']}), 0) FROM {q['seals']})"
    # MIN of ``entry_id + 0``: of ``entry_id`` itself, PostgreSQL took the lowest of the entry index whose position
    # passed the filter, walking that index from the oldest seal: nearly the whole chain, under the sealer lock.
    floor = (
        f"(SELECT MIN({q['entry_id']} + 0) FROM {q['seals']} WHERE {q['chain_index']} > "
        f"(SELECT MAX({q['chain_index']}) FROM {q['seals']}) - %s)"
        if lookback
        else "NULL"
    )
    params: list[Any] = [conf.seal_lookback()] if lookback else []
    if connection.vendor == "postgresql":
        lock = "pg_advisory_xact_lock(%s) IS NOT NULL" if wait else "pg_try_advisory_xact_lock(%s)"
        params.insert(0, SEALER_LOCK_KEY)
    else:
        lock = "1"  # SQLite: the write lock taken at BEGIN (transaction_mode IMMEDIATE) admits one writer at a time
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {lock}, {top}, {floor}", params)
        locked, top_id, floor_id = cursor.fetchone()
    return _Window(top_id, floor_id) if locked else None


def _select_unsealed(
    using: str, *, entry_ids: list[int], window: _Window | None, after_id: int | None, limit: int
) -> list[AuditLog]:
    """The batch's entries, oldest first, each carrying the chain head and the last digest as read with them
    (under the lock, so the head is the one the last sealer committed).

    Looked at: every entry in ``window`` (see ``_Window``) and ``entry_ids``; without a window, the whole table.
    """
    q = _names(using)
    conditions = [_no_seal(q)]
    params: list[Any] = []
    if after_id is not None:
        conditions.append(f"a.{q['id']} > %s")
        params.append(after_id)
    if window is not None:
        bounds = [f"a.{q['id']} > %s"]
        params.append(window.top)
        if window.floor is not None:
            bounds.append(f"a.{q['id']} >= %s")
            params.append(window.floor)
        named, ranges = _within(_id_ranges(pk for pk in entry_ids if after_id is None or pk > after_id), q)
        bounds += named
        params += ranges
        conditions.append(f"({' OR '.join(bounds)})")
    qn = connections[using].ops.quote_name
    columns = ", ".join(f"a.{qn(field.column)}" for field in AuditLog._meta.concrete_fields)
    last_seal = f"FROM {q['seals']} ORDER BY {q['chain_index']} DESC LIMIT 1"
    last_digest = f"FROM {q['signed']} ORDER BY {q['chain_index']} DESC LIMIT 1"
    sql = (
        f"SELECT {columns}, (SELECT {q['chain_index']} {last_seal}) AS head_index, (SELECT {q['hash']} "
        f"{last_seal}) AS head_hash, (SELECT {q['chain_index']} {last_digest}) AS digest_index, "
        f"(SELECT {q['signed_at']} {last_digest}) AS digest_signed_at "
        f"FROM {q['entries']} a WHERE {' AND '.join(conditions)} ORDER BY a.{q['id']} LIMIT %s"
    )
    return list(AuditLog.objects.using(using).raw(sql, [*params, limit]))


def _unsealed_sql(using: str, ids: list[int]) -> tuple[str, list[int]]:
    """Whether any of ``ids`` is a committed entry without a seal (ids of rolled-back entries have no entry)."""
    q = _names(using)
    named, bounds = _within(_id_ranges(ids), q)
    sql = f"SELECT EXISTS (SELECT 1 FROM {q['entries']} a WHERE ({' OR '.join(named)}) AND {_no_seal(q)})"
    return sql, bounds


_SEAL_COLUMNS = ("chain_index", "entry_id", "digest", "prev_hash", "hash")


def _insert_seals(using: str, rows: list[SealRow]) -> None:
    """INSERT the seals of a batch; ``sealed_at`` is the database's.

    PostgreSQL: one statement with an array per column, five parameters whatever the batch size, bound on the
    server and sent in binary: as text, each hash of the arrays was searched for characters to quote, which cost
    five times as much as the binary form (psycopg's array dumpers). Elsewhere: multi-row VALUES, five parameters
    a seal, as many statements as the backend's bound needs.
    """
    if not rows:
        return
    connection = connections[using]
    qn = connection.ops.quote_name
    insert = f"INSERT INTO {qn(Seal._meta.db_table)} ({', '.join(qn(name) for name in _SEAL_COLUMNS)})"
    if connection.vendor == "postgresql":
        with bound_cursor(using, prepared=True) as cursor:
            cursor.execute(
                f"{insert} SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[])",
                [list(column) for column in zip(*rows, strict=True)],
            )
        return
    per_insert = min(SEAL_INSERT_ROWS, (connection.features.max_query_params or 5 * SEAL_INSERT_ROWS) // 5)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_insert):
            chunk = rows[start : start + per_insert]
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(f"{insert} VALUES {values}", [value for row in chunk for value in row])


def _aware(value: Any) -> dt.datetime | None:
    # A column read through a raw query: SQLite hands back what it stores, UTC without an offset (text or naive).
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def _chain(batch: list[AuditLog]) -> tuple[list[SealRow], _Head | None]:
    """The seals of ``batch`` (read with the head, under the lock), linked after that head."""
    if not batch:
        return [], None
    first = batch[0]
    next_index = first.head_index + 1 if first.head_index is not None else 0
    prev_hash = first.head_hash if first.head_index is not None else GENESIS_HASH
    rows = []
    for entry in batch:
        digest = digest_of(entry)
        hash_ = chain_hash(prev_hash, digest)
        rows.append((next_index, entry.pk, digest, prev_hash, hash_))
        next_index += 1
        prev_hash = hash_
    return rows, _Head(next_index - 1, prev_hash, first.digest_index, _aware(first.digest_signed_at))


# --- sealing, waiting for the lock --------------------------------------------------------------------------------


def _seal_batch(
    *, using: str, entry_ids: list[int], full_scan: bool, lookback: bool, after_id: int | None, limit: int
) -> tuple[int, int | None, _Head | None]:
    """Seal up to ``limit`` unsealed entries with ids above ``after_id`` (see ``_select_unsealed``), in a
    transaction of its own under the sealer lock; returns (how many, the last id seen, the chain after it)."""
    with transaction.atomic(using=using):
        window = _take_lock_and_window(using, wait=True, lookback=lookback)
        batch = _select_unsealed(
            using, entry_ids=entry_ids, window=None if full_scan else window, after_id=after_id, limit=limit
        )
        rows, head = _chain(batch)
        _insert_seals(using, rows)
        return len(rows), batch[-1].pk if batch else after_id, head


def seal_pending(
    *,
    entry_ids: Iterable[int] = (),
    full_scan: bool = False,
    using: str = "default",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Seal every committed entry that has no seal yet; returns how many were sealed.

    ``entry_ids`` are entries a transaction just committed: they are sealed even when they committed so late that
    they sit below the look-back window. ``full_scan`` looks at the whole table (recovery, ``audit_seal --full``).
    ``progress(n)`` is called after each batch with the number it sealed (a progress bar's ``update``).
    Batches walk up the ids, so each row is looked at once however many batches it takes.
    """
    return _seal(list(entry_ids), using=using, full_scan=full_scan, lookback=True, progress=progress)


def _seal(
    ids: list[int],
    *,
    using: str,
    full_scan: bool,
    lookback: bool,
    progress: Callable[[int], None] | None = None,
    review: bool = True,
) -> int:
    """Seal in batches until a batch is not full; how many were sealed."""
    limit = conf.seal_batch_size()
    total = 0
    after_id: int | None = None
    head: _Head | None = None
    attempts = 0
    while True:
        try:
            sealed, after_id, batch_head = _seal_batch(
                using=using, entry_ids=ids, full_scan=full_scan, lookback=lookback, after_id=after_id, limit=limit
            )
        except IntegrityError:
            # Only reachable when a second sealer raced past the lock (e.g. two SQLite processes with
            # deferred transactions): the other one won this position, so read the new head and go on.
            attempts += 1
            if attempts > 5:
                raise
            continue
        head = batch_head or head
        total += sealed
        if progress is not None:
            progress(sealed)
        if sealed < limit:
            break
    _after_sealing(total, head, using, review=review)
    return total


def _after_sealing(total: int, head: _Head | None, using: str, *, review: bool = True) -> None:
    if total:
        _note_sealed(head, using)
        _sign_if_due(head, using)
        if review:
            _scan_for_anomalies(using)


def _note_sealed(head: _Head | None, using: str) -> None:
    if head is not None:
        _newest_sealed[using] = max(head.chain_index, _newest_sealed.get(using, -1))


def _sign_if_due(head: _Head | None, using: str) -> None:
    """A signed digest when N entries or M minutes have passed, judged by the chain as the last batch left it."""
    if head is None or not digests.due(head.chain_index, head.digest_index, head.digest_signed_at):
        return
    if has_signing_key():
        digests.make_digest(using=using)


def _scan_for_anomalies(using: str) -> None:
    """Run the incremental anomaly scan over what was just sealed (it reads from its own watermark)."""
    if not conf.anomaly_scan_after_seal():
        return
    # Imported here: the scan records its findings through audit.services, which imports this module.
    from .anomalies import scan_new_entries

    try:
        watermark = scan_new_entries(using=using).watermark
        if watermark is not None:
            _own_scan_watermark[using] = watermark
    except Exception:
        # The entries are sealed and committed: a failing review must not turn that into an error. Its watermark
        # did not move, so the next seal or `manage.py audit_scan` examines the same entries again.
        logger.exception("the anomaly scan after sealing failed")


# --- sealing after a commit ---------------------------------------------------------------------------------------


def schedule_seal(entry_ids: Iterable[int], using: str) -> None:
    """Seal ``entry_ids`` once their transaction commits (at once in autocommit mode).

    The ids are collected on the connection, so a transaction that records many entries seals them in one batch:
    the first callback takes them all, the others find nothing to do. Ids of a rolled-back transaction stay in the
    list and are skipped by the next batch, since they have no entry.
    """
    connection = connections[using]
    connection.__dict__.setdefault(_PENDING_ATTR, []).extend(entry_ids)

    def seal_after_commit() -> None:
        _seal_scheduled(using)

    # robust: a sealer failure is logged, not raised into a request whose change already committed; the entry
    # stays unsealed until the next run or `audit_seal`, and `audit_verify` reports it after the grace period.
    transaction.on_commit(seal_after_commit, using=using, robust=True)


def _seal_scheduled(using: str) -> None:
    connection = connections[using]
    ids = connection.__dict__.get(_PENDING_ATTR)
    if not ids:
        return
    connection.__dict__[_PENDING_ATTR] = []
    seal_committed(ids, using=using)


def seals_in_background(using: str) -> bool:
    """Whether entries written on ``using`` go to the background sealer (``AUDIT_SEALING``; PostgreSQL only)."""
    return conf.sealing_mode() == "background" and _vendor(using) == "postgresql"


@functools.cache
def _vendor(using: str) -> str:
    # Asked on every write; a database alias keeps its backend while the process runs.
    return connections[using].vendor


def schedule_seal_of_stored(entries: Sequence[AuditLog], using: str, sent: Sequence[SentEntry | None]) -> None:
    """Seal ``entries``, as stored (``audit.writing.insert_entries``, which returned ``sent``), once their
    transaction commits.

    With background sealing they are handed to the sealer thread with their ids after the commit, and a
    rolled-back transaction (or savepoint) drops the hand-over with its other commit callbacks. The thread takes
    the digests of the entries the database stored as sent, a batch at a time; the others' digests are taken now,
    from the values the INSERT returned. Otherwise as ``schedule_seal``.
    """
    if not seals_in_background(using):
        schedule_seal([entry.pk for entry in entries], using)
        return
    handed = [
        (entry.pk, digest_of(entry) if as_sent is None else as_sent)
        for entry, as_sent in zip(entries, sent, strict=True)
    ]

    def hand_over() -> None:
        background_sealer(using).submit(handed)

    transaction.on_commit(hand_over, using=using, robust=True)


def digest_of_sent(entry: SentEntry) -> str:
    return entry_digest(entry.salt, entry.committed_fields(), entry.personal_commitments())


def _with_digests(handed: list[tuple[int, str | SentEntry]]) -> list[tuple[int, str]]:
    # Here rather than in the writer: taken one after another, a batch's digests cost less than half of the CPU each
    # cost between a writer's round trips to the database (py-spy and thread CPU time under bench/append.py).
    pairs = []
    for pk, source in handed:
        try:
            pairs.append((pk, source if isinstance(source, str) else digest_of_sent(source)))
        except Exception:
            # The recorder refuses what cannot be hashed; should an entry get through, it must not hold up every
            # later batch. It stays unsealed, which ``audit_verify`` reports after the grace period.
            logger.exception("committed entry %d could not be hashed for its seal", pk)
    return pairs


def background_sealer(using: str = "default") -> BackgroundSealer:
    """This process's sealer thread for ``using``: it seals the entries it is given, and every
    ``AUDIT_ANOMALY_SCAN_EVERY_SECONDS`` runs the anomaly scan and, when due, the look-back (``_review``)."""
    return sealer_for(
        using,
        lambda: {
            "seal": lambda handed: seal_known(_with_digests(handed), using=using).contended,
            "review": lambda final: _review(using, final=final),
            "review_every": conf.anomaly_scan_every(),
            "linger": conf.seal_linger(),
            "enough": conf.seal_batch_size(),
        },
    )


def _review(using: str, *, final: bool = False) -> bool:
    """After background sealing: the anomaly scan, and the look-back for committed entries nobody handed over
    (their process ended between commit and hand-over), as ``seal_committed`` does after a commit. False when the
    scan was left to another process's sealer and has not yet reached this one's entries: ask again later. The
    ``final`` review of a sealer thread that ends leaves nothing to another process."""
    done = _scan_unless_another_process_does(using, final=final)
    if time.monotonic() - _last_lookback.get(using, float("-inf")) >= conf.seal_lookback_every().total_seconds():
        _seal([], using=using, full_scan=False, lookback=True, review=False)
        _last_lookback[using] = time.monotonic()
    return done


def _scan_unless_another_process_does(using: str, *, final: bool) -> bool:
    """The anomaly scan of the entries this process sealed, unless a scan already examined them or, but for the
    ``final`` review, another process made the last scan and is still at it; whether they are examined now.

    A scan examines what every process sealed: with a sealer thread in each of N processes, the one that made the
    last scan goes on scanning at each of its reviews, and one scan per interval serves them all, where each
    scanning on its own review made N. Its reviews come about ``AUDIT_ANOMALY_SCAN_EVERY_SECONDS`` apart, somewhat
    more under load; a last scan older than twice that means it stopped, and the next review takes over. (Sealers
    of several processes tend to review at the same moment, as they take turns at the sealer lock: a bound of one
    interval let them all find the last scan just old enough, and all scan.)
    """
    if not conf.anomaly_scan_after_seal():
        return True
    from .anomalies import scan_watermark  # imported here as in _scan_for_anomalies

    watermark, scanned_at = scan_watermark(using=using)
    if watermark >= _newest_sealed.get(using, -1):
        return True
    scanned_by_another = watermark != _own_scan_watermark.get(using)
    still_scanning = dt.timedelta(seconds=2 * conf.anomaly_scan_every())
    if not final and scanned_by_another and scanned_at is not None and timezone.now() - scanned_at < still_scanning:
        return False
    _scan_for_anomalies(using)
    return True


def _head_and_sealed(using: str, ids: list[int]) -> tuple[_Head | None, set[int]]:
    """The chain head and last digest, and which of ``ids`` are sealed already; read under the sealer lock."""
    q = _names(using)
    last_seal = f"FROM {q['seals']} ORDER BY {q['chain_index']} DESC LIMIT 1"
    last_digest = f"FROM {q['signed']} ORDER BY {q['chain_index']} DESC LIMIT 1"
    sql = (
        f"SELECT (SELECT {q['chain_index']} {last_seal}), (SELECT {q['hash']} {last_seal}), "
        f"(SELECT {q['chain_index']} {last_digest}), (SELECT {q['signed_at']} {last_digest}), "
        f"ARRAY(SELECT {q['entry_id']} FROM {q['seals']} WHERE {q['entry_id']} = ANY(%s))"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [ids])
        head_index, head_hash, digest_index, signed_at, sealed = cursor.fetchone()
    head = None if head_index is None else _Head(head_index, head_hash, digest_index, _aware(signed_at))
    return head, set(sealed)


@dataclass(frozen=True)
class KnownSealed:
    count: int  # entries sealed (those another sealer took meanwhile are left out)
    contended: bool  # whether another sealer held the lock when this batch asked for it


def seal_known(pairs: list[tuple[int, str]], *, using: str) -> KnownSealed:
    """Seal committed entries whose digests the writer computed from the stored row: no entry is read.

    PostgreSQL (background sealing). Under the sealer lock, as every sealer, in one transaction; entries that
    another sealer took meanwhile (a look-back, ``audit_seal``) are left out.
    """
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            # Tried first, so that the sealer thread learns whether sealers of other processes compete with it.
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
            contended = not cursor.fetchone()[0]
            if contended:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
        # A statement of its own: one that also waited for the lock would read the chain as of before the wait.
        head, sealed = _head_and_sealed(using, [pk for pk, _ in pairs])
        rows: list[SealRow] = []
        next_index = head.chain_index + 1 if head else 0
        prev_hash = head.hash if head else GENESIS_HASH
        for pk, digest in pairs:
            if pk in sealed:
                continue
            sealed.add(pk)
            hash_ = chain_hash(prev_hash, digest)
            rows.append((next_index, pk, digest, prev_hash, hash_))
            next_index, prev_hash = next_index + 1, hash_
        _insert_seals(using, rows)
    if rows:
        after = _Head(
            next_index - 1, prev_hash, head.digest_index if head else None, head.digest_signed_at if head else None
        )
        # What follows every sealed batch, but the anomaly scan: the sealer thread's review runs that.
        _after_sealing(len(rows), after, using, review=False)
    return KnownSealed(len(rows), contended)


def seal_committed(ids: list[int], *, using: str = "default", review: bool = True) -> None:
    """Seal the entries a transaction just committed; returns once every committed entry of ``ids`` is sealed.

    Every ``AUDIT_SEAL_LOOKBACK_EVERY_SECONDS`` the batch also looks back over the recent chain positions for
    entries that committed out of order and whose own sealer failed (``seal_pending`` always does). Without
    ``review``, no anomaly scan follows (the caller schedules it).
    """
    if not ids:
        return
    lookback = time.monotonic() - _last_lookback.get(using, float("-inf")) >= conf.seal_lookback_every().total_seconds()
    if _can_skip_the_queue(using):
        _seal_without_queueing(ids, using=using, lookback=lookback, review=review)
    else:
        _seal(ids, using=using, full_scan=False, lookback=lookback, review=review)
    if lookback:
        _last_lookback[using] = time.monotonic()


def _can_skip_the_queue(using: str) -> bool:
    """PostgreSQL, in autocommit: a shared lock taken there ends with its statement, so waiting takes no lock."""
    connection = connections[using]
    return connection.vendor == "postgresql" and connection.get_autocommit() and not connection.in_atomic_block


def _seal_without_queueing(ids: list[int], *, using: str, lookback: bool, review: bool) -> None:
    """PostgreSQL after a commit: seal ``ids`` (and whatever else waits) without queueing for the lock.

    Each round is a transaction that tries the sealer lock. Without it: roll back, wait until the holder is done
    without taking the lock (a shared lock, released at once in autocommit), and look whether any of ``ids`` is
    still unsealed: the holder's batch took every entry committed before it read, so usually none is; if one is
    (the holder read before we committed), start again. With it: seal a batch, as ``seal_pending`` does.
    """
    connection = connections[using]
    limit = conf.seal_batch_size()
    check_sql, check_params = _unsealed_sql(using, ids)
    total = 0
    head: _Head | None = None
    attempts = 0
    while True:
        try:
            with transaction.atomic(using=using):
                window = _take_lock_and_window(using, wait=False, lookback=lookback)
                locked = window is not None
                if locked:
                    batch = _select_unsealed(using, entry_ids=ids, window=window, after_id=None, limit=limit)
                    rows, batch_head = _chain(batch)
                    _insert_seals(using, rows)
        except IntegrityError:
            # Only if a sealer bypassed the lock: as in _seal, read the new head and go on.
            attempts += 1
            if attempts > 5:
                raise
            continue
        if locked:
            total += len(rows)
            head = batch_head or head
            if len(rows) < limit:
                break
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [SEALER_LOCK_KEY])
            cursor.execute(check_sql, check_params)
            if not cursor.fetchone()[0]:
                break
    _after_sealing(total, head, using, review=review)
