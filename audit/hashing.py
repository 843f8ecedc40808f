"""Pure hashing of audit entries: canonical serialisation, per-field commitments, entry digest, chain hash.

An entry's digest is built from one commitment per field so that a copy with some fields withheld can still be
checked: a released field ships with its value and its field salt, a withheld field with its commitment only.

    field_salt = HMAC-SHA256(entry salt, field name)
    commitment = SHA-256(field_salt || field name || canonical JSON of the value)
    digest     = SHA-256(canonical JSON of {field name: commitment hex})
    hash       = SHA-256(prev_hash || digest)          (both as raw 32 bytes)

Nothing here touches the database, so a recipient of an export can run the same functions offline.
"""

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Container, Mapping
from typing import Any

GENESIS_HASH = "0" * 64

# The fields an entry's digest covers, in the order they are documented. The salt is the key, not a field.
COMMITTED_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "entity",
    "entity_id",
    "outcome",
    "perms_snapshot",
    "changes",
    "meta",
    "ip_address",
    "user_agent",
    "request_id",
    "on_behalf_of",
    "client_ip",
    "occurred_at",
)


def canonical_value(value: Any) -> Any:
    """Timestamps as UTC ISO 8601 with microseconds and offset; everything else must already be JSON."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime cannot be hashed; audit times are UTC-aware")
        return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    return value


def _not_json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return canonical_value(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# What json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
# default=_not_json) builds on every call; made once, since the sealer encodes 17 values per entry.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_not_json,
)
# The same encoder's C core, which ``JSONEncoder.encode`` makes anew on every call (a third of the time of a small
# value). Without the check for cycles: audit values come from JSON, which has none. Absent in builds without the
# C accelerator, where the encoder above does the work.
_ENCODE = (
    json.encoder.c_make_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if json.encoder.c_make_encoder is not None
    else None
)


# The encoder's own output for the scalars every entry has, without its generic path; bool before int, as bool
# is an int.
_SCALARS: dict[Any, bytes] = {None: b"null", True: b"true", False: b"false"}


class CanonicalJson(str):
    """JSON text made by ``canonical_text``: its ``canonical_json`` is the text itself, taken without parsing it."""


def canonical_text(value: Any) -> str:
    """``canonical_json`` as text."""
    if _ENCODE is None:
        return _CANONICAL_ENCODER.encode(canonical_value(value))
    return "".join(_ENCODE(canonical_value(value), 0))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, timestamps at any depth as UTC ISO: the same value always gives the same bytes."""
    if value is None or value is True or value is False:
        return _SCALARS[value]
    kind = type(value)
    if kind is int:
        return str(value).encode("ascii")
    if kind is str:
        return json.encoder.encode_basestring(value).encode("utf-8")
    if kind is CanonicalJson:
        return value.encode("utf-8")
    if kind is dt.datetime:
        return json.encoder.encode_basestring(canonical_value(value)).encode("utf-8")
    return canonical_text(value).encode("utf-8")


def field_salt(salt: bytes, name: str) -> bytes:
    return hmac.digest(salt, name.encode("utf-8"), "sha256")


_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))
_SHA256_BLOCK = 64


class FieldSalts:
    """``field_salt`` for many names under one entry salt: HMAC-SHA256 (RFC 2104) with the key's padded inner and
    outer hash states made once and copied per name. ``hmac.digest`` sets the key up again on every call, which
    under OpenSSL 3 cost more than the rest of an entry's digest."""

    def __init__(self, salt: bytes) -> None:
        key = salt if len(salt) <= _SHA256_BLOCK else hashlib.sha256(salt).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def __call__(self, name: str) -> bytes:
        return self._of_encoded(_encoded(name))

    def _of_encoded(self, name: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(name)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def commitments(self, fields: Mapping[str, Any], leave_out: Container[str] = ()) -> dict[str, str]:
        """``commitment`` of each field not in ``leave_out``, each name encoded once for its salt and its hash."""
        result = {}
        for name, value in fields.items():
            if name in leave_out:
                continue
            encoded = _encoded(name)
            result[name] = _commitment(self._of_encoded(encoded), encoded, value)
        return result


_sha256 = hashlib.sha256
# UTF-8 of the names of committed fields, made once; other names (personal ``meta`` keys) are encoded when used.
_ENCODED_NAMES = {name: name.encode("utf-8") for name in COMMITTED_FIELDS}


def _encoded(name: str) -> bytes:
    encoded = _ENCODED_NAMES.get(name)
    return name.encode("utf-8") if encoded is None else encoded


def commitment(salt_of_field: bytes, name: str, value: Any) -> str:
    return _commitment(salt_of_field, _encoded(name), value)


def _commitment(salt_of_field: bytes, name: bytes, value: Any) -> str:
    return _sha256(salt_of_field + name + canonical_json(value)).hexdigest()


def field_commitments(salt: bytes | FieldSalts, fields: Mapping[str, Any]) -> dict[str, str]:
    salts = salt if isinstance(salt, FieldSalts) else FieldSalts(salt)
    return salts.commitments(fields)


def digest_of_commitments(commitments: Mapping[str, str]) -> str:
    return _sha256(canonical_json(commitments if type(commitments) is dict else dict(commitments))).hexdigest()


def entry_digest(salt: bytes, fields: Mapping[str, Any], known: Mapping[str, str] | None = None) -> str:
    """``known``: commitments that stand in for fields whose value is not stored in the clear (audit.privacy)."""
    commitments = FieldSalts(salt).commitments(fields, known or ())
    if known:
        commitments.update(known)
    return digest_of_commitments(commitments)


def chain_hash(prev_hash: str, digest: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(digest)).hexdigest()


def digest_statement(chain_index: int, head_hash: str, signed_at: Any, prev_signature: str) -> bytes:
    """The bytes a signed digest signs: canonical JSON of the head it vouches for and the previous signature."""
    return canonical_json(
        {"chain_index": chain_index, "head_hash": head_hash, "signed_at": signed_at, "prev_signature": prev_signature}
    )
