"""Many clients checking out the same path at once (PostgreSQL): the unique constraint picks one winner, every
other client gets a clean LockConflict (409), and the audit trail records one success and a denial per loser."""

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.models import AuditLog, Seal
from audit.verify import verify_chain
from locks import services
from locks.exceptions import LockConflict
from locks.models import FileLock, Repository
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.factories.users import UserFactory

THREADS = 20
PATH = "design/model.psd"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def repository(committed_db) -> Repository:
    return Repository.objects.create(slug="game-art", name="Game art")


@pytest.fixture
def members(committed_db) -> list[Any]:
    """THREADS members, created and committed before the race, so that every thread sees them."""
    bootstrap_default_roles()
    users = [UserFactory(username=f"racer{n:02d}") for n in range(THREADS)]
    Role.objects.get(name="member").users.add(*users)
    return users


def _race(work: Any, members: list[Any]) -> tuple[list[Any], list[Any], list[BaseException]]:
    """Run ``work(user)`` in one thread per member, all released at once by a barrier.

    Returns (results, conflicts, other errors); each thread closes its own database connection.
    """
    barrier = threading.Barrier(len(members))
    results: list[Any] = []
    conflicts: list[LockConflict] = []
    errors: list[BaseException] = []

    def run(user: Any) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(work(user))
        except LockConflict as exc:
            conflicts.append(exc)
        except BaseException as exc:  # handed to the test thread: IntegrityError here would be the bug
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(user,)) for user in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results, conflicts, errors


def assert_one_success_and_denials(winner_id: int, lock: FileLock) -> None:
    entries = AuditLog.objects.filter(action=AuditAction.LOCK_CREATE)
    [success] = entries.filter(outcome=AuditLog.Outcome.SUCCESS)
    assert (success.actor_id, success.entity_id) == (winner_id, str(lock.pk))
    denied = list(entries.filter(outcome=AuditLog.Outcome.DENIED))
    assert len(denied) == THREADS - 1
    assert winner_id not in {entry.actor_id for entry in denied}
    assert {entry.meta["error"] for entry in denied} == {"LockConflict"}
    message = f"{PATH} is already locked by {lock.owner.username} (lock {lock.pk})"
    assert {entry.meta["message"] for entry in denied} == {message}
    assert entries.count() == THREADS
    # Every entry, the losers' included, was sealed on commit and the chain holds.
    assert Seal.objects.filter(entry__in=entries).count() == THREADS
    assert verify_chain().ok


def test_racing_checkouts_of_one_path_make_one_lock_and_conflicts(postgres_only, committed_db, repository, members):
    """20 threads check out the same path at the same moment: exactly one lock exists, exactly one thread won,
    the 19 others got LockConflict naming the winner (no IntegrityError or other error), and the trail holds one
    LOCK.CREATE success and 19 denied entries."""
    results, conflicts, errors = _race(
        lambda user: services.checkout(actor=user, repository=repository, path=PATH), members
    )

    assert errors == []
    [won] = results
    assert len(conflicts) == THREADS - 1
    lock = FileLock.objects.select_related("owner").get()
    assert (lock.pk, lock.path) == (won.pk, PATH)
    assert {exc.lock.pk for exc in conflicts} == {lock.pk}
    assert {exc.extra["owner"] for exc in conflicts} == {lock.owner.username}
    assert_one_success_and_denials(won.owner_id, lock)


def test_racing_checkouts_through_the_api_get_one_201_and_409s(postgres_only, committed_db, repository, members):
    """20 API clients POST /api/locks for the same path at once: one 201, nineteen 409 naming the winner and the
    lock id (never a 500), one lock, and the same audit entries as through the service."""

    def post(user: Any) -> tuple[int, dict[str, Any]]:
        client = APIClient()
        client.force_authenticate(user)
        response = client.post("/api/locks", {"repository": "game-art", "path": "./" + PATH}, format="json")
        return response.status_code, response.json()

    results, conflicts, errors = _race(post, members)

    assert errors == [] and conflicts == []
    assert sorted(status for status, _ in results) == [201] + [409] * (THREADS - 1)
    lock = FileLock.objects.select_related("owner").get()
    [created] = [body for status, body in results if status == 201]
    assert (created["id"], created["owner"]) == (lock.pk, lock.owner.username)
    refusals = [body for status, body in results if status == 409]
    assert {body["code"] for body in refusals} == {"lock_conflict"}
    assert all(body["extra"] == {"lock_id": str(lock.pk), "owner": lock.owner.username} for body in refusals)
    assert_one_success_and_denials(lock.owner_id, lock)
