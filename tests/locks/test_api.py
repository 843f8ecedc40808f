"""The REST API of file locks: GET/POST /api/locks, POST /api/locks/<id>/checkin and /force-checkin.

Status codes, the error shape ({"message", "code", "extra"?}) and the audit entry each request leaves.
"""

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.privacy import reveal
from locks import services
from locks.models import FileLock, Repository
from tests.factories.users import UserFactory

LIST_URL = "/api/locks"
DENIED = AuditLog.Outcome.DENIED
FAILURE = AuditLog.Outcome.FAILURE
SUCCESS = AuditLog.Outcome.SUCCESS


def checkin_url(pk: int) -> str:
    return f"/api/locks/{pk}/checkin"


def force_url(pk: int) -> str:
    return f"/api/locks/{pk}/force-checkin"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def lock_entries(action: str | None = None) -> list[AuditLog]:
    entries = list(
        AuditLog.objects.filter(action__startswith="LOCK.")
        .filter(**({"action": action} if action else {}))
        .order_by("id")
    )
    reveal(entries)  # the actor's label and address are stored encrypted
    return entries


def checkout(client: APIClient, path: str = "design/model.psd", **body: Any):
    return client.post(LIST_URL, {"repository": "game-art", "path": path, **body}, format="json")


# --- POST /api/locks (checkout) -------------------------------------------------------------------------------------


def test_checkout_returns_201_with_the_lock_and_records_lock_create(owner, repository):
    """A member's checkout answers 201 with the lock (normalised path, owner's name) and leaves one LOCK.CREATE
    success entry for the new lock, with the request's address."""
    response = checkout(client_for(owner), "./design//model.psd", ref_name="refs/heads/main", reason="retouch")

    assert response.status_code == 201
    body = response.json()
    lock = FileLock.objects.get()
    assert body["id"] == lock.pk
    assert {key: body[key] for key in ("repository", "path", "owner", "ref_name", "reason")} == {
        "repository": "game-art",
        "path": "design/model.psd",
        "owner": owner.username,
        "ref_name": "refs/heads/main",
        "reason": "retouch",
    }
    [entry] = lock_entries()
    assert (entry.action, entry.outcome, entry.actor_id, entry.entity_id) == (
        AuditAction.LOCK_CREATE,
        SUCCESS,
        owner.pk,
        str(lock.pk),
    )
    assert entry.ip_address == "127.0.0.1"


def test_checkout_of_a_locked_path_returns_409_naming_the_owner_and_the_lock(lock, owner, rival):
    """Checking out a locked path answers 409: the message names the current owner and the lock, "extra" carries
    both for programs; a LOCK.CREATE "denied" entry records the attempt."""
    response = checkout(client_for(rival), "design\\model.psd")

    assert response.status_code == 409
    assert response.json() == {
        "message": f"design/model.psd is already locked by {owner.username} (lock {lock.pk})",
        "code": "lock_conflict",
        "extra": {"lock_id": str(lock.pk), "owner": owner.username},
    }
    assert FileLock.objects.get().owner_id == owner.pk
    denied = lock_entries()[-1]
    assert (denied.action, denied.outcome, denied.actor_id) == (AuditAction.LOCK_CREATE, DENIED, rival.pk)


def test_checkout_of_own_locked_path_returns_409_too(lock, owner):
    """The owner checking out their own locked path again gets 409 as well: a lock is taken once."""
    response = checkout(client_for(owner))

    assert response.status_code == 409
    assert response.json()["extra"] == {"lock_id": str(lock.pk), "owner": owner.username}
    assert lock_entries()[-1].outcome == DENIED


def test_checkout_without_the_right_returns_403_and_records_denied(user, repository):
    """A user without locks.add_filelock gets 403 with a message; no lock, a LOCK.CREATE "denied" entry."""
    response = checkout(client_for(user))

    assert response.status_code == 403
    assert response.json() == {
        "message": f"{user.username} may not lock files in game-art",
        "code": "permission_denied",
    }
    assert not FileLock.objects.exists()
    [entry] = lock_entries()
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_CREATE, DENIED, user.pk)


def test_checkout_in_an_unknown_repository_returns_404(owner, repository):
    """An unknown repository slug answers 404; there is nothing to lock, so no lock and no lock entry."""
    response = client_for(owner).post(LIST_URL, {"repository": "nope", "path": "a.psd"}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not FileLock.objects.exists()
    assert lock_entries() == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.psd", "path: path '../outside.psd' must not contain '..'"),
        ("design/../../x", "path: path 'design/../../x' must not contain '..'"),
        ("./", "path: path is empty"),
    ],
)
def test_checkout_of_a_bad_path_returns_400_naming_the_field(path, message, owner, repository):
    """A path the service refuses answers 400 with a message naming "path"; the attempt is a failure entry."""
    response = checkout(client_for(owner), path)

    assert response.status_code == 400
    assert response.json()["message"] == message
    assert response.json()["code"] == "invalid"
    assert list(response.json()["errors"]) == ["path"]
    assert not FileLock.objects.exists()
    [entry] = lock_entries()
    assert (entry.action, entry.outcome) == (AuditAction.LOCK_CREATE, FAILURE)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"repository": "game-art", "path": ""}, "path: This field may not be blank."),
        ({"repository": "game-art"}, "path: This field is required."),
        ({"path": "a.psd"}, "repository: This field is required."),
    ],
)
def test_checkout_with_a_missing_or_empty_field_returns_400_naming_it(body, message, owner, repository):
    """Input the serializer refuses answers 400 naming the field, before the service: no lock, no entry."""
    response = client_for(owner).post(LIST_URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["message"] == message
    assert not FileLock.objects.exists()
    assert lock_entries() == []


# --- POST /api/locks/<id>/checkin -----------------------------------------------------------------------------------


def test_checkin_by_the_owner_returns_200_and_records_lock_release(lock, owner):
    """The owner's checkin answers 200 with the released lock; the lock is gone and LOCK.RELEASE is recorded."""
    response = client_for(owner).post(checkin_url(lock.pk))

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["path"]) == (lock.pk, "design/model.psd")
    assert not FileLock.objects.exists()
    entry = lock_entries()[-1]
    assert (entry.action, entry.outcome, entry.actor_id, entry.entity_id) == (
        AuditAction.LOCK_RELEASE,
        SUCCESS,
        owner.pk,
        str(lock.pk),
    )


def test_checkin_by_another_user_returns_403_and_the_lock_stays(lock, owner, rival):
    """Someone else's checkin answers 403 naming the owner; the lock stays and LOCK.RELEASE "denied" is recorded."""
    response = client_for(rival).post(checkin_url(lock.pk))

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert f"locked by {owner.username}" in response.json()["message"]
    assert FileLock.objects.filter(pk=lock.pk).exists()
    entry = lock_entries()[-1]
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_RELEASE, DENIED, rival.pk)


def test_checkin_of_an_unknown_lock_returns_404(owner):
    """An unknown lock id answers 404 and records nothing."""
    response = client_for(owner).post(checkin_url(999_999))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert lock_entries() == []


# --- POST /api/locks/<id>/force-checkin -----------------------------------------------------------------------------


def test_force_checkin_with_the_right_returns_200_and_records_force_release(lock, owner, lock_admin):
    """A lock administrator's force-checkin with a reason answers 200; LOCK.FORCE_RELEASE carries override, the
    reason and the previous owner."""
    response = client_for(lock_admin).post(force_url(lock.pk), {"reason": "owner on leave"}, format="json")

    assert response.status_code == 200
    assert response.json()["owner"] == owner.username
    assert not FileLock.objects.exists()
    entry = lock_entries()[-1]
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_FORCE_RELEASE, SUCCESS, lock_admin.pk)
    assert (entry.meta["override"], entry.meta["reason"], entry.meta["previous_owner"]) == (
        True,
        "owner on leave",
        owner.username,
    )


def test_force_checkin_with_the_per_repository_right_returns_200(lock, repository):
    """locks.force_unlock on the repository (django-guardian) is enough through the API too."""
    maintainer = UserFactory()
    assign_perm("locks.force_unlock", maintainer, repository)

    response = client_for(maintainer).post(force_url(lock.pk), {"reason": "stale"}, format="json")

    assert response.status_code == 200
    assert not FileLock.objects.exists()
    assert lock_entries()[-1].actor_id == maintainer.pk


def test_force_checkin_without_the_right_returns_403_and_records_denied(lock, rival):
    """A member without force_unlock gets 403; the lock stays and LOCK.FORCE_RELEASE "denied" is recorded."""
    response = client_for(rival).post(force_url(lock.pk), {"reason": "I need it"}, format="json")

    assert response.status_code == 403
    assert response.json()["message"] == f"{rival.username} may not release other people's locks in game-art"
    assert FileLock.objects.filter(pk=lock.pk).exists()
    entry = lock_entries()[-1]
    assert (entry.action, entry.outcome, entry.actor_id) == (AuditAction.LOCK_FORCE_RELEASE, DENIED, rival.pk)


def test_force_checkin_without_a_reason_returns_400_naming_reason(lock, lock_admin):
    """A missing reason answers 400 naming "reason" before the service runs: the lock stays, nothing recorded."""
    response = client_for(lock_admin).post(force_url(lock.pk), {}, format="json")

    assert response.status_code == 400
    assert response.json()["message"] == "reason: This field is required."
    assert FileLock.objects.filter(pk=lock.pk).exists()
    assert lock_entries(AuditAction.LOCK_FORCE_RELEASE) == []


@pytest.mark.parametrize("reason", ["", "   "])
def test_force_checkin_with_an_empty_reason_returns_400_naming_reason(reason, lock, lock_admin):
    """An empty or blank reason reaches the service, which refuses it: 400 naming "reason", the lock stays, and
    the attempt is recorded as a failure."""
    response = client_for(lock_admin).post(force_url(lock.pk), {"reason": reason}, format="json")

    assert response.status_code == 400
    assert response.json()["message"] == "reason: A reason is required to release someone else's lock."
    assert FileLock.objects.filter(pk=lock.pk).exists()
    entry = lock_entries()[-1]
    assert (entry.action, entry.outcome) == (AuditAction.LOCK_FORCE_RELEASE, FAILURE)


def test_force_checkin_of_an_unknown_lock_returns_404(lock_admin):
    """An unknown lock id answers 404 and records nothing."""
    response = client_for(lock_admin).post(force_url(999_999), {"reason": "stale"}, format="json")

    assert response.status_code == 404
    assert lock_entries() == []


# --- anonymous ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", LIST_URL, None),
        ("post", LIST_URL, {"repository": "game-art", "path": "a.psd"}),
        ("post", "checkin", None),
        ("post", "force", {"reason": "x"}),
    ],
)
def test_anonymous_requests_get_401_and_change_nothing(method, url, body, lock, api_client):
    """Without credentials every endpoint answers 401 (with a Basic challenge); the lock stays and no lock entry
    is recorded."""
    url = {"checkin": checkin_url(lock.pk), "force": force_url(lock.pk)}.get(url, url)
    entries_before = len(lock_entries())

    response = getattr(api_client, method)(url, body, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.has_header("WWW-Authenticate")
    assert FileLock.objects.filter(pk=lock.pk).exists()
    assert len(lock_entries()) == entries_before


# --- GET /api/locks -------------------------------------------------------------------------------------------------


@pytest.fixture
def many_locks(owner, rival, repository) -> dict[str, FileLock]:
    website = Repository.objects.create(slug="website", name="Website")
    return {
        "art_owner": services.checkout(actor=owner, repository=repository, path="design/model.psd"),
        "art_rival": services.checkout(actor=rival, repository=repository, path="design/logo.psd"),
        "web_owner": services.checkout(actor=owner, repository=website, path="design/model.psd"),
        "web_rival": services.checkout(actor=rival, repository=website, path="index.html"),
    }


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [item["id"] for item in response.json()["results"]]


def test_list_returns_every_lock_oldest_first(many_locks, rival):
    """Without filters every lock is listed, in id order, to a member (locks.view_filelock)."""
    assert listed(client_for(rival).get(LIST_URL)) == [lock.pk for lock in many_locks.values()]


def test_list_is_refused_without_the_view_right(many_locks):
    """An authenticated user without locks.view_filelock gets 403 naming them, and no path or owner."""
    outsider = UserFactory(username="outsider")

    response = client_for(outsider).get(LIST_URL)

    assert response.status_code == 403
    assert "outsider" in response.json()["message"]
    assert b"design/model.psd" not in response.content


def test_list_filters_by_repository(many_locks, owner):
    """?repository=<slug> lists that repository's locks only."""
    response = client_for(owner).get(LIST_URL, {"repository": "website"})

    assert listed(response) == [many_locks["web_owner"].pk, many_locks["web_rival"].pk]


def test_list_filters_by_normalised_path(many_locks, owner):
    """?path= is normalised like a checkout's path, so "./design//model.psd" finds "design/model.psd" in both
    repositories."""
    response = client_for(owner).get(LIST_URL, {"path": ".\\design//model.psd"})

    assert listed(response) == [many_locks["art_owner"].pk, many_locks["web_owner"].pk]


def test_list_filters_by_owner(many_locks, owner, rival):
    """?owner=<username> lists that user's locks; the filters combine."""
    client = client_for(owner)

    assert listed(client.get(LIST_URL, {"owner": rival.username})) == [
        many_locks["art_rival"].pk,
        many_locks["web_rival"].pk,
    ]
    assert listed(client.get(LIST_URL, {"owner": rival.username, "repository": "game-art"})) == [
        many_locks["art_rival"].pk
    ]


def test_list_filter_by_unknown_repository_is_empty(many_locks, owner):
    """Filtering by a repository that does not exist lists nothing (a filter, not a lookup)."""
    assert listed(client_for(owner).get(LIST_URL, {"repository": "nope"})) == []


def test_list_filter_with_a_bad_path_returns_400_naming_path(owner, repository):
    """A ?path= that cannot be normalised answers 400 naming "path"."""
    response = client_for(owner).get(LIST_URL, {"path": "../x"})

    assert response.status_code == 400
    assert response.json()["message"].startswith("path: ")


def test_list_pages_with_cursors_without_gaps_or_repeats(owner, repository):
    """With page_size=2, following "next" from page to page visits all five locks once, in id order; the cursor
    is opaque (no page numbers or offsets a client could tamper with)."""
    ids = [services.checkout(actor=owner, repository=repository, path=f"file{n}.psd").pk for n in range(5)]
    client = client_for(owner)

    seen: list[int] = []
    url: str | None = f"{LIST_URL}?page_size=2"
    pages = 0
    while url:
        response = client.get(url)
        seen += listed(response)
        url = response.json()["next"]
        pages += 1
        if url:
            assert set(parse_qs(urlparse(url).query)) == {"cursor", "page_size"}

    assert seen == ids
    assert pages == 3
