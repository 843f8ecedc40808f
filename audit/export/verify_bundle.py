"""Offline check of an export bundle with the public key alone: no database, no server.

Follows the algorithm VERIFY.txt gives the recipient, and reports each file or entry at fault.
"""

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..hashing import canonical_json, chain_hash, commitment, digest_of_commitments, digest_statement
from ..signing import fingerprint, is_valid

SIGNATURE_KEYS = ("signature", "signature_key_fingerprint")


@dataclass
class BundleReport:
    problems: list[str] = field(default_factory=list)
    released: int = 0
    positions: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(archive: zipfile.ZipFile, name: str) -> Iterator[dict[str, Any]]:
    with archive.open(name) as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{name} line {number}: not JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"{name} line {number}: not a JSON object")
            yield row


def _file_hashes(archive: zipfile.ZipFile, files: dict[str, str], report: BundleReport) -> None:
    for name, expected in files.items():
        try:
            with archive.open(name) as handle:
                sha = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
        except KeyError:
            report.problems.append(f"{name}: listed in the manifest but missing from the bundle")
            continue
        if sha.hexdigest() != expected:
            report.problems.append(f"{name}: SHA-256 does not match the manifest (the file was changed)")


def _check_manifest(manifest: dict[str, Any], key: Ed25519PublicKey, report: BundleReport) -> None:
    document = {name: value for name, value in manifest.items() if name not in SIGNATURE_KEYS}
    if manifest.get("signature_key_fingerprint") != fingerprint(key):
        report.problems.append("manifest.json: signed with another key than the one given")
    if not is_valid(key, str(manifest.get("signature", "")), canonical_json(document)):
        report.problems.append("manifest.json: the signature does not verify (the manifest was changed)")
    signed = manifest["signed_digest"]
    statement = digest_statement(
        signed["chain_index"], signed["head_hash"], signed["signed_at"], signed["prev_signature"]
    )
    if not is_valid(key, signed["signature"], statement):
        report.problems.append(f"signed digest at chain #{signed['chain_index']}: the signature does not verify")


def _is_mark(value: Any) -> bool:
    """An exemption's mark, or the mark of a personal field erased under GDPR Art. 17."""
    return value == "[ERASED]" or (isinstance(value, str) and value.startswith("[REDACTED ") and value.endswith("]"))


def _released_digest(proof: dict[str, Any], record: dict[str, Any], fields: list[str]) -> str:
    commitments = {}
    for name in fields:
        if name in proof["commitments"]:
            commitments[name] = proof["commitments"][name]
        else:
            commitments[name] = commitment(bytes.fromhex(proof["field_salts"][name]), name, record[name])
    return digest_of_commitments(commitments)


def _check_chain(archive: zipfile.ZipFile, manifest: dict[str, Any], report: BundleReport) -> None:
    chain = manifest["chain"]
    fields = manifest["committed_fields"]
    records = _lines(archive, "records.jsonl")
    prev = chain["start_prev_hash"]
    expected = chain["first_index"]
    for proof in _lines(archive, "proof.jsonl"):
        index = proof.get("chain_index")
        if index != expected:
            report.problems.append(f"proof.jsonl: chain #{expected} is missing or out of order (found #{index})")
            return
        if "digest" in proof:
            digest = proof["digest"]
        else:
            record = next(records, None)
            entry = proof.get("entry_id")
            if record is None or record.get("chain_index") != index or record.get("id") != entry:
                found = (
                    "nothing" if record is None else f"entry {record.get('id')} at chain #{record.get('chain_index')}"
                )
                report.problems.append(
                    f"records.jsonl: entry {entry} (chain #{index}) is missing or out of order (found {found})"
                )
                return
            try:
                digest = _released_digest(proof, record, fields)
                # A withheld field is accounted for by its commitment; the record must show its mark, not a value
                # the proof cannot vouch for.
                shown = sorted(name for name in proof["commitments"] if not _is_mark(record.get(name)))
            except (KeyError, ValueError, TypeError) as exc:
                report.problems.append(f"entry {entry} (chain #{index}): incomplete proof or record ({exc})")
                return
            if shown:
                report.problems.append(
                    f"entry {entry} (chain #{index}): {', '.join(shown)} shows a value the proof says was withheld"
                )
            report.released += 1
        hash_ = chain_hash(prev, digest)
        if hash_ != proof.get("hash"):
            where = f"entry {proof['entry_id']}" if "entry_id" in proof else "an entry outside the scope"
            report.problems.append(f"{where} (chain #{index}): does not match the chain (a value was changed)")
            return
        prev = hash_
        expected += 1
        report.positions += 1
    if next(records, None) is not None:
        report.problems.append("records.jsonl: holds records the proof does not account for")
    if expected != chain["last_index"] + 1:
        report.problems.append(f"proof.jsonl: ends at chain #{expected - 1}, the manifest says #{chain['last_index']}")
    elif prev != chain["head_hash"] or prev != manifest["signed_digest"]["head_hash"]:
        report.problems.append("the recomputed chain does not end in the signed head")


def verify_bundle(path: str, key: Ed25519PublicKey) -> BundleReport:
    """Check a bundle file; every problem found is a line of the report."""
    report = BundleReport()
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{path}: not a readable ZIP, perhaps cut short ({exc})")
        return report
    with archive:
        try:
            manifest = json.loads(archive.read("manifest.json"))
            _check_manifest(manifest, key, report)
            _file_hashes(archive, manifest["files"], report)
            _check_chain(archive, manifest, report)
        except KeyError as exc:
            report.problems.append(f"the bundle lacks {exc}")
        except ValueError as exc:
            report.problems.append(str(exc))
        if report.ok and report.released != manifest["counts"]["released"]:
            report.problems.append(
                f"records.jsonl: {report.released} released records, the manifest says {manifest['counts']['released']}"
            )
    return report
