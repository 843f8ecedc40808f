"""The verifiable export bundle (design sections 3 and 6): a FOIA release built from a realistic trail, checked file
by file with tools independent of the code that made it (zipfile, csv, json, hashlib, cryptography, pypdf), and
the release's side effects: the AUDIT.EXPORT entry, the request moving to released, refusals, streaming, memory.

Tampering with a bundle and the offline verifier's verdicts are in test_bundle_tamper.py.
"""

import csv
import datetime as dt
import hashlib
import io
import json
import re
import tracemalloc
import zipfile
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pypdf import PdfReader

from audit import context
from audit.actions import AuditAction
from audit.context import RequestContext, new_request_id
from audit.export.bundle import CHUNK_ROWS, ExportError, ExportScope, plan, stream_bundle
from audit.export.rules import RedactionRule
from audit.export.service import cover_for
from audit.foia import foia_request_create, foia_request_update, foia_scope
from audit.foia_models import DEFAULT_PROFILE_NAME, FoiaRequest, RedactionProfile
from audit.models import AuditLog, Seal, SignedDigest
from audit.sealing import seal_pending
from audit.services import EventSpec, record, record_many
from tests.audit.read_back import read_back
from tests.factories.users import OfficerFactory, UserFactory

Status = FoiaRequest.Status
CHANGELIST_URL = reverse("admin:audit_foiarequest_changelist")
MEMBERS = {"records.csv", "records.jsonl", "proof.jsonl", "cover.pdf", "VERIFY.txt", "manifest.json"}
B6, B7C = "[REDACTED (b)(6)]", "[REDACTED (b)(7)(C)]"

# Values the default profile withholds: none of them may appear in any file of the release.
CANARY_IP = "203.0.113.77"
CANARY_IPV6 = "2001:db8::77"
CANARY_CLIENT_IP = "192.0.2.199"
CANARY_UA = "CanaryBrowser/6.6 (withheld-user-agent-canary)"
STAFF_USERNAME = "inspector.canary"  # a staff actor's name: withheld under (b)(7)(C)
# In entries outside the request's scope, which the bundle carries as a digest only.
OUT_OF_SCOPE_CANARY = "out-of-scope-canary-7f3a9c"
# Caller-controlled text that must not become a formula or a terminal command in the CSV.
HYPERLINK = '=HYPERLINK("http://evil.example/x","click me")'
CONTROL = "a\nb\x1b[31m"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    settings.FOIA_ORGANISATION = "Department of Examples"
    settings.FOIA_PUBLIC_LIAISON = {"name": "Pat Liaison", "email": "liaison@examples.gov", "phone": "202-555-0100"}


# --- keys -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    private_path: Path
    public_path: Path

    def public_key(self) -> Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.public_path.read_bytes())
        assert isinstance(key, Ed25519PublicKey)
        return key

    def fingerprint(self) -> str:
        """SHA-256 of the raw 32-byte public key, computed here without audit.signing."""
        raw = self.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()


def keygen(directory: Path) -> Keys:
    call_command("audit_keygen", "--out", str(directory), stdout=StringIO())
    return Keys(directory / "audit-signing.key", directory / "audit-signing.pub")


@pytest.fixture
def no_key(settings):
    """No signing or verify key configured, whatever the environment says."""
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = ""
    settings.AUDIT_VERIFY_KEY = ""
    settings.AUDIT_VERIFY_KEY_FILE = ""


@pytest.fixture
def signing_key(no_key, settings, tmp_path) -> Keys:
    """A fresh pair from audit_keygen; AUDIT_SIGNING_KEY_FILE names its private key."""
    keys = keygen(tmp_path / "keys")
    settings.AUDIT_SIGNING_KEY_FILE = str(keys.private_path)
    return keys


# --- the trail ------------------------------------------------------------------------------------------------------


def request_context(ip: str | None, user_agent: str, path: str = "/admin/") -> RequestContext:
    return RequestContext(request_id=new_request_id(), ip_address=ip, user_agent=user_agent, method="POST", path=path)


@dataclass
class Trail:
    staff: User
    public: User
    entries: dict[str, AuditLog]
    in_scope: list[str]  # LOCK.* entries, in chain order
    out_of_scope_in_range: list[str]

    def entry(self, name: str) -> AuditLog:
        return self.entries[name]

    def seal(self, name: str) -> Seal:
        return Seal.objects.get(entry_id=self.entries[name].pk)

    def withheld_values(self) -> list[str]:
        """Every IP address, user agent and client IP of the trail, the staff actor's name and the out-of-scope
        canary: in scope they are withheld, out of scope the entry is a digest only."""
        values = {STAFF_USERNAME, OUT_OF_SCOPE_CANARY}
        for entry in self.entries.values():
            values.update(value for value in (entry.ip_address, entry.user_agent, entry.client_ip) if value)
        return sorted(values)


def _record(name: str, entries: dict[str, AuditLog], action: str, *, ctx: RequestContext | None = None, **kwargs: Any):
    if ctx is None:
        entries[name] = record(action, **kwargs)
    else:
        with context.bound(ctx):
            entries[name] = record(action, **kwargs)


def make_trail() -> Trail:
    """Ten entries of five action families by a staff actor, a member of the public and the system, each recorded
    with its own request context. Scope "LOCK." selects five of them; two out-of-scope entries sit between them, one
    after them, and two before the first."""
    staff = OfficerFactory(username=STAFF_USERNAME)
    public = UserFactory(username="jordan.public", is_staff=False)
    office_ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edge/126.0"
    home_ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    entries: dict[str, AuditLog] = {}
    _record(
        "role_create",
        entries,
        AuditAction.ROLE_CREATE,
        actor=staff,
        ctx=request_context("198.51.100.5", office_ua),
        entity="Role",
        entity_id=7,
        changes={"name": {"before": None, "after": "Archivists"}},
        meta={"comment": OUT_OF_SCOPE_CANARY},
    )
    _record(
        "login_public",
        entries,
        AuditAction.USER_LOGIN,
        actor=public,
        ctx=request_context("198.51.100.23", home_ua),
        entity="User",
        entity_id=public.pk,
    )
    _record(
        "lock_create_public",
        entries,
        AuditAction.LOCK_CREATE,
        actor=public,
        ctx=request_context(CANARY_IP, CANARY_UA, "/locks/"),
        entity="FileLock",
        entity_id=HYPERLINK,
        changes={"path": {"before": None, "after": "docs/budget-2026.xlsx"}},
        meta={"note": CONTROL, "branch": "main"},
    )
    _record(
        "group_members",
        entries,
        AuditAction.GROUP_MEMBERS_SET,
        actor=staff,
        ctx=request_context("198.51.100.5", office_ua),
        entity="Group",
        entity_id=3,
        changes={"members": {"before": [], "after": [public.pk]}},
        meta={"comment": OUT_OF_SCOPE_CANARY},
    )
    _record(
        "lock_release_staff",
        entries,
        AuditAction.LOCK_RELEASE,
        actor=staff,
        ctx=request_context(CANARY_IPV6, office_ua, "/locks/"),
        entity="FileLock",
        entity_id=CONTROL,
        meta={"path": "docs/budget-2026.xlsx"},
    )
    with context.bound(request_context("198.51.100.23", home_ua, "/api/audit/events")):
        # As another system reports it: the end user and their address on whose behalf the service account acted.
        (entries["lock_ingested"],) = record_many(
            [
                EventSpec(
                    AuditAction.LOCK_CREATE,
                    entity="FileLock",
                    entity_id="lfs-42",
                    on_behalf_of="ext.user.42",
                    client_ip=CANARY_CLIENT_IP,
                    occurred_at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC),
                    meta={"path": "assets/logo.psd"},
                )
            ],
            actor=public,
        )
    _record(
        "role_update",
        entries,
        AuditAction.ROLE_UPDATE,
        actor=staff,
        ctx=request_context("198.51.100.5", office_ua),
        entity="Role",
        entity_id=7,
        changes={"name": {"before": "Archivists", "after": "Records"}},
        meta={"comment": OUT_OF_SCOPE_CANARY},
    )
    _record(
        "lock_force_staff",
        entries,
        AuditAction.LOCK_FORCE_RELEASE,
        actor=staff,
        ctx=request_context("198.51.100.5", office_ua, "/admin/locks/"),
        entity="FileLock",
        entity_id="lock-9001",
        meta={"reason": "owner on leave", "owner": "jordan.public"},
    )
    _record(
        "lock_system",
        entries,
        AuditAction.LOCK_RELEASE,
        entity="FileLock",
        entity_id="lock-9002",
        meta={"reason": "expired after 24 h"},
    )
    _record(
        "logout_public",
        entries,
        AuditAction.USER_LOGOUT,
        actor=public,
        ctx=request_context("198.51.100.23", home_ua),
        entity="User",
        entity_id=public.pk,
    )
    seal_pending()
    return Trail(
        staff=staff,
        public=public,
        entries=entries,
        in_scope=["lock_create_public", "lock_release_staff", "lock_ingested", "lock_force_staff", "lock_system"],
        out_of_scope_in_range=["group_members", "role_update", "logout_public"],
    )


@pytest.fixture
def trail(db, signing_key) -> Trail:
    """The trail, sealed; sealing with a key configured signs a digest at its head."""
    made = make_trail()
    assert SignedDigest.objects.filter(chain_index=made.seal("logout_public").chain_index).exists()
    return made


def default_profile() -> RedactionProfile:
    return RedactionProfile.objects.get(name=DEFAULT_PROFILE_NAME)


def new_request(**fields: Any) -> FoiaRequest:
    values = {
        "requester": "Jane Doe",
        "requester_email": "jane@example.org",
        "description": "All file lock events",
        "received_on": dt.date(2026, 3, 2),
        "scope_action_prefix": "LOCK.",
        "redaction_profile": default_profile(),
        **fields,
    }
    return foia_request_create(actor=None, **values)


# --- the bundle -----------------------------------------------------------------------------------------------------


@dataclass
class Bundle:
    raw: bytes
    path: Path
    names: list[str]
    members: dict[str, bytes] = field(repr=False)

    @classmethod
    def of(cls, raw: bytes, path: Path) -> "Bundle":
        path.write_bytes(raw)
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
            members = {name: archive.read(name) for name in names}
        return cls(raw, path, names, members)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.members["manifest.json"])

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.members["records.jsonl"].decode("utf-8").splitlines()]

    @property
    def proof(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.members["proof.jsonl"].decode("utf-8").splitlines()]

    @property
    def csv_rows(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.members["records.csv"].decode("utf-8"), newline="")))

    def record_of(self, entry: AuditLog) -> dict[str, Any]:
        (found,) = [row for row in self.records if row["id"] == entry.pk]
        return found

    def csv_row_of(self, entry: AuditLog) -> dict[str, str]:
        (found,) = [row for row in self.csv_rows if row["id"] == str(entry.pk)]
        return found


def post_export(client, foia: FoiaRequest):
    return client.post(CHANGELIST_URL, {"action": "export_bundle", "_selected_action": [foia.pk]})


def export_through_admin(client, foia: FoiaRequest, tmp_path: Path) -> Bundle:
    response = post_export(client, foia)
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    return Bundle.of(b"".join(response.streaming_content), tmp_path / f"{foia.tracking_number}.zip")


@dataclass
class DirectExport:
    bundle: Bundle
    summary: Any
    completions: list[tuple[str, Any]]


def export_directly(
    entries,
    rules: list[RedactionRule],
    tmp_path: Path,
    *,
    filters: dict | None = None,
    tracking_number: str | None = None,
) -> DirectExport:
    """plan + stream_bundle into a BytesIO, as a script would call them."""
    scope = ExportScope(entries=entries, rules=rules, filters=filters or {}, tracking_number=tracking_number)
    summary = plan(scope)
    completions: list[tuple[str, Any]] = []
    out = io.BytesIO()
    for chunk in stream_bundle(
        scope,
        summary,
        cover_pdf=lambda done: cover_for(scope, done),
        on_complete=lambda sha, done: completions.append((sha, done)),
    ):
        out.write(chunk)
    name = tracking_number or "direct-export"
    return DirectExport(Bundle.of(out.getvalue(), tmp_path / f"{name}.zip"), summary, completions)


@pytest.fixture
def foia_request(trail) -> FoiaRequest:
    return new_request()


@pytest.fixture
def released(admin_client, foia_request, tmp_path) -> Bundle:
    """The request's bundle as the FOIA officer's admin action streams it."""
    return export_through_admin(admin_client, foia_request, tmp_path)


def canonical(value: Any) -> bytes:
    """Canonical JSON as VERIFY.txt describes it, written here without audit.hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def run_verify(path: Path, public_key: Path) -> tuple[int, str]:
    """audit_verify_bundle's exit status and output (it sys.exit(1)s on failure)."""
    out = StringIO()
    try:
        call_command("audit_verify_bundle", str(path), "--public-key", str(public_key), stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- the members and their counts -----------------------------------------------------------------------------------


def test_admin_export_streams_a_zip_holding_every_member(admin_client, foia_request, tmp_path):
    """The admin action answers with a streamed application/zip named after the tracking number, holding
    records.csv, records.jsonl, proof.jsonl, cover.pdf, VERIFY.txt and manifest.json, the manifest last."""
    response = post_export(admin_client, foia_request)

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{foia_request.tracking_number}.zip"'
    bundle = Bundle.of(b"".join(response.streaming_content), tmp_path / "bundle.zip")
    assert set(bundle.names) == MEMBERS
    assert len(bundle.names) == len(MEMBERS)
    assert bundle.names[-1] == "manifest.json"


def test_manifest_counts_match_the_records_and_the_scope(released, trail, foia_request):
    """counts.released is the number of entries in the request's scope and of lines in records.jsonl and rows in
    records.csv; positions is the number of proof lines and of the range; out_of_scope the digest-only lines;
    fields_withheld and the exemptions add up the profile's rules per actor (3 for everyone, 2 more for staff)."""
    manifest = released.manifest
    counts = manifest["counts"]
    in_scope_ids = list(foia_scope(foia_request).values_list("pk", flat=True))

    assert in_scope_ids == [trail.entry(name).pk for name in trail.in_scope]
    assert counts["released"] == len(in_scope_ids) == 5
    assert [row["id"] for row in released.records] == in_scope_ids
    assert [int(row["id"]) for row in released.csv_rows] == in_scope_ids
    assert (
        counts["positions"]
        == len(released.proof)
        == manifest["chain"]["last_index"] - manifest["chain"]["first_index"] + 1
    )
    assert counts["positions"] == len(trail.in_scope) + len(trail.out_of_scope_in_range) == 8
    assert counts["out_of_scope"] == sum("digest" in line for line in released.proof) == 3
    # Three public entries (the system's counts as not staff) withhold 3 fields, two staff entries 5.
    assert counts["fields_withheld"] == 3 * 3 + 2 * 5
    assert manifest["exemptions"] == {"(b)(6)": 15, "(b)(7)(C)": 4}
    assert manifest["request"] == foia_request.tracking_number
    assert manifest["filters"] == {"action_prefix": "LOCK."}


def test_redaction_marks_stand_in_place_of_the_withheld_fields(released, trail):
    """In records.jsonl and records.csv every in-scope entry shows "[REDACTED (b)(6)]" in ip_address, user_agent
    and client_ip, whatever the stored value (also an empty one), and the proof holds a commitment for exactly the
    withheld fields and a field salt for every other one."""
    for name in trail.in_scope:
        entry = trail.entry(name)
        for row in (released.record_of(entry), released.csv_row_of(entry)):
            assert row["ip_address"] == B6
            assert row["user_agent"] == B6
            assert row["client_ip"] == B6
    for line in released.proof:
        if "entry_id" in line:
            staff = line["entry_id"] in {trail.entry("lock_release_staff").pk, trail.entry("lock_force_staff").pk}
            withheld = {"ip_address", "user_agent", "client_ip"} | ({"actor_label", "actor_id"} if staff else set())
            assert set(line["commitments"]) == withheld
            assert set(line["field_salts"]) == set(released.manifest["committed_fields"]) - withheld


def test_staff_only_rules_withhold_the_identity_of_staff_actors_only(released, trail):
    """The (b)(7)(C) rules are staff_only: the staff actor's name and id are marked, the member of the public's and
    the system's (no actor) are released as recorded."""
    for name in ("lock_release_staff", "lock_force_staff"):
        for row in (released.record_of(trail.entry(name)), released.csv_row_of(trail.entry(name))):
            assert row["actor_label"] == B7C
            assert row["actor_id"] == B7C
    for name in ("lock_create_public", "lock_ingested"):
        assert released.record_of(trail.entry(name))["actor_label"] == "jordan.public"
        assert released.record_of(trail.entry(name))["actor_id"] == trail.public.pk
        assert released.csv_row_of(trail.entry(name))["actor_id"] == str(trail.public.pk)
    system = released.record_of(trail.entry("lock_system"))
    assert system["actor_label"] == ""
    assert system["actor_id"] is None


def test_withheld_values_are_absent_from_every_file_of_the_bundle(released, trail):
    """Grep the unzipped bundle: no IP address, user agent or client IP of the trail, no staff name, nothing of the
    out-of-scope entries and no entry's secret salt appears in the raw bytes of any member, nor in the text of the
    cover letter; a released value (the public user's name) is found, so the search itself works."""
    needles = [value.encode("utf-8") for value in trail.withheld_values()]
    salts = [bytes(entry.salt) for entry in trail.entries.values()]
    needles += [salt.hex().encode("ascii") for salt in salts]
    assert len(trail.withheld_values()) >= 9
    cover_text = pdf_text(released.members["cover.pdf"]).encode("utf-8")
    for name, content in [*released.members.items(), ("cover.pdf (text)", cover_text)]:
        for needle in needles:
            assert needle not in content, f"{needle!r} found in {name}"
        for salt in salts:
            assert salt not in content, f"an entry's salt found in {name}"
    assert b"jordan.public" in released.members["records.jsonl"]
    assert b"jordan.public" in released.members["records.csv"]


def test_released_values_are_the_stored_ones_with_iso_times(released, trail):
    """Every field a rule does not withhold is released as stored: times in ISO 8601 with offset (UTC), JSON fields
    as objects in the JSONL and as JSON text in the CSV."""
    entry = trail.entry("lock_ingested")
    row = released.record_of(entry)
    assert row["created_at"] == entry.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    assert row["created_at"].endswith("+00:00")
    assert row["occurred_at"] == "2026-03-02T09:30:00.000000+00:00"
    assert row["on_behalf_of"] == "ext.user.42"
    assert row["action"] == "LOCK.CREATE"
    assert row["entity"] == "FileLock"
    assert row["entity_id"] == "lfs-42"
    assert row["outcome"] == "success"
    assert row["meta"] == {"path": "assets/logo.psd"}
    assert row["perms_snapshot"] == entry.perms_snapshot
    assert row["request_id"] == entry.request_id
    assert row["chain_index"] == trail.seal("lock_ingested").chain_index
    cells = released.csv_row_of(entry)
    assert cells["created_at"] == row["created_at"]
    assert json.loads(cells["meta"]) == {"path": "assets/logo.psd"}
    assert released.record_of(trail.entry("lock_force_staff"))["meta"] == {
        "reason": "owner on leave",
        "owner": "jordan.public",
    }


# --- manifest, signatures and proof ---------------------------------------------------------------------------------


def test_manifest_lists_the_sha256_of_every_other_member(released):
    """manifest.files holds the SHA-256 of each other member, and they match the bytes in the ZIP."""
    files = released.manifest["files"]

    assert set(files) == MEMBERS - {"manifest.json"}
    for name, expected in files.items():
        assert hashlib.sha256(released.members[name]).hexdigest() == expected, name


def test_manifest_and_signed_digest_verify_with_the_public_key(released, signing_key):
    """With cryptography and the public key file alone: the manifest's signature over its canonical JSON (without
    the two signature keys) verifies, the signed digest's signature over its statement verifies, both name the
    key's fingerprint, and neither verifies once a byte of what it signs changes."""
    manifest = released.manifest
    key = signing_key.public_key()
    document = {
        name: value for name, value in manifest.items() if name not in ("signature", "signature_key_fingerprint")
    }
    key.verify(bytes.fromhex(manifest["signature"]), canonical(document))
    assert manifest["signature_key_fingerprint"] == signing_key.fingerprint()

    signed = manifest["signed_digest"]
    statement = canonical({name: signed[name] for name in ("chain_index", "head_hash", "signed_at", "prev_signature")})
    key.verify(bytes.fromhex(signed["signature"]), statement)
    assert signed["key_fingerprint"] == signing_key.fingerprint()

    with pytest.raises(InvalidSignature):
        key.verify(bytes.fromhex(manifest["signature"]), canonical({**document, "request": "FOIA-2026-999999"}))
    with pytest.raises(InvalidSignature):
        key.verify(bytes.fromhex(signed["signature"]), statement.replace(b'"chain_index":', b'"chain_index":1'))


def test_range_runs_from_the_first_in_scope_position_to_the_signed_digest(released, trail):
    """The chain range starts at the first in-scope entry's position (entries before it are not in the proof) and
    ends at the signed digest's head: a digest stored on the server, whose head is the chain hash at its position."""
    chain = released.manifest["chain"]
    signed = released.manifest["signed_digest"]
    first = trail.seal("lock_create_public")
    digest = SignedDigest.objects.get(chain_index=signed["chain_index"])

    assert chain["first_index"] == first.chain_index
    assert chain["start_prev_hash"] == first.prev_hash == trail.seal("login_public").hash
    assert chain["last_index"] == signed["chain_index"] == trail.seal("logout_public").chain_index
    assert chain["head_hash"] == signed["head_hash"] == digest.head_hash == trail.seal("logout_public").hash
    assert signed["signature"] == digest.signature
    assert [line["chain_index"] for line in released.proof] == list(
        range(chain["first_index"], chain["last_index"] + 1)
    )


def test_out_of_scope_positions_carry_only_a_digest(released, trail):
    """A position outside the request's scope is a proof line of chain_index, digest and hash only (its seal's),
    with no record; a released position names its entry and has no digest."""
    by_index = {line["chain_index"]: line for line in released.proof}
    for name in trail.out_of_scope_in_range:
        seal = trail.seal(name)
        assert by_index[seal.chain_index] == {"chain_index": seal.chain_index, "digest": seal.digest, "hash": seal.hash}
        assert trail.entry(name).pk not in {row["id"] for row in released.records}
    for name in trail.in_scope:
        line = by_index[trail.seal(name).chain_index]
        assert line["entry_id"] == trail.entry(name).pk
        assert "digest" not in line
        assert line["hash"] == trail.seal(name).hash


def test_proof_recomputes_the_chain_to_the_signed_head_following_verify_txt(released):
    """Following VERIFY.txt with hashlib alone: each released record's commitments (or the withheld fields' given
    ones) give its digest, each line's hash is SHA-256(prev || digest), and the last hash is the signed head."""
    manifest = released.manifest
    records = iter(released.records)
    prev = manifest["chain"]["start_prev_hash"]
    for line in released.proof:
        if "digest" in line:
            digest = line["digest"]
        else:
            record_ = next(records)
            assert record_["chain_index"] == line["chain_index"]
            commitments = {}
            for name in manifest["committed_fields"]:
                if name in line["commitments"]:
                    assert str(record_[name]).startswith("[REDACTED ")
                    commitments[name] = line["commitments"][name]
                else:
                    salt = bytes.fromhex(line["field_salts"][name])
                    commitments[name] = hashlib.sha256(salt + name.encode() + canonical(record_[name])).hexdigest()
            digest = hashlib.sha256(canonical(commitments)).hexdigest()
        prev = hashlib.sha256(bytes.fromhex(prev) + bytes.fromhex(digest)).hexdigest()
        assert prev == line["hash"], line["chain_index"]
    assert next(records, None) is None
    assert prev == manifest["chain"]["head_hash"] == manifest["signed_digest"]["head_hash"]


def test_cover_pdf_opens_and_states_the_tracking_number_and_exemptions(released, foia_request):
    """cover.pdf opens with pypdf; its text holds the tracking number, the requester, what was searched, the
    released count and each exemption applied with its count."""
    pdf = released.members["cover.pdf"]
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 1
    text = pdf_text(pdf)

    assert foia_request.tracking_number in text
    assert "Jane Doe" in text
    assert "LOCK." in text
    assert "5 records" in text
    assert "(b)(6): 15 values withheld" in text
    assert "(b)(7)(C): 4 values withheld" in text
    assert "90 days" in text


def test_verify_txt_states_the_algorithm_and_the_key_fingerprint(released, signing_key):
    """VERIFY.txt names Ed25519 and SHA-256, gives the command, the signing key's fingerprint (computed here) and
    the public key itself."""
    text = released.members["VERIFY.txt"].decode("utf-8")

    assert "Ed25519" in text
    assert "SHA-256" in text
    assert "audit_verify_bundle" in text
    assert signing_key.fingerprint() in text
    pem_lines = signing_key.public_path.read_text().strip().splitlines()
    for line in pem_lines:
        assert f"    {line}\n" in text


def test_audit_verify_bundle_passes_on_the_untouched_bundle(released, signing_key):
    """audit_verify_bundle exits 0 on the bundle as released and reports the released entries and positions."""
    status, output = run_verify(released.path, signing_key.public_path)

    assert status == 0, output
    assert "Bundle verified: 5 released entries over 8 chain positions, signed head reached." in output


# --- what the release records ---------------------------------------------------------------------------------------


def test_export_is_recorded_as_one_audit_export_entry_naming_request_and_manifest(
    admin_client, admin_user, foia_request, tmp_path
):
    """Once streamed, exactly one AUDIT.EXPORT entry exists, by the officer, from the request's context, with
    meta.request = the tracking number and meta.manifest_sha256 = SHA-256 of the bundle's manifest.json."""
    response = post_export(admin_client, foia_request)
    bundle = Bundle.of(b"".join(response.streaming_content), tmp_path / "bundle.zip")

    entry = read_back(action=AuditAction.AUDIT_EXPORT)
    assert entry.meta["request"] == foia_request.tracking_number
    assert entry.meta["manifest_sha256"] == hashlib.sha256(bundle.members["manifest.json"]).hexdigest()
    assert entry.meta["released"] == 5
    assert entry.meta["fields_withheld"] == 19
    assert entry.meta["chain_range"] == [
        bundle.manifest["chain"]["first_index"],
        bundle.manifest["chain"]["last_index"],
    ]
    assert entry.actor_id == admin_user.pk
    assert entry.ip_address == "127.0.0.1"
    assert entry.request_id == response["X-Request-ID"]


def test_request_moves_to_released_through_processing_with_the_manifest_hash(released, admin_user, foia_request):
    """A received request becomes released with the manifest's SHA-256 and a release time, passing through
    processing: two FOIA.REQUEST.UPDATE entries by the officer record the two steps."""
    foia = FoiaRequest.objects.get(pk=foia_request.pk)
    assert foia.status == Status.RELEASED
    assert foia.manifest_sha256 == hashlib.sha256(released.members["manifest.json"]).hexdigest()
    assert foia.released_at is not None
    updates = AuditLog.objects.filter(action=AuditAction.FOIA_REQUEST_UPDATE, entity_id=str(foia.pk)).order_by("id")
    assert [entry.changes["status"] for entry in updates] == [
        {"before": "received", "after": "processing"},
        {"before": "processing", "after": "released"},
    ]
    assert updates[1].changes["manifest_sha256"] == {"before": "", "after": foia.manifest_sha256}
    assert {entry.actor_id for entry in updates} == {admin_user.pk}


def test_release_of_a_processing_request_is_one_step(admin_client, foia_request, tmp_path):
    """A request already in processing is released in one FOIA.REQUEST.UPDATE entry."""
    foia_request_update(actor=None, request_id=foia_request.pk, status=Status.PROCESSING)

    export_through_admin(admin_client, foia_request, tmp_path)

    updates = AuditLog.objects.filter(action=AuditAction.FOIA_REQUEST_UPDATE, entity_id=str(foia_request.pk))
    assert [entry.changes["status"] for entry in updates.order_by("id")] == [
        {"before": "received", "after": "processing"},
        {"before": "processing", "after": "released"},
    ]
    assert FoiaRequest.objects.get(pk=foia_request.pk).status == Status.RELEASED


# --- refusals -------------------------------------------------------------------------------------------------------


def admin_messages(client) -> list[str]:
    response = client.get(CHANGELIST_URL)
    return [str(message) for message in response.context["messages"]]


def assert_refused(client, foia: FoiaRequest, expected_message: str) -> None:
    """The action answered with a redirect and no body, the message is shown, nothing changed or was recorded."""
    status_before = FoiaRequest.objects.get(pk=foia.pk).status
    response = post_export(client, foia)

    assert response.status_code == 302
    assert not response.streaming
    assert response.content == b""
    assert admin_messages(client) == [expected_message]
    after = FoiaRequest.objects.get(pk=foia.pk)
    assert after.status == status_before
    assert after.manifest_sha256 == ""
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()
    assert not AuditLog.objects.filter(action=AuditAction.FOIA_REQUEST_UPDATE, entity_id=str(foia.pk)).exists()


def test_empty_scope_is_refused_with_a_message_and_no_body(admin_client, trail):
    """A request whose scope matches no entry: the admin shows "Nothing to export" with the tracking number, sends
    no bundle, and the request stays received."""
    foia = new_request(scope_entity="NoSuchEntity")

    assert_refused(admin_client, foia, f"{foia.tracking_number}: Nothing to export: no audit entry matches the scope.")


def test_export_without_a_signing_key_is_refused_with_a_clear_message(admin_client, db, no_key):
    """No signing key configured (so no digest exists): the action says the export must be signed and how to
    configure a key; no server error, no bundle, no state change."""
    make_trail()
    assert not SignedDigest.objects.exists()
    foia = new_request()

    assert_refused(
        admin_client,
        foia,
        f"{foia.tracking_number}: An export must be signed: no signing key: set AUDIT_SIGNING_KEY_FILE "
        "(make a key pair with `manage.py audit_keygen`)",
    )


def test_export_whose_key_is_gone_is_refused_before_anything_is_sent(admin_client, trail, settings):
    """A digest covering the scope exists, but the signing key is no longer configured: the manifest cannot be
    signed, so the action refuses up front with a clear message instead of breaking off a started download."""
    foia = new_request()
    settings.AUDIT_SIGNING_KEY_FILE = ""

    assert_refused(
        admin_client,
        foia,
        f"{foia.tracking_number}: An export must be signed: no signing key: set AUDIT_SIGNING_KEY_FILE "
        "(make a key pair with `manage.py audit_keygen`)",
    )


def test_closed_request_is_refused(admin_client, trail):
    """A closed request is not released: the admin says it is closed and sends nothing."""
    foia = new_request()
    foia_request_update(actor=None, request_id=foia.pk, status=Status.CLOSED)
    status_before = FoiaRequest.objects.get(pk=foia.pk).status

    response = post_export(admin_client, foia)

    assert response.status_code == 302
    assert response.content == b""
    assert admin_messages(admin_client) == [f"{foia.tracking_number} is closed."]
    assert FoiaRequest.objects.get(pk=foia.pk).status == status_before == Status.CLOSED
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()


def test_two_requests_selected_are_refused(admin_client, trail):
    """The action releases one request at a time: selecting two sends nothing and says so."""
    first, second = new_request(), new_request()

    response = admin_client.post(CHANGELIST_URL, {"action": "export_bundle", "_selected_action": [first.pk, second.pk]})

    assert response.status_code == 302
    assert admin_messages(admin_client) == ["Select exactly one request to release."]
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()


def test_officer_with_view_right_only_cannot_release(client, trail):
    """A compliance officer (view permissions only) is not offered the release action: posting it sends no
    bundle and leaves the request received."""
    foia = new_request()
    officer = OfficerFactory()
    client.force_login(officer)

    response = post_export(client, foia)

    assert not response.streaming
    assert FoiaRequest.objects.get(pk=foia.pk).status == Status.RECEIVED
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()


# --- a bundle made directly -----------------------------------------------------------------------------------------


def test_direct_export_of_several_families_verifies_and_applies_any_rule(trail, signing_key, tmp_path):
    """plan + stream_bundle into a BytesIO, over LOCK., ROLE. and GROUP. entries with rules withholding meta under
    (b)(5) and the actor's name of staff under (b)(7)(C): on_complete runs once with the manifest's SHA-256, the
    summary counts what was written, meta is marked everywhere, the out-of-scope canary is released only as the
    (b)(5) mark, and audit_verify_bundle accepts the bundle."""
    families = AuditLog.objects.filter(action__regex=r"^(LOCK|ROLE|GROUP)\.").order_by("id")
    rules = [RedactionRule("meta", "(b)(5)"), RedactionRule("actor_label", "(b)(7)(C)", staff_only=True)]

    made = export_directly(families, rules, tmp_path, filters={"families": ["LOCK", "ROLE", "GROUP"]})

    bundle = made.bundle
    ((sha, summary),) = made.completions
    assert sha == hashlib.sha256(bundle.members["manifest.json"]).hexdigest()
    assert summary is made.summary
    assert summary.released == families.count() == len(bundle.records) == 8
    # The range starts at role_create: the login after it and the logout at the end are outside the scope.
    assert summary.out_of_scope == bundle.manifest["counts"]["out_of_scope"] == 2
    assert bundle.manifest["chain"]["first_index"] == trail.seal("role_create").chain_index
    assert bundle.manifest["exemptions"] == {"(b)(5)": 8, "(b)(7)(C)": 5}  # five entries by the staff actor
    assert bundle.manifest["request"] is None
    assert all(row["meta"] == "[REDACTED (b)(5)]" for row in bundle.records)
    for content in bundle.members.values():
        assert OUT_OF_SCOPE_CANARY.encode() not in content
        assert STAFF_USERNAME.encode() not in content
    # Not withheld by these rules: the IP addresses are released as recorded.
    assert bundle.record_of(trail.entry("lock_create_public"))["ip_address"] == CANARY_IP
    assert "Release of audit records" in pdf_text(bundle.members["cover.pdf"])
    status, output = run_verify(bundle.path, signing_key.public_path)
    assert status == 0, output
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()  # on_complete was ours


def test_plan_signs_a_digest_on_demand_when_none_covers_the_scope(trail, signing_key, tmp_path):
    """An in-scope entry recorded after the last signed digest: plan signs the current head, and the range ends
    there; an export whose scope ends before an existing digest reuses that digest instead."""
    reused = plan(ExportScope(entries=AuditLog.objects.filter(action__startswith="LOCK."), rules=[], filters={}))
    assert reused.digest.chain_index == trail.seal("logout_public").chain_index
    before = SignedDigest.objects.count()

    late = record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="late-1", actor=trail.public)
    made = export_directly(AuditLog.objects.filter(action__startswith="LOCK."), [], tmp_path)

    assert SignedDigest.objects.count() == before + 1
    late_seal = Seal.objects.get(entry_id=late.pk)
    assert made.bundle.manifest["chain"]["last_index"] == late_seal.chain_index
    assert made.bundle.manifest["chain"]["head_hash"] == late_seal.hash
    assert run_verify(made.bundle.path, signing_key.public_path)[0] == 0


def test_plan_refuses_an_empty_scope_with_export_error(trail):
    """plan raises ExportError naming the empty scope."""
    with pytest.raises(ExportError, match="Nothing to export: no audit entry matches the scope."):
        plan(ExportScope(entries=AuditLog.objects.none(), rules=[], filters={}))


# --- CSV ------------------------------------------------------------------------------------------------------------


FORMULA_CELLS = {
    # stored entity_id -> the cell in records.csv
    "=1+1": "'=1+1",
    "+1+1": "'+1+1",
    "-1+1": "'-1+1",
    "@SUM(A1:A2)": "'@SUM(A1:A2)",
    HYPERLINK: "'" + HYPERLINK,
    # A leading tab or CR is escaped to text and gets the apostrophe too: unescaped, the cell is still no formula.
    "\t=1+1": "'\\t=1+1",
    "\r=1+1": "'\\r=1+1",
    CONTROL: "a\\nb\\x1b[31m",
    "lock-17": "lock-17",
}
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.fixture
def csv_bundle(db, signing_key, tmp_path) -> Bundle:
    """Entries whose entity_id, on_behalf_of, user agent and meta carry formulas and control characters, exported
    without redaction so every field reaches the CSV."""
    for entity_id in FORMULA_CELLS:
        with context.bound(request_context("198.51.100.9", "Mozilla\r\nX-Injected: 1\x1b[2J")):
            record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=entity_id, meta={"note": entity_id})
    record_many([EventSpec(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="ext", on_behalf_of="@attacker")])
    return export_directly(AuditLog.objects.all(), [], tmp_path).bundle


def test_csv_cells_that_would_start_a_formula_are_neutralised(csv_bundle):
    """A cell starting with =, +, -, @, tab or CR gets a leading apostrophe (tab and CR also escaped);
    no cell anywhere in records.csv starts with one of those six characters."""
    cells = [row["entity_id"] for row in csv_bundle.csv_rows[: len(FORMULA_CELLS)]]
    assert cells == list(FORMULA_CELLS.values())
    assert csv_bundle.csv_rows[-1]["on_behalf_of"] == "'@attacker"
    for row in csv.reader(io.StringIO(csv_bundle.members["records.csv"].decode("utf-8"), newline="")):
        for cell in row:
            assert not cell.startswith(DANGEROUS_START), cell


def test_csv_escapes_control_characters_one_line_per_record(csv_bundle):
    """Control characters in any field are escaped in records.csv: no ESC or other control byte in a cell, one
    physical CRLF-terminated line per record; records.jsonl keeps the value as data (JSON-escaped) so it verifies."""
    raw = csv_bundle.members["records.csv"]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    for row in rows:
        for cell in row:
            assert not CONTROL_CHARACTERS.search(cell), cell
    assert b"\x1b" not in raw
    assert raw.count(b"\r\n") == raw.count(b"\n") == raw.count(b"\r") == len(rows) == len(FORMULA_CELLS) + 2
    first = csv_bundle.csv_rows[0]
    assert first["user_agent"] == "Mozilla\\r\\nX-Injected: 1\\x1b[2J"
    control_row = [row for row in csv_bundle.csv_rows if row["entity_id"] == "a\\nb\\x1b[31m"][0]
    assert json.loads(control_row["meta"]) == {"note": CONTROL}
    jsonl = csv_bundle.members["records.jsonl"]
    assert b"\x1b" not in jsonl
    assert len(jsonl.splitlines()) == len(FORMULA_CELLS) + 1
    assert [row["entity_id"] for row in csv_bundle.records][: len(FORMULA_CELLS)] == list(FORMULA_CELLS)


# --- streaming and memory -------------------------------------------------------------------------------------------


def bulk_trail(count: int, *, start: int = 0) -> None:
    """``count`` entries of three families by one actor, in one request context, then sealed."""
    families = (AuditAction.LOCK_CREATE, AuditAction.ROLE_UPDATE, AuditAction.USER_LOGIN)
    actor = UserFactory()
    with context.bound(request_context("198.51.100.200", "bulk-agent/1.0")):
        for offset in range(0, count, 5000):
            specs = [
                EventSpec(
                    families[n % 3], entity="FileLock", entity_id=f"lock-{n}", meta={"path": f"docs/file-{n}.txt"}
                )
                for n in range(start + offset, start + min(offset + 5000, count))
            ]
            record_many(specs, actor=actor)
    seal_pending()


def test_stream_yields_its_first_chunk_before_reading_all_rows(signing_key, db, settings):
    """Over a range of 5,000 positions, the first chunk (the ZIP's first bytes) comes out after one batch of rows:
    the summary has counted CHUNK_ROWS positions, only the first of the three passes over the range has queried,
    and nothing is recorded yet; the rest follows as the consumer reads on."""
    settings.AUDIT_SEAL_BATCH_SIZE = 5000
    bulk_trail(5000)
    scope = ExportScope(entries=AuditLog.objects.filter(action__startswith="LOCK."), rules=[], filters={})
    summary = plan(scope)
    positions = summary.last_index - summary.first_index + 1
    assert positions == 5000
    completed = []
    stream = stream_bundle(
        scope, summary, cover_pdf=lambda done: b"%PDF-", on_complete=lambda *args: completed.append(args)
    )

    with CaptureQueriesContext(connection) as queries:
        first = next(stream)
        at_first_chunk = len(queries.captured_queries)
        read_at_first_chunk = summary.released + summary.out_of_scope
        completed_at_first_chunk = list(completed)
        rest = b"".join(stream)

    assert first.startswith(b"PK\x03\x04")
    assert read_at_first_chunk == CHUNK_ROWS < positions
    assert at_first_chunk == 2  # the positions, and the keys of the first chunk's encrypted entries
    assert completed_at_first_chunk == []
    range_queries = [query for query in queries.captured_queries if '"audit_seal"."chain_index" >=' in query["sql"]]
    assert len(range_queries) == 3  # one pass each for records.jsonl, records.csv and proof.jsonl
    assert summary.released + summary.out_of_scope == positions
    assert len(completed) == 1
    with zipfile.ZipFile(io.BytesIO(first + rest)) as archive:
        assert len(archive.read("proof.jsonl").splitlines()) == positions


def test_admin_response_starts_before_the_bundle_is_built(admin_client, foia_request):
    """The admin action returns a streaming response at once: when the view has returned, no chunk has been made
    (nothing recorded, the request still received); the first chunk read is the ZIP's first header, and the export
    is recorded only once the body has been read to the end."""
    response = post_export(admin_client, foia_request)

    assert response.streaming
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()
    assert FoiaRequest.objects.get(pk=foia_request.pk).status == Status.RECEIVED
    chunks = iter(response.streaming_content)
    assert next(chunks).startswith(b"PK\x03\x04")
    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()
    for _ in chunks:
        pass
    assert AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).count() == 1
    assert FoiaRequest.objects.get(pk=foia_request.pk).status == Status.RELEASED


def stream_lock_release() -> int:
    """Stream a release of the LOCK family (a third of the bulk trail, spread over all of it) with the default
    profile, hashing and dropping each chunk as a socket would; the bundle's size."""
    scope = ExportScope(
        entries=AuditLog.objects.filter(action__startswith="LOCK."),
        rules=default_profile().redaction_rules(),
        filters={},
        tracking_number="FOIA-2026-000042",
    )
    summary = plan(scope)
    size = 0
    sha = hashlib.sha256()
    for chunk in stream_bundle(
        scope, summary, cover_pdf=lambda done: cover_for(scope, done), on_complete=lambda *a: None
    ):
        size += len(chunk)
        sha.update(chunk)
    return size


def peak_memory_of_export() -> tuple[int, int]:
    """tracemalloc's peak above the starting point while the whole trail is streamed, and the bundle's size."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        size = stream_lock_release()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return peak, size


def test_peak_memory_of_twenty_thousand_entries_is_close_to_two_thousand(signing_key, db, settings):
    """Streaming a range of 20,000 positions peaks at less than 3x the memory of streaming 2,000 (a warm-up export
    first, so one-time costs count for neither), and below the size of the 20,000-position bundle itself."""
    settings.AUDIT_SEAL_BATCH_SIZE = 5000
    bulk_trail(2000)
    stream_lock_release()  # warm-up: imports, fonts, caches
    small, small_size = peak_memory_of_export()
    bulk_trail(18000, start=2000)
    large, large_size = peak_memory_of_export()

    assert large_size > 8 * small_size
    assert large < 3 * small, (small, large)
    assert large < large_size, (large, large_size)
