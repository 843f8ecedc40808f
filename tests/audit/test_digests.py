"""Signed digests: Ed25519 signatures over the chain head, made every N entries or M minutes and on demand,
stored INSERT-only, checked by audit_verify and listed by GET /api/audit/digests."""

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils.dateparse import parse_datetime

from audit.actions import AuditAction
from audit.digests import make_digest
from audit.exceptions import AuditLogImmutableError
from audit.hashing import chain_hash, digest_statement
from audit.models import AuditLog, Seal, SignedDigest
from audit.sealing import digest_of, seal_pending
from audit.services import record
from audit.verify import verify_chain

DIGESTS_URL = "/api/audit/digests"
FINGERPRINT_LINE = re.compile(r"^Fingerprint: ([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    fingerprint: str  # as audit_keygen printed it
    output: str

    def public_key(self) -> Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.public_path.read_bytes())
        assert isinstance(key, Ed25519PublicKey)
        return key


def keygen(directory: Path, *options: str) -> KeyPair:
    out = StringIO()
    call_command("audit_keygen", "--out", directory, *options, stdout=out)
    printed = FINGERPRINT_LINE.search(out.getvalue())
    assert printed, out.getvalue()
    return KeyPair(directory / "audit-signing.key", directory / "audit-signing.pub", printed.group(1), out.getvalue())


def raw_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, computed here without audit.signing."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


@pytest.fixture
def no_key(settings):
    """No signing or verify key configured, whatever the environment says."""
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = ""
    settings.AUDIT_VERIFY_KEY = ""
    settings.AUDIT_VERIFY_KEY_FILE = ""


@pytest.fixture
def signing_key(no_key, settings, tmp_path) -> KeyPair:
    """A fresh key pair written by audit_keygen; AUDIT_SIGNING_KEY_FILE names its private key."""
    pair = keygen(tmp_path)
    settings.AUDIT_SIGNING_KEY_FILE = str(pair.private_path)
    return pair


def _record(count: int, start: int = 0) -> list[AuditLog]:
    return [
        record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=n, meta={"n": n}) for n in range(start, start + count)
    ]


def _sealed(count: int, start: int = 0) -> list[AuditLog]:
    entries = _record(count, start)
    assert seal_pending() == count
    return entries


def _sealed_unsigned(count: int, start: int = 0) -> list[AuditLog]:
    """Seal with no signing key configured, so that only an explicit make_digest signs."""
    with override_settings(AUDIT_SIGNING_KEY="", AUDIT_SIGNING_KEY_FILE=""):
        return _sealed(count, start)


def _digest_heads() -> list[int]:
    return list(SignedDigest.objects.order_by("chain_index").values_list("chain_index", flat=True))


def _findings() -> list[tuple[str, int | None, int | None]]:
    return [(finding.kind, finding.entry_id, finding.chain_index) for finding in verify_chain().findings]


def _command_fails() -> list[str]:
    """Run audit_verify, expect exit status 1 and return its output lines."""
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify", "--no-progress", stdout=out)
    assert exited.value.code == 1
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("Audit chain NOT intact")
    return lines


@pytest.fixture
def tamper(triggers_dropped):
    def run(sql, params=()):
        with triggers_dropped(), connection.cursor() as cursor:
            cursor.execute(sql, params)

    return run


@pytest.fixture
def signed_chain(db, signing_key):
    """Six sealed entries (chain 0..5) with digests at heads 1, 3 and 5."""
    entries = []
    for start in (0, 2, 4):
        entries += _sealed_unsigned(2, start)
        assert make_digest() is not None
    assert _digest_heads() == [1, 3, 5]
    return entries


# --- audit_keygen ---------------------------------------------------------------------------------------------


def test_keygen_writes_private_key_readable_only_by_owner(tmp_path):
    """audit_keygen writes a PEM (PKCS#8) Ed25519 private key with mode 0600."""
    pair = keygen(tmp_path)
    pem = pair.private_path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(serialization.load_pem_private_key(pem, password=None), Ed25519PrivateKey)
    assert stat.S_IMODE(os.stat(pair.private_path).st_mode) == 0o600


def test_keygen_writes_the_matching_public_key(tmp_path):
    """audit_keygen writes the private key's public half as a PEM SubjectPublicKeyInfo file."""
    pair = keygen(tmp_path)
    assert pair.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    private = serialization.load_pem_private_key(pair.private_path.read_bytes(), password=None)
    assert raw_fingerprint(private.public_key()) == raw_fingerprint(pair.public_key())


def test_keygen_prints_the_fingerprint(tmp_path):
    """audit_keygen prints the SHA-256 fingerprint of the raw public key and the setting to point at the key."""
    pair = keygen(tmp_path)
    assert pair.fingerprint == raw_fingerprint(pair.public_key())
    assert f"AUDIT_SIGNING_KEY_FILE={pair.private_path.resolve()}" in pair.output


def test_keygen_refuses_to_overwrite_without_force(tmp_path):
    """A second audit_keygen into the same directory raises CommandError naming --force; the keys stay as they were."""
    pair = keygen(tmp_path)
    private_before, public_before = pair.private_path.read_bytes(), pair.public_path.read_bytes()
    with pytest.raises(CommandError, match="--force"):
        call_command("audit_keygen", "--out", tmp_path, stdout=StringIO())
    assert pair.private_path.read_bytes() == private_before
    assert pair.public_path.read_bytes() == public_before


def test_keygen_force_replaces_the_key_pair(tmp_path):
    """audit_keygen --force writes a new key pair over the old one, still owner-only, and prints its fingerprint."""
    old = keygen(tmp_path)
    old_private = old.private_path.read_bytes()
    new = keygen(tmp_path, "--force")
    assert new.private_path.read_bytes() != old_private
    assert new.fingerprint != old.fingerprint
    assert new.fingerprint == raw_fingerprint(new.public_key())
    private = serialization.load_pem_private_key(new.private_path.read_bytes(), password=None)
    assert raw_fingerprint(private.public_key()) == new.fingerprint
    assert stat.S_IMODE(os.stat(new.private_path).st_mode) == 0o600


def test_keygen_force_makes_a_readable_key_file_owner_only(tmp_path):
    """--force over a private key file that others could read leaves the new private key with mode 0600."""
    old = keygen(tmp_path)
    os.chmod(old.private_path, 0o644)
    new = keygen(tmp_path, "--force")
    assert stat.S_IMODE(os.stat(new.private_path).st_mode) == 0o600


# --- make_digest and audit_digest ------------------------------------------------------------------------------


def test_make_digest_signs_the_chain_head(db, signing_key):
    """make_digest signs (chain_index, head hash, time, "") of the head; the public key file verifies it."""
    _sealed_unsigned(3)
    digest = make_digest()
    head = Seal.objects.get(chain_index=2)
    assert (digest.chain_index, digest.head_hash, digest.prev_signature) == (2, head.hash, "")
    stored = SignedDigest.objects.get(pk=digest.pk)
    statement = digest_statement(stored.chain_index, stored.head_hash, stored.signed_at, stored.prev_signature)
    signing_key.public_key().verify(bytes.fromhex(stored.signature), statement)  # raises InvalidSignature if not


def test_make_digest_names_the_key_fingerprint(db, signing_key):
    """A digest's key_fingerprint is the fingerprint audit_keygen printed for the signing key."""
    _sealed_unsigned(1)
    assert make_digest().key_fingerprint == signing_key.fingerprint


def test_make_digest_links_to_the_previous_digest(db, signing_key):
    """Each digest's prev_signature is the signature of the digest before it."""
    _sealed_unsigned(2)
    first = make_digest()
    _sealed_unsigned(2, start=2)
    second = make_digest()
    assert second.chain_index == 3
    assert second.prev_signature == first.signature
    statement = digest_statement(second.chain_index, second.head_hash, second.signed_at, first.signature)
    signing_key.public_key().verify(bytes.fromhex(second.signature), statement)


def test_make_digest_returns_none_when_nothing_is_new(db, signing_key):
    """make_digest returns None on an empty chain, and when the last digest already covers the head."""
    assert make_digest() is None
    _sealed_unsigned(2)
    assert make_digest() is not None
    assert make_digest() is None
    assert SignedDigest.objects.count() == 1


def test_audit_digest_command_prints_the_chain_index(db, signing_key):
    """manage.py audit_digest signs the head and prints its chain index and key; a second run has nothing to sign."""
    _sealed_unsigned(5)
    out = StringIO()
    call_command("audit_digest", stdout=out)
    digest = SignedDigest.objects.get()
    assert digest.chain_index == 4
    assert out.getvalue().startswith(f"Signed chain #4 head {digest.head_hash} with key {signing_key.fingerprint}")
    again = StringIO()
    call_command("audit_digest", stdout=again)
    assert again.getvalue().startswith("Nothing new to sign")
    assert SignedDigest.objects.count() == 1


def test_audit_digest_command_without_key_fails(db, no_key):
    """Without a signing key, audit_digest raises a CommandError naming AUDIT_SIGNING_KEY_FILE and stores nothing."""
    _sealed_unsigned(2)
    with pytest.raises(CommandError, match="AUDIT_SIGNING_KEY_FILE"):
        call_command("audit_digest", stdout=StringIO())
    assert not SignedDigest.objects.exists()


# --- automatic digests after sealing ---------------------------------------------------------------------------


def test_digest_every_n_entries_after_sealing(db, signing_key, settings, django_capture_on_commit_callbacks):
    """With AUDIT_DIGEST_EVERY_ENTRIES=5, twelve entries sealed one commit at a time give digests at heads 0, 5, 10:
    the first sealing signs, then every fifth entry after the last digest."""
    settings.AUDIT_DIGEST_EVERY_ENTRIES = 5
    settings.AUDIT_DIGEST_EVERY_MINUTES = 60
    for n in range(12):
        with django_capture_on_commit_callbacks(execute=True):
            record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=n)
        assert Seal.objects.count() == n + 1
    assert _digest_heads() == [0, 5, 10]
    seal_hashes = dict(Seal.objects.values_list("chain_index", "hash"))
    assert all(digest.head_hash == seal_hashes[digest.chain_index] for digest in SignedDigest.objects.all())
    assert verify_chain().ok


def test_digest_every_m_minutes_after_sealing(db, signing_key, settings):
    """With AUDIT_DIGEST_EVERY_MINUTES=0 (and N far off), every sealing run that seals something makes a digest."""
    settings.AUDIT_DIGEST_EVERY_ENTRIES = 1000
    settings.AUDIT_DIGEST_EVERY_MINUTES = 0
    for start in (0, 2, 4):
        _sealed(2, start)
    assert _digest_heads() == [1, 3, 5]
    assert seal_pending() == 0
    assert _digest_heads() == [1, 3, 5]


def test_no_digest_before_n_entries_or_m_minutes(db, signing_key, settings):
    """With neither N entries nor M minutes reached since the last digest, a sealing run makes no digest."""
    settings.AUDIT_DIGEST_EVERY_ENTRIES = 1000
    settings.AUDIT_DIGEST_EVERY_MINUTES = 60
    _sealed(2)
    _sealed(2, start=2)
    assert _digest_heads() == [1]


def test_sealing_without_key_makes_no_digest_and_no_error(db, no_key, settings):
    """Without a signing key, sealing works as before: no digest and no error."""
    settings.AUDIT_DIGEST_EVERY_MINUTES = 0
    _sealed(3)
    _sealed(2, start=3)
    assert Seal.objects.count() == 5
    assert not SignedDigest.objects.exists()
    assert verify_chain().ok


# --- INSERT-only ------------------------------------------------------------------------------------------------


@pytest.fixture
def digest(db, signing_key) -> SignedDigest:
    _sealed_unsigned(2)
    return SignedDigest.objects.get(pk=make_digest().pk)


def _raw(sql, params=()):
    # atomic: on PostgreSQL a failed statement would otherwise abort the test's transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_digest_save_of_existing_row_is_refused(digest):
    """save() of a stored digest raises AuditLogImmutableError, and the digest stays as it was."""
    before = digest.signature
    digest.signature = "0" * 128
    with pytest.raises(AuditLogImmutableError):
        digest.save()
    assert SignedDigest.objects.get(pk=digest.pk).signature == before


def test_digest_model_delete_is_refused(digest):
    """Model delete() of a digest raises AuditLogImmutableError, and the digest is still there."""
    with pytest.raises(AuditLogImmutableError):
        digest.delete()
    assert SignedDigest.objects.filter(pk=digest.pk).exists()


def test_digest_queryset_update_is_refused(digest):
    """QuerySet.update() of digests raises AuditLogImmutableError."""
    with pytest.raises(AuditLogImmutableError):
        SignedDigest.objects.filter(pk=digest.pk).update(signature="0" * 128)
    assert SignedDigest.objects.get(pk=digest.pk).signature == digest.signature


def test_digest_queryset_delete_is_refused(digest):
    """QuerySet.delete() of digests raises AuditLogImmutableError, and nothing is deleted."""
    with pytest.raises(AuditLogImmutableError):
        SignedDigest.objects.all().delete()
    assert SignedDigest.objects.filter(pk=digest.pk).exists()


def test_digest_raw_sql_update_is_refused(digest):
    """An UPDATE of audit_signeddigest through raw SQL is refused by a trigger, and the digest stays as it was."""
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("UPDATE audit_signeddigest SET signature = %s", ["0" * 128])
    assert SignedDigest.objects.get(pk=digest.pk).signature == digest.signature


def test_digest_raw_sql_delete_is_refused(digest):
    """A DELETE from audit_signeddigest through raw SQL is refused by a trigger, and the digest is still there."""
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM audit_signeddigest")
    assert SignedDigest.objects.filter(pk=digest.pk).exists()


def test_digest_raw_sql_truncate_is_refused(postgres_only, digest):
    """TRUNCATE audit_signeddigest is refused by a statement trigger on PostgreSQL."""
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("TRUNCATE audit_signeddigest")
    assert SignedDigest.objects.filter(pk=digest.pk).exists()


# --- audit_verify -------------------------------------------------------------------------------------------------


def test_verify_passes_with_digests(signed_chain):
    """An intact chain with valid digests verifies: exit status 0 and a summary that counts the digests."""
    report = verify_chain()
    assert report.ok
    assert report.digests_checked == 3
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Audit chain intact: 6 entries and 3 signed digests verified, head #5 ")


def _flip(hex_text: str) -> str:
    return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]


def test_altered_signature_is_bad_signature(signed_chain, tamper):
    """A digest whose signature was rewritten is reported as bad_signature; the next digest, which signed the
    original signature, no longer links to it (digest_chain)."""
    signature = SignedDigest.objects.get(chain_index=3).signature
    tamper("UPDATE audit_signeddigest SET signature = %s WHERE chain_index = 3", [_flip(signature)])
    assert _findings() == [("bad_signature", None, 3), ("digest_chain", None, 5)]
    assert any(line.startswith("bad_signature: no entry (chain #3)") for line in _command_fails())


def test_altered_prev_signature_is_digest_chain(signed_chain, tamper):
    """A digest whose prev_signature was rewritten is reported as digest_chain, and as bad_signature since the
    signature covered the original."""
    prev_signature = SignedDigest.objects.get(chain_index=3).prev_signature
    tamper("UPDATE audit_signeddigest SET prev_signature = %s WHERE chain_index = 3", [_flip(prev_signature)])
    assert _findings() == [("bad_signature", None, 3), ("digest_chain", None, 3)]
    lines = _command_fails()
    assert any(line.startswith("digest_chain: no entry (chain #3)") for line in lines)
    assert any(line.startswith("bad_signature: no entry (chain #3)") for line in lines)


def test_rewritten_tail_is_digest_mismatch(signed_chain, tamper):
    """Someone with database access but without the private key changes an entry and recomputes its seal and every
    later seal exactly as the sealer does: the hash chain checks pass, but each signed head after the change is
    reported as digest_mismatch, and audit_verify exits 1."""
    target = signed_chain[2]  # chain #2, between the digests at heads 1 and 3
    tamper("UPDATE audit_auditlog SET entity_id = %s WHERE id = %s", ["forged", target.pk])
    assert ("modified", target.pk, 2) in _findings()  # before the seals are rewritten

    prev_hash = Seal.objects.get(chain_index=1).hash
    for seal in Seal.objects.filter(chain_index__gte=2).order_by("chain_index"):
        digest = digest_of(AuditLog.objects.get(pk=seal.entry_id))
        hash_ = chain_hash(prev_hash, digest)
        tamper(
            "UPDATE audit_seal SET digest = %s, prev_hash = %s, hash = %s WHERE chain_index = %s",
            [digest, prev_hash, hash_, seal.chain_index],
        )
        prev_hash = hash_
    assert Seal.objects.get(chain_index=5).hash != SignedDigest.objects.get(chain_index=5).head_hash

    findings = _findings()
    assert not [finding for finding in findings if finding[0] in {"modified", "broken_link", "missing", "gap"}]
    assert findings == [("digest_mismatch", None, 3), ("digest_mismatch", None, 5)]
    lines = _command_fails()
    assert any(line.startswith("digest_mismatch: no entry (chain #5)") for line in lines)


def test_other_verify_key_is_bad_signature(signed_chain, settings, tmp_path):
    """With another key's public half configured as AUDIT_VERIFY_KEY_FILE, every digest is bad_signature."""
    other = keygen(tmp_path / "other")
    settings.AUDIT_VERIFY_KEY_FILE = str(other.public_path)
    assert _findings() == [("bad_signature", None, 1), ("bad_signature", None, 3), ("bad_signature", None, 5)]
    _command_fails()


def test_matching_verify_key_passes(signed_chain, signing_key, settings):
    """With the signing key's own public file as AUDIT_VERIFY_KEY_FILE (no private key needed), the digests verify."""
    settings.AUDIT_SIGNING_KEY_FILE = ""
    settings.AUDIT_VERIFY_KEY_FILE = str(signing_key.public_path)
    assert verify_chain().ok


# --- GET /api/audit/digests -----------------------------------------------------------------------------------


@pytest.fixture
def api_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _views_by(person) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW, actor=person))


def test_officer_lists_digests_newest_first_with_fingerprint(
    api_settings, signed_chain, signing_key, api_client, officer
):
    """An officer gets 200 with every digest, newest first, and the fingerprint of the key that verifies them."""
    api_client.force_authenticate(officer)
    response = api_client.get(DIGESTS_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["public_key_fingerprint"] == signing_key.fingerprint
    assert [item["chain_index"] for item in body["results"]] == [5, 3, 1]
    newest = SignedDigest.objects.get(chain_index=5)
    assert body["results"][0] == {
        "chain_index": 5,
        "head_hash": newest.head_hash,
        "signed_at": body["results"][0]["signed_at"],  # compared as a time below
        "prev_signature": newest.prev_signature,
        "signature": newest.signature,
        "key_fingerprint": signing_key.fingerprint,
    }
    assert parse_datetime(body["results"][0]["signed_at"]) == newest.signed_at


def test_officer_listing_records_an_audit_view_entry(api_settings, signed_chain, api_client, officer):
    """An officer's listing of the digests is itself recorded as a successful AUDIT.VIEW entry of SignedDigest."""
    api_client.force_authenticate(officer)
    assert api_client.get(DIGESTS_URL).status_code == 200
    views = _views_by(officer)
    assert [(view.outcome, view.entity) for view in views] == [(AuditLog.Outcome.SUCCESS, "SignedDigest")]


def test_ordinary_user_is_refused_and_recorded(api_settings, signed_chain, api_client, user):
    """An ordinary user gets 403 without digests, and the refusal is recorded as a denied AUDIT.VIEW entry."""
    api_client.force_authenticate(user)
    response = api_client.get(DIGESTS_URL)
    assert response.status_code == 403
    assert "results" not in response.json()
    views = _views_by(user)
    assert [(view.outcome, view.meta) for view in views] == [
        (AuditLog.Outcome.DENIED, {"path": DIGESTS_URL, "method": "GET"})
    ]


def test_anonymous_gets_401(api_settings, signed_chain, api_client):
    """An anonymous request gets 401 with an authentication challenge, no digests and no entry."""
    entries_before = AuditLog.objects.count()
    response = api_client.get(DIGESTS_URL)
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")
    assert "results" not in response.json()
    assert AuditLog.objects.count() == entries_before


# --- key rotation -------------------------------------------------------------------------------------------------


def test_after_a_key_rotation_older_digests_verify_with_the_retired_key_in_the_keyring(
    db, signing_key, settings, tmp_path
):
    """Digests name the key that signed them: with the new key first and the retired one after it in
    AUDIT_VERIFY_KEY_FILE, digests of both keys verify; without the retired key, its digests are reported and the
    report names the key."""
    _sealed_unsigned(3)
    old = make_digest()
    new_pair = keygen(tmp_path / "new")
    settings.AUDIT_SIGNING_KEY_FILE = str(new_pair.private_path)
    _sealed_unsigned(2, start=3)
    new = make_digest()
    assert (old.key_fingerprint, new.key_fingerprint) == (signing_key.fingerprint, new_pair.fingerprint)

    settings.AUDIT_VERIFY_KEY_FILE = str(new_pair.public_path)
    assert _findings() == [("bad_signature", None, old.chain_index)]
    [finding] = verify_chain().findings
    assert signing_key.fingerprint[:16] in finding.detail

    keyring = tmp_path / "verify-keys.pem"
    keyring.write_bytes(new_pair.public_path.read_bytes() + signing_key.public_path.read_bytes())
    settings.AUDIT_VERIFY_KEY_FILE = str(keyring)
    assert verify_chain().ok


def test_a_digest_claiming_another_trusted_key_does_not_verify(db, signing_key, settings, tmp_path, tamper):
    """Whoever can write to the database can relabel a digest with another trusted key's fingerprint, but the
    signature is then checked with that key and fails."""
    other = keygen(tmp_path / "other")
    keyring = tmp_path / "verify-keys.pem"
    keyring.write_bytes(signing_key.public_path.read_bytes() + other.public_path.read_bytes())
    settings.AUDIT_VERIFY_KEY_FILE = str(keyring)
    _sealed_unsigned(2)
    digest = make_digest()
    tamper("UPDATE audit_signeddigest SET key_fingerprint = %s WHERE id = %s", [other.fingerprint, digest.pk])
    assert _findings() == [("bad_signature", None, digest.chain_index)]
