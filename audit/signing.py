"""Ed25519 keys and signatures for digests and export manifests.

Keys come from settings or files named by settings, never from the repository:
``AUDIT_SIGNING_KEY`` / ``AUDIT_SIGNING_KEY_FILE`` (PEM, PKCS#8) to sign, and ``AUDIT_VERIFY_KEY`` /
``AUDIT_VERIFY_KEY_FILE`` (PEM, SubjectPublicKeyInfo) to verify; without a verify key the signing key's public half
is used. The public key alone is enough to check a digest or an export, offline. After a key rotation the verify
file lists the new public key first and the retired ones after it: each stored signature names its key by
fingerprint, and is checked with that key.
"""

import hashlib
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SigningKeyMissing(ImproperlyConfigured):
    """No signing key is configured; ``manage.py audit_keygen`` makes one."""


def _pem_setting(value_name: str, file_name: str) -> bytes | None:
    value = getattr(settings, value_name, "") or ""
    if value:
        return value.encode("ascii") if isinstance(value, str) else value
    path = getattr(settings, file_name, "") or ""
    if path:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ImproperlyConfigured(f"{file_name}: cannot read {path}: {exc.strerror}") from exc
    return None


def load_private_key() -> Ed25519PrivateKey:
    pem = _pem_setting("AUDIT_SIGNING_KEY", "AUDIT_SIGNING_KEY_FILE")
    if pem is None:
        raise SigningKeyMissing(
            "no signing key: set AUDIT_SIGNING_KEY_FILE (make a key pair with `manage.py audit_keygen`)"
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be an Ed25519 private key")
    return key


def has_signing_key() -> bool:
    return _pem_setting("AUDIT_SIGNING_KEY", "AUDIT_SIGNING_KEY_FILE") is not None


_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def _verify_keys() -> list[Ed25519PublicKey]:
    """The keys of ``AUDIT_VERIFY_KEY`` / ``AUDIT_VERIFY_KEY_FILE``, in their order: the current key first, then
    the retired keys that older digests and checkpoints were signed with (one PEM block each)."""
    pem = _pem_setting("AUDIT_VERIFY_KEY", "AUDIT_VERIFY_KEY_FILE")
    if pem is None:
        return []
    blocks = _PEM_BLOCK.findall(pem)
    if not blocks:
        raise ImproperlyConfigured("AUDIT_VERIFY_KEY holds no PEM public key")
    try:
        return [public_key_from_pem(block) for block in blocks]
    except ValueError as exc:
        raise ImproperlyConfigured(f"AUDIT_VERIFY_KEY is not a readable Ed25519 public key: {exc}") from exc


def load_public_key() -> Ed25519PublicKey:
    """The current key: the first verify key, else the signing key's public half."""
    keys = _verify_keys()
    return keys[0] if keys else load_private_key().public_key()


def load_public_keys() -> dict[str, Ed25519PublicKey]:
    """Every key a stored signature may have been made with, by fingerprint: the verify keys (current and
    retired), or without them the signing key's public half. Configured outside the database, so whoever can
    write there cannot add a key of their own."""
    keys = _verify_keys() or [load_private_key().public_key()]
    return {fingerprint(key): key for key in keys}


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: how a digest or manifest names the key that signed it."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(message: bytes) -> tuple[str, str]:
    """The hex signature of ``message`` and the signing key's fingerprint."""
    key = load_private_key()
    return key.sign(message).hex(), fingerprint(key.public_key())


def is_valid(key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    try:
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
