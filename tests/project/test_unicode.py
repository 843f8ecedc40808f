"""Unicode text round-trips through the REST API, the Git LFS API, the console and the exports.

Lock paths are compared as given, as git compares them (bytes as given): an NFC "café" and an NFD "cafe\\u0301"
are two different files, each with its own lock. A lone surrogate is no text at all: 400 naming the field.
"""

import base64
import csv
import io
import json
import unicodedata
from urllib.parse import quote

import pytest
from django.test import Client

from audit.actions import AuditAction
from audit.export.flat import csv_chunks, json_chunks
from audit.models import AuditLog
from audit.services import record
from locks.lfs.media import LFS_MEDIA_TYPE
from locks.models import FileLock, Repository
from tests.audit.read_back import read_back
from tests.audit.test_bundle import export_directly, no_key, run_verify, signing_key  # noqa: F401 (fixtures)
from tests.factories.users import PASSWORD, UserFactory

NFC = unicodedata.normalize("NFC", "design/café.psd")
NFD = unicodedata.normalize("NFD", "design/café.psd")
PATHS = {
    "nfc": NFC,
    "nfd": NFD,
    "emoji": "art/🎨 palette 👩🏽‍🎨.psd",
    "cjk": "資料/設計図.psd",
    "rtl": "מסמכים/تصميم.psd",
}
NAMES = ["Zoë Ångström", "設計チーム", "فريق التصميم", "🛡️ guards"]


@pytest.fixture
def root(db):
    return UserFactory(username="rööt", is_staff=True, is_superuser=True)


@pytest.fixture
def client(root) -> Client:
    token = base64.b64encode(f"{root.username}:{PASSWORD}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")


@pytest.fixture
def console(root) -> Client:
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def repository(db) -> Repository:
    return Repository.objects.create(slug="art", name="Kunst & 芸術 ⟨art⟩")


def post_json(client: Client, url: str, body: dict, content_type: str = "application/json"):
    return client.post(url, json.dumps(body), content_type=content_type, HTTP_ACCEPT=content_type)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_rest_lock_path_round_trips(client, repository, name):
    path = PATHS[name]
    created = post_json(client, "/api/locks", {"repository": "art", "path": path})

    assert created.status_code == 201, created.content
    assert created.json()["path"] == path
    listed = client.get(f"/api/locks?repository=art&path={quote(path)}").json()
    assert [lock["path"] for lock in listed["results"]] == [path]
    entry = AuditLog.objects.filter(action="LOCK.CREATE").latest("id")
    assert path in json.dumps(entry.meta, ensure_ascii=False) + entry.entity_id + json.dumps(entry.changes)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_lfs_lock_path_round_trips(client, repository, name):
    path = PATHS[name]
    created = post_json(client, "/api/lfs/art/locks", {"path": path}, LFS_MEDIA_TYPE)

    assert created.status_code == 201, created.content
    assert json.loads(created.content)["lock"]["path"] == path
    listed = json.loads(client.get(f"/api/lfs/art/locks?path={quote(path)}", HTTP_ACCEPT=LFS_MEDIA_TYPE).content)
    assert [lock["path"] for lock in listed["locks"]] == [path]


def test_nfc_and_nfd_paths_are_different_files(client, repository):
    """As in git: the two spellings of "café" are different names, so each can be locked on its own."""
    assert NFC != NFD
    for path in (NFC, NFD):
        assert post_json(client, "/api/locks", {"repository": "art", "path": path}).status_code == 201

    assert sorted(FileLock.objects.values_list("path", flat=True)) == sorted([NFC, NFD])
    assert post_json(client, "/api/locks", {"repository": "art", "path": NFD}).status_code == 409


@pytest.mark.parametrize(
    ("url", "body", "content_type", "field"),
    [
        ("/api/locks", {"repository": "art", "path": "a\ud800.psd"}, "application/json", "path"),
        ("/api/lfs/art/locks", {"path": "a\udfff.psd"}, LFS_MEDIA_TYPE, "path"),
        ("/api/lfs/art/locks", {"path": "a.psd", "ref": {"name": "refs/heads/\ud83d"}}, LFS_MEDIA_TYPE, "ref.name"),
        ("/api/rbac/roles", {"name": "bad \ud800 role"}, "application/json", "name"),
        ("/api/rbac/groups", {"name": "ok", "reason": "\udc00"}, "application/json", "reason"),
    ],
)
def test_lone_surrogate_is_400_naming_the_field(client, repository, url, body, content_type, field):
    response = post_json(client, url, body, content_type)

    assert response.status_code == 400
    assert json.loads(response.content)["message"].startswith(f"{field}:")
    assert not FileLock.objects.exists()


@pytest.mark.parametrize("name", NAMES)
def test_role_and_group_names_round_trip(client, console, name):
    role = post_json(client, "/api/rbac/roles", {"name": name})
    assert role.status_code == 201, role.content
    assert role.json()["name"] == name
    group = post_json(client, "/api/rbac/groups", {"name": name, "roles": [role.json()["id"]]})
    assert group.status_code == 201, group.content
    assert group.json()["name"] == name

    assert name in console.get("/admin/rbac/role/").content.decode()
    entry = AuditLog.objects.filter(action="ROLE.CREATE").latest("id")
    assert name in json.dumps(entry.changes, ensure_ascii=False)


def test_unicode_username_and_repository_name_in_the_console(client, console, repository):
    """The actor label keeps the username as written; the console shows it and the repository's name."""
    post_json(client, "/api/locks", {"repository": "art", "path": PATHS["cjk"]})
    entry = read_back(pk=AuditLog.objects.filter(action="LOCK.CREATE").latest("id").pk)

    assert entry.actor_label == "rööt"
    assert "rööt" in console.get("/admin/audit/auditlog/").content.decode()
    assert PATHS["cjk"] in console.get("/admin/locks/filelock/").content.decode()
    assert "Kunst &amp; 芸術 ⟨art⟩" in console.get("/admin/locks/repository/").content.decode()


def test_exports_keep_unicode_exactly(client, repository):
    """CSV keeps the characters (UTF-8); JSON escapes them as \\uXXXX and parses back to the stored text."""
    for path in PATHS.values():
        post_json(client, "/api/locks", {"repository": "art", "path": path})
    entries = AuditLog.objects.filter(action="LOCK.CREATE").order_by("id")
    stored = [entry.entity_id for entry in entries]

    rows = list(csv.DictReader(io.StringIO(b"".join(csv_chunks(entries)).decode("utf-8"), newline="")))
    assert [row["entity_id"] for row in rows] == stored
    assert [json.loads(row["meta"]) for row in rows] == [entry.meta for entry in entries]
    parsed = json.loads(b"".join(json_chunks(entries)))
    assert [item["meta"] for item in parsed] == [entry.meta for entry in entries]
    assert any(path in json.dumps(entry.meta, ensure_ascii=False) for path in PATHS.values() for entry in entries)


def test_foia_bundle_keeps_unicode_exactly(db, signing_key, tmp_path):  # noqa: F811 (the imported fixture)
    """records.jsonl parses back to the stored text, records.csv carries it as UTF-8, and the bundle verifies."""
    for path in PATHS.values():
        record(AuditAction.LOCK_CREATE, entity="FileLock", entity_id=path, meta={"path": path, "by": NAMES[0]})
    entries = AuditLog.objects.order_by("id")
    bundle = export_directly(entries, [], tmp_path).bundle

    assert [item["entity_id"] for item in bundle.records] == list(PATHS.values())
    assert [item["meta"]["path"] for item in bundle.records] == list(PATHS.values())
    assert [row["entity_id"] for row in bundle.csv_rows] == list(PATHS.values())
    assert {row["meta"] for row in bundle.csv_rows} >= {json.dumps({"by": NAMES[0], "path": NFD}, ensure_ascii=False)}
    assert run_verify(bundle.path, signing_key.public_path)[0] == 0
