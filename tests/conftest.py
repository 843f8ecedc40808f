from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import post_migrate
from rest_framework.test import APIClient

from audit import triggers
from tests.factories.users import PASSWORD, OfficerFactory, UserFactory


@pytest.fixture(scope="session", autouse=True)
def _audit_partitions(django_db_setup, django_db_blocker) -> None:
    """PostgreSQL: the month partitions of the audit table, made once per test database as `make demo` and a
    production cron job make them (the migration made them already; this keeps a reused database current)."""
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            call_command("audit_partitions", stdout=StringIO())


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every login and user creation hashes a password; the real hasher's deliberate slowness buys tests nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


_REINSTALL_UID = "tests.reinstall_triggers_after_flush"


@pytest.fixture
def committed_db(transactional_db):
    """A database whose transactions really commit (on_commit sealing, threads, a second connection).

    The flush that empties the tables after the test needs the append-only triggers out of the way. They are
    dropped here and installed again by the post_migrate signal the flush sends once the tables are empty; that
    holds whichever runs first, this teardown or a ``django_db(transaction=True, databases=[...])`` marker's.
    """
    yield

    def reinstall(sender: object, using: str = "default", **kwargs: object) -> None:
        post_migrate.disconnect(dispatch_uid=_REINSTALL_UID)
        triggers.install(connection)

    post_migrate.connect(reinstall, weak=False, dispatch_uid=_REINSTALL_UID)
    triggers.drop(connection)


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
