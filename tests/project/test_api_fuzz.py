"""The API fuzzed against its own OpenAPI document (schemathesis): no answer is a 5xx, and every documented answer
matches the document.

The document is the one /api/schema serves (drf-spectacular's generator); the requests go to the project's WSGI
application (``auditproject.wsgi``) as a superuser with HTTP Basic, so that every operation gets past its
permission check and its input reaches the serializers and services. About half of the requests are pointed at
what exists (``make_realistic``): ``/{id}`` names a role, group, user, lock or entry that is there, an event's
action is the registered code, a checkout names the repository; so that changes, deletions and recording run on
real rows and get past the lookups, not only into a 404 or a 400.

PostgreSQL only (``pytest -m fuzz`` selects it): SQLite accepts what PostgreSQL refuses (NUL characters in text,
values longer than a column), so a 5xx of the production database would pass unseen there. The run is bounded by
``MAX_EXAMPLES`` per operation and a fixed seed (``FUZZ_SEED`` in the environment to try others).
"""

import base64
import json
import os
from typing import Any

import pytest
import schemathesis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from audit.actions import AuditAction
from audit.catalogue import registered_action_save
from audit.models import AuditLog
from audit.services import record
from auditproject.wsgi import application
from locks import services as lock_services
from locks.models import FileLock, Repository
from rbac.models import GroupScope, Role
from tests.factories.users import PASSWORD, UserFactory

ON_SQLITE = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(
        ON_SQLITE,
        reason="fuzzing runs on PostgreSQL, which refuses what SQLite lets through: run with DATABASE_URL=postgres://...",
    ),
]

MAX_EXAMPLES = 100
SEED = int(os.environ.get("FUZZ_SEED", "20261123"))
FUZZER = "fuzz-admin"
AUTHORIZATION = "Basic " + base64.b64encode(f"{FUZZER}:{PASSWORD}".encode()).decode("ascii")
REPOSITORY = "fuzz-repo"
ACTION = "FUZZ.PING"


def openapi_document() -> dict[str, Any]:
    """The document /api/schema serves, as JSON."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


config = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=config)
schema.app = application


def test_the_fuzzed_document_is_the_one_the_api_serves(client, settings):
    """GET /api/schema serves the very document the operations are generated from."""
    settings.ALLOWED_HOSTS = ["testserver"]

    response = client.get("/api/schema", {"format": "json"})

    assert response.status_code == 200
    assert json.loads(response.content) == openapi_document()


@pytest.fixture
def django_connections_kept(committed_db):
    """The WSGI handler closes the database connections at the end of each request (CONN_MAX_AGE=0); the test's
    own fixtures share them, so they stay open for the test's duration, as the test client keeps them."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def fuzzer(django_connections_kept, settings) -> User:
    """The superuser the requests authenticate as, with a registered action code and a repository to work on."""
    settings.ALLOWED_HOSTS = ["localhost", "testserver", "127.0.0.1"]
    user = UserFactory(username=FUZZER, is_staff=True, is_superuser=True)
    registered_action_save(actor=None, code=ACTION, description="Fuzzing")
    Repository.objects.create(slug=REPOSITORY, name="Fuzzing")
    return user


def existing_id(path: str, fuzzer: User) -> int | None:
    """The id of an object the ``/{id}`` operation at ``path`` can act on, made again if a request deleted it."""
    if path.startswith("/api/rbac/roles/"):
        role, _ = Role.objects.get_or_create(name="fuzz role", defaults={"description": "fuzzed"})
        return role.pk
    if path.startswith("/api/rbac/groups/"):
        group, created = Group.objects.get_or_create(name="fuzz group")
        if created:
            GroupScope.objects.create(group=group, branch_scope={"allow": []})
        return group.pk
    if path.startswith("/api/rbac/users/"):
        return User.objects.get_or_create(username="fuzz-target")[0].pk
    if path.startswith("/api/locks/"):
        lock = FileLock.objects.filter(owner=fuzzer).first() or lock_services.checkout(
            actor=fuzzer, repository=Repository.objects.get(slug=REPOSITORY), path="fuzz/held.bin"
        )
        return lock.pk
    if path.startswith("/api/audit/events/"):
        entry = AuditLog.objects.order_by("-id").first() or record(AuditAction.AUDIT_VIEW, entity="AuditLog")
        return entry.pk
    return None


def make_realistic(case: Any, fuzzer: User) -> None:
    """Point the generated request at what exists: an object's id in the path, the registered action code, the
    repository. The rest of the request stays as generated, valid or not."""
    if "id" in (case.path_parameters or {}):
        case.path_parameters["id"] = existing_id(case.operation.path, fuzzer)
    body = case.body
    if not isinstance(body, dict):
        return
    if "action" in body:
        body["action"] = ACTION
    if isinstance(body.get("events"), list):
        for event in body["events"]:
            if isinstance(event, dict) and "action" in event:
                event["action"] = ACTION
    if "repository" in body:
        body["repository"] = REPOSITORY


@schema.given(realistic=st.booleans())
@schema.parametrize()
@hypothesis_settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_answers_without_server_error_and_as_documented(case, realistic, fuzzer):
    """Generated requests (valid and invalid) to every operation, as a superuser: none is answered with a 5xx, and
    each answer with a documented status has the documented shape."""
    if realistic:
        make_realistic(case, fuzzer)

    case.call_and_validate(
        headers={"Authorization": AUTHORIZATION}, checks=[not_a_server_error, response_schema_conformance]
    )
