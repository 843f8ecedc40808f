"""GDPR: personal fields encrypted per subject, erasure by destroying the key (Art. 17), subject-access export
(Art. 15), and the chain and the bundles still verifying after an erasure."""

import json
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit import context
from audit.actions import AuditAction
from audit.archive import _line as archive_line
from audit.export.bundle import ExportScope
from audit.export.rules import RedactionRule
from audit.export.service import cover_for, export_response
from audit.hashing import COMMITTED_FIELDS, entry_digest
from audit.models import AuditLog, Seal, SubjectKey
from audit.privacy import ERASED, decrypt
from audit.sealing import seal_pending
from audit.services import EventSpec, record, record_many
from audit.subject_access import subject_access_export
from audit.verify import verify_chain
from tests.audit.read_back import read_back
from tests.factories.users import OfficerFactory, UserFactory

CHANGELIST_URL = reverse("admin:audit_auditlog_changelist")
API_LIST = "/api/audit/events"
IP = "198.51.100.42"
AGENT = "privacy-agent/7.1"
EMAIL = "dana.subject@example.org"


def _detail_url(entry: AuditLog) -> str:
    return reverse("admin:audit_auditlog_change", args=[entry.pk])


def _request_context() -> context.RequestContext:
    return context.RequestContext(request_id="gdpr-req-1", ip_address=IP, user_agent=AGENT)


def _personal_entry(subject) -> AuditLog:
    with context.bound(_request_context()):
        return record(
            AuditAction.LOCK_CREATE,
            entity="FileLock",
            entity_id="lock-1",
            meta={"email": EMAIL, "path": "docs/a.txt"},
            actor=subject,
        )


def _raw_row(entry_id: int) -> str:
    """Every column of the stored row as text, read with SQL past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {AuditLog._meta.db_table} WHERE id = %s", [entry_id])
        row = cursor.fetchone()
    return " ".join(bytes(value).hex() if isinstance(value, memoryview | bytes) else str(value) for value in row)


def _erase(subject, reason: str = "Erasure request ER-2026-7") -> str:
    out = StringIO()
    call_command("audit_erase_subject", subject.username, "--reason", reason, stdout=out)
    return out.getvalue()


def _bundle(entries, officer, rules=()) -> bytes:
    scope = ExportScope(entries=entries, rules=list(rules), filters={})
    response = export_response(scope=scope, actor=officer, cover=lambda summary: cover_for(scope, summary))
    return b"".join(response.streaming_content)


def _verified_bundle(entries, officer, keys, path: Path) -> Path:
    """The bundle of ``entries`` written to ``path``, once ``audit_verify_bundle`` found nothing wrong with it."""
    path.write_bytes(_bundle(entries, officer))
    out = StringIO()
    call_command("audit_verify_bundle", str(path), "--public-key", str(keys.public), stdout=out)
    assert "NOT verified" not in out.getvalue()
    return path


@pytest.fixture
def subject(db):
    return UserFactory(username="dana.subject")


@pytest.fixture
def officer_client(officer) -> Client:
    client = Client()
    client.force_login(officer)
    return client


# --- stored encrypted -----------------------------------------------------------------------------------------------


def test_personal_fields_are_not_stored_in_plaintext(subject):
    entry = _personal_entry(subject)

    raw = _raw_row(entry.pk)
    for personal in (subject.username, IP, AGENT, EMAIL):
        assert personal not in raw
    assert "docs/a.txt" in raw  # the rest of meta stays readable
    stored = AuditLog.objects.get(pk=entry.pk)
    assert (stored.actor_label, stored.ip_address, stored.user_agent) == ("", None, "")
    assert stored.personal and set(stored.personal_commitments) == {"actor_label", "ip_address", "user_agent"}
    assert stored.meta["email"].startswith("[PERSONAL ")


def test_entries_without_a_user_actor_keep_plain_fields(db):
    with context.bound(_request_context()):
        entry = record(AuditAction.USER_LOGIN_FAILED, entity="User", meta={"username": "someone"})

    stored = AuditLog.objects.get(pk=entry.pk)
    assert stored.personal is None
    assert (stored.ip_address, stored.user_agent) == (IP, AGENT)


def test_personal_fields_read_back_decrypted_in_admin_api_and_csv_export(subject, officer, officer_client):
    entry = _personal_entry(subject)
    seal_pending()

    page = officer_client.get(_detail_url(entry)).content.decode()
    assert subject.username in page and IP in page and AGENT in page and EMAIL in page

    listing = officer_client.get(CHANGELIST_URL).content.decode()
    assert subject.username in listing and IP in listing

    api = Client()
    api.force_login(officer)
    shown = api.get(f"{API_LIST}/{entry.pk}").json()
    assert (shown["actor_label"], shown["ip_address"], shown["user_agent"]) == (subject.username, IP, AGENT)
    assert shown["meta"]["email"] == EMAIL

    response = officer_client.post(CHANGELIST_URL, {"action": "export_csv", "_selected_action": [entry.pk]})
    csv_text = b"".join(response.streaming_content).decode()
    assert subject.username in csv_text and IP in csv_text and EMAIL in csv_text


# --- erasure --------------------------------------------------------------------------------------------------------


def test_after_erasure_fields_read_erased_in_admin_api_and_exports_and_verify_passes(
    subject, officer, officer_client, keys, tmp_path
):
    entry = _personal_entry(subject)
    seal_pending()

    _erase(subject)
    seal_pending()

    page = officer_client.get(_detail_url(entry)).content.decode()
    assert ERASED in page
    for personal in (IP, AGENT, EMAIL):
        assert personal not in page

    api = Client()
    api.force_login(officer)
    shown = api.get(f"{API_LIST}/{entry.pk}").json()
    assert (shown["actor_label"], shown["ip_address"], shown["user_agent"]) == (ERASED, ERASED, ERASED)
    assert shown["meta"] == {"email": ERASED, "path": "docs/a.txt"}
    assert shown["actor"] == subject.pk  # the pseudonymous id stays

    for fmt in ("csv", "json"):
        response = officer_client.post(CHANGELIST_URL, {"action": f"export_{fmt}", "_selected_action": [entry.pk]})
        text = b"".join(response.streaming_content).decode()
        assert ERASED in text
        assert subject.username not in text and IP not in text and EMAIL not in text
        if fmt == "json":
            (exported,) = json.loads(text)
            assert (exported["actor_label"], exported["ip_address"]) == (ERASED, ERASED)

    call_command("audit_verify", "--no-progress", stdout=StringIO())  # exits 1 on any finding

    bundle = _verified_bundle(AuditLog.objects.filter(pk=entry.pk), officer, keys, tmp_path / "after-erasure.zip")
    with zipfile.ZipFile(bundle) as archive:
        (released,) = [json.loads(line) for line in archive.read("records.jsonl").splitlines()]
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert (released["actor_label"], released["ip_address"], released["user_agent"]) == (ERASED, ERASED, ERASED)
    assert IP.encode() not in everything and subject.username.encode() not in everything


def test_bundle_before_erasure_releases_the_decrypted_fields_and_verifies(subject, officer, keys, tmp_path):
    entry = _personal_entry(subject)
    seal_pending()

    bundle = _verified_bundle(AuditLog.objects.filter(pk=entry.pk), officer, keys, tmp_path / "before.zip")
    with zipfile.ZipFile(bundle) as archive:
        (released,) = [json.loads(line) for line in archive.read("records.jsonl").splitlines()]
    assert (released["actor_label"], released["ip_address"]) == (subject.username, IP)


def test_erasure_is_audited_with_who_and_reason(subject):
    _personal_entry(subject)

    output = _erase(subject, reason="Art. 17 request ER-2026-9")

    assert f"#{subject.pk}" in output
    erased = AuditLog.objects.get(action=AuditAction.AUDIT_SUBJECT_ERASE)
    assert (erased.entity, erased.entity_id, erased.outcome) == ("User", str(subject.pk), "success")
    assert erased.actor_id is None  # the system: no --as given
    assert erased.meta == {"reason": "Art. 17 request ER-2026-9"}
    assert erased.changes == {"personal_fields": {"before": "readable", "after": "erased"}}
    assert SubjectKey.objects.get(subject_id=subject.pk).key is None


def test_erasure_by_an_officer_names_them_and_needs_the_right(subject):
    officer = OfficerFactory()
    with pytest.raises(CommandError, match="Refused: .*audit.erase_subject"):
        call_command("audit_erase_subject", str(subject.pk), "--reason", "r", "--as", officer.username)
    assert AuditLog.objects.get(action=AuditAction.AUDIT_SUBJECT_ERASE).outcome == "denied"

    officer.user_permissions.add(Permission.objects.get(codename="erase_subject"))
    officer = type(officer).objects.get(pk=officer.pk)
    call_command("audit_erase_subject", str(subject.pk), "--reason", "r", "--as", officer.username, stdout=StringIO())
    done = read_back(action=AuditAction.AUDIT_SUBJECT_ERASE, outcome="success")
    assert (done.actor_id, done.actor_label) == (officer.pk, officer.username)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_erasure_is_refused_without_a_reason(subject, reason):
    entry = _personal_entry(subject)
    args = [subject.username] + ([] if reason is None else ["--reason", reason])

    with pytest.raises(CommandError, match="--reason is required"):
        call_command("audit_erase_subject", *args)

    assert not AuditLog.objects.filter(action=AuditAction.AUDIT_SUBJECT_ERASE).exists()
    assert read_back(pk=entry.pk).actor_label == subject.username


def test_erasure_of_an_unknown_user_is_refused(db):
    with pytest.raises(CommandError, match="No user 'nobody-here'"):
        call_command("audit_erase_subject", "nobody-here", "--reason", "r")


def test_entries_recorded_after_erasure_are_born_erased(subject):
    _erase(subject)

    later = _personal_entry(subject)

    raw = _raw_row(later.pk)
    for personal in (subject.username, IP, AGENT, EMAIL):
        assert personal not in raw
    assert bytes(AuditLog.objects.get(pk=later.pk).personal) == b""
    assert read_back(pk=later.pk).actor_label == ERASED
    seal_pending()
    assert verify_chain().ok


# --- verify ---------------------------------------------------------------------------------------------------------


def test_tampered_ciphertext_is_caught_by_verify_while_the_key_exists(subject, triggers_dropped):
    entry = _personal_entry(subject)
    other = _personal_entry(subject)
    seal_pending()
    assert verify_chain().ok
    ciphertext = bytes(AuditLog.objects.get(pk=entry.pk).personal)
    flipped = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])

    with triggers_dropped(), connection.cursor() as cursor:
        table = AuditLog._meta.db_table
        cursor.execute(f"UPDATE {table} SET personal = %s WHERE id = %s", [flipped, entry.pk])
        # The same subject's ciphertext of another entry, under the same key: bound to its own entry, so caught.
        cursor.execute(f"UPDATE {table} SET personal = %s WHERE id = %s", [ciphertext, other.pk])

    findings = sorted((finding.kind, finding.entry_id) for finding in verify_chain().findings)
    assert findings == [("modified", entry.pk), ("modified", other.pk)]


def test_plain_value_slipped_into_an_encrypted_entry_is_caught(subject, triggers_dropped):
    entry = _personal_entry(subject)
    seal_pending()

    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditLog._meta.db_table} SET actor_label = %s WHERE id = %s", ["mallory", entry.pk])

    assert [(finding.kind, finding.entry_id) for finding in verify_chain().findings] == [("modified", entry.pk)]


# --- subject access (Art. 15) ---------------------------------------------------------------------------------------


def _bundle_export_entry(entries, officer, rules=()) -> AuditLog:
    _bundle(entries, officer, rules)
    return AuditLog.objects.filter(action=AuditAction.AUDIT_EXPORT).latest("id")


def test_bundle_export_records_the_subjects_its_released_records_name(subject, officer, other_user, keys):
    """An export bundle's AUDIT.EXPORT entry names in ``meta.subjects`` the actors and the accounts its records
    release, so that the subject's access request lists it among the consultations; a redaction that withholds
    both the actor's id and label, or the entity id, leaves that user out."""
    as_actor = _personal_entry(subject)
    about = record(AuditAction.USER_UPDATE, entity="User", entity_id=subject.pk, actor=other_user)
    seal_pending()
    entries = AuditLog.objects.filter(pk__in=[as_actor.pk, about.pk])

    shown = _bundle_export_entry(entries, officer)
    hidden = _bundle_export_entry(
        entries,
        officer,
        [
            RedactionRule("actor_id", "(b)(6)"),
            RedactionRule("actor_label", "(b)(6)"),
            RedactionRule("entity_id", "(b)(6)"),
        ],
    )

    assert shown.meta["subjects"] == sorted([subject.pk, other_user.pk])
    assert hidden.meta["subjects"] == []
    consulted = [item["id"] for item in subject_access_export(subject=subject, actor=None)["consultations"]]
    assert shown.pk in consulted and hidden.pk not in consulted


def test_subject_access_lists_entries_as_actor_and_entity_and_who_consulted_them(subject, officer, other_user):
    as_actor = _personal_entry(subject)
    about = record(AuditAction.USER_UPDATE, entity="User", entity_id=subject.pk, actor=other_user)
    unrelated = record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="x", actor=other_user)
    seal_pending()
    api = Client()
    api.force_login(officer)
    assert api.get(f"{API_LIST}/{as_actor.pk}").status_code == 200
    assert api.get(API_LIST, {"actor": other_user.pk}).status_code == 200  # shows `about`: the subject's account

    document = subject_access_export(subject=subject, actor=None)

    roles = {item["id"]: item["as"] for item in document["entries"]}
    assert roles[as_actor.pk] == ["actor"]
    assert roles[about.pk] == ["entity"]
    assert unrelated.pk not in roles
    first = next(item for item in document["entries"] if item["id"] == as_actor.pk)
    assert (first["actor_label"], first["ip_address"], first["meta"]["email"]) == (subject.username, IP, EMAIL)
    assert first["purpose"]["compliance"]
    consultations = [item for item in document["consultations"] if item["by_id"] == officer.pk]
    assert len(consultations) == 2
    assert all(item["by"] == officer.username and item["action"] == AuditAction.AUDIT_VIEW for item in consultations)
    assert all(item["at"] for item in consultations)
    recorded = AuditLog.objects.get(action=AuditAction.AUDIT_SUBJECT_ACCESS)
    assert (recorded.entity, recorded.entity_id) == ("User", str(subject.pk))
    assert recorded.meta["subjects"] == [subject.pk]


def _privacy_officer():
    officer = OfficerFactory()
    officer.user_permissions.add(Permission.objects.get(codename="export_subject_access"))
    return type(officer).objects.get(pk=officer.pk)  # a fresh object: no cached permissions


def test_subject_access_api_returns_the_document_as_a_download_and_records_it(subject):
    """GET /api/audit/subjects/<id>/access gives a holder of audit.export_subject_access the same document as the
    command, decrypted, as an attachment; the export is an AUDIT.SUBJECT.ACCESS entry "via" the API."""
    entry = _personal_entry(subject)
    privacy_officer = _privacy_officer()
    api = Client()
    api.force_login(privacy_officer)

    response = api.get(f"/api/audit/subjects/{subject.pk}/access")

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith(f'attachment; filename="subject-access-{subject.pk}-')
    document = response.json()
    assert document["subject"] == {"id": subject.pk, "username": subject.username}
    [about] = [item for item in document["entries"] if item["id"] == entry.pk]
    assert (about["actor_label"], about["ip_address"], about["meta"]["email"]) == (subject.username, IP, EMAIL)
    recorded = AuditLog.objects.get(pk=document["export_entry_id"])
    assert (recorded.action, recorded.actor_id, recorded.entity_id) == (
        AuditAction.AUDIT_SUBJECT_ACCESS,
        privacy_officer.pk,
        str(subject.pk),
    )
    assert recorded.meta["via"] == "api"


def test_subject_access_api_refuses_without_the_right_and_records_the_refusal(subject, officer):
    """A compliance officer without audit.export_subject_access gets 403, recorded as a denied attempt; nobody
    gets anything unauthenticated; an unknown user is a 404 for a holder of the right."""
    api = Client()
    api.force_login(officer)

    refused = api.get(f"/api/audit/subjects/{subject.pk}/access")

    assert refused.status_code == 403
    denied = AuditLog.objects.get(action=AuditAction.AUDIT_SUBJECT_ACCESS)
    assert (denied.outcome, denied.actor_id) == ("denied", officer.pk)
    assert Client().get(f"/api/audit/subjects/{subject.pk}/access").status_code == 401
    holder = Client()
    holder.force_login(_privacy_officer())
    assert holder.get("/api/audit/subjects/999999/access").status_code == 404


def test_subject_access_lists_group_membership_changes_naming_the_subject(subject, other_user, admin_user):
    """A group's entries list its members by username in their changes: the ones that added or removed the
    subject are about them too ("member"); a group change that never named them is not."""
    from django.contrib.auth.models import Group  # noqa: PLC0415

    from rbac.services import group_members_set  # noqa: PLC0415

    group = Group.objects.create(name="auditors")
    for members in ([subject.pk, other_user.pk], [other_user.pk], []):  # subject added, removed, not named
        group_members_set(actor=admin_user, group_id=group.pk, user_ids=members)
    added, removed, unrelated = AuditLog.objects.filter(action=AuditAction.GROUP_MEMBERS_SET).order_by("id")

    document = subject_access_export(subject=subject, actor=None)

    roles = {item["id"]: item["as"] for item in document["entries"] if item["action"] == AuditAction.GROUP_MEMBERS_SET}
    assert roles == {added.pk: ["member"], removed.pk: ["member"]}
    assert unrelated.pk not in roles


def test_subject_access_command_prints_the_document_and_needs_the_right(subject, officer):
    _personal_entry(subject)
    with pytest.raises(CommandError, match="Refused"):
        call_command("audit_subject_access", subject.username, "--as", officer.username)
    assert AuditLog.objects.get(action=AuditAction.AUDIT_SUBJECT_ACCESS).outcome == "denied"

    out = StringIO()
    call_command("audit_subject_access", str(subject.pk), stdout=out)
    document = json.loads(out.getvalue())
    assert document["subject"] == {"id": subject.pk, "username": subject.username}
    # The refused export is an entry about the subject's account too.
    assert [item["action"] for item in document["entries"]] == [
        AuditAction.LOCK_CREATE,
        AuditAction.AUDIT_SUBJECT_ACCESS,
    ]


def test_subject_access_after_erasure_shows_erased_fields_and_the_erasure(subject):
    _personal_entry(subject)
    _erase(subject)

    document = subject_access_export(subject=subject, actor=None)

    first, erasure = document["entries"]
    assert (first["actor_label"], first["ip_address"], first["meta"]["email"]) == (ERASED, ERASED, ERASED)
    assert erasure["action"] == AuditAction.AUDIT_SUBJECT_ERASE and erasure["as"] == ["entity"]


# --- performance ----------------------------------------------------------------------------------------------------


def _key_queries(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if SubjectKey._meta.db_table in query["sql"]]


def _api_list(officer) -> tuple[int, int, int]:
    api = Client()
    api.force_login(officer)
    with CaptureQueriesContext(connection) as queries:
        response = api.get(API_LIST, {"page_size": 500})
    return len(queries), len(_key_queries(queries)), len(response.json()["results"])


def test_listing_decrypted_entries_reads_the_keys_of_a_page_in_one_query(officer):
    actors = [UserFactory() for _ in range(5)]
    for actor in actors:
        record_many(
            [EventSpec(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=str(n)) for n in range(2)], actor=actor
        )
    _api_list(officer)  # the officer's own first AUDIT.VIEW makes their key
    small_total, small_keys, small_rows = _api_list(officer)

    for actor in actors * 4:
        record_many(
            [EventSpec(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=str(n)) for n in range(20)], actor=actor
        )
    large_total, large_keys, large_rows = _api_list(officer)

    assert large_rows > 10 * small_rows
    # One query reads the page's keys; the other is the writer's look-up for the officer's AUDIT.VIEW entry
    # (cached across requests once its transaction commits, which a test's transaction never does).
    assert small_keys == large_keys == 2
    assert large_total == small_total


def test_steady_state_record_reads_no_key(committed_db):
    actor = UserFactory()
    record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="warm-up", actor=actor)

    with CaptureQueriesContext(connection) as queries:
        for n in range(20):
            record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=str(n), actor=actor)

    assert _key_queries(queries) == []
    # Encrypted with the cipher the process keeps for the key: every entry opens with the stored key.
    key = bytes(SubjectKey.objects.get(subject_id=actor.pk).key)
    entries = AuditLog.objects.filter(actor_id=actor.pk)
    assert [decrypt(entry, key)["actor_label"] for entry in entries] == [actor.username] * 21


def test_erasure_stops_this_process_encrypting_under_the_cached_key(committed_db):
    actor = UserFactory()
    record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="warm-up", actor=actor)

    call_command("audit_erase_subject", actor.username, "--reason", "r", stdout=StringIO())
    later = record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id="later", actor=actor)

    assert bytes(AuditLog.objects.get(pk=later.pk).personal) == b""


def test_archive_segment_line_of_an_encrypted_entry_holds_ciphertext_and_matches_its_seal(subject):
    """An archived encrypted entry keeps no plaintext, and its segment line still recomputes the sealed digest the
    way audit_verify_segment does."""
    entry = _personal_entry(subject)
    seal_pending()
    seal = Seal.objects.select_related("entry").get(entry_id=entry.pk)

    line = json.loads(archive_line(seal, seal.entry))

    text = json.dumps(line)
    for personal in (subject.username, IP, AGENT, EMAIL):
        assert personal not in text
    digest = entry_digest(
        bytes.fromhex(line["salt"]),
        {name: line["entry"][name] for name in COMMITTED_FIELDS},
        line["personal_commitments"],
    )
    assert digest == seal.digest
