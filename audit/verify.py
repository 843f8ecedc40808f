"""Verification of the hash chain: recompute every seal from the entries as they are stored now."""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import conf, privacy
from .hashing import GENESIS_HASH, chain_hash, digest_statement
from .models import ArchiveCheckpoint, AuditLog, Seal, SignedDigest
from .sealing import digest_of
from .segments import checkpoint_statement
from .signing import is_valid, load_public_keys

CHUNK = 2000


@dataclass(frozen=True)
class Finding:
    kind: str  # modified, missing, gap, broken_link, unsealed, bad_signature, digest_*, checkpoint
    entry_id: int | None
    chain_index: int | None
    detail: str

    def line(self) -> str:
        where = f"entry {self.entry_id}" if self.entry_id is not None else "no entry"
        position = f" (chain #{self.chain_index})" if self.chain_index is not None else ""
        return f"{self.kind}: {where}{position}: {self.detail}"


@dataclass
class VerifyReport:
    verified_at: dt.datetime
    entries_checked: int = 0
    digests_checked: int = 0
    head_index: int | None = None
    head_hash: str | None = None
    # The last chain position moved to archive segments: the chain in the database starts after it.
    archived_through: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.ok:
            head = f"head #{self.head_index} {self.head_hash}" if self.head_hash else "empty chain"
            start = ""
            if self.archived_through is not None:
                start = f" from the archive checkpoint at #{self.archived_through}"
            return (
                f"Audit chain intact: {self.entries_checked} entries and {self.digests_checked} signed digests "
                f"verified{start}, {head}."
            )
        return f"Audit chain NOT intact: {len(self.findings)} finding(s) in {self.entries_checked} sealed entries."

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verified_at": self.verified_at,
            "entries_checked": self.entries_checked,
            "digests_checked": self.digests_checked,
            "head_index": self.head_index,
            "head_hash": self.head_hash,
            "archived_through": self.archived_through,
            "findings": [asdict(finding) for finding in self.findings],
        }


def _seals_in_chunks(after: int = -1) -> Iterator[list[Seal]]:
    # Keyset paging over the primary key: constant memory and no OFFSET however long the chain.
    while True:
        chunk = list(Seal.objects.filter(chain_index__gt=after).order_by("chain_index")[:CHUNK])
        if not chunk:
            return
        yield chunk
        after = chunk[-1].chain_index


def verify_chain(*, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk the chain from its start and report what no longer matches.

    - ``modified``: an entry whose recomputed digest differs from the one it was sealed with, or whose encrypted
      personal fields no longer give the commitments it was sealed with (checked while the subject's key exists);
    - ``missing``: a seal whose entry is gone;
    - ``gap``: chain positions missing between two seals (a removed seal);
    - ``broken_link``: a seal whose ``prev_hash`` or ``hash`` does not follow from the seal before it;
    - ``unsealed``: an entry committed longer ago than the grace period that has no seal;
    - ``bad_signature``, ``digest_chain``, ``digest_mismatch``: a signed digest whose signature fails, which does not
      sign the digest before it, or whose signed head the chain no longer reaches (a rewritten chain).
    - ``checkpoint``: an archive checkpoint that does not sign the one before it, or a seal still stored at a
      position the archive removed (a bad checkpoint signature is a ``bad_signature``).

    After an archive the walk starts at the latest signed checkpoint: its position + 1, linked to its head hash.
    What lies before it is in the archive segments, checked offline by ``audit_verify_segment``.
    """
    report = VerifyReport(verified_at=timezone.now())
    checkpoints = list(ArchiveCheckpoint.objects.order_by("chain_index"))
    report.findings.extend(verify_checkpoints(checkpoints))
    checkpoint = checkpoints[-1] if checkpoints else None
    expected_index = 0
    prev_hash = GENESIS_HASH
    if checkpoint is not None:
        expected_index, prev_hash = checkpoint.chain_index + 1, checkpoint.head_hash
        report.archived_through = checkpoint.chain_index
        for seal in Seal.objects.filter(chain_index__lte=checkpoint.chain_index).order_by("chain_index")[:100]:
            report.findings.append(
                Finding(
                    "checkpoint",
                    seal.entry_id,
                    seal.chain_index,
                    f"archived up to chain #{checkpoint.chain_index}, yet this seal is still stored",
                )
            )
    for seals in _seals_in_chunks(after=expected_index - 1):
        entries = AuditLog.objects.in_bulk([seal.entry_id for seal in seals])
        personal_problems = privacy.findings(entries.values())
        for seal in seals:
            if seal.chain_index != expected_index:
                report.findings.append(
                    Finding(
                        "gap",
                        None,
                        seal.chain_index,
                        f"chain positions {expected_index}..{seal.chain_index - 1} are missing",
                    )
                )
            elif seal.prev_hash != prev_hash:
                report.findings.append(
                    Finding("broken_link", seal.entry_id, seal.chain_index, "prev_hash does not match the seal before")
                )
            if seal.hash != chain_hash(seal.prev_hash, seal.digest):
                report.findings.append(
                    Finding(
                        "broken_link", seal.entry_id, seal.chain_index, "hash does not follow from prev_hash and digest"
                    )
                )
            entry = entries.get(seal.entry_id)
            if entry is None:
                report.findings.append(Finding("missing", seal.entry_id, seal.chain_index, "the sealed entry is gone"))
            elif digest_of(entry) != seal.digest:
                report.findings.append(
                    Finding("modified", seal.entry_id, seal.chain_index, "the entry no longer matches its seal")
                )
            elif entry.pk in personal_problems:
                report.findings.append(
                    Finding("modified", seal.entry_id, seal.chain_index, personal_problems[entry.pk])
                )
            # Go on from the stored seal, so one finding does not turn every later position into a finding.
            prev_hash = seal.hash
            expected_index = seal.chain_index + 1
            report.entries_checked += 1
            report.head_index, report.head_hash = seal.chain_index, seal.hash
        if progress:
            progress(len(seals))
    report.findings.extend(verify_digests(checkpoint))
    report.digests_checked = SignedDigest.objects.count()
    cutoff = report.verified_at - conf.seal_grace()
    late = AuditLog.objects.filter(created_at__lt=cutoff).filter(~Exists(Seal.objects.filter(entry_id=OuterRef("pk"))))
    for entry_id in late.order_by("id").values_list("id", flat=True).iterator():
        report.findings.append(
            Finding("unsealed", entry_id, None, f"no seal after the grace period of {conf.seal_grace()}")
        )
    return report


def _signature_problem(
    keys: dict[str, Ed25519PublicKey], key_fingerprint: str, signature: str, statement: bytes
) -> str:
    """What is wrong with a stored signature ("" if nothing), checked with the key it names."""
    key = keys.get(key_fingerprint)
    if key is None:
        return f"signing key {key_fingerprint[:16]}... is not among the verify keys (AUDIT_VERIFY_KEY_FILE)"
    return "" if is_valid(key, signature, statement) else "signature does not verify"


def verify_digests(checkpoint: ArchiveCheckpoint | None = None) -> list[Finding]:
    """Check each signed digest's signature, its link to the digest before, and that the chain still reaches it.

    Digests before an archive ``checkpoint`` keep their signatures and links; their positions are in the segments.
    """
    digests = list(SignedDigest.objects.order_by("chain_index"))
    if not digests:
        return []
    try:
        keys = load_public_keys()
    except ImproperlyConfigured as exc:
        return [Finding("bad_signature", None, None, f"signed digests exist but no key to check them: {exc}")]
    seal_hashes = dict(
        Seal.objects.filter(chain_index__in=[digest.chain_index for digest in digests]).values_list(
            "chain_index", "hash"
        )
    )
    findings = []
    prev_signature = ""
    for digest in digests:
        statement = digest_statement(digest.chain_index, digest.head_hash, digest.signed_at, digest.prev_signature)
        problem = _signature_problem(keys, digest.key_fingerprint, digest.signature, statement)
        if problem:
            findings.append(Finding("bad_signature", None, digest.chain_index, f"the digest's {problem}"))
        if digest.prev_signature != prev_signature:
            findings.append(Finding("digest_chain", None, digest.chain_index, "does not sign the digest before it"))
        if checkpoint is not None and digest.chain_index <= checkpoint.chain_index:
            reached = digest.chain_index < checkpoint.chain_index or checkpoint.head_hash == digest.head_hash
        else:
            reached = seal_hashes.get(digest.chain_index) == digest.head_hash
        if not reached:
            findings.append(
                Finding(
                    "digest_mismatch",
                    None,
                    digest.chain_index,
                    "the chain no longer reaches this signed head: it was rewritten after it was signed",
                )
            )
        prev_signature = digest.signature
    return findings


def verify_checkpoints(checkpoints: list[ArchiveCheckpoint]) -> list[Finding]:
    """Each archive checkpoint's signature, and its link to the one before: the start of the chain in the database
    moves only with the private key, so removing the oldest entries and claiming an archive is caught."""
    if not checkpoints:
        return []
    try:
        keys = load_public_keys()
    except ImproperlyConfigured as exc:
        return [Finding("bad_signature", None, None, f"archive checkpoints exist but no key to check them: {exc}")]
    findings = []
    prev_signature = ""
    for checkpoint in checkpoints:
        statement = checkpoint_statement(
            chain_index=checkpoint.chain_index,
            head_hash=checkpoint.head_hash,
            before=checkpoint.before,
            request_id=checkpoint.request_id,
            segments=checkpoint.segments,
            created_at=checkpoint.created_at,
            prev_signature=checkpoint.prev_signature,
        )
        problem = _signature_problem(keys, checkpoint.key_fingerprint, checkpoint.signature, statement)
        if problem:
            findings.append(
                Finding("bad_signature", None, checkpoint.chain_index, f"the archive checkpoint's {problem}")
            )
        if checkpoint.prev_signature != prev_signature:
            findings.append(
                Finding("checkpoint", None, checkpoint.chain_index, "does not sign the archive checkpoint before it")
            )
        prev_signature = checkpoint.signature
    return findings
