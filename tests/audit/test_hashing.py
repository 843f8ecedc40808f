"""Known-answer tests of audit.hashing: the expected digests were computed once outside the code under test
(Python's hashlib/hmac/json and cross-checked with openssl), so a change of the recipe breaks these tests."""

import datetime as dt
import enum
import hashlib
import hmac
import json

import pytest

from audit.hashing import (
    COMMITTED_FIELDS,
    GENESIS_HASH,
    CanonicalJson,
    FieldSalts,
    canonical_json,
    canonical_text,
    chain_hash,
    commitment,
    digest_of_commitments,
    entry_digest,
    field_commitments,
    field_salt,
)

SALT = b"\x00" * 16
FIELDS = {
    "id": 1,
    "created_at": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc),
    "actor_id": 7,
    "actor_label": "alice",
    "action": "ROLE.UPDATE",
    "entity": "Role",
    "entity_id": "42",
    "outcome": "success",
    "perms_snapshot": {"perms": ["rbac.change_role"]},
    "changes": {"name": {"before": "Clerk", "after": "Senior clerk"}},
    "meta": {"reason": "promotion"},
    "ip_address": "192.0.2.1",
    "user_agent": "curl/8.0",
    "request_id": "req-1",
    "on_behalf_of": "carol@partner",
    "client_ip": "198.51.100.7",
    "occurred_at": dt.datetime(2024, 1, 2, 3, 4, 0, tzinfo=dt.timezone.utc),
}
FIELD_SALT_OF_ACTION = "477f433293127c89afbc84f6fa94daf109ea21717969735ba51f1a8b277133e5"
COMMITMENT_OF_ACTION = "8edd879b6f646ba641c17c23e806a15fa4670afc0d096c28367e1e3b8ba029a9"
COMMITMENT_OF_CREATED_AT = "0e1cfd4fedcd746fc12f587a3f5cce629a6f1a03a5f3e9d993080e64b0b4b5db"
DIGEST = "c6f5df59326b968facce984ad5edae4ff1d72c2c6631fa441e8e21377aa62e63"
FIRST_CHAIN_HASH = "25e7a23545abd053f3cd3d93007e17693d31f0f7a4ecef6a1d794a24f0f72abb"


def test_known_fields_are_all_committed():
    """The sample entry covers exactly the committed fields, so the known digest speaks for every one of them."""
    assert set(FIELDS) == set(COMMITTED_FIELDS)


def test_canonical_json_sorts_keys_without_spaces():
    """Canonical JSON sorts keys at every depth, uses no spaces and encodes non-ASCII as UTF-8."""
    assert canonical_json({"b": 1, "a": {"z": [1, 2], "y": None}, "é": "ü"}) == (
        '{"a":{"y":null,"z":[1,2]},"b":1,"é":"ü"}'.encode()
    )


def test_canonical_json_writes_utc_timestamps_with_microseconds():
    """A UTC timestamp is written as ISO 8601 with microseconds and offset, even when they are zero."""
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert canonical_json(when) == b'"2024-01-02T03:04:05.000000+00:00"'


def test_canonical_json_converts_other_zones_to_utc():
    """An aware timestamp in another zone gives the same bytes as the same instant in UTC."""
    cest = dt.timezone(dt.timedelta(hours=2))
    assert canonical_json(dt.datetime(2024, 1, 2, 5, 4, 5, 678901, tzinfo=cest)) == (
        b'"2024-01-02T03:04:05.678901+00:00"'
    )


def test_canonical_json_refuses_naive_datetime():
    """A naive timestamp is refused: its instant is ambiguous."""
    with pytest.raises(ValueError, match="naive"):
        canonical_json(dt.datetime(2024, 1, 2, 3, 4, 5))


@pytest.mark.parametrize("value", [float("nan"), {"x": float("inf")}])
def test_canonical_json_refuses_nan(value):
    """NaN and infinity are refused: they are not JSON."""
    with pytest.raises(ValueError):
        canonical_json(value)


def test_field_salt_is_hmac_of_the_field_name():
    """The field salt is HMAC-SHA256 keyed with the entry salt over the field name (known answer)."""
    assert field_salt(SALT, "action").hex() == FIELD_SALT_OF_ACTION
    assert FIELD_SALT_OF_ACTION == hmac.new(SALT, b"action", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("salt", [SALT, bytes(range(16)), b"k" * 64, b"a longer key than one block of sha256" * 3, b""])
@pytest.mark.parametrize("name", [*COMMITTED_FIELDS, "meta.email", "é", ""])
def test_field_salts_of_one_salt_are_the_hmac_of_each_name(salt, name):
    """``FieldSalts``, which keys HMAC once for all of an entry's names, gives what ``hmac`` gives for each name,
    also for keys of a block's length and longer, which HMAC hashes first."""
    assert FieldSalts(salt)(name) == hmac.digest(salt, name.encode(), "sha256")


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 10**30, Level.HIGH, 1.5, 1e16, "", "é\n\x01", [True, None, 2], {"b": 1, "a": None}],
)
def test_canonical_json_of_scalars_is_the_encoders_output(value):
    """The shortcuts for null, booleans and integers write exactly what the canonical encoder writes."""
    reference = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(value) == reference.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"perms": ["locks.add_filelock", "audit.view_auditlog"], "superuser": True},
        {"name": {"before": None, "after": 'zwölf 🧾 \u202e "quoted" \\ \x01'}, "n": {"after": 10**30}},
        {"b": [1, {"z": None, "a": []}], "a": {}, "f": 1.5e-7},
        [],
    ],
)
def test_canonical_text_sent_hashes_as_the_value_it_holds(value):
    """JSON sent as ``canonical_text`` is hashed as it is (``CanonicalJson``, no parsing), with the same bytes and
    commitments as the value it was made from, and parses back to that value."""
    text = canonical_text(value)

    assert canonical_json(CanonicalJson(text)) == canonical_json(value) == text.encode()
    assert commitment(b"s" * 32, "changes", CanonicalJson(text)) == commitment(b"s" * 32, "changes", value)
    assert json.loads(text) == value


def test_commitment_hashes_field_salt_name_and_value():
    """A commitment is SHA-256(field salt || name || canonical JSON of the value) (known answer)."""
    expected = hashlib.sha256(bytes.fromhex(FIELD_SALT_OF_ACTION) + b"action" + b'"ROLE.UPDATE"').hexdigest()
    assert expected == COMMITMENT_OF_ACTION
    assert commitment(bytes.fromhex(FIELD_SALT_OF_ACTION), "action", "ROLE.UPDATE") == COMMITMENT_OF_ACTION


def test_field_commitments_known_answers():
    """The commitments of a whole entry match the known answers, timestamps included."""
    commitments = field_commitments(SALT, FIELDS)
    assert set(commitments) == set(FIELDS)
    assert commitments["action"] == COMMITMENT_OF_ACTION
    assert commitments["created_at"] == COMMITMENT_OF_CREATED_AT


def test_entry_digest_known_answer():
    """The digest of the sample entry is SHA-256 of the canonical JSON of its commitments (known answer)."""
    assert entry_digest(SALT, FIELDS) == DIGEST
    assert digest_of_commitments(field_commitments(SALT, FIELDS)) == DIGEST


def test_chain_hash_known_answer():
    """The chain hash is SHA-256 over the raw 32 bytes of prev_hash then digest (known answer)."""
    assert GENESIS_HASH == "0" * 64
    assert chain_hash(GENESIS_HASH, DIGEST) == FIRST_CHAIN_HASH
    assert FIRST_CHAIN_HASH == hashlib.sha256(bytes(32) + bytes.fromhex(DIGEST)).hexdigest()


def test_chain_hash_depends_on_order():
    """Swapping prev_hash and digest gives another hash: the link has a direction."""
    assert chain_hash(DIGEST, GENESIS_HASH) != chain_hash(GENESIS_HASH, DIGEST)


@pytest.mark.parametrize("name", COMMITTED_FIELDS)
def test_changing_any_field_changes_the_digest(name):
    """Changing the value of any single committed field changes the entry digest."""
    changed = {**FIELDS, name: "tampered"}
    assert entry_digest(SALT, changed) != DIGEST


def test_changing_the_salt_changes_the_digest():
    """Another entry salt gives another digest for the same values."""
    assert entry_digest(b"\x01" + SALT[1:], FIELDS) != DIGEST


@pytest.mark.parametrize("withheld", ["ip_address", "actor_label", "changes"])
def test_withheld_field_commitment_is_enough_to_recompute_the_digest(withheld):
    """A redacted copy verifies offline: released fields come with value and field salt, a withheld field with
    its commitment only, and the digest recomputed from that matches the sealed digest."""
    released = {name: (value, field_salt(SALT, name)) for name, value in FIELDS.items() if name != withheld}
    withheld_commitment = field_commitments(SALT, FIELDS)[withheld]

    # What the recipient does, without the entry salt and without the withheld value.
    commitments = {
        name: hashlib.sha256(salt_of_field + name.encode() + canonical_json(value)).hexdigest()
        for name, (value, salt_of_field) in released.items()
    }
    commitments[withheld] = withheld_commitment
    assert digest_of_commitments(commitments) == DIGEST
