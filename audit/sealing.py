"""Sealing: appending committed entries to the hash chain.

Writers never touch the chain. After their transaction commits, the sealer takes the entries that have no seal
yet and appends them in one batch, under a lock that lets one sealer run at a time: two sealers would link two
entries to the same ``prev_hash``. The unique chain index and the unique entry of the seal table make a double
seal impossible even if that lock were bypassed.
"""

import logging
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Exists, Min, OuterRef, Q

from . import conf
from .digests import make_digest_if_due
from .hashing import COMMITTED_FIELDS, GENESIS_HASH, chain_hash, entry_digest
from .models import AuditLog, Seal

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key: the ASCII of "audt".
SEALER_LOCK_KEY = 0x61756474
_PENDING_ATTR = "audit_unsealed_ids"


def committed_fields(entry: AuditLog) -> dict[str, Any]:
    """The values an entry's digest covers, as stored."""
    return {name: getattr(entry, name) for name in COMMITTED_FIELDS}


def digest_of(entry: AuditLog) -> str:
    return entry_digest(bytes(entry.salt), committed_fields(entry))


def _take_sealer_lock(using: str) -> None:
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
    # SQLite: the write lock taken at BEGIN (transaction_mode IMMEDIATE) already admits one writer at a time.


def _lookback_floor(using: str, head_index: int) -> int:
    """The lowest entry id among the recent chain positions: entries below it that are still unsealed
    committed very late and are sealed by the ids their transaction reported, or by ``audit_seal --full``."""
    recent = Seal.objects.using(using).filter(chain_index__gt=head_index - conf.seal_lookback())
    return recent.aggregate(floor=Min("entry_id"))["floor"] or 0


def _seal_batch(
    *, using: str, entry_ids: list[int], full_scan: bool, after_id: int | None, limit: int
) -> tuple[int, int | None]:
    """Seal up to ``limit`` unsealed entries with ids above ``after_id``; returns (how many, the last id seen)."""
    with transaction.atomic(using=using):
        _take_sealer_lock(using)
        head = Seal.objects.using(using).order_by("-chain_index").values("chain_index", "hash").first()
        next_index = head["chain_index"] + 1 if head else 0
        prev_hash = head["hash"] if head else GENESIS_HASH
        unsealed = AuditLog.objects.using(using).filter(~Exists(Seal.objects.filter(entry_id=OuterRef("pk"))))
        if after_id is not None:
            unsealed = unsealed.filter(id__gt=after_id)
        if not full_scan and head:
            recent = Q(id__gte=_lookback_floor(using, head["chain_index"]))
            unsealed = unsealed.filter(recent | Q(id__in=entry_ids) if entry_ids else recent)
        seals = []
        last_id = after_id
        for entry in unsealed.order_by("id")[:limit]:
            digest = digest_of(entry)
            hash_ = chain_hash(prev_hash, digest)
            seals.append(
                Seal(chain_index=next_index, entry_id=entry.pk, digest=digest, prev_hash=prev_hash, hash=hash_)
            )
            next_index += 1
            prev_hash = hash_
            last_id = entry.pk
        Seal.objects.using(using).bulk_create(seals)
        return len(seals), last_id


def seal_pending(*, entry_ids: Iterable[int] = (), full_scan: bool = False, using: str = "default") -> int:
    """Seal every committed entry that has no seal yet; returns how many were sealed.

    ``entry_ids`` are entries a transaction just committed: they are sealed even when they committed so late that
    they sit below the look-back window. ``full_scan`` looks at the whole table (recovery, ``audit_seal --full``).
    Batches walk up the ids, so each row is looked at once however many batches it takes.
    """
    ids = list(entry_ids)
    limit = conf.seal_batch_size()
    total = 0
    after_id: int | None = None
    attempts = 0
    while True:
        try:
            sealed, after_id = _seal_batch(
                using=using, entry_ids=ids, full_scan=full_scan, after_id=after_id, limit=limit
            )
        except IntegrityError:
            # Only reachable when a second sealer raced past the lock (e.g. two SQLite processes with
            # deferred transactions): the other one won this position, so read the new head and go on.
            attempts += 1
            if attempts > 5:
                raise
            continue
        total += sealed
        if sealed < limit:
            break
    if total:
        make_digest_if_due(using=using)
    return total


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
    seal_pending(entry_ids=ids, using=using)
