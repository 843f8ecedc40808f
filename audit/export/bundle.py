"""The export bundle: a ZIP streamed row by row, whose manifest is signed and whose proof lets a recipient check,
offline, that every released value is genuine and that nothing in the range was removed or reordered.

Members, in order: records.jsonl, records.csv, proof.jsonl, cover.pdf, VERIFY.txt, manifest.json (last: it holds
the SHA-256 of the others). The range runs from the first chain position in scope to the head of a signed digest,
so the recipient can recompute the chain up to a head the private key vouches for.
"""

import csv
import hashlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, Max, Min, OuterRef, QuerySet, Subquery
from django.utils import timezone

from .. import privacy, signing
from ..digests import make_digest
from ..hashing import COMMITTED_FIELDS, canonical_json, canonical_value
from ..models import AuditLog, Seal, SignedDigest
from ..sealing import committed_fields, seal_pending
from .records import (
    CSV_COLUMNS,
    applicable_rules,
    csv_row,
    proof_of_out_of_scope,
    proof_of_released,
    released_record,
)
from .rules import RedactionRule
from .verify_text import verify_instructions

FORMAT = "compliance-console-export/1"
CHUNK_ROWS = 2000


class ExportError(Exception):
    """The export cannot be made; the message says why (an empty scope, no signing key, a broken chain)."""


@dataclass(frozen=True)
class ExportScope:
    entries: QuerySet[AuditLog]
    rules: list[RedactionRule]
    filters: dict[str, Any]
    tracking_number: str | None = None


@dataclass
class BundleSummary:
    first_index: int
    last_index: int
    start_prev_hash: str
    head_hash: str
    digest: SignedDigest
    released: int = 0
    out_of_scope: int = 0
    fields_withheld: int = 0
    exemptions: Counter = field(default_factory=Counter)
    # The users whose data the released records show (``privacy.subjects_released``), for the AUDIT.EXPORT entry.
    subjects: set[int] = field(default_factory=set)


def plan(scope: ExportScope) -> BundleSummary:
    """The chain range of the export: from the first position in scope to the first signed head past the last.

    Raises ExportError when nothing in scope is sealed or the keys that sign the digest and the manifest are not
    configured: checked here, before anything is sent, not when the manifest is signed at the end of the stream.
    """
    seal_pending()
    bounds = Seal.objects.filter(entry_id__in=scope.entries.values("pk")).aggregate(
        first=Min("chain_index"), last=Max("chain_index")
    )
    if bounds["first"] is None:
        raise ExportError("Nothing to export: no audit entry matches the scope.")
    try:
        signing.load_private_key()
        signing.load_public_key()
    except ImproperlyConfigured as exc:
        raise ExportError(f"An export must be signed: {exc}") from exc
    digest = SignedDigest.objects.filter(chain_index__gte=bounds["last"]).order_by("chain_index").first()
    if digest is None:
        try:
            digest = make_digest()
        except signing.SigningKeyMissing as exc:
            raise ExportError(f"An export must end in a signed digest: {exc}") from exc
    start = Seal.objects.get(chain_index=bounds["first"])
    return BundleSummary(
        first_index=bounds["first"],
        last_index=digest.chain_index,
        start_prev_hash=start.prev_hash,
        head_hash=digest.head_hash,
        digest=digest,
    )


def _positions(summary: BundleSummary, scope: ExportScope) -> Iterator[Seal]:
    """Every chain position of the range with its entry, whether it is in scope, and whether its actor is staff."""
    user_model = get_user_model()
    staff = user_model.objects.filter(pk=OuterRef("entry__actor_id")).values("is_staff")[:1]
    positions = (
        Seal.objects.filter(chain_index__gte=summary.first_index, chain_index__lte=summary.last_index)
        .select_related("entry")
        .annotate(
            in_scope=Exists(scope.entries.filter(pk=OuterRef("entry_id"))),
            actor_is_staff=Subquery(staff),
        )
        .order_by("chain_index")
    )
    expected = summary.first_index
    # A server-side cursor on PostgreSQL: memory stays flat however long the range.
    for seal in _with_personal(positions.iterator(chunk_size=CHUNK_ROWS), summary):
        if seal.chain_index != expected:
            raise ExportError(f"The chain is broken at position {expected}; run `manage.py audit_verify`.")
        expected += 1
        yield seal
    if expected != summary.last_index + 1:
        raise ExportError(f"The chain is broken at position {expected}; run `manage.py audit_verify`.")


def _with_personal(seals: Iterator[Seal], summary: BundleSummary) -> Iterator[Seal]:
    """Each seal with ``personal`` set to its entry's decrypted personal fields (None if not encrypted). The keys of
    every subject in the range are read first, in one query: buffering rows to batch key look-ups held too much."""
    keys = privacy.keys_of_subjects(
        AuditLog.objects.filter(
            seal__chain_index__gte=summary.first_index, seal__chain_index__lte=summary.last_index
        ).values("actor_id")
    )
    for seal in seals:
        seal.personal = privacy.personal_with(seal.entry, keys) if seal.in_scope else None
        yield seal


def _released(seal: Seal) -> tuple[dict[str, Any], dict[str, str]]:
    return privacy.released_fields(seal.entry, committed_fields(seal.entry), seal.personal)


def _withheld(seal: Seal, rules: list[RedactionRule]) -> dict[str, RedactionRule]:
    return applicable_rules(rules, bool(seal.actor_is_staff))


class _Sink:
    """A write-only stream that hands out what was written since the last call: zipfile writes, we yield."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self._buffer.write(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


class _HashingMember:
    """A ZIP member being written, with the SHA-256 of its content kept on the way."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self._member = archive.open(
            zipfile.ZipInfo(name, date_time=timezone.now().timetuple()[:6]), "w", force_zip64=True
        )
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self._member.write(data)

    def close(self) -> str:
        self._member.close()
        return self.sha256.hexdigest()


def _jsonl(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"


def _records_jsonl(summary: BundleSummary, scope: ExportScope, out: _HashingMember) -> Iterator[None]:
    for count, seal in enumerate(_positions(summary, scope), 1):
        if seal.in_scope:
            withheld = _withheld(seal, scope.rules)
            fields, erased = _released(seal)
            out.write(_jsonl(released_record(seal.chain_index, fields, withheld, erased)))
            summary.released += 1
            summary.fields_withheld += len(withheld.keys() | erased.keys())
            summary.exemptions.update(rule.exemption for rule in withheld.values())
            summary.subjects |= privacy.subjects_released(seal.entry, withheld.keys())
        else:
            summary.out_of_scope += 1
        if count % CHUNK_ROWS == 0:
            yield


class _CsvLine:
    """csv.writer writes into this; each row comes out as bytes."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def _records_csv(summary: BundleSummary, scope: ExportScope, out: _HashingMember) -> Iterator[None]:
    line = _CsvLine()
    writer = csv.writer(line)
    writer.writerow(CSV_COLUMNS)
    for count, seal in enumerate(_positions(summary, scope), 1):
        if seal.in_scope:
            fields, erased = _released(seal)
            writer.writerow(csv_row(released_record(seal.chain_index, fields, _withheld(seal, scope.rules), erased)))
        if line.text:
            out.write(line.text.encode("utf-8"))
            line.text = ""
        if count % CHUNK_ROWS == 0:
            yield


def _proof_jsonl(summary: BundleSummary, scope: ExportScope, out: _HashingMember) -> Iterator[None]:
    for count, seal in enumerate(_positions(summary, scope), 1):
        if seal.in_scope:
            entry = seal.entry
            fields, erased = _released(seal)
            row = proof_of_released(
                seal.chain_index, entry.pk, bytes(entry.salt), fields, _withheld(seal, scope.rules), seal.hash, erased
            )
        else:
            row = proof_of_out_of_scope(seal.chain_index, seal.digest, seal.hash)
        out.write(_jsonl(row))
        if count % CHUNK_ROWS == 0:
            yield


def manifest_document(summary: BundleSummary, scope: ExportScope, files: dict[str, str]) -> dict[str, Any]:
    digest = summary.digest
    return {
        "format": FORMAT,
        "created_at": canonical_value(timezone.now()),
        "request": scope.tracking_number,
        "filters": json.loads(canonical_json(scope.filters)),
        "committed_fields": list(COMMITTED_FIELDS),
        "counts": {
            "positions": summary.last_index - summary.first_index + 1,
            "released": summary.released,
            "out_of_scope": summary.out_of_scope,
            "fields_withheld": summary.fields_withheld,
        },
        "exemptions": dict(sorted(summary.exemptions.items())),
        "chain": {
            "first_index": summary.first_index,
            "last_index": summary.last_index,
            "start_prev_hash": summary.start_prev_hash,
            "head_hash": summary.head_hash,
        },
        "signed_digest": {
            "chain_index": digest.chain_index,
            "head_hash": digest.head_hash,
            "signed_at": canonical_value(digest.signed_at),
            "prev_signature": digest.prev_signature,
            "signature": digest.signature,
            "key_fingerprint": digest.key_fingerprint,
        },
        "files": files,
    }


def stream_bundle(
    scope: ExportScope,
    summary: BundleSummary,
    *,
    cover_pdf: Callable[[BundleSummary], bytes],
    on_complete: Callable[[str, BundleSummary], None],
) -> Iterator[bytes]:
    """Yield the ZIP as it is written. ``on_complete(manifest_sha256, summary)`` runs once the manifest is signed,
    before the last bytes go out (the export is recorded even if the recipient hangs up at the very end)."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    files: dict[str, str] = {}
    for name, writer in (
        ("records.jsonl", _records_jsonl),
        ("records.csv", _records_csv),
        ("proof.jsonl", _proof_jsonl),
    ):
        member = _HashingMember(archive, name)
        for _ in writer(summary, scope, member):
            yield sink.drain()
        files[name] = member.close()
        yield sink.drain()
    public_key = signing.load_public_key()
    for name, content in (
        ("cover.pdf", cover_pdf(summary)),
        ("VERIFY.txt", verify_instructions(signing.public_key_pem(public_key), signing.fingerprint(public_key))),
    ):
        member = _HashingMember(archive, name)
        member.write(content)
        files[name] = member.close()
    document = manifest_document(summary, scope, files)
    signature, key_fingerprint = signing.sign(canonical_json(document))
    manifest = json.dumps({**document, "signature": signature, "signature_key_fingerprint": key_fingerprint}, indent=2)
    manifest_bytes = manifest.encode("utf-8")
    member = _HashingMember(archive, "manifest.json")
    member.write(manifest_bytes)
    member.close()
    archive.close()
    on_complete(hashlib.sha256(manifest_bytes).hexdigest(), summary)
    yield sink.drain()
