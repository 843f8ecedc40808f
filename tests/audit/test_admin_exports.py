"""Exports from the compliance console: CSV, JSON and the verifiable bundle, each recorded as one AUDIT.EXPORT."""

import csv
import datetime as dt
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.actions import AuditAction
from audit.export.flat import COLUMNS
from audit.export.verify_bundle import verify_bundle
from audit.models import AuditLog
from audit.sealing import seal_pending
from tests.factories.users import UserFactory

UTC = dt.UTC
CHANGELIST_URL = reverse("admin:audit_auditlog_changelist")


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver"]


@pytest.fixture
def no_key(settings):
    """No signing or verify key, whatever the environment says."""
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = ""
    settings.AUDIT_VERIFY_KEY = ""
    settings.AUDIT_VERIFY_KEY_FILE = ""


@pytest.fixture
def signing_key(no_key, settings, tmp_path) -> Path:
    """A key pair written by audit_keygen; returns the public key's path."""
    call_command("audit_keygen", "--out", tmp_path, stdout=io.StringIO())
    settings.AUDIT_SIGNING_KEY_FILE = str(tmp_path / "audit-signing.key")
    return tmp_path / "audit-signing.pub"


@pytest.fixture(params=["superuser", "officer"])
def console(request, db) -> Client:
    """Logged in as a superuser or as a compliance officer (view permission only): both may export."""
    user = request.getfixturevalue("admin_user" if request.param == "superuser" else "officer")
    client = Client()
    client.force_login(user)
    return client


def make_entry(**fields) -> AuditLog:
    values = {
        "created_at": dt.datetime(2026, 11, 23, 17, 18, 43, 250000, tzinfo=UTC),
        "action": AuditAction.ROLE_UPDATE,
        "entity": "Role",
        "entity_id": "7",
        "actor_label": "alice",
        "ip_address": "192.0.2.10",
        "salt": os.urandom(16),
        **fields,
    }
    return AuditLog.objects.create(**values)


@pytest.fixture
def entries(db) -> list[AuditLog]:
    return [
        make_entry(entity_id="plain", changes={"name": {"before": "a", "after": "b"}}, request_id="req-1"),
        make_entry(entity_id="=1+1", actor_label="+SUM(A1)"),
        make_entry(entity_id="-2", actor_label="@cmd", user_agent="\tTAB"),
        make_entry(entity_id="\r=HYPERLINK()", user_agent="line\nbreak\x1b[31m", action=AuditAction.GROUP_CREATE),
    ]


def run_action(client: Client, action: str, ids: list[int]):
    """Tick ``ids`` on the changelist and run ``action``, as the action bar's "Go" does."""
    return client.post(CHANGELIST_URL, {"action": action, "_selected_action": [str(pk) for pk in ids], "index": "0"})


def exports() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).order_by("id"))


def body(response) -> bytes:
    assert response.status_code == 200, response.content[:500] if not response.streaming else response
    assert response.streaming, "an export is streamed"
    return b"".join(response.streaming_content)


def csv_rows(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))


# --- CSV ------------------------------------------------------------------------------------------------------


def test_csv_export_of_selected_entries(console, entries):
    """The action "Export selected as CSV" streams exactly the ticked entries, oldest first, with the committed
    fields and the chain index, times as ISO 8601 with offset, and no salt column."""
    chosen = [entries[0], entries[2]]

    response = run_action(console, "export_csv", [entry.pk for entry in chosen])

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-entries-')
    raw = body(response)
    header = raw.decode().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    assert "salt" not in header
    rows = csv_rows(raw)
    assert [int(row["id"]) for row in rows] == [entry.pk for entry in chosen]
    assert rows[0]["created_at"] == "2026-11-23T17:18:43.250000+00:00"
    assert rows[0]["changes"] == '{"name": {"after": "b", "before": "a"}}'
    assert rows[0]["request_id"] == "req-1"


def test_csv_export_neutralises_formulas_and_escapes_control_characters(console, entries):
    """Cells starting with = + - @ tab or CR get a leading apostrophe; control characters are shown escaped (\\n,
    \\t, \\x1b), never raw, so the file can neither run a formula nor drive a terminal."""
    raw = body(run_action(console, "export_csv", [entry.pk for entry in entries]))

    rows = {int(row["id"]): row for row in csv_rows(raw)}
    assert rows[entries[0].pk]["entity_id"] == "plain"
    assert rows[entries[1].pk]["entity_id"] == "'=1+1"
    assert rows[entries[1].pk]["actor_label"] == "'+SUM(A1)"
    assert rows[entries[2].pk]["entity_id"] == "'-2"
    assert rows[entries[2].pk]["actor_label"] == "'@cmd"
    assert rows[entries[2].pk]["user_agent"] == "'\\tTAB"
    assert rows[entries[3].pk]["entity_id"] == "'\\r=HYPERLINK()"
    assert rows[entries[3].pk]["user_agent"] == "line\\nbreak\\x1b[31m"
    text = raw.decode()
    assert "\x1b" not in text and "\t" not in text and "line\nbreak" not in text


def test_csv_export_is_recorded_once_with_format_count_and_id_range(console, entries):
    """The export writes exactly one AUDIT.EXPORT entry by the exporting user, naming format, count and the id range,
    and no AUDIT.VIEW for the same request."""
    views_before = AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).count()
    chosen = [entries[1].pk, entries[3].pk]

    body(run_action(console, "export_csv", chosen))

    (entry,) = exports()
    assert entry.meta["format"] == "csv"
    assert entry.meta["count"] == 2
    assert entry.meta["id_range"] == [min(chosen), max(chosen)]
    assert entry.meta["selection"] == {"ids": "selected"}
    assert entry.actor_id == int(console.session["_auth_user_id"])
    assert AuditLog.objects.filter(action=AuditAction.AUDIT_VIEW).count() == views_before


# --- JSON -----------------------------------------------------------------------------------------------------


def test_json_export_of_selected_entries(console, entries):
    """The action "Export selected as JSON" streams a JSON array of exactly the ticked entries with their stored
    values (control characters as JSON escapes, the file pure ASCII), times as ISO 8601 with offset, never the
    salt."""
    raw = body(run_action(console, "export_json", [entry.pk for entry in entries]))

    assert raw.isascii()
    rows = json.loads(raw)
    assert [row["id"] for row in rows] == [entry.pk for entry in entries]
    assert all(set(row) == set(COLUMNS) for row in rows)
    assert all("salt" not in row for row in rows)
    assert rows[3]["user_agent"] == "line\nbreak\x1b[31m"
    assert rows[1]["entity_id"] == "=1+1"
    assert rows[0]["created_at"] == "2026-11-23T17:18:43.250000+00:00"
    assert rows[0]["changes"] == {"name": {"before": "a", "after": "b"}}
    for entry in entries:
        assert bytes(entry.salt).hex() not in raw.decode()
    (recorded,) = exports()
    assert (recorded.meta["format"], recorded.meta["count"]) == ("json", 4)


def test_json_export_shows_the_chain_index_of_sealed_entries(console, entries):
    """Sealed entries carry their chain position, entries not sealed yet null."""
    seal_pending()
    late = make_entry(entity_id="late")

    rows = json.loads(body(run_action(console, "export_json", [entries[0].pk, late.pk])))

    assert rows[0]["chain_index"] == entries[0].seal.chain_index
    assert rows[1]["chain_index"] is None


def test_select_all_exports_every_entry_matching_the_filters(console, entries):
    """With "select all" (select_across) the export holds every entry matching the console's filters, not just the
    page, and the AUDIT.EXPORT entry names those filters."""
    response = console.post(
        CHANGELIST_URL + "?family=ROLE",
        {"action": "export_json", "_selected_action": [str(entries[0].pk)], "select_across": "1", "index": "0"},
    )

    rows = json.loads(body(response))
    assert {row["id"] for row in rows} == {entry.pk for entry in entries if entry.action.startswith("ROLE.")}
    (recorded,) = exports()
    assert recorded.meta["selection"] == {"ids": "all matching", "console_filters": {"family": "ROLE"}}
    assert recorded.meta["count"] == 3


def test_export_of_nothing_is_a_message_not_a_file(console, entries):
    """A "select all" over a filter that matches nothing ends with an error message on the changelist, no file and no
    AUDIT.EXPORT entry."""
    response = console.post(
        CHANGELIST_URL + "?family=FOIA",
        {"action": "export_csv", "_selected_action": [str(entries[0].pk)], "select_across": "1", "index": "0"},
    )

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Nothing to export: no audit entry matches the selection."
    ]
    assert exports() == []


def test_user_without_view_permission_cannot_export(db, client, entries):
    """A staff user without audit.view_auditlog gets 403 and no file; nothing is recorded as exported."""
    client.force_login(UserFactory(is_staff=True))

    response = run_action(client, "export_csv", [entries[0].pk])

    assert response.status_code == 403
    assert exports() == []


# --- the verifiable bundle ------------------------------------------------------------------------------------


def test_bundle_export_of_selected_entries_verifies_offline(console, entries, signing_key, tmp_path):
    """The action "Export selected as a verifiable bundle" streams a ZIP whose manifest names the selection and its
    count, whose records are exactly the ticked entries, and which verifies with the public key alone; it is
    recorded as one AUDIT.EXPORT with the manifest's SHA-256."""
    chosen = [entries[0], entries[3]]

    raw = body(run_action(console, "export_bundle", [entry.pk for entry in chosen]))

    path = tmp_path / "bundle.zip"
    path.write_bytes(raw)
    with zipfile.ZipFile(path) as archive:
        manifest_bytes = archive.read("manifest.json")
        manifest = json.loads(manifest_bytes)
        records = [json.loads(line) for line in archive.read("records.jsonl").splitlines()]
    assert manifest["filters"] == {"ids": "selected", "count": 2}
    assert [record["id"] for record in records] == [entry.pk for entry in chosen]
    public_key = serialization.load_pem_public_key(signing_key.read_bytes())
    report = verify_bundle(str(path), public_key)
    assert report.ok, report.problems
    (recorded,) = exports()
    assert recorded.meta["filters"] == {"ids": "selected", "count": 2}
    assert recorded.meta["released"] == 2
    assert recorded.meta["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


def test_bundle_export_without_a_signing_key_shows_the_reason(console, entries, no_key):
    """Without a signing key the bundle action redirects back to the changelist with the reason as an error message:
    no 500, no file, nothing recorded as exported."""
    response = run_action(console, "export_bundle", [entries[0].pk])

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL
    shown = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert len(shown) == 1
    assert shown[0][0] == "error"
    assert "signing key" in shown[0][1] or "signed" in shown[0][1]
    assert exports() == []
    assert console.get(CHANGELIST_URL).status_code == 200
