"""Log injection (CWE-117): control characters a caller sends are stored as data, exactly, and shown escaped in
every output: the console's pages, CSV and JSON exports, log lines and command output.

Each payload goes in through the real paths: the ingestion endpoint (body fields, User-Agent and X-Request-ID
headers), the rbac and locks APIs, the FOIA service. NUL is refused by the APIs' plain text fields and otherwise the
one character stored changed, as the text ``\\x00``, on every database alike (PostgreSQL cannot store it).
"""

import csv
import io
import json
import logging
import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from audit.catalogue import registered_action_save
from audit.export.cover import render_cover_letter
from audit.export.flat import csv_chunks, json_chunks
from audit.foia import foia_request_create
from audit.foia_models import FoiaRequest, RedactionProfile
from audit.log_filters import EscapeControlCharacters
from audit.models import AuditLog
from audit.redaction_profiles import redaction_profile_create
from audit.sealing import seal_pending
from audit.services import EventSpec, record_many
from audit.text import printable
from locks.lfs.media import LFS_MEDIA_TYPE
from locks.models import FileLock, Repository
from rbac.models import Role
from tests.audit.read_back import read_back
from tests.audit.test_cover import letter, pdf_text
from tests.factories.users import UserFactory

CODE = "PROVIDER.CONNECT"
PAYLOADS = {
    "crlf": "eve\r\nINFO forged line",
    "ansi": "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "c0": "bell\x07back\x08vt\x0bff\x0c",
    "nul": "before\x00after",
    "c1_and_separators": "del\x7fnel\x85ls\u2028ps\u2029",
    "bidi": "invoice\u202egpj.exe\u2066x\u2069",
}
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def stored_form(text: str) -> str:
    return text.replace("\x00", "\\x00")


@pytest.fixture
def service_client(db) -> APIClient:
    registered_action_save(actor=None, code=CODE, description="Provider connected", compliance="SOC 2 CC6.1")
    out = StringIO()
    call_command("audit_service_account", "billing", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    return client


@pytest.fixture(params=sorted(PAYLOADS))
def payload(request) -> str:
    return PAYLOADS[request.param]


@pytest.fixture
def entry(service_client, payload) -> AuditLog:
    if "\x00" in payload:
        # The API refuses NUL in its plain text fields (400, see below); the recorder takes it from services.
        (entry,) = record_many(
            [
                EventSpec(
                    CODE,
                    entity=f"Provider{payload}",
                    entity_id=payload,
                    on_behalf_of=payload,
                    meta={"note": payload, "list": [payload]},
                    changes={"name": {"before": payload, "after": "x"}},
                )
            ]
        )
        return entry
    response = service_client.post(
        "/api/audit/events",
        {
            "action": CODE,
            "entity": f"Provider{payload}",
            "entity_id": payload,
            "on_behalf_of": payload,
            "meta": {"note": payload, "list": [payload]},
            "changes": {"name": {"before": payload, "after": "x"}},
        },
        format="json",
        HTTP_USER_AGENT=payload,
        HTTP_X_REQUEST_ID=f"req{payload}",
    )
    assert response.status_code == 201, response.content
    # Read back as the console shows it: the user agent is a personal field, stored encrypted.
    return read_back(pk=AuditLog.objects.filter(action=CODE).latest("id").pk)


def test_text_is_stored_as_data(entry, payload):
    """Every text field keeps the caller's characters exactly (NUL as the text \\x00)."""
    expected = stored_form(payload)
    assert entry.entity == f"Provider{expected}"
    assert entry.entity_id == expected
    assert entry.on_behalf_of == expected
    assert entry.meta["note"] == expected
    assert entry.meta["list"] == [expected]
    assert entry.changes["name"]["before"] == expected
    if "\x00" not in payload:
        assert entry.user_agent == payload


def test_nul_in_a_plain_text_field_of_the_api_is_400_naming_it(service_client):
    """DRF refuses NUL in a CharField; in meta and changes it is stored as the text \\x00 (above)."""
    body = {"action": CODE, "entity_id": "a\x00b", "meta": {"note": "a\x00b"}}
    response = service_client.post("/api/audit/events", body, format="json")

    assert response.status_code == 400
    assert response.json()["message"].startswith("entity_id:")


def test_request_id_header_with_control_characters_is_replaced(entry, payload):
    """X-Request-ID is a correlation token, not free text: one that is not a sane token gets a fresh id."""
    assert entry.request_id != f"req{payload}"
    assert not RAW_CONTROL.search(entry.request_id)


def test_console_list_and_detail_show_escape_codes(entry, officer):
    client = Client()
    client.force_login(officer)
    for url in ("/admin/audit/auditlog/", f"/admin/audit/auditlog/{entry.pk}/change/"):
        page = client.get(url).content.decode()
        assert not RAW_CONTROL.search(page), url
        assert "\r\nINFO forged" not in page
        assert printable(entry.entity_id) in page.replace("&#x27;", "'")


def test_csv_export_has_escaped_cells_on_one_line(entry):
    raw = b"".join(csv_chunks(AuditLog.objects.filter(pk=entry.pk))).decode()
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))

    assert len(rows) == 1
    assert len(raw.split("\r\n")) == 3
    assert not RAW_CONTROL.search(raw.replace("\r\n", ""))
    assert rows[0]["entity_id"] == printable(entry.entity_id)
    assert rows[0]["user_agent"] == printable(entry.user_agent)


def test_json_export_round_trips_the_stored_values(entry):
    raw = b"".join(json_chunks(AuditLog.objects.filter(pk=entry.pk)))
    (item,) = json.loads(raw)

    assert not RAW_CONTROL.search(raw.decode("ascii"))
    assert item["entity_id"] == entry.entity_id
    assert item["meta"] == entry.meta
    assert item["changes"] == entry.changes


def configured_handler() -> logging.Handler:
    """The console handler settings.LOGGING gives the root logger."""
    for handler in logging.getLogger().handlers:
        if any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            return handler
    raise AssertionError("no root handler escapes control characters")


@pytest.fixture
def log_output():
    handler = configured_handler()
    stream = StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_log_line_with_caller_text_stays_one_line(entry, log_output):
    """A message or argument carrying the caller's text is written as one line with escape codes."""
    logging.getLogger("audit.tests").warning("entry %s of %s", entry.pk, entry.entity_id)

    lines = log_output.getvalue().splitlines()
    assert len(lines) == 1
    assert not RAW_CONTROL.search(log_output.getvalue())
    assert lines[0].endswith(f"entry {entry.pk} of {printable(entry.entity_id)}")


def test_django_request_log_of_a_crafted_path_stays_one_line(db, log_output):
    """Django logs "Not Found: <path>"; a path with %0d%0a cannot start a forged line."""
    Client().get("/nowhere%0d%0aERROR%20forged%1b[2J")

    text = log_output.getvalue()
    # Two records (the request line and Django's warning), two lines, each starting with its time.
    assert [line[:4] for line in text.splitlines()] == [line[:4] for line in text.splitlines()[:1]] * 2
    assert not RAW_CONTROL.search(text)
    assert "Not Found: /nowhere\\r\\nERROR forged\\x1b[2J" in text


def test_command_output_escapes_entry_text(entry):
    """A legal hold on the entity id, listed by the command: the terminal gets escape codes, never ESC or CR."""
    superuser = UserFactory(is_staff=True, is_superuser=True)
    hold = ["--entity", entry.entity, "--entity-id", entry.entity_id, "--reason", entry.entity_id]
    call_command("audit_hold", "create", *hold, "--as", superuser.username, stdout=StringIO())
    out = StringIO()
    call_command("audit_hold", "list", stdout=out)

    assert not RAW_CONTROL.search(out.getvalue())
    # The hold keeps its text stripped of surrounding whitespace (\x0c, \x85 and \u2029 are whitespace).
    assert printable(entry.entity_id.strip()) in out.getvalue()


def test_foia_requester_is_escaped_in_the_console_and_the_cover_letter(db, payload):
    """The requester's name, typed by whoever logged the request, shows as escape codes in the list and the PDF.
    (NUL cannot reach it: the console's form refuses it, as DRF does.)"""
    requester = f"Jane{payload}".replace("\x00", "")
    superuser = UserFactory(is_staff=True, is_superuser=True)
    foia = foia_request_create(actor=superuser, requester=requester, description="All lock events")
    # The service trims surrounding whitespace of the name (\x0c, \x85 and \u2029 are whitespace).
    assert foia.requester == requester.strip()
    # Named before it has a tracking number (the form's messages) by its requester, escaped as well.
    assert str(FoiaRequest(requester=requester)) == printable(f"FOIA request from {requester}")

    client = Client()
    client.force_login(superuser)
    page = client.get("/admin/audit/foiarequest/").content.decode()
    assert not RAW_CONTROL.search(page)
    assert printable(foia.requester).replace("'", "&#x27;") in page

    text = pdf_text(render_cover_letter(letter(requester=requester)))
    plain = pdf_text(render_cover_letter(letter(requester="Jane")))
    # Only the letter's own glyphs (list bullets extract as DEL), none of the requester's characters.
    assert set(RAW_CONTROL.findall(text)) <= set(RAW_CONTROL.findall(plain))
    assert "Jane" in text


def test_redaction_profile_name_is_kept_and_escaped_in_the_console_list_and_page(db, payload):
    """A profile's name, typed by an officer, is stored as typed and shown with escape codes in the list, in the
    title of its page and wherever the profile is named (str)."""
    superuser = UserFactory(is_staff=True, is_superuser=True)
    name = f"x{payload}y".replace("\x00", "")  # NUL: refused by the console's form, and by PostgreSQL's text
    profile = redaction_profile_create(actor=superuser, name=name, rules=[])
    assert RedactionProfile.objects.get(pk=profile.pk).name == name
    assert str(profile) == printable(name)

    client = Client()
    client.force_login(superuser)
    for url in ("/admin/audit/redactionprofile/", f"/admin/audit/redactionprofile/{profile.pk}/change/"):
        page = client.get(url).content.decode()
        # The visible text; attributes Django fills with str(obj) (the checkbox's aria-label) are not shown.
        assert not RAW_CONTROL.search(re.sub(r"<[^>]*>", "", page)), url
        assert printable(name).replace("'", "&#x27;") in page, url


def test_names_paths_and_reasons_are_stored_exactly_and_escaped_in_the_console(db, payload):
    """Role and group names, a lock path and its reason, sent through the REST API, are kept exactly and listed with
    escape codes. NUL is refused in these plain text fields (400 naming the field)."""
    superuser = UserFactory(is_staff=True, is_superuser=True)
    api = APIClient()
    api.force_authenticate(superuser)
    Repository.objects.create(slug="art", name="Art")
    text = f"x{payload}y"
    responses = [
        api.post("/api/rbac/roles", {"name": text, "description": text}, format="json"),
        api.post("/api/rbac/groups", {"name": text}, format="json"),
        api.post("/api/locks", {"repository": "art", "path": f"dir/{text}.psd", "reason": text}, format="json"),
    ]
    if "\x00" in payload:
        assert [response.status_code for response in responses] == [400, 400, 400]
        return
    assert [response.status_code for response in responses] == [201, 201, 201], [r.content for r in responses]
    assert Role.objects.get().name == text
    assert Group.objects.get(name=text)
    lock = FileLock.objects.get()
    assert (lock.path, lock.reason) == (f"dir/{text}.psd", text)

    client = Client()
    client.force_login(superuser)
    for url in (
        "/admin/rbac/role/",
        "/admin/auth/group/",
        "/admin/locks/filelock/",
        f"/admin/locks/filelock/{lock.pk}/",
    ):
        page = client.get(url, follow=True).content.decode()
        # The visible text; attributes Django fills with str(obj) (the checkbox's aria-label) are not shown.
        visible = re.sub(r"<[^>]*>", "", page)
        assert not RAW_CONTROL.search(visible), url
        assert printable(text).replace("'", "&#x27;") in page, url


def test_repository_name_from_the_console_form_is_kept_and_listed_escaped(db, payload):
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(superuser)
    name = f"x{payload}y"
    client.post("/admin/locks/repository/add/", {"slug": "art", "name": name})

    if "\x00" in payload:
        # Django's form fields refuse NUL, as DRF's do.
        assert not Repository.objects.exists()
        return
    assert Repository.objects.get().name == name
    page = client.get("/admin/locks/repository/").content.decode()
    assert not RAW_CONTROL.search(re.sub(r"<[^>]*>", "", page))
    assert printable(name).replace("'", "&#x27;") in page


def test_audit_verify_output_of_a_tampered_entry_is_escaped(entry, payload, triggers_dropped):
    """An entry whose entity id an attacker rewrote to terminal escapes is reported by id; its text never reaches
    the terminal raw."""
    seal_pending()
    with triggers_dropped(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET entity_id = %s WHERE id = %s", [f"{entry.entity_id}!", entry.pk])
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("audit_verify", stdout=out)

    assert f"modified: entry {entry.pk}" in out.getvalue()
    assert not RAW_CONTROL.search(out.getvalue())


def test_lfs_lock_path_keeps_control_characters_as_data(db, payload):
    """Git allows any byte but NUL in a path: the Git LFS API stores and lists it exactly, JSON-escaped."""
    superuser = UserFactory(is_staff=True, is_superuser=True)
    api = APIClient()
    api.force_authenticate(superuser)
    Repository.objects.create(slug="art", name="Art")
    path = f"dir/x{payload}y.psd"
    created = api.post("/api/lfs/art/locks", json.dumps({"path": path}), content_type=LFS_MEDIA_TYPE)

    if "\x00" in payload:
        assert created.status_code == 422
        assert json.loads(created.content)["message"].startswith("path:")
        return
    assert created.status_code == 201, created.content
    listed = api.get("/api/lfs/art/locks", HTTP_ACCEPT=LFS_MEDIA_TYPE)
    assert [lock["path"] for lock in json.loads(listed.content)["locks"]] == [path]
    # JSON escapes C0 controls; DEL, C1 and bidi controls are plain characters of a JSON string, read by programs.
    assert not re.search(r"[\x00-\x1f]", listed.content.decode("utf-8"))
