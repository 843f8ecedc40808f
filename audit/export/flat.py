"""Plain exports of entries chosen in the console: CSV for a spreadsheet, JSON for a program.

Unlike the bundle (``bundle.py``) they carry no proof; they are a working copy for an officer. Streamed in chunks,
so "all matching" over millions of rows keeps memory flat, and recorded as one AUDIT.EXPORT entry before the first
byte goes out: a download that is cut off still left its trace. Never the salt.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import Count, Max, Min, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..actions import AuditAction
from ..hashing import COMMITTED_FIELDS, canonical_value
from ..models import AuditLog
from ..privacy import revealed, subjects_in
from ..services import record
from .bundle import ExportError
from .spreadsheet import csv_cell

Format = Literal["csv", "json"]
# The committed fields (the salt is none of them) and where the entry sits in the hash chain, if sealed yet.
COLUMNS: tuple[str, ...] = (*COMMITTED_FIELDS, "chain_index")
CHUNK_ROWS = 500
CONTENT_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


@dataclass(frozen=True)
class ExportSummary:
    count: int
    first_id: int
    last_id: int


def entry_values(entry: AuditLog) -> dict[str, Any]:
    """One entry as plain JSON values; times as the UTC ISO 8601 text its digest covers (the bundle's form too)."""
    values = {name: canonical_value(getattr(entry, name)) for name in COMMITTED_FIELDS}
    seal = getattr(entry, "seal", None)
    values["chain_index"] = seal.chain_index if seal is not None else None
    return values


class _Line:
    """csv.writer writes into this; the rows come out as text."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def drain(self) -> bytes:
        data = "".join(self.parts).encode("utf-8")
        self.parts.clear()
        return data


def _rows(entries: QuerySet[AuditLog]) -> Iterator[AuditLog]:
    # A server-side cursor on PostgreSQL: memory stays flat however many rows; keys are read a chunk at a time.
    return revealed(entries.iterator(chunk_size=2000), chunk=CHUNK_ROWS)


def csv_chunks(entries: QuerySet[AuditLog]) -> Iterator[bytes]:
    line = _Line()
    writer = csv.writer(line)
    writer.writerow(COLUMNS)
    for count, entry in enumerate(_rows(entries), 1):
        values = entry_values(entry)
        writer.writerow([csv_cell(values[column]) for column in COLUMNS])
        if count % CHUNK_ROWS == 0:
            yield line.drain()
    yield line.drain()


def json_chunks(entries: QuerySet[AuditLog]) -> Iterator[bytes]:
    """A JSON array, one entry per line. ASCII only: every control or non-ASCII character is a JSON escape, so the
    file cannot drive a terminal or a log viewer, and parses back to exactly the stored values."""
    parts = ["["]
    for count, entry in enumerate(_rows(entries), 1):
        parts.append(("\n" if count == 1 else ",\n") + json.dumps(entry_values(entry), sort_keys=True))
        if count % CHUNK_ROWS == 0:
            yield "".join(parts).encode("ascii")
            parts.clear()
    parts.append("\n]\n")
    yield "".join(parts).encode("ascii")


def summarise(entries: QuerySet[AuditLog]) -> ExportSummary:
    """Count and id range of ``entries`` in one query. Raises ExportError when there is nothing to export."""
    found = entries.order_by().select_related(None).aggregate(count=Count("pk"), first=Min("pk"), last=Max("pk"))
    if not found["count"]:
        raise ExportError("Nothing to export: no audit entry matches the selection.")
    return ExportSummary(count=found["count"], first_id=found["first"], last_id=found["last"])


def export_entries(
    entries: QuerySet[AuditLog], *, fmt: Format, actor: Any, selection: dict[str, Any]
) -> StreamingHttpResponse:
    """Stream ``entries`` (oldest first) as CSV or JSON and record the export as one AUDIT.EXPORT entry.

    ``selection`` says in the entry how the rows were chosen (e.g. ``{"ids": "selected"}``). Raises ExportError
    before anything is recorded or sent when ``entries`` is empty.
    """
    if fmt not in CONTENT_TYPES:
        raise ExportError(f"Unknown export format {fmt!r}.")
    summary = summarise(entries)
    # The trail only grows: bounded by the last id counted, the file holds exactly the rows the entry records,
    # even if new entries match while "all matching" downloads.
    rows = entries.filter(pk__lte=summary.last_id).select_related("seal").order_by("id")
    record(
        AuditAction.AUDIT_EXPORT,
        entity="AuditLog",
        meta={
            "format": fmt,
            "count": summary.count,
            "id_range": [summary.first_id, summary.last_id],
            "selection": selection,
            "subjects": subjects_in(rows),
            "via": "admin",
        },
        actor=actor,
    )
    chunks = csv_chunks(rows) if fmt == "csv" else json_chunks(rows)
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="audit-entries-{timezone.now():%Y%m%dT%H%M%SZ}.{fmt}"'
    return response
