"""Events recorded by other systems through the API, with idempotent retries."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from .hashing import canonical_json
from .models import AuditLog, IdempotencyRecord
from .services import EventSpec, record_many


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class IngestResult:
    entries: list[AuditLog]
    replayed: bool


def fingerprint(body: Any) -> str:
    """SHA-256 of the body's canonical JSON: the same request retried has the same print whatever its spacing."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _replay(previous: IdempotencyRecord, body_print: str) -> IngestResult:
    if previous.fingerprint != body_print:
        raise IdempotencyConflict(f"Idempotency-Key {previous.key!r} was already used with a different request body")
    entries = AuditLog.objects.select_related("seal").in_bulk(previous.entry_ids)
    return IngestResult(entries=[entries[pk] for pk in previous.entry_ids if pk in entries], replayed=True)


def ingest_events(
    *,
    source: Any,
    events: Sequence[Mapping[str, Any]],
    idempotency_key: str | None,
    body_print: str,
) -> IngestResult:
    """Record ``events`` for the service account ``source`` in one transaction: all of them or none.

    With an ``idempotency_key``, a retry of the same body returns the entries of the first call instead of
    recording them again; the key is unique per source in the database, so concurrent retries cannot both insert.
    """
    if idempotency_key:
        previous = IdempotencyRecord.objects.filter(source_id=source.pk, key=idempotency_key).first()
        if previous is not None:
            return _replay(previous, body_print)
    try:
        with transaction.atomic():
            claim = None
            if idempotency_key:
                # The key is claimed first: a concurrent duplicate waits here and fails before writing anything.
                claim = IdempotencyRecord.objects.create(
                    source_id=source.pk, key=idempotency_key, fingerprint=body_print, entry_ids=[]
                )
            entries = record_many([EventSpec(**event) for event in events], actor=source)
            if claim is not None:
                claim.entry_ids = [entry.pk for entry in entries]
                claim.save(update_fields=["entry_ids"])
    except IntegrityError:
        if not idempotency_key:
            raise
        return _replay(IdempotencyRecord.objects.get(source_id=source.pk, key=idempotency_key), body_print)
    return IngestResult(entries=entries, replayed=False)
