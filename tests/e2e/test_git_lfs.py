"""End to end with the real git-lfs client: file locking against the live server, in throw-away git repositories.

Each test gets a bare ``origin`` and clones for alice and bob (members) and carol (lock administrator), set up as
in git-lfs.md "Client setup": ``lfs.url`` pointing at the live server, ``access=basic``, ``locksverify=true``, a
non-interactive credential helper, ``git lfs install --local`` and ``*.psd lockable`` (no ``filter=lfs``, so no
object storage is involved). git runs with its own HOME, without system or global configuration, and never
prompts.

CI installs git-lfs: without it these tests fail, they do not skip.
"""

import base64
import json
import os
import shutil
import stat
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.privacy import reveal
from locks.models import FileLock, Repository
from locks.services import checkout
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.factories.users import PASSWORD, UserFactory

SLUG = "design"
LOCKED = "design/model.psd"
COMMAND_TIMEOUT = 30


@dataclass
class Clone:
    """One user's working copy and the environment git runs in."""

    user: str
    path: Path
    env: dict[str, str]

    def run(self, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
        return _git(self.path, self.env, *args, expect_ok=expect_ok)

    def fails(self, *args: str) -> str:
        """Run a command that must fail; its stdout and stderr, together."""
        result = self.run(*args, expect_ok=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"`git {' '.join(args)}` as {self.user} should have failed:\n{output}"
        return output

    def write(self, relative: str, content: bytes) -> None:
        target = self.path / relative
        # Lockable files are checked out read-only unless locked by the user: make it writable as a user would.
        if target.exists():
            target.chmod(target.stat().st_mode | stat.S_IWUSR)
        target.write_bytes(content)


@dataclass
class World:
    url: str
    lfs_url: str
    origin: Path
    env: dict[str, str]
    repo: Repository
    users: dict[str, object]
    clones: dict[str, Clone]


def _git(cwd: Path, env: dict[str, str], *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["git", *args]
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"`{' '.join(command)}` in {cwd} did not finish in {COMMAND_TIMEOUT} s (a 401 loop?)\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        )
    if expect_ok and result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` in {cwd} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@pytest.fixture
def git_lfs() -> str:
    """The real client must be there: a missing git-lfs is a failure, never a skip."""
    git = shutil.which("git")
    lfs = shutil.which("git-lfs")
    if git is None or lfs is None:
        pytest.fail(
            "The end-to-end tests need git and git-lfs on PATH (Debian/Ubuntu: apt-get install git git-lfs); "
            f"found git={git!r}, git-lfs={lfs!r}"
        )
    version = subprocess.run([lfs, "version"], capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT)
    if version.returncode != 0:
        pytest.fail(f"`git-lfs version` exited {version.returncode}: {version.stderr}")
    return lfs


@pytest.fixture
def fast_password_hasher(settings) -> None:
    """Every client request is checked with Basic credentials; PBKDF2's default work factor makes that ~0.4 s a
    request, so the test users get a cheap hash (the check itself is Django's, unchanged)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _credential_helper(username: str) -> str:
    return f'!f() {{ test "$1" = get && printf "username={username}\\npassword=%s\\n" "{PASSWORD}"; }}; f'


@pytest.fixture
def world(git_lfs, fast_password_hasher, committed_db, live_server, tmp_path) -> World:
    """The server side (roles, users, the repository) and the client side (origin plus three configured clones)."""
    bootstrap_default_roles()
    roles = {role.name: role for role in Role.objects.all()}
    users = {name: UserFactory(username=name) for name in ("alice", "bob", "carol")}
    roles["member"].users.add(users["alice"], users["bob"])
    roles["lock administrator"].users.add(users["carol"])
    repo = Repository.objects.create(slug=SLUG, name="Design assets")

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
        "LANG": "C",
        "LC_ALL": "C",
        # The only server is on localhost: never through a proxy.
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    lfs_url = f"{live_server.url}/api/lfs/{SLUG}"

    origin = tmp_path / "origin.git"
    _git(tmp_path, env, "init", "--bare", "-b", "main", str(origin))
    seed = tmp_path / "seed"
    _git(tmp_path, env, "init", "-b", "main", str(seed))
    (seed / ".gitattributes").write_text("*.psd lockable\n")
    (seed / "design").mkdir()
    (seed / LOCKED).write_bytes(b"PSD v1\n")
    (seed / "README").write_text("design assets\n")
    _git(seed, env, "add", ".")
    _git(seed, env, "commit", "-m", "initial")
    _git(seed, env, "push", str(origin), "main")

    clones = {}
    for name in users:
        path = tmp_path / name
        _git(tmp_path, env, "clone", str(origin), str(path))
        clone = Clone(name, path, env)
        clone.run("config", "lfs.url", lfs_url)
        clone.run("config", f"lfs.{lfs_url}.access", "basic")
        clone.run("config", "lfs.locksverify", "true")
        clone.run("config", "credential.helper", _credential_helper(name))
        clone.run("lfs", "install", "--local")
        assert (path / ".gitattributes").read_text() == "*.psd lockable\n"
        clones[name] = clone
    return World(live_server.url, lfs_url, origin, env, repo, users, clones)


def _lock_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def _entries(action: str, actor: str, outcome: str) -> list[AuditLog]:
    # By actor id: the actor's label is stored encrypted, so it cannot be filtered on.
    actor_id = get_user_model().objects.get(username=actor).pk
    entries = list(AuditLog.objects.filter(action=action, actor_id=actor_id, outcome=outcome).order_by("id"))
    reveal(entries)
    return entries


def test_lock_succeeds_for_alice_and_fails_for_bob_naming_alice(world):
    """`git lfs lock` exits 0 for alice and creates her lock; bob's lock of the same file exits non-zero with a
    message naming alice. The trail holds alice's LOCK.CREATE success and bob's LOCK.CREATE denied."""
    alice, bob = world.clones["alice"], world.clones["bob"]

    locked = alice.run("lfs", "lock", LOCKED)
    refused = bob.fails("lfs", "lock", LOCKED)

    assert LOCKED in locked.stdout
    lock = FileLock.objects.get()
    assert (lock.path, lock.owner.username) == (LOCKED, "alice")
    assert "alice" in refused, refused
    assert FileLock.objects.count() == 1
    [created] = _entries(AuditAction.LOCK_CREATE, "alice", "success")
    assert created.meta["path"] == LOCKED
    assert created.entity_id == str(lock.pk)
    [denied] = _entries(AuditAction.LOCK_CREATE, "bob", "denied")
    assert denied.meta["path"] == LOCKED
    assert "alice" in denied.meta["message"]


def test_locks_lists_the_lock_for_bob_and_verify_marks_it_ours_for_alice_theirs_for_bob(world):
    """`git lfs locks` shows alice's lock to bob; `git lfs locks --verify` marks it "O " (ours) for alice and not
    ours for bob."""
    alice, bob = world.clones["alice"], world.clones["bob"]
    alice.run("lfs", "lock", LOCKED)
    lock_id = FileLock.objects.get().pk

    [listed] = _lock_lines(bob.run("lfs", "locks").stdout)
    [alice_verified] = _lock_lines(alice.run("lfs", "locks", "--verify").stdout)
    [bob_verified] = _lock_lines(bob.run("lfs", "locks", "--verify").stdout)

    assert listed.split("\t") == [LOCKED, "alice", f"ID:{lock_id}"]
    assert alice_verified.startswith("O "), alice_verified
    assert alice_verified[2:].split("\t") == [LOCKED, "alice", f"ID:{lock_id}"]
    assert not bob_verified.startswith("O "), bob_verified
    assert bob_verified.startswith("  "), bob_verified
    assert bob_verified[2:].split("\t") == [LOCKED, "alice", f"ID:{lock_id}"]


def test_pre_push_refuses_bobs_change_to_alices_locked_file_and_lets_alice_push(world):
    """With locksverify on, the pre-push hook refuses bob's commit touching alice's locked file ("Unable to push
    locked files", "Cannot update locked files") and origin is unchanged; alice's own change goes through."""
    alice, bob = world.clones["alice"], world.clones["bob"]
    alice.run("lfs", "lock", LOCKED)
    before = _git(world.origin, world.env, "rev-parse", "main").stdout.strip()

    bob.write(LOCKED, b"PSD v2 by bob\n")
    bob.run("commit", "-am", "bob edits the locked file")
    refused = bob.fails("push", "origin", "main")

    assert "Unable to push locked files" in refused, refused
    assert f"{LOCKED} - alice" in refused
    assert "Cannot update locked files" in refused
    assert _git(world.origin, world.env, "rev-parse", "main").stdout.strip() == before

    alice.write(LOCKED, b"PSD v2 by alice\n")
    alice.run("commit", "-am", "alice edits her locked file")
    alice.run("push", "origin", "main")

    head = alice.run("rev-parse", "HEAD").stdout.strip()
    assert _git(world.origin, world.env, "rev-parse", "main").stdout.strip() == head
    assert _git(world.origin, world.env, "show", f"main:{LOCKED}").stdout == "PSD v2 by alice\n"
    # Verification is still on: a 404 from verify would have made the client write lfs.<url>.locksverify=false.
    assert alice.run("config", "--get", f"lfs.{world.lfs_url}.locksverify", expect_ok=False).stdout == ""


def test_only_a_lock_administrator_can_force_unlock_and_bob_can_lock_afterwards(world):
    """bob's `git lfs unlock` and `git lfs unlock --force` of alice's lock fail and leave it in place; carol (lock
    administrator) force-unlocks it; bob then locks the file. The trail holds LOCK.RELEASE denied and
    LOCK.FORCE_RELEASE denied (meta.override) for bob, LOCK.FORCE_RELEASE success (meta.override, previous owner
    alice) for carol, and LOCK.CREATE success for bob."""
    alice, bob, carol = world.clones["alice"], world.clones["bob"], world.clones["carol"]
    alice.run("lfs", "lock", LOCKED)
    lock = FileLock.objects.get()

    not_owner = bob.fails("lfs", "unlock", LOCKED)
    assert FileLock.objects.filter(pk=lock.pk).exists()
    no_right = bob.fails("lfs", "unlock", "--force", LOCKED)
    assert FileLock.objects.filter(pk=lock.pk).exists()
    forced_out = carol.run("lfs", "unlock", "--force", LOCKED).stdout
    assert not FileLock.objects.exists()
    assert "locked by alice" in not_owner, not_owner
    assert "bob may not release" in no_right, no_right
    assert f"Unlocked {LOCKED}" in forced_out
    bob.run("lfs", "lock", LOCKED)

    relock = FileLock.objects.get()
    assert (relock.path, relock.owner.username) == (LOCKED, "bob")
    [release_denied] = _entries(AuditAction.LOCK_RELEASE, "bob", "denied")
    assert release_denied.entity_id == str(lock.pk)
    [force_denied] = _entries(AuditAction.LOCK_FORCE_RELEASE, "bob", "denied")
    assert force_denied.meta["override"] is True
    assert force_denied.meta["previous_owner"] == "alice"
    [forced] = _entries(AuditAction.LOCK_FORCE_RELEASE, "carol", "success")
    assert forced.meta["override"] is True
    assert forced.meta["previous_owner"] == "alice"
    assert forced.meta["path"] == LOCKED
    assert forced.entity_id == str(lock.pk)
    assert not AuditLog.objects.filter(action=AuditAction.LOCK_RELEASE, outcome="success").exists()
    [bobs_lock] = _entries(AuditAction.LOCK_CREATE, "bob", "success")
    assert bobs_lock.entity_id == str(relock.pk)
    created = list(AuditLog.objects.filter(action=AuditAction.LOCK_CREATE).order_by("id"))
    reveal(created)
    assert [e.actor_label for e in created] == [
        "alice",
        "bob",
    ]


def test_owner_with_uncommitted_changes_releases_her_lock_with_force(world):
    """The client refuses a plain unlock of a locally modified file and sends force=true instead; for alice's own
    lock that succeeds without the force right and is recorded as her LOCK.RELEASE, not as an override."""
    alice = world.clones["alice"]
    alice.run("lfs", "lock", LOCKED)
    alice.write(LOCKED, b"PSD v2, not committed\n")

    refused = alice.fails("lfs", "unlock", LOCKED)
    alice.run("lfs", "unlock", "--force", LOCKED)

    assert "uncommitted changes" in refused, refused
    assert not FileLock.objects.exists()
    [released] = _entries(AuditAction.LOCK_RELEASE, "alice", "success")
    assert released.meta["path"] == LOCKED
    assert not AuditLog.objects.filter(action=AuditAction.LOCK_FORCE_RELEASE).exists()


def test_locks_follows_next_cursor_beyond_one_page(world):
    """With 151 locks and the server's page of 100, `git lfs locks` as bob lists all 151 (it follows next_cursor)
    and `git lfs locks --verify` as alice marks all 151 as hers (verify's cursor)."""
    alice, bob = world.clones["alice"], world.clones["bob"]
    bulk = [f"assets/file{i:03}.psd" for i in range(150)]
    for path in bulk:
        checkout(actor=world.users["alice"], repository=world.repo, path=path)
    alice.run("lfs", "lock", LOCKED)
    # The server really pages at 100: the first page alone does not hold them all.
    request = urllib.request.Request(
        f"{world.lfs_url}/locks",
        headers={
            "Accept": "application/vnd.git-lfs+json",
            "Authorization": "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode("ascii"),
        },
    )
    with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as response:  # noqa: S310 (the live server)
        first_page = json.load(response)
    assert len(first_page["locks"]) == 100
    assert first_page["next_cursor"]

    listed = _lock_lines(bob.run("lfs", "locks").stdout)
    verified = _lock_lines(alice.run("lfs", "locks", "--verify").stdout)

    assert len(listed) == 151
    assert sorted(line.split()[0] for line in listed) == sorted([*bulk, LOCKED])
    assert all(line.split()[1] == "alice" for line in listed)
    assert len(verified) == 151
    assert all(line.startswith("O ") for line in verified)
    assert len(_entries(AuditAction.LOCK_CREATE, "alice", "success")) == 151
