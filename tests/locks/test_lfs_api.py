"""The Git LFS File Locking API at the wire level, as the real git-lfs client speaks it.

Requests carry HTTP Basic credentials, ``Accept: application/vnd.git-lfs+json`` and, with a body,
``Content-Type: application/vnd.git-lfs+json; charset=utf-8``; answers come back in that media type, and every
error carries a ``message`` because the client prints nothing useful without one.
"""

import base64
import datetime as dt
import json
import re
from typing import Any

import pytest
from django.test import Client

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.privacy import reveal
from locks.models import FileLock, Repository
from locks.services import checkout
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.factories.users import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
REQUEST_CONTENT_TYPE = "application/vnd.git-lfs+json; charset=utf-8"
SLUG = "design"
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
REF = {"name": "refs/heads/main"}


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class Lfs:
    """A git-lfs client in miniature: its headers, its URLs, its credentials."""

    def __init__(self, client: Client, username: str | None, password: str = PASSWORD, slug: str = SLUG) -> None:
        self.client = client
        self.username = username
        self.password = password
        self.base = f"/api/lfs/{slug}/locks"

    def _headers(self) -> dict[str, str]:
        headers = {"HTTP_ACCEPT": LFS_MEDIA_TYPE}
        if self.username is not None:
            headers["HTTP_AUTHORIZATION"] = _basic(self.username, self.password)
        return headers

    def get(self, suffix: str = "", **params: Any) -> Any:
        return self.client.get(self.base + suffix, params, **self._headers())

    def post(self, suffix: str = "", body: dict[str, Any] | None = None) -> Any:
        return self.client.post(
            self.base + suffix, json.dumps(body or {}), content_type=REQUEST_CONTENT_TYPE, **self._headers()
        )

    def lock(self, path: str, ref: dict[str, str] | None = None) -> Any:
        return self.post("", {"path": path, "ref": ref or REF})

    def locks(self, **params: Any) -> Any:
        return self.get("", **params)

    def verify(self, **body: Any) -> Any:
        return self.post("/verify", {"ref": REF, **body})

    def unlock(self, lock_id: object, force: bool = False) -> Any:
        return self.post(f"/{lock_id}/unlock", {"force": force, "ref": REF})


def _assert_lfs_media_type(response: Any) -> None:
    assert response["Content-Type"].split(";")[0].strip() == LFS_MEDIA_TYPE, response["Content-Type"]


def _assert_error(response: Any, status: int) -> str:
    """The status, the LFS media type and a non-empty ``message``; returns the message."""
    assert response.status_code == status, (response.status_code, response.content)
    _assert_lfs_media_type(response)
    body = response.json()
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    return body["message"]


def _entries(action: str, **filters: Any) -> list[AuditLog]:
    entries = list(AuditLog.objects.filter(action=action, **filters).order_by("id"))
    reveal(entries)  # the actor's label and address are stored encrypted
    return entries


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    """One Basic check per request: with PBKDF2's default work factor each costs ~0.4 s, so the test users get a
    cheap hash (the check itself is Django's, unchanged)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roles() -> dict[str, Role]:
    bootstrap_default_roles()
    return {role.name: role for role in Role.objects.all()}


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(slug=SLUG, name="Design assets")


@pytest.fixture
def alice(roles):
    user = UserFactory(username="alice")
    roles["member"].users.add(user)
    return user


@pytest.fixture
def bob(roles):
    user = UserFactory(username="bob")
    roles["member"].users.add(user)
    return user


@pytest.fixture
def carol(roles):
    """A lock administrator (and not a member)."""
    user = UserFactory(username="carol")
    roles["lock administrator"].users.add(user)
    return user


@pytest.fixture
def outsider(roles):
    """Authenticated, but with no role at all."""
    return UserFactory(username="outsider")


@pytest.fixture
def as_alice(client, alice, repo) -> Lfs:
    return Lfs(client, "alice")


@pytest.fixture
def as_bob(client, bob, repo) -> Lfs:
    return Lfs(client, "bob")


@pytest.fixture
def as_carol(client, carol, repo) -> Lfs:
    return Lfs(client, "carol")


def _bulk_locks(repo: Repository, owners: list[Any], count: int) -> list[FileLock]:
    """``count`` locks, owners taken in turn; test data only, hence without the (audited) service."""
    FileLock.objects.bulk_create(
        FileLock(repository=repo, path=f"bulk/file{i:04}.psd", owner=owners[i % len(owners)]) for i in range(count)
    )
    return list(FileLock.objects.filter(repository=repo).order_by("id"))


# --- create ---------------------------------------------------------------------------------------------------


def test_create_answers_201_with_the_lock_in_the_shape_the_client_reads(as_alice, alice):
    """POST /locks answers 201 {"lock": {id, path, locked_at, owner: {name}}}: a URL-safe string id, the path as
    sent, an RFC 3339 time with an offset, and the owner's user name; the lock exists and LOCK.CREATE succeeded."""
    response = as_alice.lock("design/model.psd")

    assert response.status_code == 201, response.content
    _assert_lfs_media_type(response)
    body = response.json()
    assert set(body) == {"lock"}
    lock = body["lock"]
    assert set(lock) == {"id", "path", "locked_at", "owner"}
    assert isinstance(lock["id"], str) and ID_RE.match(lock["id"])
    assert lock["path"] == "design/model.psd"
    assert lock["owner"] == {"name": "alice"}
    assert RFC3339_RE.match(lock["locked_at"]), lock["locked_at"]
    locked_at = dt.datetime.fromisoformat(lock["locked_at"].replace("Z", "+00:00"))
    assert locked_at.tzinfo is not None
    stored = FileLock.objects.get(pk=int(lock["id"]))
    assert (stored.path, stored.owner_id, stored.ref_name) == ("design/model.psd", alice.pk, "refs/heads/main")
    assert abs(stored.locked_at - locked_at) < dt.timedelta(seconds=1)
    [entry] = _entries(AuditAction.LOCK_CREATE)
    assert (entry.outcome, entry.actor_label, entry.entity_id) == ("success", "alice", lock["id"])
    assert entry.meta["path"] == "design/model.psd"


def test_every_success_answer_uses_the_git_lfs_media_type(as_alice):
    """Create, list, verify and unlock all answer application/vnd.git-lfs+json (DRF would otherwise answer 406)."""
    created = as_alice.lock("a.psd")
    listed = as_alice.locks()
    verified = as_alice.verify()
    unlocked = as_alice.unlock(created.json()["lock"]["id"])

    for response, status in ((created, 201), (listed, 200), (verified, 200), (unlocked, 200)):
        assert response.status_code == status, response.content
        _assert_lfs_media_type(response)


def test_conflict_answers_409_with_the_lock_and_a_message_naming_the_owner(as_alice, as_bob):
    """Locking a path someone holds answers 409 {"lock", "message"}; the client prints only the message, so it
    names the owner. Locks are repository-wide (another ref conflicts too), and the refusal is a denied
    LOCK.CREATE entry by the one refused."""
    held = as_alice.lock("design/model.psd").json()["lock"]

    response = as_bob.lock("design/model.psd", ref={"name": "refs/heads/feature"})

    message = _assert_error(response, 409)
    assert "alice" in message
    assert "design/model.psd" in message
    body = response.json()
    assert body["lock"]["id"] == held["id"]
    assert body["lock"]["owner"] == {"name": "alice"}
    assert FileLock.objects.count() == 1
    [denied] = _entries(AuditAction.LOCK_CREATE, outcome="denied")
    assert denied.actor_label == "bob"
    assert denied.meta["path"] == "design/model.psd"


def test_relocking_ones_own_path_is_a_conflict_too(as_alice):
    """A second lock on the same path by its owner is a 409 naming the owner, not a second lock."""
    as_alice.lock("design/model.psd")

    message = _assert_error(as_alice.lock("design/model.psd"), 409)

    assert "alice" in message
    assert FileLock.objects.count() == 1


@pytest.mark.parametrize("path", ["..", "../model.psd", "design/../../model.psd", "design/..", ""])
def test_create_with_dotdot_or_an_empty_path_answers_422_with_a_message(as_alice, path):
    """Paths with a '..' segment or an empty path cannot name a file in the repository: 422 with a message, and no
    lock."""
    _assert_error(as_alice.lock(path), 422)

    assert not FileLock.objects.exists()


@pytest.mark.parametrize("path", ["./", "/", ".", "//"])
def test_create_with_a_path_that_normalises_to_nothing_answers_422(as_alice, path):
    """'./', '/', '.' normalise to the empty path: 422 with a message, and no lock."""
    _assert_error(as_alice.lock(path), 422)

    assert not FileLock.objects.exists()


def test_create_without_a_path_answers_422_with_a_message(as_alice):
    """A body without ``path`` answers 422 whose message names the field."""
    message = _assert_error(as_alice.post("", {"ref": REF}), 422)

    assert "path" in message


@pytest.mark.parametrize(
    "sent",
    ["design\\model.psd", "./design/model.psd", "/design/model.psd", "design//./model.psd", ".\\design\\\\model.psd"],
)
def test_backslash_and_dot_slash_paths_are_normalised(as_alice, as_bob, sent):
    """Backslashes become slashes, a leading './' or '/' goes, '//' and '.' collapse: the lock is on
    'design/model.psd', and that clean path then conflicts with it."""
    response = as_alice.lock(sent)

    assert response.status_code == 201, response.content
    assert response.json()["lock"]["path"] == "design/model.psd"
    assert FileLock.objects.get().path == "design/model.psd"
    assert as_bob.lock("design/model.psd").status_code == 409


# --- list -----------------------------------------------------------------------------------------------------


def test_list_answers_all_locks_of_the_repository_and_ignores_refspec(as_alice, as_bob, client, alice, repo):
    """GET /locks lists the repository's locks (not another repository's) whatever the refspec, in the create
    shape, without next_cursor when everything fits."""
    first = as_alice.lock("a.psd").json()["lock"]
    second = as_bob.lock("b.psd").json()["lock"]
    other = Repository.objects.create(slug="other", name="Other")
    checkout(actor=alice, repository=other, path="a.psd")

    for refspec in ("refs/heads/main", "refs/heads/feature", ""):
        response = as_alice.locks(refspec=refspec)
        assert response.status_code == 200
        _assert_lfs_media_type(response)
        assert response.json() == {"locks": [first, second]}


def test_list_by_path_normalises_the_path(as_alice):
    """?path= finds the one lock on that path, also when written with backslashes or './'."""
    as_alice.lock("design/model.psd")
    wanted = as_alice.lock("design/other.psd").json()["lock"]

    for query in ("design/other.psd", "design\\other.psd", "./design//other.psd"):
        assert as_alice.locks(path=query).json() == {"locks": [wanted]}
    assert as_alice.locks(path="design/none.psd").json() == {"locks": []}


def test_list_by_path_with_dotdot_answers_422(as_alice):
    """?path= with '..' is refused like on create: 422 with a message."""
    _assert_error(as_alice.locks(path="../x.psd"), 422)


def test_list_by_id_answers_that_lock_only(as_alice):
    """?id= answers the one lock with that id, and nothing for an unknown or malformed id."""
    as_alice.lock("a.psd")
    wanted = as_alice.lock("b.psd").json()["lock"]

    assert as_alice.locks(id=wanted["id"]).json() == {"locks": [wanted]}
    assert as_alice.locks(id="999999").json() == {"locks": []}
    assert as_alice.locks(id="a/b").json() == {"locks": []}
    assert as_alice.locks(id="²").json() == {"locks": []}  # a digit to str.isdigit(), not to int()


def test_list_pages_with_limit_and_next_cursor_cover_every_lock_exactly_once(as_alice, alice, bob, repo):
    """250 locks with limit=100: three pages (100, 100, 50) linked by next_cursor, the last without one, cover all
    locks exactly once and in id order."""
    locks = _bulk_locks(repo, [alice, bob], 250)

    pages, cursor = [], None
    while True:
        params = {"limit": 100, "refspec": "refs/heads/main"}
        if cursor:
            params["cursor"] = cursor
        body = as_alice.locks(**params).json()
        pages.append([lock["id"] for lock in body["locks"]])
        cursor = body.get("next_cursor")
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
        assert len(pages) < 10, "next_cursor never ends"

    assert [len(page) for page in pages] == [100, 100, 50]
    ids = [lock_id for page in pages for lock_id in page]
    assert ids == [str(lock.pk) for lock in locks]


def test_list_without_limit_answers_pages_of_100(as_alice, alice, repo):
    """The client sends no limit by default: the server's page of 100 applies, with a next_cursor for the rest."""
    _bulk_locks(repo, [alice], 101)

    first = as_alice.locks().json()
    second = as_alice.locks(cursor=first["next_cursor"]).json()

    assert len(first["locks"]) == 100
    assert len(second["locks"]) == 1
    assert "next_cursor" not in second


def test_list_with_a_cursor_it_did_not_give_out_answers_422(as_alice):
    """A cursor that is not one of the server's is a bad request (422 with a message), not an empty page nor a
    500: "²" included, a digit to str.isdigit() that int() refuses; verify answers the same."""
    _assert_error(as_alice.locks(cursor="not-a-cursor"), 422)
    _assert_error(as_alice.locks(cursor="²"), 422)
    _assert_error(as_alice.verify(cursor="²"), 422)


# --- verify ---------------------------------------------------------------------------------------------------


def test_verify_splits_locks_into_ours_and_theirs(as_alice, as_bob):
    """POST /locks/verify answers the caller's locks as ``ours`` and everyone else's as ``theirs``."""
    mine = as_alice.lock("mine.psd").json()["lock"]
    theirs = as_bob.lock("theirs.psd").json()["lock"]

    alice_view = as_alice.verify()
    bob_view = as_bob.verify(ref={"name": "refs/heads/other"})

    assert alice_view.status_code == 200
    _assert_lfs_media_type(alice_view)
    assert alice_view.json() == {"ours": [mine], "theirs": [theirs]}
    assert bob_view.json() == {"ours": [theirs], "theirs": [mine]}


def test_verify_pages_with_its_cursor_cover_every_lock_exactly_once(as_alice, alice, bob, repo):
    """verify pages like the list: with limit=100 and the cursor sent back in the body, 250 locks arrive in three
    pages, alice's all as ours and bob's all as theirs, each exactly once."""
    locks = _bulk_locks(repo, [alice, bob], 250)

    ours, theirs, pages, cursor = [], [], 0, None
    while True:
        body = as_alice.verify(limit=100, **({"cursor": cursor} if cursor else {})).json()
        ours += [lock["id"] for lock in body["ours"]]
        theirs += [lock["id"] for lock in body["theirs"]]
        pages += 1
        cursor = body.get("next_cursor")
        if cursor is None:
            break
        assert pages < 10, "next_cursor never ends"

    assert pages == 3
    assert sorted(ours, key=int) == [str(lock.pk) for lock in locks if lock.owner_id == alice.pk]
    assert sorted(theirs, key=int) == [str(lock.pk) for lock in locks if lock.owner_id == bob.pk]
    assert len(ours) + len(theirs) == 250


# --- unlock ---------------------------------------------------------------------------------------------------


def test_unlock_by_the_owner_answers_200_with_the_lock_and_releases_it(as_alice):
    """POST /locks/{id}/unlock by the owner answers 200 {"lock"} (the lock as it was), the lock is gone, and a
    LOCK.RELEASE success entry names the path."""
    lock = as_alice.lock("design/model.psd").json()["lock"]

    response = as_alice.unlock(lock["id"])

    assert response.status_code == 200, response.content
    _assert_lfs_media_type(response)
    assert response.json() == {"lock": lock}
    assert not FileLock.objects.exists()
    [entry] = _entries(AuditAction.LOCK_RELEASE)
    assert (entry.outcome, entry.actor_label, entry.entity_id) == ("success", "alice", lock["id"])
    assert entry.meta["path"] == "design/model.psd"


def test_unlock_by_someone_else_answers_403_with_a_message(as_alice, as_bob):
    """bob cannot unlock alice's lock without force: 403 whose message names the owner, the lock stays, and a
    denied LOCK.RELEASE entry is left."""
    lock = as_alice.lock("design/model.psd").json()["lock"]

    message = _assert_error(as_bob.unlock(lock["id"]), 403)

    assert "alice" in message
    assert FileLock.objects.filter(pk=int(lock["id"])).exists()
    [denied] = _entries(AuditAction.LOCK_RELEASE)
    assert (denied.outcome, denied.actor_label, denied.entity_id) == ("denied", "bob", lock["id"])


def test_force_unlock_without_the_right_answers_403_and_is_audited_as_denied(as_alice, as_bob):
    """force=true by a member without locks.force_unlock answers 403 with a message, the lock stays, and a denied
    LOCK.FORCE_RELEASE entry carries meta.override."""
    lock = as_alice.lock("design/model.psd").json()["lock"]

    _assert_error(as_bob.unlock(lock["id"], force=True), 403)

    assert FileLock.objects.filter(pk=int(lock["id"])).exists()
    [denied] = _entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (denied.outcome, denied.actor_label) == ("denied", "bob")
    assert denied.meta["override"] is True
    assert denied.meta["previous_owner"] == "alice"


def test_force_unlock_with_the_right_answers_200_and_is_audited_with_override(as_alice, as_carol):
    """A lock administrator's force unlock answers 200 {"lock"}, releases alice's lock, and leaves a
    LOCK.FORCE_RELEASE success entry with meta.override, the previous owner and a reason."""
    lock = as_alice.lock("design/model.psd").json()["lock"]

    response = as_carol.unlock(lock["id"], force=True)

    assert response.status_code == 200, response.content
    _assert_lfs_media_type(response)
    assert response.json() == {"lock": lock}
    assert not FileLock.objects.exists()
    [entry] = _entries(AuditAction.LOCK_FORCE_RELEASE)
    assert (entry.outcome, entry.actor_label, entry.entity_id) == ("success", "carol", lock["id"])
    assert entry.meta["override"] is True
    assert entry.meta["previous_owner"] == "alice"
    assert entry.meta["path"] == "design/model.psd"
    assert entry.meta["reason"]


def test_force_unlock_by_the_owner_is_a_plain_release_without_the_force_right(as_alice):
    """The client sends force=true for its own lock whenever the file has uncommitted changes: the owner's forced
    unlock answers 200 {"lock"} like a normal one and is recorded as LOCK.RELEASE, not as an override."""
    lock = as_alice.lock("design/model.psd").json()["lock"]

    response = as_alice.unlock(lock["id"], force=True)

    assert response.status_code == 200, response.content
    assert response.json() == {"lock": lock}
    assert not FileLock.objects.exists()
    [entry] = _entries(AuditAction.LOCK_RELEASE)
    assert (entry.outcome, entry.actor_label, entry.entity_id) == ("success", "alice", lock["id"])
    assert not _entries(AuditAction.LOCK_FORCE_RELEASE)


def test_unlock_of_an_unknown_lock_id_answers_404_with_a_message(as_alice, alice):
    """An id that names no lock of this repository (none at all, not a number, or another repository's lock)
    answers 404 with a message and releases nothing."""
    other = Repository.objects.create(slug="other", name="Other")
    foreign = checkout(actor=alice, repository=other, path="a.psd")

    for lock_id in ("999999", "abc", "²", str(foreign.pk)):
        _assert_error(as_alice.unlock(lock_id), 404)
        _assert_error(as_alice.unlock(lock_id, force=True), 404)

    assert FileLock.objects.filter(pk=foreign.pk).exists()


@pytest.mark.parametrize("lock_id", ["a%2Fb", "a/b", "{pk}%2F", "{pk}/x"])
def test_an_id_with_an_encoded_or_plain_slash_unlocks_nothing(as_alice, client, lock_id):
    """Ids go into the URL unescaped; one that decodes to a slash ('a%2Fb' -> 'a/b') matches no unlock route:
    404, and every lock stays."""
    lock = as_alice.lock("design/model.psd").json()["lock"]
    as_alice.lock("a/b")

    response = client.post(
        f"/api/lfs/{SLUG}/locks/{lock_id.format(pk=lock['id'])}/unlock",
        json.dumps({"force": False}),
        content_type=REQUEST_CONTENT_TYPE,
        HTTP_ACCEPT=LFS_MEDIA_TYPE,
        HTTP_AUTHORIZATION=_basic("alice", PASSWORD),
    )

    assert response.status_code == 404
    assert FileLock.objects.count() == 2
    assert not _entries(AuditAction.LOCK_RELEASE)


# --- authentication and authorisation ---------------------------------------------------------------------------


def test_no_credentials_answers_401_with_www_authenticate_basic(client, alice, repo):
    """Without credentials every endpoint answers 401 with a Basic challenge (the client then sends its
    credentials) and a message."""
    anonymous = Lfs(client, None)
    lock = checkout(actor=alice, repository=repo, path="design/model.psd")

    for response in (
        anonymous.locks(),
        anonymous.lock("x.psd"),
        anonymous.verify(),
        anonymous.unlock(lock.pk),
    ):
        _assert_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Basic"), response["WWW-Authenticate"]

    assert FileLock.objects.count() == 1


def test_wrong_password_answers_401_and_records_login_failed(client, alice, repo):
    """A wrong password answers 401 with a Basic challenge and a message, and leaves a USER.LOGIN_FAILED failure
    entry naming the attempted user."""
    response = Lfs(client, "alice", password="not-the-password").lock("design/model.psd")

    _assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not FileLock.objects.exists()
    [failed] = _entries(AuditAction.USER_LOGIN_FAILED)
    assert failed.outcome == "failure"
    assert failed.meta["username"] == "alice"


def test_authenticated_user_without_the_member_role_gets_403_never_401(client, outsider, alice, repo):
    """A user whose credentials are right but who may not lock files gets 403 with a message (a 401 would make the
    client retry credentials without end), no lock, and a denied LOCK.CREATE entry; unlocking someone else's
    lock is a 403 too."""
    as_outsider = Lfs(client, "outsider")

    response = as_outsider.lock("design/model.psd")

    message = _assert_error(response, 403)
    assert "outsider" in message
    assert "WWW-Authenticate" not in response
    assert not FileLock.objects.exists()
    [denied] = _entries(AuditAction.LOCK_CREATE)
    assert (denied.outcome, denied.actor_label) == ("denied", "outsider")
    held = checkout(actor=alice, repository=repo, path="design/model.psd")
    _assert_error(as_outsider.unlock(held.pk), 403)
    _assert_error(as_outsider.unlock(held.pk, force=True), 403)
    assert FileLock.objects.filter(pk=held.pk).exists()


def test_user_without_the_view_right_may_neither_list_nor_verify_locks(client, outsider, alice, repo):
    """Who holds which file is seen with locks.view_filelock only: a user without it gets 403 with a message for
    list and verify, and learns no path or owner."""
    checkout(actor=alice, repository=repo, path="secret/plan.psd")
    as_outsider = Lfs(client, "outsider")

    for response in (as_outsider.locks(), as_outsider.verify()):
        message = _assert_error(response, 403)
        assert "outsider" in message
        assert b"secret/plan.psd" not in response.content and b"alice" not in response.content


def test_unknown_repository_answers_404_for_list_and_create(client, alice, repo):
    """A slug that names no repository answers 404 with a message naming it, for list and create."""
    as_alice = Lfs(client, "alice", slug="no-such-repo")

    for response in (as_alice.locks(), as_alice.lock("design/model.psd")):
        message = _assert_error(response, 404)
        assert "no-such-repo" in message
    assert not FileLock.objects.exists()


def test_verify_of_an_unknown_repository_answers_403_never_404(client, alice, repo):
    """verify never answers 404: the client would write locksverify=false and never verify again. An unknown
    repository is a 403 with a message (the push is then aborted)."""
    response = Lfs(client, "alice", slug="no-such-repo").verify()

    message = _assert_error(response, 403)
    assert "no-such-repo" in message


def test_every_error_answer_has_a_message_in_the_lfs_media_type(client, as_alice, as_bob, outsider, repo):
    """Each refusal the client can meet (401, 403, 404, 409, 422) carries a non-empty ``message`` in the LFS media
    type: without one the client prints a garbled Go struct or only 'Authorization error'."""
    lock = as_alice.lock("design/model.psd").json()["lock"]
    cases = [
        (Lfs(client, None).locks(), 401),
        (Lfs(client, "alice", password="wrong").verify(), 401),
        (Lfs(client, "outsider").lock("x.psd"), 403),
        (as_bob.unlock(lock["id"]), 403),
        (as_bob.unlock(lock["id"], force=True), 403),
        (Lfs(client, "alice", slug="nope").verify(), 403),
        (Lfs(client, "alice", slug="nope").locks(), 404),
        (Lfs(client, "alice", slug="nope").lock("x.psd"), 404),
        (Lfs(client, "alice", slug="nope").unlock(lock["id"]), 404),
        (as_alice.unlock("424242"), 404),
        (as_bob.lock("design/model.psd"), 409),
        (as_alice.lock("../x.psd"), 422),
        (as_alice.locks(limit=0), 422),
        (as_alice.verify(cursor="nope"), 422),
    ]

    for response, status in cases:
        _assert_error(response, status)
