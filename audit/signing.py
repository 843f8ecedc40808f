"""Ed25519 keys and signatures for digests and export manifests.

Keys come from settings or files named by settings, never from the repository:
``AUDIT_SIGNING_KEY`` / ``AUDIT_SIGNING_KEY_FILE`` (PEM, PKCS#8) to sign, and ``AUDIT_VERIFY_KEY`` /
``AUDIT_VERIFY_KEY_FILE`` (PEM, SubjectPublicKeyInfo) to verify; without a verify key the signing key's public half
is used. The public key alone is enough to check a digest or an export, offline.
"""

import hashlib
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


def load_public_key() -> Ed25519PublicKey:
    pem = _pem_setting("AUDIT_VERIFY_KEY", "AUDIT_VERIFY_KEY_FILE")
    if pem is None:
        return load_private_key().public_key()
    try:
        return public_key_from_pem(pem)
    except ValueError as exc:
        raise ImproperlyConfigured(f"AUDIT_VERIFY_KEY is not a readable Ed25519 public key: {exc}") from exc


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
