"""Retention: old entries go to signed segments and leave the database through the one path the triggers allow.

The steps, each in the trail:

1. ``request_archive`` (AUDIT.ARCHIVE.REQUEST): an officer asks for the entries before a month start to go, with a
   reason. Anything younger than ``AUDIT_RETENTION_DAYS`` is refused.
2. ``approve_archive`` (AUDIT.ARCHIVE.APPROVE): another officer approves. The requester cannot, superuser or not
   (NIST AU-9(5) dual authorization); a check constraint and the triggers refuse it as well.
3. ``execute_archive`` (AUDIT.ARCHIVE, ``manage.py audit_archive``): writes each month as a signed segment
   (``audit.segments``), checks what it wrote with the public key, and only then, in one transaction, stores a
   signed checkpoint and removes the entries and their seals with the guard the triggers look for.

The chain in the database continues from the checkpoint, so an archive always removes a prefix of the chain: the
positions from the last checkpoint up to the last one before the first entry created at or after the cutoff.
Entries that were sealed later than a younger one (a late commit) stay for the next archive. A legal hold stops the
archive before the month of the first entry it covers, and the output names it.
"""

import contextlib
import datetime as dt
import fcntl
import gzip
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connections, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from . import conf, partitions, segments, signing
from .actions import AuditAction
from .hashing import COMMITTED_FIELDS, GENESIS_HASH, canonical_json, canonical_value, chain_hash
from .holds import first_covered
from .models import AuditLog, Seal, SignedDigest
from .retention_models import ArchiveCheckpoint, ArchiveGuard, ArchiveRequest, LegalHold
from .sealing import committed_fields, digest_of, seal_pending
from .services import Outcome, audited, record

logger = logging.getLogger(__name__)
Status = ArchiveRequest.Status
REQUEST_PERMISSION = "audit.request_archive"
APPROVE_PERMISSION = "audit.approve_archive"
# pg_advisory_xact_lock key: the ASCII of "arch"; two archives would both continue from the same checkpoint.
ARCHIVE_LOCK_KEY = 0x61726368
CHUNK = 2000
# What a file is called while it is written; removed if the archive fails, never read as a segment.
PARTIAL_SUFFIX = ".partial"


class ArchiveRefused(Exception):
    """The archive does not run; the message says why in one line (no approval, a legal hold, the retention)."""

    audit_outcome = Outcome.DENIED

    def __init__(self, message: str, **meta: Any) -> None:
        super().__init__(message)
        self.meta = meta


class ArchiveFailed(Exception):
    """The archive could not complete (a broken chain, a segment that does not verify); nothing was removed."""


# --- dates ---------------------------------------------------------------------------------------------------------


def month_floor(value: dt.date | dt.datetime) -> dt.datetime:
    """The UTC month start at or before ``value``: archives move whole months."""
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise ValidationError({"before": "A time without a time zone is ambiguous; audit times are UTC."})
        value = value.astimezone(dt.UTC)
    return dt.datetime(value.year, value.month, 1, tzinfo=dt.UTC)


def retention_limit(now: dt.datetime | None = None) -> dt.datetime:
    """Entries created at or after this time are younger than the retention and stay."""
    return (now or timezone.now()) - dt.timedelta(days=conf.retention_days())


def default_before(now: dt.datetime | None = None) -> dt.datetime:
    """``--before`` when none is given: the month start at or before now minus the retention."""
    return month_floor(retention_limit(now))


def check_retention(before: dt.datetime, now: dt.datetime | None = None) -> None:
    limit = retention_limit(now)
    if before > limit:
        raise ValidationError(
            {
                "before": f"Entries younger than {conf.retention_days()} days (AUDIT_RETENTION_DAYS) stay in the "
                f"database: the cutoff must be {month_floor(limit):%Y-%m-%d} or earlier, not {before:%Y-%m-%d}."
            }
        )


# --- request and approval ------------------------------------------------------------------------------------------


def _require(actor: Any, permission: str, what: str) -> None:
    # No system actor here: dual authorization needs two people who can be named.
    if actor is None or not actor.is_authenticated:
        raise PermissionDenied(f"{what} needs a named officer, not the system")
    if not actor.has_perm(permission):
        raise PermissionDenied(f"{actor.get_username()} does not have the permission {permission}")


def request_snapshot(request: ArchiveRequest) -> dict[str, Any]:
    values = {
        "before": request.before,
        "reason": request.reason,
        "status": request.status,
        "requested_by": request.requested_by_label,
        "approved_by": request.approved_by_label or None,
        "approved_at": request.approved_at,
        "executed_at": request.executed_at,
        "entries_archived": request.entries_archived,
    }
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


@audited(AuditAction.AUDIT_ARCHIVE_REQUEST, entity="ArchiveRequest", snapshot_with=request_snapshot)
def request_archive(*, actor: Any, before: dt.date | dt.datetime, reason: str) -> ArchiveRequest:
    """Ask for the entries created before ``before`` (rounded down to a month start, UTC) to be archived.

    Raises PermissionDenied without ``audit.request_archive``, ValidationError without a reason or when the cutoff
    is younger than the retention.
    """
    _require(actor, REQUEST_PERMISSION, "An archive request")
    if not reason.strip():
        raise ValidationError({"reason": "An archive request says why."})
    cutoff = month_floor(before)
    check_retention(cutoff)
    return ArchiveRequest.objects.create(
        before=cutoff, reason=reason.strip(), requested_by=actor, requested_by_label=actor.get_username()
    )


def _locked_request(*, request_id: int, **_: Any) -> ArchiveRequest:
    return ArchiveRequest.objects.select_for_update().get(pk=request_id)


@audited(
    AuditAction.AUDIT_ARCHIVE_APPROVE,
    entity="ArchiveRequest",
    pre_fetch=_locked_request,
    snapshot_with=request_snapshot,
)
def approve_archive(*, actor: Any, request_id: int, reason: str = "") -> ArchiveRequest:
    """Approve another officer's pending request (NIST AU-9(5)): never one's own, whatever one's rights.

    Raises PermissionDenied without ``audit.approve_archive`` or for one's own request, ValidationError when the
    request is not pending.
    """
    _require(actor, APPROVE_PERMISSION, "An archive approval")
    request = ArchiveRequest.objects.get(pk=request_id)
    if request.requested_by_id == actor.pk:
        raise PermissionDenied(
            f"{actor.get_username()} requested archive request #{request.pk} and cannot approve it: removing audit "
            "entries needs a second officer (NIST AU-9(5) dual authorization)"
        )
    if request.status != Status.PENDING:
        raise ValidationError(
            {"status": f"Archive request #{request.pk} is {request.status}; only a pending one can be approved."}
        )
    request.status = Status.APPROVED
    request.approved_by = actor
    request.approved_by_label = actor.get_username()
    request.approved_at = timezone.now()
    request.save()
    return request


# --- planning ------------------------------------------------------------------------------------------------------


@dataclass
class SegmentPlan:
    month: str
    first_index: int
    last_index: int
    first_created_at: dt.datetime
    last_created_at: dt.datetime

    @property
    def count(self) -> int:
        return self.last_index - self.first_index + 1

    @property
    def basename(self) -> str:
        return segments.basename(self.month, self.first_index, self.last_index)


@dataclass
class Blocked:
    hold: LegalHold
    chain_index: int
    entry_id: int
    month: str

    def line(self) -> str:
        return (
            f"legal hold #{self.hold.pk} ({self.hold.describe()}; reason: {self.hold.reason}) covers entry "
            f"{self.entry_id} (chain #{self.chain_index}) of {self.month}"
        )


@dataclass
class Plan:
    request: ArchiveRequest
    start_index: int
    start_prev_hash: str
    previous: ArchiveCheckpoint | None
    segments: list[SegmentPlan] = field(default_factory=list)
    blocked: Blocked | None = None

    @property
    def checkpoint_index(self) -> int:
        return self.segments[-1].last_index

    @property
    def count(self) -> int:
        return sum(segment.count for segment in self.segments)


def latest_checkpoint() -> ArchiveCheckpoint | None:
    return ArchiveCheckpoint.objects.order_by("-chain_index").first()


def _first_position_at_or_after(start: int, before: dt.datetime) -> int | None:
    younger = AuditLog.objects.filter(pk=OuterRef("entry_id"), created_at__gte=before)
    return (
        Seal.objects.filter(chain_index__gte=start)
        .filter(Exists(younger))
        .order_by("chain_index")
        .values_list("chain_index", flat=True)
        .first()
    )


def _positions_with_times(first: int, last: int) -> Iterator[tuple[int, int, dt.datetime | None]]:
    created = AuditLog.objects.filter(pk=OuterRef("entry_id")).values("created_at")[:1]
    after = first - 1
    while after < last:
        chunk = list(
            Seal.objects.filter(chain_index__gt=after, chain_index__lte=last)
            .annotate(created=Subquery(created))
            .order_by("chain_index")
            .values_list("chain_index", "entry_id", "created")[:CHUNK]
        )
        if not chunk:
            return
        yield from chunk
        after = chunk[-1][0]


def _month(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m}"


def plan_archive(request: ArchiveRequest) -> Plan:
    """The chain positions an archive of ``request`` removes, split into month segments, and what stops it.

    Raises ArchiveFailed when the chain is broken in the range (it is archived as it was sealed, or not at all).
    """
    previous = latest_checkpoint()
    start = previous.chain_index + 1 if previous else 0
    plan = Plan(
        request=request,
        start_index=start,
        start_prev_hash=previous.head_hash if previous else GENESIS_HASH,
        previous=previous,
    )
    first_younger = _first_position_at_or_after(start, request.before)
    if first_younger is None or first_younger <= start:
        # None: nothing sealed is younger than the cutoff, not even this request's own entries; archiving up to the
        # head would leave the sealer no chain to continue, so wait until they are sealed.
        return plan
    last = first_younger - 1
    expected = start
    current: SegmentPlan | None = None
    for chain_index, entry_id, created in _positions_with_times(start, last):
        if chain_index != expected:
            raise ArchiveFailed(f"the chain is broken at position {expected}; run `manage.py audit_verify`")
        if created is None:
            raise ArchiveFailed(f"entry {entry_id} (chain #{chain_index}) is missing; run `manage.py audit_verify`")
        month = _month(created)
        # A new segment when the month moves on; an entry sealed after a younger one stays in the current segment.
        if current is None or month > current.month:
            current = SegmentPlan(month, chain_index, chain_index, created, created)
            plan.segments.append(current)
        current.last_index = chain_index
        current.first_created_at = min(current.first_created_at, created)
        current.last_created_at = max(current.last_created_at, created)
        expected += 1
    if expected != last + 1:
        raise ArchiveFailed(f"the chain is broken at position {expected}; run `manage.py audit_verify`")
    _stop_at_holds(plan)
    return plan


def _stop_at_holds(plan: Plan) -> None:
    if not plan.segments:
        return
    covered = first_covered(plan.start_index, plan.checkpoint_index)
    if covered is None:
        return
    hold, chain_index, entry_id = covered
    for number, segment in enumerate(plan.segments):
        if segment.first_index <= chain_index <= segment.last_index:
            plan.blocked = Blocked(hold, chain_index, entry_id, segment.month)
            del plan.segments[number:]
            return


# --- writing segments ----------------------------------------------------------------------------------------------


def _positions(first: int, last: int) -> Iterator[tuple[Seal, AuditLog | None]]:
    after = first - 1
    while after < last:
        seals = list(Seal.objects.filter(chain_index__gt=after, chain_index__lte=last).order_by("chain_index")[:CHUNK])
        if not seals:
            return
        entries = AuditLog.objects.in_bulk([seal.entry_id for seal in seals])
        for seal in seals:
            yield seal, entries.get(seal.entry_id)
        after = seals[-1].chain_index


def _line(seal: Seal, entry: AuditLog) -> bytes:
    values = {name: canonical_value(value) for name, value in committed_fields(entry).items()}
    # An encrypted entry goes as stored: its ciphertext (the subject's key stays in the database, so an erasure
    # reaches archived entries too) and the commitments that stand in for its personal columns.
    personal = (
        {"personal": bytes(entry.personal).hex(), "personal_commitments": entry.personal_commitments}
        if entry.personal is not None
        else {}
    )
    return (
        canonical_json(
            {
                "chain_index": seal.chain_index,
                "entry": values,
                **personal,
                "salt": bytes(entry.salt).hex(),
                "seal": {
                    "digest": seal.digest,
                    "prev_hash": seal.prev_hash,
                    "hash": seal.hash,
                    "sealed_at": seal.sealed_at,
                },
            }
        )
        + b"\n"
    )


@dataclass
class WrittenSegment:
    plan: SegmentPlan
    data: Path
    manifest: Path
    start_prev_hash: str
    head_hash: str
    sha256: str = ""
    size: int = 0

    def listing(self) -> dict[str, Any]:
        """How the checkpoint and the AUDIT.ARCHIVE entry name the segment."""
        return {
            "name": self.data.name,
            "month": self.plan.month,
            "first_index": self.plan.first_index,
            "last_index": self.plan.last_index,
            "sha256": self.sha256,
        }


def _write_data(
    plan: SegmentPlan, prev_hash: str, directory: Path, progress: Callable[[int], None] | None
) -> WrittenSegment:
    """Write a segment's lines, checking each entry against its seal and each seal against the one before."""
    data = directory / f"{plan.basename}{segments.DATA_SUFFIX}"
    partial = _partial(data)
    count = 0
    start_prev_hash = prev_hash
    with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        for seal, entry in _positions(plan.first_index, plan.last_index):
            if entry is None:
                raise ArchiveFailed(
                    f"entry {seal.entry_id} (chain #{seal.chain_index}) is missing; run `manage.py audit_verify`"
                )
            if (
                digest_of(entry) != seal.digest
                or seal.prev_hash != prev_hash
                or chain_hash(prev_hash, seal.digest) != seal.hash
            ):
                raise ArchiveFailed(
                    f"entry {entry.pk} (chain #{seal.chain_index}) does not match the chain; "
                    "run `manage.py audit_verify`"
                )
            out.write(_line(seal, entry))
            prev_hash = seal.hash
            count += 1
            if progress is not None and count % CHUNK == 0:
                progress(CHUNK)
    if progress is not None:
        progress(count % CHUNK)
    if count != plan.count:
        raise ArchiveFailed(
            f"chain #{plan.first_index}..#{plan.last_index}: {count} positions found, {plan.count} expected"
        )
    _fsync(partial)
    os.replace(partial, data)
    segment = WrittenSegment(
        plan=plan,
        data=data,
        manifest=directory / f"{plan.basename}{segments.MANIFEST_SUFFIX}",
        start_prev_hash=start_prev_hash,
        head_hash=prev_hash,
    )
    digest = hashlib.sha256()
    with data.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            segment.size += len(block)
    segment.sha256 = digest.hexdigest()
    return segment


def _signed_digests(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {
            "chain_index": digest.chain_index,
            "head_hash": digest.head_hash,
            "signed_at": canonical_value(digest.signed_at),
            "prev_signature": digest.prev_signature,
            "signature": digest.signature,
            "key_fingerprint": digest.key_fingerprint,
        }
        for digest in SignedDigest.objects.filter(chain_index__gte=first, chain_index__lte=last).order_by("chain_index")
    ]


def _request_document(request: ArchiveRequest) -> dict[str, Any]:
    """The request and its two officers, as the segments carry them: the evidence of dual authorization."""
    return {
        "id": request.pk,
        "before": canonical_value(request.before),
        "reason": request.reason,
        "requested_by": request.requested_by_label,
        "requested_at": canonical_value(request.requested_at),
        "approved_by": request.approved_by_label,
        "approved_at": canonical_value(request.approved_at) if request.approved_at else None,
    }


def _manifest(
    segment: WrittenSegment, request: ArchiveRequest, created_at: dt.datetime, checkpoint: dict | None
) -> bytes:
    plan = segment.plan
    document: dict[str, Any] = {
        "format": segments.FORMAT,
        "created_at": canonical_value(created_at),
        "month": plan.month,
        "request": _request_document(request),
        "committed_fields": list(COMMITTED_FIELDS),
        "count": plan.count,
        "chain": {
            "first_index": plan.first_index,
            "last_index": plan.last_index,
            "start_prev_hash": segment.start_prev_hash,
            "head_hash": segment.head_hash,
        },
        "entries": {
            "first_created_at": canonical_value(plan.first_created_at),
            "last_created_at": canonical_value(plan.last_created_at),
        },
        "file": {"name": segment.data.name, "sha256": segment.sha256, "bytes": segment.size},
        "signed_digests": _signed_digests(plan.first_index, plan.last_index),
        "checkpoint": checkpoint,
    }
    signature, key_fingerprint = signing.sign(segments.manifest_statement(document))
    manifest = {**document, "signature": signature, "signature_key_fingerprint": key_fingerprint}
    return json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass
class CheckpointDraft:
    """The signed checkpoint, made before the removal so that the last manifest can carry it."""

    chain_index: int
    head_hash: str
    before: dt.datetime
    request_id: int
    segments: list[dict[str, Any]]
    created_at: dt.datetime
    prev_signature: str
    signature: str = ""
    key_fingerprint: str = ""

    def statement_fields(self) -> dict[str, Any]:
        return {
            "chain_index": self.chain_index,
            "head_hash": self.head_hash,
            "before": canonical_value(self.before),
            "request_id": self.request_id,
            "segments": self.segments,
            "created_at": canonical_value(self.created_at),
            "prev_signature": self.prev_signature,
        }

    def document(self) -> dict[str, Any]:
        return {**self.statement_fields(), "signature": self.signature, "key_fingerprint": self.key_fingerprint}


def _write_segments(
    plan: Plan, directory: Path, progress: Callable[[int], None] | None
) -> tuple[list[WrittenSegment], CheckpointDraft]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[WrittenSegment] = []
    try:
        prev_hash = plan.start_prev_hash
        for segment_plan in plan.segments:
            segment = _write_data(segment_plan, prev_hash, directory, progress)
            written.append(segment)
            prev_hash = segment.head_hash
        created_at = timezone.now()
        draft = CheckpointDraft(
            chain_index=plan.checkpoint_index,
            head_hash=prev_hash,
            before=plan.request.before,
            request_id=plan.request.pk,
            segments=[segment.listing() for segment in written],
            created_at=created_at,
            prev_signature=plan.previous.signature if plan.previous else "",
        )
        draft.signature, draft.key_fingerprint = signing.sign(segments.checkpoint_statement(**draft.statement_fields()))
        for number, segment in enumerate(written):
            last = number == len(written) - 1
            _write_atomically(
                segment.manifest, _manifest(segment, plan.request, created_at, draft.document() if last else None)
            )
        _fsync(directory)
    except BaseException:
        _remove(written, directory)
        raise
    return written, draft


def _partial(path: Path) -> Path:
    """Where a file is written before it gets its name: in the same directory, so the rename is atomic."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _write_atomically(path: Path, content: bytes) -> None:
    """A full disk or a crash part way leaves at most a ``.partial`` file, never a truncated manifest under the
    name a verifier looks for."""
    partial = _partial(path)
    try:
        with partial.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    """On disk before the rows go: a crash after the removal commits must not find the segment only in a cache."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """One archive at a time per directory, for its whole run: a second one would write the same file names, and
    its clean-up after a refusal would take the first one's segments with it."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".audit-archive.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ArchiveRefused(f"another archive is writing to {directory}; try again when it has finished") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(written: list[WrittenSegment], directory: Path) -> None:
    """Take back the files of an archive that did not complete: no segment may claim positions still in the table."""
    for segment in written:
        for path in (segment.data, segment.manifest):
            path.unlink(missing_ok=True)
    for partial in directory.glob(f"*{PARTIAL_SUFFIX}"):
        partial.unlink(missing_ok=True)


def _verify_written(written: list[WrittenSegment]) -> None:
    """Read back what was written and check it as a recipient would, with the public key alone."""
    key = signing.load_public_key()
    reports, joined = segments.verify_segments([segment.manifest for segment in written], key)
    problems = [f"{report.path.name}: {problem}" for report in reports for problem in report.problems] + joined
    if problems:
        raise ArchiveFailed("the segments written do not verify: " + "; ".join(problems))


# --- removal -------------------------------------------------------------------------------------------------------


def _lock(using: str) -> None:
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ARCHIVE_LOCK_KEY])
    # SQLite: the write lock taken at BEGIN (transaction_mode IMMEDIATE) already admits one writer at a time.


def _open_guard(request: ArchiveRequest, using: str) -> None:
    """The triggers' one way out, for this transaction only."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        token = secrets.token_hex(32)
        request.guard_sha256 = hashlib.sha256(token.encode("utf-8")).hexdigest()
        request.save(update_fields=["guard_sha256"])
        with connection.cursor() as cursor:
            # set_config(..., true) is SET LOCAL: it ends with the transaction, commit or rollback.
            cursor.execute("SELECT set_config('audit.archive', %s, true)", [token])
    else:
        ArchiveGuard.objects.using(using).create(request=request)


def _close_guard(request: ArchiveRequest, using: str) -> None:
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('audit.archive', '', true)")
        request.guard_sha256 = ""
    else:
        ArchiveGuard.objects.using(using).filter(request=request).delete()


def _remove_rows(plan: Plan, using: str) -> tuple[int, int]:
    """DELETE the archived entries, then their seals (the entries' trigger checks that their seal is in range).
    Raw SQL: the models refuse deletion, and this is the one path the triggers let through."""
    connection = connections[using]
    first, last = plan.start_index, plan.checkpoint_index
    with connection.cursor() as cursor:
        # created_at bounds the partitions PostgreSQL has to look at; by the plan, every entry in range is older.
        cursor.execute(
            "DELETE FROM audit_auditlog WHERE created_at < %s "
            "AND id IN (SELECT entry_id FROM audit_seal WHERE chain_index BETWEEN %s AND %s)",
            [connection.ops.adapt_datetimefield_value(plan.request.before), first, last],
        )
        entries = cursor.rowcount
        cursor.execute("DELETE FROM audit_seal WHERE chain_index BETWEEN %s AND %s", [first, last])
        seals = cursor.rowcount
    return entries, seals


def _remove_in_transaction(
    plan: Plan, draft: CheckpointDraft, written: list[WrittenSegment], using: str
) -> ArchiveRequest:
    with transaction.atomic(using=using):
        _lock(using)
        request = ArchiveRequest.objects.using(using).select_for_update().get(pk=plan.request.pk)
        _check_executable(request)
        latest = latest_checkpoint()
        if (latest.chain_index if latest else -1) != plan.start_index - 1:
            raise ArchiveRefused("another archive ran meanwhile; run this one again")
        covered = first_covered(plan.start_index, plan.checkpoint_index)
        if covered is not None:
            hold, chain_index, entry_id = covered
            raise ArchiveRefused(
                f"legal hold #{hold.pk} ({hold.describe()}) was placed meanwhile and covers entry {entry_id} "
                f"(chain #{chain_index}); run the archive again"
            )
        head = (
            Seal.objects.using(using).filter(chain_index=plan.checkpoint_index).values_list("hash", flat=True).first()
        )
        if head != draft.head_hash:
            raise ArchiveFailed(f"chain #{plan.checkpoint_index} changed while the segments were written")
        ArchiveCheckpoint.objects.using(using).create(
            chain_index=draft.chain_index,
            head_hash=draft.head_hash,
            before=draft.before,
            request_id=draft.request_id,
            segments=draft.segments,
            created_at=draft.created_at,
            prev_signature=draft.prev_signature,
            signature=draft.signature,
            key_fingerprint=draft.key_fingerprint,
        )
        request.status = Status.EXECUTING
        request.first_index = plan.start_index
        request.checkpoint_index = plan.checkpoint_index
        request.save(update_fields=["status", "first_index", "checkpoint_index"])
        _open_guard(request, using)
        entries, seals = _remove_rows(plan, using)
        _close_guard(request, using)
        if entries != plan.count or seals != plan.count:
            raise ArchiveFailed(f"{entries} entries and {seals} seals removed, {plan.count} of each expected")
        request.status = Status.EXECUTED
        request.executed_at = timezone.now()
        request.entries_archived = entries
        request.segments = draft.segments
        request.save()
        # In the same transaction: no removal without its record (fail closed).
        record(
            AuditAction.AUDIT_ARCHIVE,
            entity="ArchiveRequest",
            entity_id=request.pk,
            meta=_archive_meta(request, plan, draft, written),
            using=using,
        )
    return request


def _archive_meta(
    request: ArchiveRequest, plan: Plan, draft: CheckpointDraft, written: list[WrittenSegment]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "request": request.pk,
        "before": canonical_value(request.before),
        "requested_by": request.requested_by_label,
        "approved_by": request.approved_by_label,
        "entries": plan.count,
        "chain": {"first_index": plan.start_index, "checkpoint_index": draft.chain_index, "head_hash": draft.head_hash},
        "directory": str(written[0].data.parent),
        "segments": draft.segments,
    }
    if plan.blocked is not None:
        meta["stopped_by_hold"] = {
            "hold": plan.blocked.hold.pk,
            "entry_id": plan.blocked.entry_id,
            "chain_index": plan.blocked.chain_index,
            "month": plan.blocked.month,
        }
    return meta


# --- execution -----------------------------------------------------------------------------------------------------


@dataclass
class ArchiveResult:
    request: ArchiveRequest
    plan: Plan
    segments: list[WrittenSegment]
    checkpoint: CheckpointDraft
    dropped_partitions: list[str]

    @property
    def count(self) -> int:
        return self.plan.count


def _check_executable(request: ArchiveRequest) -> None:
    if request.status != Status.APPROVED or request.approved_by_id is None:
        raise ArchiveRefused(
            f"archive request #{request.pk} is {request.status}, not approved: a second officer approves it first "
            "(NIST AU-9(5))"
        )
    if request.approved_by_id == request.requested_by_id:
        raise ArchiveRefused(f"archive request #{request.pk} was approved by its own requester: refused (NIST AU-9(5))")
    try:
        check_retention(request.before)
    except ValidationError as exc:
        raise ArchiveRefused(" ".join(exc.message_dict["before"])) from exc


def find_request(*, request_id: int | None = None, before: dt.date | dt.datetime | None = None) -> ArchiveRequest:
    """The approved request to execute: by id, or the newest approved one for the cutoff ``before``."""
    if request_id is not None:
        request = ArchiveRequest.objects.filter(pk=request_id).first()
        if request is None:
            raise ArchiveRefused(f"no archive request #{request_id}")
        return request
    cutoff = month_floor(before or default_before())
    request = ArchiveRequest.objects.filter(before=cutoff, status=Status.APPROVED).order_by("-id").first()
    if request is None:
        raise ArchiveRefused(
            f"no approved archive request for the entries before {cutoff:%Y-%m-%d}: one officer requests it "
            "(`manage.py audit_archive_request`), another approves it (`manage.py audit_archive_approve`)"
        )
    return request


def _refuse(message: str, request: ArchiveRequest | None, **meta: Any) -> ArchiveRefused:
    """Record the refusal (an attempt to remove audit entries is worth a line of its own) and return the error."""
    record(
        AuditAction.AUDIT_ARCHIVE,
        entity="ArchiveRequest",
        entity_id=request.pk if request is not None else "",
        outcome=Outcome.DENIED,
        meta={"reason": message, **meta},
        independent=True,
    )
    return ArchiveRefused(message)


def execute_archive(
    *,
    request_id: int | None = None,
    before: dt.date | dt.datetime | None = None,
    directory: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    using: str = "default",
) -> ArchiveResult:
    """Archive what an approved request covers: write and verify the segments, then remove the rows.

    Raises ArchiveRefused (recorded as a denied AUDIT.ARCHIVE) without an approved request, when a legal hold
    covers the first month or there is nothing to archive; ArchiveFailed (recorded as a failure) when the chain in
    the range is broken or the segments do not verify. Nothing is removed then, and no segment file is left.
    """
    request = None
    try:
        request = find_request(request_id=request_id, before=before)
        _check_executable(request)
        try:
            signing.load_private_key()
            signing.load_public_key()
        except ImproperlyConfigured as exc:
            raise ArchiveRefused(f"segments and checkpoints are signed: {exc}") from exc
    except ArchiveRefused as exc:
        raise _refuse(str(exc), request) from exc
    target = Path(directory or conf.archive_dir())
    written: list[WrittenSegment] = []
    try:
        with _directory_lock(target):
            seal_pending(using=using)
            plan = plan_archive(request)
            if not plan.segments:
                if plan.blocked is not None:
                    raise ArchiveRefused(
                        f"nothing archived: {plan.blocked.line()}; release the hold or wait for it to end",
                        hold=plan.blocked.hold.pk,
                        entry_id=plan.blocked.entry_id,
                    )
                raise ArchiveRefused(f"nothing before {request.before:%Y-%m-%d} is left to archive")
            try:
                written, draft = _write_segments(plan, target, progress)
                _verify_written(written)
                request = _remove_in_transaction(plan, draft, written, using)
            except BaseException:
                _remove(written, target)
                raise
    except ArchiveRefused as exc:
        raise _refuse(str(exc), request, **exc.meta) from exc
    except Exception as exc:
        record(
            AuditAction.AUDIT_ARCHIVE,
            entity="ArchiveRequest",
            entity_id=request.pk,
            outcome=Outcome.FAILURE,
            meta={"reason": str(exc)[:500], "error": type(exc).__name__},
            independent=True,
        )
        raise
    try:
        dropped = partitions.drop_empty_partitions_before(connections[using], request.before)
    except DatabaseError:
        # The archive is complete; an emptied partition that stays is only a table too many.
        logger.exception("could not drop the partitions emptied by archive request #%s", request.pk)
        dropped = []
    return ArchiveResult(request=request, plan=plan, segments=written, checkpoint=draft, dropped_partitions=dropped)
