# ruff: noqa: F811  (the fixtures imported from test_bundle are requested by name)
"""The offline check of a released bundle: audit_verify_bundle, with the public key alone, exits 1 and names the
entry, position or file at fault for every kind of change a recipient or a middleman could make to the ZIP."""

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from audit.foia_models import FoiaRequest
from audit.hashing import canonical_json
from audit.models import AuditLog
from audit.signing import fingerprint
from tests.audit.test_bundle import (  # noqa: F401  (fixtures used by name)
    B6,
    Bundle,
    Keys,
    _test_settings,
    foia_request,
    keygen,
    no_key,
    released,
    run_verify,
    signing_key,
    trail,
)


def rewrite(bundle: Bundle, tmp_path: Path, name: str, change: Callable[[bytes], bytes]) -> Path:
    """A copy of the bundle with member ``name`` replaced by ``change(its bytes)``; the other members, their order
    and the manifest are left as they were."""
    path = tmp_path / f"tampered-{name}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in bundle.names:
            content = bundle.members[member]
            archive.writestr(member, change(content) if member == name else content)
    return path


def jsonl_lines(content: bytes) -> list[bytes]:
    return content.splitlines(keepends=True)


def edit_record(entry_id: int, **values: object) -> Callable[[bytes], bytes]:
    def change(content: bytes) -> bytes:
        lines = []
        for line in jsonl_lines(content):
            row = json.loads(line)
            if row["id"] == entry_id:
                row.update(values)
                line = json.dumps(row, ensure_ascii=False, sort_keys=True).encode() + b"\n"
            lines.append(line)
        return b"".join(lines)

    return change


def drop_line(where: Callable[[dict], bool]) -> Callable[[bytes], bytes]:
    def change(content: bytes) -> bytes:
        kept = [line for line in jsonl_lines(content) if not where(json.loads(line))]
        assert len(kept) == len(jsonl_lines(content)) - 1
        return b"".join(kept)

    return change


def swap_lines(first: Callable[[dict], bool], second: Callable[[dict], bool]) -> Callable[[bytes], bytes]:
    def change(content: bytes) -> bytes:
        lines = jsonl_lines(content)
        (i,) = [n for n, line in enumerate(lines) if first(json.loads(line))]
        (j,) = [n for n, line in enumerate(lines) if second(json.loads(line))]
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines)

    return change


def of_entry(entry: AuditLog) -> Callable[[dict], bool]:
    return lambda row: row.get("id", row.get("entry_id")) == entry.pk


def assert_rejected(path: Path, keys: Keys, *expected: str) -> str:
    status, output = run_verify(path, keys.public_path)
    assert status == 1, output
    assert "Bundle NOT verified" in output
    for text in expected:
        assert text in output, output
    return output


def test_edited_released_value_fails_naming_the_entry(released, trail, signing_key, tmp_path):
    """One released value changed in records.jsonl (the entity id of one record): the check fails, names the entry
    and its chain position as not matching the chain, and the file as changed."""
    entry = trail.entry("lock_force_staff")
    index = trail.seal("lock_force_staff").chain_index

    path = rewrite(released, tmp_path, "records.jsonl", edit_record(entry.pk, entity_id="lock-0000"))

    output = assert_rejected(
        path,
        signing_key,
        f"entry {entry.pk} (chain #{index}): does not match the chain (a value was changed)",
        "records.jsonl: SHA-256 does not match the manifest",
    )
    assert f"entry {trail.entry('lock_create_public').pk} " not in output  # the entries before it are fine


def test_edited_released_time_fails_naming_the_entry(released, trail, signing_key, tmp_path):
    """A released timestamp moved by one microsecond fails the same way: every released field is committed."""
    entry = trail.entry("lock_create_public")
    created = released.record_of(entry)["created_at"]
    moved = created[:-7] + str((int(created[-7]) + 1) % 10) + created[-6:]
    assert moved != created

    path = rewrite(released, tmp_path, "records.jsonl", edit_record(entry.pk, created_at=moved))

    assert_rejected(path, signing_key, f"entry {entry.pk} (chain #{trail.seal('lock_create_public').chain_index})")


def test_released_record_removed_fails_naming_the_entry(released, trail, signing_key, tmp_path):
    """A released entry's record deleted from records.jsonl (its proof line kept): the check names the entry as
    missing at its position."""
    entry = trail.entry("lock_ingested")
    index = trail.seal("lock_ingested").chain_index

    path = rewrite(released, tmp_path, "records.jsonl", drop_line(of_entry(entry)))

    assert_rejected(path, signing_key, f"records.jsonl: entry {entry.pk} (chain #{index}) is missing or out of order")


def test_two_records_swapped_fails_naming_the_entry(released, trail, signing_key, tmp_path):
    """Two records swapped in records.jsonl: the check names the first entry out of its place and the entry found
    there instead."""
    first, second = trail.entry("lock_release_staff"), trail.entry("lock_force_staff")
    first_index, second_index = trail.seal("lock_release_staff").chain_index, trail.seal("lock_force_staff").chain_index

    path = rewrite(released, tmp_path, "records.jsonl", swap_lines(of_entry(first), of_entry(second)))

    assert_rejected(
        path,
        signing_key,
        f"records.jsonl: entry {first.pk} (chain #{first_index}) is missing or out of order "
        f"(found entry {second.pk} at chain #{second_index})",
    )


def test_two_entries_swapped_with_positions_renumbered_fails_naming_the_entry(released, trail, signing_key, tmp_path):
    """A careful reorder: two released entries swap places in records.jsonl and proof.jsonl and take each other's
    chain_index, so the positions still run without a gap. The hashes no longer chain: the check names the entry now
    at the first swapped position."""
    first, second = trail.entry("lock_create_public"), trail.entry("lock_ingested")
    first_index, second_index = trail.seal("lock_create_public").chain_index, trail.seal("lock_ingested").chain_index

    def swapped(content: bytes) -> bytes:
        rows = [json.loads(line) for line in jsonl_lines(content)]
        (i,) = [n for n, row in enumerate(rows) if of_entry(first)(row)]
        (j,) = [n for n, row in enumerate(rows) if of_entry(second)(row)]
        rows[i], rows[j] = rows[j], rows[i]
        rows[i]["chain_index"], rows[j]["chain_index"] = first_index, second_index
        return b"".join(json.dumps(row, sort_keys=True).encode() + b"\n" for row in rows)

    tampered = rewrite(released, tmp_path, "records.jsonl", swapped)
    both = Bundle.of(tampered.read_bytes(), tmp_path / "unused.zip")
    path = rewrite(both, tmp_path, "proof.jsonl", swapped)

    assert_rejected(path, signing_key, f"entry {second.pk} (chain #{first_index}): does not match the chain")


def test_proof_line_removed_fails_naming_the_missing_position(released, trail, signing_key, tmp_path):
    """A proof line removed (here an out-of-scope position between two released entries, which has no record to
    name): the check names the chain position that is missing."""
    index = trail.seal("role_update").chain_index

    path = rewrite(released, tmp_path, "proof.jsonl", drop_line(lambda row: row["chain_index"] == index))

    assert_rejected(path, signing_key, f"proof.jsonl: chain #{index} is missing or out of order (found #{index + 1})")


def test_released_entry_removed_from_records_and_proof_fails_naming_its_position(
    released, trail, signing_key, tmp_path
):
    """A released entry removed entirely (record and proof line): the check names its chain position as missing."""
    entry = trail.entry("lock_release_staff")
    index = trail.seal("lock_release_staff").chain_index
    without_record = Bundle.of(
        rewrite(released, tmp_path, "records.jsonl", drop_line(of_entry(entry))).read_bytes(), tmp_path / "unused.zip"
    )

    path = rewrite(without_record, tmp_path, "proof.jsonl", drop_line(of_entry(entry)))

    assert_rejected(path, signing_key, f"proof.jsonl: chain #{index} is missing or out of order")


def test_edited_manifest_fails_its_signature(released, signing_key, tmp_path):
    """manifest.json edited (fewer withheld fields claimed): the signature does not verify."""

    def fewer_withheld(content: bytes) -> bytes:
        manifest = json.loads(content)
        manifest["counts"]["fields_withheld"] = 0
        return json.dumps(manifest, indent=2).encode()

    path = rewrite(released, tmp_path, "manifest.json", fewer_withheld)

    output = assert_rejected(
        path, signing_key, "manifest.json: the signature does not verify (the manifest was changed)"
    )
    assert "entry" not in output  # the records and the proof are untouched


def test_manifest_resigned_by_another_key_is_rejected(released, trail, signing_key, tmp_path):
    """An attacker edits a value, fixes the file hash in the manifest and signs it with a key of their own: with
    the publisher's public key the manifest is signed by another key and does not verify, and the entry is named."""
    entry = trail.entry("lock_system")
    edited = edit_record(entry.pk, meta={"reason": "forged"})(released.members["records.jsonl"])
    forger = keygen(tmp_path / "forger")
    private = serialization.load_pem_private_key(forger.private_path.read_bytes(), password=None)
    manifest = released.manifest
    manifest["files"]["records.jsonl"] = hashlib.sha256(edited).hexdigest()
    document = {k: v for k, v in manifest.items() if k not in ("signature", "signature_key_fingerprint")}
    manifest["signature"] = private.sign(canonical_json(document)).hex()
    manifest["signature_key_fingerprint"] = fingerprint(private.public_key())
    forged = Bundle.of(
        rewrite(released, tmp_path, "records.jsonl", lambda _: edited).read_bytes(), tmp_path / "unused.zip"
    )

    path = rewrite(forged, tmp_path, "manifest.json", lambda _: json.dumps(manifest, indent=2).encode())

    output = assert_rejected(
        path,
        signing_key,
        "manifest.json: signed with another key than the one given",
        "manifest.json: the signature does not verify",
        f"entry {entry.pk} (chain #{trail.seal('lock_system').chain_index}): does not match the chain",
    )
    assert "records.jsonl: SHA-256" not in output  # the forger fixed the hash: only the signature gives it away
    # With the forger's key the manifest verifies, but the chain still gives the edit away.
    status, forger_output = run_verify(path, forger.public_path)
    assert status == 1
    assert f"entry {entry.pk} (chain #" in forger_output


def test_different_public_key_is_rejected(released, tmp_path):
    """The untouched bundle checked with another public key: the manifest and the signed digest are refused."""
    other = keygen(tmp_path / "other")

    assert_rejected(
        released.path,
        other,
        "manifest.json: signed with another key than the one given",
        "manifest.json: the signature does not verify",
        "signed digest at chain #",
    )


def test_edited_csv_fails_naming_the_file(released, signing_key, tmp_path):
    """records.csv is not part of the chain; a change to it is caught by its signed SHA-256, naming the file."""
    path = rewrite(released, tmp_path, "records.csv", lambda content: content.replace(B6.encode(), b"10.0.0.1", 1))

    output = assert_rejected(
        path, signing_key, "records.csv: SHA-256 does not match the manifest (the file was changed)"
    )
    assert "chain #" not in output


def test_withheld_mark_replaced_by_a_value_fails(released, trail, signing_key, tmp_path):
    """A withheld field's mark replaced by an invented address: the file's signed hash no longer matches and the
    record is named as showing a value its proof says was withheld."""
    entry = trail.entry("lock_create_public")

    path = rewrite(released, tmp_path, "records.jsonl", edit_record(entry.pk, ip_address="10.9.8.7"))

    assert_rejected(
        path,
        signing_key,
        "records.jsonl: SHA-256 does not match the manifest",
        f"entry {entry.pk} (chain #{trail.seal('lock_create_public').chain_index}): ip_address shows a value",
    )


def test_member_removed_from_the_zip_fails_naming_it(released, signing_key, tmp_path):
    """cover.pdf left out of the ZIP: listed in the manifest but missing."""
    path = tmp_path / "without-cover.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in released.names:
            if name != "cover.pdf":
                archive.writestr(name, released.members[name])

    assert_rejected(path, signing_key, "cover.pdf: listed in the manifest but missing from the bundle")


def test_truncated_zip_is_rejected_cleanly(released, signing_key, tmp_path):
    """A download cut short is not a readable ZIP: the check says so and exits 1 (no traceback)."""
    path = tmp_path / "cut.zip"
    path.write_bytes(released.raw[: len(released.raw) // 2])

    assert_rejected(path, signing_key, "not a readable ZIP")


def test_foia_request_is_untouched_by_verification(released, foia_request, signing_key):
    """The check runs offline: it records nothing and changes no request."""
    entries_before = AuditLog.objects.count()
    status_before = FoiaRequest.objects.get(pk=foia_request.pk).status

    assert run_verify(released.path, signing_key.public_path)[0] == 0
    assert AuditLog.objects.count() == entries_before
    assert FoiaRequest.objects.get(pk=foia_request.pk).status == status_before


@pytest.mark.parametrize(
    ("member", "garbage", "problem"),
    [
        ("proof.jsonl", b"[1, 2]\n", "proof.jsonl line 2: not a JSON object"),
        ("records.jsonl", b"not json\n", "records.jsonl line 2: not JSON"),
    ],
)
def test_malformed_line_fails_naming_file_and_line(released, signing_key, tmp_path, member, garbage, problem):
    """A line that is not a JSON object (hostile input) is reported with its file and line number, exit 1, no
    traceback."""

    def replace_second_line(content: bytes) -> bytes:
        lines = jsonl_lines(content)
        lines[1] = garbage
        return b"".join(lines)

    path = rewrite(released, tmp_path, member, replace_second_line)

    assert_rejected(path, signing_key, problem)
