"""Signed digests of the chain head, made every N entries or M minutes, and on demand."""

import datetime as dt

from django.db import connections, transaction
from django.utils import timezone

from . import conf
from .hashing import digest_statement
from .models import Seal, SignedDigest
from .signing import has_signing_key, sign

# pg_advisory_xact_lock key: the ASCII of "dgst"; two signers would both link to the same previous signature.
DIGEST_LOCK_KEY = 0x64677374


def _head(using: str) -> dict | None:
    return Seal.objects.using(using).order_by("-chain_index").values("chain_index", "hash").first()


def make_digest(*, using: str = "default") -> SignedDigest | None:
    """Sign the current chain head; ``None`` when there is nothing new to sign since the last digest."""
    with transaction.atomic(using=using):
        if connections[using].vendor == "postgresql":
            with connections[using].cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DIGEST_LOCK_KEY])
        head = _head(using)
        last = SignedDigest.objects.using(using).order_by("-chain_index").first()
        if head is None or (last is not None and last.chain_index >= head["chain_index"]):
            return None
        signed_at = timezone.now()
        prev_signature = last.signature if last else ""
        signature, key_fingerprint = sign(
            digest_statement(head["chain_index"], head["hash"], signed_at, prev_signature)
        )
        return SignedDigest.objects.using(using).create(
            chain_index=head["chain_index"],
            head_hash=head["hash"],
            signed_at=signed_at,
            prev_signature=prev_signature,
            signature=signature,
            key_fingerprint=key_fingerprint,
        )


def due(head_index: int | None, last_index: int | None, last_signed_at: dt.datetime | None) -> bool:
    """Whether a chain with its head at ``head_index`` needs a digest, the last one being at ``last_index``."""
    if head_index is None:
        return False
    if last_index is None or last_signed_at is None:
        return True
    if head_index <= last_index:
        return False
    return (
        head_index - last_index >= conf.digest_every_entries() or timezone.now() - last_signed_at >= conf.digest_every()
    )


def digest_due(*, using: str = "default") -> bool:
    head = _head(using)
    last = SignedDigest.objects.using(using).order_by("-chain_index").values("chain_index", "signed_at").first()
    return due(
        head["chain_index"] if head else None,
        last["chain_index"] if last else None,
        last["signed_at"] if last else None,
    )


def make_digest_if_due(*, using: str = "default") -> SignedDigest | None:
    """Called after sealing: signs when N entries or M minutes have passed and a signing key is configured."""
    if not has_signing_key() or not digest_due(using=using):
        return None
    return make_digest(using=using)
