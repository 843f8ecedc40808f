from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit import triggers
from tests.factories.users import PASSWORD, OfficerFactory, UserFactory


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def officer(db):
    return OfficerFactory()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@contextmanager
def _triggers_dropped() -> Iterator[None]:
    triggers.drop(connection)
    try:
        yield
    finally:
        triggers.install(connection)


@pytest.fixture
def triggers_dropped():
    """Play an attacker with database access: ``with triggers_dropped(): cursor.execute("UPDATE ...")``.

    Inside a test's transaction the DROP is rolled back with everything else; the finally re-creates them for
    the rest of the test.
    """
    return _triggers_dropped


@pytest.fixture
def _reinstall_triggers_after_flush(django_db_blocker):
    # Set up before transactional_db, so this teardown runs after its flush.
    yield
    with django_db_blocker.unblock():
        triggers.install(connection)


@pytest.fixture
def committed_db(_reinstall_triggers_after_flush, transactional_db):
    """A database whose transactions really commit (on_commit sealing, threads, second connections).

    The flush that empties the tables after the test needs the append-only triggers out of the way; they are
    back before the next test.
    """
    yield
    triggers.drop(connection)


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
