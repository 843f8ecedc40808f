"""Archive segments: the format, and its offline check with the public key alone (no database, no server).

A segment is a contiguous range of chain positions, one calendar month of entries, in two files:

- ``audit-YYYY-MM-<first>-<last>.jsonl.gz``: one JSON line per chain position, in chain order: the entry's
  committed fields in canonical form, its salt, and its seal (digest, prev_hash, hash, sealed_at). The salt lets the
  holder recompute every commitment, so a segment is as confidential as the database it comes from; releases to
  third parties go through the export bundle, which ships field salts only.
- ``audit-YYYY-MM-<first>-<last>.manifest.json``: chain range, the hash before the first position and the head
  hash, the SHA-256 and size of the data file, the signed digests that fall in the range, the archive request
  and its two officers, and an Ed25519 signature over all of it. The last segment of an archive also carries the
  signed checkpoint the chain in the database continues from.

Checking a segment recomputes every digest from the values and the salt, and every link of the chain, from the
manifest's start hash to its head hash: a changed value, a removed, added or reordered line, an edited manifest or
a data file swapped for another are each reported.
"""

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .hashing import canonical_json, chain_hash, digest_statement, entry_digest
from .signing import fingerprint, is_valid

FORMAT = "compliance-console-archive-segment/1"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
SIGNATURE_KEYS = ("signature", "signature_key_fingerprint")
CHECKPOINT_SIGNATURE_KEYS = ("signature", "key_fingerprint")


def basename(month: str, first_index: int, last_index: int) -> str:
    """Month and chain range: unique, and sorting by name sorts a month's segments by position."""
    return f"audit-{month}-{first_index:012d}-{last_index:012d}"


def checkpoint_statement(
    *,
    chain_index: int,
    head_hash: str,
    before: Any,
    request_id: int,
    segments: list[dict[str, Any]],
    created_at: Any,
    prev_signature: str,
) -> bytes:
    """The bytes a checkpoint signs: where the chain in the database continues, and the segments before it."""
    return canonical_json(
        {
            "chain_index": chain_index,
            "head_hash": head_hash,
            "before": before,
            "request_id": request_id,
            "segments": segments,
            "created_at": created_at,
            "prev_signature": prev_signature,
        }
    )


def manifest_statement(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers: the manifest without its signature."""
    return canonical_json({name: value for name, value in manifest.items() if name not in SIGNATURE_KEYS})


def manifest_path_of(path: Path) -> Path:
    """The manifest of a segment given by its manifest or by its data file."""
    name = path.name
    if name.endswith(DATA_SUFFIX):
        return path.with_name(name[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX)
    return path


def segment_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Manifests named directly, through their data file, or found in a directory."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(sorted(path.glob(f"*{MANIFEST_SUFFIX}")))
        else:
            found.append(manifest_path_of(path))
    return found


@dataclass
class SegmentReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    positions: int = 0
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with gzip.open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path.name} line {number}: not JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path.name} line {number}: not a JSON object")
            yield number, row


def _sha256_and_size(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def _check_signatures(manifest: dict[str, Any], key: Ed25519PublicKey, report: SegmentReport) -> None:
    if manifest.get("signature_key_fingerprint") != fingerprint(key):
        report.problems.append("manifest: signed with another key than the one given")
    if not is_valid(key, str(manifest.get("signature", "")), manifest_statement(manifest)):
        report.problems.append("manifest: the signature does not verify (the manifest was changed)")
    previous = None
    for signed in manifest.get("signed_digests", []):
        statement = digest_statement(
            signed["chain_index"], signed["head_hash"], signed["signed_at"], signed["prev_signature"]
        )
        if not is_valid(key, signed["signature"], statement):
            report.problems.append(f"signed digest at chain #{signed['chain_index']}: the signature does not verify")
        if previous is not None and signed["prev_signature"] != previous["signature"]:
            report.problems.append(
                f"signed digest at chain #{signed['chain_index']}: does not sign the digest before it"
            )
        previous = signed
    checkpoint = manifest.get("checkpoint")
    if checkpoint is not None:
        body = {name: value for name, value in checkpoint.items() if name not in CHECKPOINT_SIGNATURE_KEYS}
        if not is_valid(key, str(checkpoint.get("signature", "")), checkpoint_statement(**body)):
            report.problems.append(
                f"checkpoint at chain #{checkpoint.get('chain_index')}: the signature does not verify"
            )


def _check_chain(data: Path, manifest: dict[str, Any], report: SegmentReport) -> None:
    chain = manifest["chain"]
    fields = manifest["committed_fields"]
    digests = {signed["chain_index"]: signed["head_hash"] for signed in manifest.get("signed_digests", [])}
    prev = chain["start_prev_hash"]
    expected = chain["first_index"]
    for number, line in _lines(data):
        index = line.get("chain_index")
        where = f"{data.name} line {number} (chain #{index})"
        if index != expected:
            report.problems.append(f"{where}: chain #{expected} is missing or out of order")
            return
        try:
            entry, seal = line["entry"], line["seal"]
            digest = entry_digest(
                bytes.fromhex(line["salt"]), {name: entry[name] for name in fields}, line.get("personal_commitments")
            )
        except (KeyError, ValueError, TypeError) as exc:
            report.problems.append(f"{where}: incomplete line ({exc})")
            return
        if digest != seal.get("digest"):
            report.problems.append(f"{where}: entry {entry.get('id')} does not match its seal (a value was changed)")
            return
        hash_ = chain_hash(prev, digest)
        if seal.get("prev_hash") != prev or seal.get("hash") != hash_:
            report.problems.append(f"{where}: entry {entry.get('id')} does not follow from the position before it")
            return
        if index in digests and digests[index] != hash_:
            report.problems.append(f"{where}: the chain does not reach the signed digest at chain #{index}")
        prev = hash_
        expected += 1
        report.positions += 1
    if expected != chain["last_index"] + 1:
        report.problems.append(f"{data.name}: ends at chain #{expected - 1}, the manifest says #{chain['last_index']}")
    elif prev != chain["head_hash"]:
        report.problems.append(f"{data.name}: the recomputed chain does not end in the manifest's head hash")
    if report.positions != manifest.get("count"):
        report.problems.append(f"{data.name}: {report.positions} positions, the manifest says {manifest.get('count')}")


def _check_checkpoint(manifest: dict[str, Any], report: SegmentReport) -> None:
    checkpoint = manifest.get("checkpoint")
    if checkpoint is None:
        return
    chain = manifest["chain"]
    if checkpoint.get("chain_index") != chain["last_index"] or checkpoint.get("head_hash") != chain["head_hash"]:
        report.problems.append("checkpoint: does not sit on this segment's last position and head hash")
    listed = {segment.get("name"): segment for segment in checkpoint.get("segments", [])}
    own = listed.get(manifest["file"]["name"])
    if own is None or own.get("sha256") != manifest["file"]["sha256"]:
        report.problems.append("checkpoint: does not list this segment's data file with its SHA-256")


def verify_segment(path: str | Path, key: Ed25519PublicKey) -> SegmentReport:
    """Check one segment (its manifest or its data file); every problem found is a line of the report."""
    manifest_path = manifest_path_of(Path(path))
    report = SegmentReport(path=manifest_path)
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (OSError, ValueError) as exc:
        report.problems.append(f"{manifest_path}: not a readable manifest ({exc})")
        return report
    report.manifest = manifest
    try:
        if manifest.get("format") != FORMAT:
            report.problems.append(f"manifest: format {manifest.get('format')!r}, expected {FORMAT!r}")
        _check_signatures(manifest, key, report)
        data = manifest_path.with_name(manifest["file"]["name"])
        try:
            sha256, size = _sha256_and_size(data)
        except OSError as exc:
            report.problems.append(f"{data.name}: missing or unreadable ({exc.strerror})")
            return report
        if sha256 != manifest["file"]["sha256"] or size != manifest["file"]["bytes"]:
            report.problems.append(f"{data.name}: SHA-256 does not match the manifest (the file was changed)")
        _check_chain(data, manifest, report)
        _check_checkpoint(manifest, report)
    except (KeyError, TypeError) as exc:
        report.problems.append(f"manifest: lacks {exc}")
    except (ValueError, OSError, EOFError, gzip.BadGzipFile) as exc:
        report.problems.append(str(exc))
    return report


def verify_segments(paths: Iterable[str | Path], key: Ed25519PublicKey) -> tuple[list[SegmentReport], list[str]]:
    """Check each segment, then that those given together join up: each starts where the one before ended, and
    every segment a checkpoint lists is there (when a directory is given: a single file is checked on its own).
    Returns the reports and the problems between segments."""
    given = list(paths)
    whole_directory = any(Path(path).is_dir() for path in given)
    reports = [verify_segment(path, key) for path in segment_paths(given)]
    joined: list[str] = []
    readable = sorted(
        (report for report in reports if report.manifest is not None and "chain" in report.manifest),
        key=lambda report: report.manifest["chain"]["first_index"],  # type: ignore[index]
    )
    names = {report.manifest["file"]["name"] for report in readable if "file" in report.manifest}  # type: ignore[index]
    for before, after in zip(readable, readable[1:], strict=False):
        first, last = after.manifest["chain"], before.manifest["chain"]  # type: ignore[index]
        if first["first_index"] != last["last_index"] + 1:
            joined.append(
                f"chain #{last['last_index'] + 1}..#{first['first_index'] - 1}: in none of the segments given "
                f"(between {before.path.name} and {after.path.name})"
            )
        elif first["start_prev_hash"] != last["head_hash"]:
            joined.append(f"{after.path.name}: does not start where {before.path.name} ends")
    for report in readable:
        checkpoint = report.manifest.get("checkpoint")  # type: ignore[union-attr]
        if checkpoint is None or not whole_directory:
            continue
        for segment in checkpoint.get("segments", []):
            if segment.get("name") not in names:
                joined.append(
                    f"checkpoint at chain #{checkpoint.get('chain_index')}: segment {segment.get('name')} is missing"
                )
    return reports, joined
