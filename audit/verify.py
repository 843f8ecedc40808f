"""Verification of the hash chain: recompute every seal from the entries as they are stored now."""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import conf
from .hashing import GENESIS_HASH, chain_hash, digest_statement
from .models import AuditLog, Seal, SignedDigest
from .sealing import digest_of
from .signing import is_valid, load_public_key

CHUNK = 2000


@dataclass(frozen=True)
class Finding:
    kind: str  # modified, missing, gap, broken_link, unsealed
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
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.ok:
            head = f"head #{self.head_index} {self.head_hash}" if self.head_hash else "empty chain"
            return (
                f"Audit chain intact: {self.entries_checked} entries and {self.digests_checked} signed digests "
                f"verified, {head}."
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
            "findings": [asdict(finding) for finding in self.findings],
        }


def _seals_in_chunks() -> Iterator[list[Seal]]:
    # Keyset paging over the primary key: constant memory and no OFFSET however long the chain.
    after = -1
    while True:
        chunk = list(Seal.objects.filter(chain_index__gt=after).order_by("chain_index")[:CHUNK])
        if not chunk:
            return
        yield chunk
        after = chunk[-1].chain_index


def verify_chain(*, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk the chain from its start and report what no longer matches.

    - ``modified``: an entry whose recomputed digest differs from the one it was sealed with;
    - ``missing``: a seal whose entry is gone;
    - ``gap``: chain positions missing between two seals (a removed seal);
    - ``broken_link``: a seal whose ``prev_hash`` or ``hash`` does not follow from the seal before it;
    - ``unsealed``: an entry committed longer ago than the grace period that has no seal;
    - ``bad_signature``, ``digest_chain``, ``digest_mismatch``: a signed digest whose signature fails, which does not
      sign the digest before it, or whose signed head the chain no longer reaches (a rewritten chain).
    """
    report = VerifyReport(verified_at=timezone.now())
    expected_index = 0
    prev_hash = GENESIS_HASH
    for seals in _seals_in_chunks():
        entries = AuditLog.objects.in_bulk([seal.entry_id for seal in seals])
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
                    Finding("broken_link", seal.entry_id, seal.chain_index, "hash does not follow from prev_hash and digest")
                )
            entry = entries.get(seal.entry_id)
            if entry is None:
                report.findings.append(Finding("missing", seal.entry_id, seal.chain_index, "the sealed entry is gone"))
            elif digest_of(entry) != seal.digest:
                report.findings.append(
                    Finding("modified", seal.entry_id, seal.chain_index, "the entry no longer matches its seal")
                )
            # Go on from the stored seal, so one finding does not turn every later position into a finding.
            prev_hash = seal.hash
            expected_index = seal.chain_index + 1
            report.entries_checked += 1
            report.head_index, report.head_hash = seal.chain_index, seal.hash
        if progress:
            progress(len(seals))
    report.findings.extend(verify_digests())
    report.digests_checked = SignedDigest.objects.count()
    cutoff = report.verified_at - conf.seal_grace()
    late = AuditLog.objects.filter(created_at__lt=cutoff).filter(
        ~Exists(Seal.objects.filter(entry_id=OuterRef("pk")))
    )
    for entry_id in late.order_by("id").values_list("id", flat=True).iterator():
        report.findings.append(
            Finding("unsealed", entry_id, None, f"no seal after the grace period of {conf.seal_grace()}")
        )
    return report


def verify_digests() -> list[Finding]:
    """Check each signed digest's signature, its link to the digest before, and that the chain still reaches it."""
    digests = list(SignedDigest.objects.order_by("chain_index"))
    if not digests:
        return []
    try:
        key = load_public_key()
    except ImproperlyConfigured as exc:
        return [Finding("bad_signature", None, None, f"signed digests exist but no key to check them: {exc}")]
    seal_hashes = dict(
        Seal.objects.filter(chain_index__in=[digest.chain_index for digest in digests]).values_list("chain_index", "hash")
    )
    findings = []
    prev_signature = ""
    for digest in digests:
        statement = digest_statement(digest.chain_index, digest.head_hash, digest.signed_at, digest.prev_signature)
        if not is_valid(key, digest.signature, statement):
            findings.append(Finding("bad_signature", None, digest.chain_index, "the digest's signature does not verify"))
        if digest.prev_signature != prev_signature:
            findings.append(Finding("digest_chain", None, digest.chain_index, "does not sign the digest before it"))
        if seal_hashes.get(digest.chain_index) != digest.head_hash:
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
