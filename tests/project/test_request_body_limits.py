"""Oversized bodies: every endpoint family that takes a body answers 413 with a message in its own shape, before
any view reads the body; single fields over their length get 400 naming the field."""

import base64
import json

import pytest
from django.test import Client

from locks.lfs.media import LFS_MEDIA_TYPE
from locks.models import FileLock, Repository
from tests.factories.users import PASSWORD, UserFactory

LIMIT = 2048
TOO_BIG = {"reason": "x" * (LIMIT + 1)}

API_WRITES = [
    ("POST", "/api/audit/events"),
    ("POST", "/api/audit/events/batch"),
    ("POST", "/api/locks"),
    ("POST", "/api/locks/1/checkin"),
    ("POST", "/api/locks/1/force-checkin"),
    ("POST", "/api/rbac/roles"),
    ("PATCH", "/api/rbac/roles/1"),
    ("PUT", "/api/rbac/roles/1/permissions"),
    ("POST", "/api/rbac/groups"),
    ("PUT", "/api/rbac/groups/1/members"),
    ("PUT", "/api/rbac/groups/1/scope"),
    ("PUT", "/api/rbac/users/1/roles"),
]
LFS_WRITES = ["/api/lfs/art/locks", "/api/lfs/art/locks/verify", "/api/lfs/art/locks/1/unlock"]
ADMIN_FORMS = ["/admin/rbac/role/add/", "/admin/auth/group/add/", "/admin/locks/repository/add/"]


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def basic(admin_user) -> dict[str, str]:
    token = base64.b64encode(f"{admin_user.username}:{PASSWORD}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


@pytest.fixture
def small_limit(settings) -> int:
    settings.REQUEST_BODY_MAX_BYTES = LIMIT
    return LIMIT


def send(client: Client, method: str, url: str, body: bytes, content_type: str, **extra: str):
    return client.generic(method, url, body, content_type=content_type, **extra)


@pytest.mark.parametrize(("method", "url"), API_WRITES)
def test_oversized_api_body_is_413_with_a_json_message(small_limit, basic, method, url):
    """A JSON body over REQUEST_BODY_MAX_BYTES on any REST endpoint: 413 with {"message", "code"}, not 400 or 500."""
    response = send(Client(), method, url, json.dumps(TOO_BIG).encode(), "application/json", **basic)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "message": f"The request body is larger than the limit of {LIMIT} bytes.",
        "code": "payload_too_large",
    }


@pytest.mark.parametrize("url", LFS_WRITES)
def test_oversized_lfs_body_is_413_in_the_git_lfs_shape(small_limit, basic, url):
    """The Git LFS locking API answers in its media type with the {"message"} git-lfs prints."""
    body = json.dumps({"path": "a.psd", "ref": {"name": "x" * LIMIT}}).encode()
    response = send(Client(), "POST", url, body, LFS_MEDIA_TYPE, HTTP_ACCEPT=LFS_MEDIA_TYPE, **basic)

    assert response.status_code == 413
    assert response["Content-Type"] == LFS_MEDIA_TYPE
    assert "larger than the limit" in json.loads(response.content)["message"]


@pytest.mark.parametrize("url", ADMIN_FORMS)
def test_oversized_admin_form_is_413(small_limit, admin_user, url):
    client = Client()
    client.force_login(admin_user)
    response = client.post(url, {"name": "x" * (LIMIT + 1)})

    assert response.status_code == 413
    assert b"larger than the limit" in response.content


def test_django_own_form_limit_is_413_too(settings, admin_user):
    """Below our limit but above DATA_UPLOAD_MAX_MEMORY_SIZE, Django's RequestDataTooBig is a 413, not its 400."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    client = Client()
    client.force_login(admin_user)
    response = client.post("/admin/rbac/role/add/", {"name": "x" * 500})

    assert response.status_code == 413


def test_body_at_the_limit_passes_the_middleware(settings, basic):
    """Exactly the limit is allowed: the request reaches the view (here: a validation error, not 413)."""
    settings.REQUEST_BODY_MAX_BYTES = 200
    body = json.dumps({"repository": "art", "path": "a" * 150}).ljust(200).encode()
    assert len(body) == 200
    response = send(Client(), "POST", "/api/locks", body, "application/json", **basic)

    assert response.status_code != 413


def test_content_length_that_lies_above_the_limit_is_413(small_limit, basic):
    """A small body announcing more than the limit is refused on what it announces."""
    response = send(Client(), "POST", "/api/locks", b"{}", "application/json", CONTENT_LENGTH=str(LIMIT + 1), **basic)

    assert response.status_code == 413


def test_content_length_shorter_than_the_body_is_a_400_not_a_truncated_write(small_limit, basic):
    """A Content-Length under the real size cuts the JSON; the parser refuses it, nothing half-read is used."""
    Repository.objects.create(slug="art", name="Art")
    body = json.dumps({"repository": "art", "path": "a.psd", "reason": "y" * (LIMIT * 4)}).encode()
    response = send(Client(), "POST", "/api/locks", body, "application/json", CONTENT_LENGTH="40", **basic)

    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


def test_chunked_body_without_content_length_is_411(small_limit, basic):
    """Without Content-Length Django would read no body at all: refused, not silently emptied."""
    response = send(
        Client(),
        "POST",
        "/api/audit/events",
        b'{"action": "X"}',
        "application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **basic,
    )

    assert response.status_code == 411
    assert response.json()["code"] == "length_required"


def test_body_without_any_length_is_not_half_read(small_limit, basic):
    """No Content-Length and no chunked framing: the body counts as empty, so the write fails validation (400)
    instead of acting on part of what was sent."""
    Repository.objects.create(slug="art", name="Art")
    body = json.dumps({"repository": "art", "path": "a.psd"}).encode()
    response = send(Client(), "POST", "/api/locks", body, "application/json", CONTENT_LENGTH="", **basic)

    assert response.status_code == 400
    assert not FileLock.objects.exists()


def test_content_length_that_is_not_a_number_is_400(small_limit, basic):
    response = send(Client(), "POST", "/api/locks", b"{}", "application/json", CONTENT_LENGTH="12abc", **basic)

    assert response.status_code == 400
    assert "Content-Length" in response.json()["message"]


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/locks", {"repository": "art", "path": "a.psd", "reason": "r" * 2001}, "reason"),
        ("/api/locks", {"repository": "art", "path": "a" * 4097}, "path"),
        ("/api/rbac/roles", {"name": "n" * 101}, "name"),
        ("/api/rbac/groups", {"name": "g" * 151}, "name"),
    ],
)
def test_oversized_field_is_400_naming_the_field(basic, url, body, field):
    Repository.objects.create(slug="art", name="Art")
    response = send(Client(), "POST", url, json.dumps(body).encode(), "application/json", **basic)

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}:")
