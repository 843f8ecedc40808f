"""Who may reach which URL: every URL pattern of the project, for five callers, against one table of statuses.

The patterns come from the URL resolver (nested resolvers walked), so a new view, API route or admin model fails
``test_every_url_pattern_has_a_row_in_the_table`` until its row is written here; a row whose pattern is gone
fails too. Parameters are filled with ids of objects the test makes (a role, a group, a user, a repository, a lock,
an audit entry, a FOIA request, an anomaly...).

The callers:

* ``anon``: nobody logged in;
* ``user``: an ordinary user with the "member" role (checks files out and in), not staff;
* ``officer``: staff, in the "Compliance officers" group and with the "compliance officer" role;
* ``lockadmin``: staff with the "lock administrator" role;
* ``admin``: a superuser.

The API is called with HTTP Basic, as its clients do (the Git LFS API knows no other way); the console (the admin)
with a session (``force_login``). Every cell is a GET; API views that write also get their write methods with a
minimal valid body, each call in a test of its own so that no write changes what the next caller finds.

Admin model pages (changelist, add, history, delete, change and the object's bare URL) are declared by rule:
``model_admin()`` turns which callers may view, add, change and delete a model into the six rows Django's admin
answers with. Statuses are ints; a redirect is named by where it goes (``LOGIN``, ``INDEX``, ``CHANGE``,
``DASHBOARD``).
"""

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.actions import AuditAction
from audit.catalogue import registered_action_save
from audit.foia import foia_request_create
from audit.foia_models import FoiaRequest, RedactionProfile
from audit.models import Anomaly, AuditLog, RegisteredAction
from audit.services import record
from locks import services as lock_services
from locks.lfs.media import LFS_MEDIA_TYPE
from locks.models import FileLock, Repository
from rbac.defaults import bootstrap_default_roles
from rbac.models import GroupScope, Role
from tests.factories.users import PASSWORD, OfficerFactory, UserFactory

CALLERS = ("anon", "user", "officer", "lockadmin", "admin")
STAFF = frozenset({"officer", "lockadmin", "admin"})
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# Redirects, by where they go.
LOGIN = "302→login"  # /admin/login/?next=<the page asked for>
INDEX = "302→index"  # /admin/
CHANGE = "302→change"  # the object's change page
DASHBOARD = "302→dashboard"  # /admin/audit/dashboard/

CODE = "MATRIX.PING"
# Written into objects only officers (and administrators) may read; no page an ordinary user reads may show them.
OFFICER_ONLY_MARKERS = ("officer-only-entry-7f3a", "officer-only-role-7f3a", "officer-only-group-7f3a")

Row = dict[str, dict[str, int | str]]


def row(anon: int | str, user: int | str, officer: int | str, lockadmin: int | str, admin: int | str) -> dict:
    """One method's statuses, in the order of CALLERS."""
    return dict(zip(CALLERS, (anon, user, officer, lockadmin, admin), strict=True))


def console(officer: int | str, lockadmin: int | str, admin: int | str) -> dict:
    """A console page: whoever is not staff (anonymous or the ordinary user) is sent to the login page."""
    return row(LOGIN, LOGIN, officer, lockadmin, admin)


def model_admin(model: str, *, view: set[str], add: set[str], change: set[str], delete: set[str]) -> dict[str, Row]:
    """The rows of one model's admin pages, from which staff callers may view, add, change and delete it.

    Django's admin shows the list, an object and its history to those who may view or change the model (read-only
    without change), the add page to those who may add, the deletion page to those who may delete, and 403 to the
    other staff; the object's bare URL redirects any staff caller to its change page, which then decides.
    """

    def allowed(callers: set[str]) -> dict:
        return console(*(200 if caller in callers else 403 for caller in ("officer", "lockadmin", "admin")))

    base = f"admin/{model}/"
    return {
        base: {"GET": allowed(view | change)},
        f"{base}add/": {"GET": allowed(add)},
        f"{base}<path:object_id>/history/": {"GET": allowed(view | change)},
        f"{base}<path:object_id>/delete/": {"GET": allowed(delete)},
        f"{base}<path:object_id>/change/": {"GET": allowed(view | change)},
        f"{base}<path:object_id>/": {"GET": console(CHANGE, CHANGE, CHANGE)},
    }


NOBODY: set[str] = set()
OFFICERS = {"officer", "admin"}
LOCK_ADMINS = {"lockadmin", "admin"}
ADMINS = {"admin"}

# The one table: URL pattern -> method -> caller -> status.
#                                                     anon  user officer lockadmin admin
TABLE: dict[str, Row] = {
    # --- the audit trail API: officers read everything, others only their own entries --------------------------
    "api/audit/events": {
        "GET": row(401, 200, 200, 200, 200),  # the others' list holds only their own entries
        "POST": row(401, 403, 403, 403, 201),  # service accounts (audit.record_event) only
    },
    # Permissions are checked before the method: a caller who may not record learns 403, not 405.
    "api/audit/events/batch": {"GET": row(401, 403, 403, 403, 405), "POST": row(401, 403, 403, 403, 201)},
    # Another's entry does not exist for whoever may not read it.
    "api/audit/events/<int:pk>": {"GET": row(401, 404, 200, 404, 200)},
    "api/audit/verify": {"GET": row(401, 403, 200, 403, 200)},
    "api/audit/digests": {"GET": row(401, 403, 200, 403, 200)},
    # Subject access: audit.export_subject_access, which no default role holds.
    "api/audit/subjects/<int:user_id>/access": {"GET": row(401, 403, 403, 403, 200)},
    # --- rbac: reads need the view right, writes the service's right (administrators) -------------------------
    "api/rbac/roles": {"GET": row(401, 403, 200, 403, 200), "POST": row(401, 403, 403, 403, 201)},
    "api/rbac/roles/<int:pk>": {
        "GET": row(401, 403, 200, 403, 200),
        "PATCH": row(401, 403, 403, 403, 200),
        "DELETE": row(401, 403, 403, 403, 204),
    },
    "api/rbac/roles/<int:pk>/permissions": {"GET": row(401, 405, 405, 405, 405), "PUT": row(401, 403, 403, 403, 200)},
    "api/rbac/groups": {"GET": row(401, 403, 200, 403, 200), "POST": row(401, 403, 403, 403, 201)},
    "api/rbac/groups/<int:pk>": {
        "GET": row(401, 403, 200, 403, 200),
        "PATCH": row(401, 403, 403, 403, 200),
        "DELETE": row(401, 403, 403, 403, 204),
    },
    "api/rbac/groups/<int:pk>/members": {"GET": row(401, 405, 405, 405, 405), "PUT": row(401, 403, 403, 403, 200)},
    "api/rbac/groups/<int:pk>/scope": {"GET": row(401, 405, 405, 405, 405), "PUT": row(401, 403, 403, 403, 200)},
    "api/rbac/users/<int:pk>/roles": {"GET": row(401, 405, 405, 405, 405), "PUT": row(401, 403, 403, 403, 200)},
    # --- locks (REST): who holds what is seen with locks.view_filelock (members, lock administrators) ------------
    "api/locks": {"GET": row(401, 200, 403, 200, 200), "POST": row(401, 201, 403, 403, 201)},
    # The lock is the member's: only its owner checks it in, a superuser included in the refused.
    "api/locks/<int:pk>/checkin": {"GET": row(401, 405, 405, 405, 405), "POST": row(401, 200, 403, 403, 403)},
    "api/locks/<int:pk>/force-checkin": {"GET": row(401, 405, 405, 405, 405), "POST": row(401, 403, 403, 200, 200)},
    # --- Git LFS locking -----------------------------------------------------------------------------------------
    "api/lfs/<slug:repository>/locks": {"GET": row(401, 200, 403, 200, 200), "POST": row(401, 201, 403, 403, 201)},
    "api/lfs/<slug:repository>/locks/verify": {
        "GET": row(401, 405, 405, 405, 405),
        "POST": row(401, 200, 403, 200, 200),
    },
    # {"force": true} on the member's lock: its owner releases it as a plain check-in, the force right the rest.
    "api/lfs/<slug:repository>/locks/<str:lock_id>/unlock": {
        "GET": row(401, 405, 405, 405, 405),
        "POST": row(401, 200, 403, 200, 200),
    },
    # --- the API's description: public -----------------------------------------------------------------------
    "api/schema": {"GET": row(200, 200, 200, 200, 200)},
    "api/docs": {"GET": row(200, 200, 200, 200, 200)},
    "api/redoc": {"GET": row(200, 200, 200, 200, 200)},
    # --- the console: its own pages ------------------------------------------------------------------------------
    "admin/": {"GET": console(200, 200, 200)},
    "admin/login/": {"GET": row(200, 200, INDEX, INDEX, INDEX)},
    "admin/logout/": {"GET": row(INDEX, INDEX, 405, 405, 405)},  # logging out is a POST
    "admin/password_change/": {"GET": console(200, 200, 200)},
    "admin/password_change/done/": {"GET": console(200, 200, 200)},
    "admin/autocomplete/": {"GET": console(403, 403, 403)},  # no model offers autocompletion
    "admin/jsi18n/": {"GET": console(200, 200, 200)},
    "admin/r/<path:content_type_id>/<path:object_id>/": {"GET": console(404, 404, 404)},  # no model has a site
    "admin/^(?P<app_label>audit|rbac|auth|authtoken|locks)/$": {"GET": console(200, 404, 200)},  # /admin/audit/
    "admin/(?P<url>.*)$": {"GET": console(404, 404, 404)},
    "admin/audit/dashboard/": {"GET": console(200, 403, 200)},
    "admin/audit/dashboard/anomalies/<int:anomaly_id>/acknowledge/": {
        "GET": console(405, 405, 405),
        "POST": console(DASHBOARD, 403, DASHBOARD),
    },
    "admin/auth/user/<id>/password/": {"GET": console(403, 403, 200)},
    # --- the console: model pages, by rule ----------------------------------------------------------------------
    # API tokens: superusers only.
    **model_admin("authtoken/tokenproxy", view=NOBODY, add=ADMINS, change=ADMINS, delete=ADMINS),
    # The trail is read-only for everyone, superusers included.
    **model_admin("audit/auditlog", view=OFFICERS, add=NOBODY, change=NOBODY, delete=NOBODY),
    # Action codes are never deleted: entries refer to them.
    **model_admin("audit/registeredaction", view=OFFICERS, add=ADMINS, change=ADMINS, delete=NOBODY),
    # FOIA work is not part of the officer role; requests are never deleted.
    **model_admin("audit/foiarequest", view=NOBODY, add=ADMINS, change=ADMINS, delete=NOBODY),
    **model_admin("audit/redactionprofile", view=NOBODY, add=ADMINS, change=ADMINS, delete=ADMINS),
    **model_admin("rbac/role", view=OFFICERS, add=ADMINS, change=ADMINS, delete=ADMINS),
    **model_admin("auth/group", view=OFFICERS, add=ADMINS, change=ADMINS, delete=ADMINS),
    # Accounts are deactivated, never deleted.
    **model_admin("auth/user", view=OFFICERS, add=ADMINS, change=ADMINS, delete=NOBODY),
    **model_admin("locks/repository", view=LOCK_ADMINS, add=ADMINS, change=ADMINS, delete=ADMINS),
    # Locks come and go through checkout and (force) check-in only.
    **model_admin("locks/filelock", view=LOCK_ADMINS, add=NOBODY, change=NOBODY, delete=NOBODY),
}


def all_patterns() -> list[str]:
    """Every URL pattern of the project, nested resolvers' prefixes joined to their patterns."""

    def walk(resolver: URLResolver, prefix: str) -> list[str]:
        found = []
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                found += walk(entry, prefix + str(entry.pattern))
            else:
                found.append(prefix + str(entry.pattern))
        return found

    return walk(get_resolver(), "")


# --- the objects the URLs name ----------------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, User | None]
    role: Role
    group: Group
    target: User
    repository: Repository
    lock: FileLock
    entry: AuditLog
    registered: RegisteredAction
    foia: FoiaRequest
    profile: RedactionProfile
    anomaly: Anomaly


@pytest.fixture
def world(db, settings) -> World:
    """The five callers and one object of each kind a URL names; the lock is the member's, the entry the admin's."""
    settings.ALLOWED_HOSTS = ["testserver"]
    bootstrap_default_roles()
    roles = {role.name: role for role in Role.objects.all()}
    member = UserFactory(username="member")
    roles["member"].users.add(member)
    officer = OfficerFactory(username="officer")
    roles["compliance officer"].users.add(officer)
    lockadmin = UserFactory(username="lockadmin", is_staff=True)
    roles["lock administrator"].users.add(lockadmin)
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    target = UserFactory(username="target")
    Token.objects.create(user=target)
    role = Role.objects.create(name="matrix role", description=OFFICER_ONLY_MARKERS[1])
    group = Group.objects.create(name=OFFICER_ONLY_MARKERS[2])
    GroupScope.objects.create(group=group, branch_scope={"allow": []})
    repository = Repository.objects.create(slug="matrix-repo", name="Matrix repository")
    lock = lock_services.checkout(actor=member, repository=repository, path="matrix/held.bin")
    entry = record(AuditAction.ROLE_CREATE, entity="Role", entity_id=OFFICER_ONLY_MARKERS[0], actor=admin)
    registered = registered_action_save(actor=None, code=CODE, description="Matrix ping")
    profile = RedactionProfile.objects.create(name="matrix profile", rules=[])
    foia = foia_request_create(actor=None, requester="A. Requester", description="Everything about the matrix")
    now = timezone.now()
    anomaly = Anomaly.objects.create(
        rule=Anomaly.Rule.FAILED_LOGINS,
        subject="username:matrix",
        summary="Many failed logins",
        first_evidence_id=entry.pk,
        last_evidence_id=entry.pk,
        window_start=now - dt.timedelta(minutes=15),
        window_end=now,
    )
    users = {"anon": None, "user": member, "officer": officer, "lockadmin": lockadmin, "admin": admin}
    return World(users, role, group, target, repository, lock, entry, registered, foia, profile, anomaly)


def admin_object(model: str, world: World) -> int:
    """The object id of an ``admin/<app>/<model>/<object_id>/...`` page."""
    objects = {
        "audit/auditlog": world.entry,
        "audit/registeredaction": world.registered,
        "audit/foiarequest": world.foia,
        "audit/redactionprofile": world.profile,
        "rbac/role": world.role,
        "auth/group": world.group,
        "auth/user": world.target,
        "authtoken/tokenproxy": world.target,  # the token admin names a token by its user's id
        "locks/repository": world.repository,
        "locks/filelock": world.lock,
    }
    if model not in objects:
        raise AssertionError(f"no object for the admin of {model}: add one to admin_object()")
    return objects[model].pk


# Patterns that are regular expressions, not routes: the URL stands written out.
REGEX_URLS = {
    "admin/^(?P<app_label>audit|rbac|auth|authtoken|locks)/$": "/admin/audit/",
    "admin/(?P<url>.*)$": "/admin/no-such-page/",
}

# (what the pattern says before the parameter, as a regex; the parameter's name) -> the value put there.
PARAMETERS: list[tuple[str, str, Any]] = [
    (r"api/audit/events/", "pk", lambda w: w.entry.pk),
    (r"api/audit/subjects/", "user_id", lambda w: w.target.pk),
    (r"api/rbac/roles/", "pk", lambda w: w.role.pk),
    (r"api/rbac/groups/", "pk", lambda w: w.group.pk),
    (r"api/rbac/users/", "pk", lambda w: w.target.pk),
    (r"api/locks/", "pk", lambda w: w.lock.pk),
    (r"api/lfs/", "repository", lambda w: w.repository.slug),
    (r"api/lfs/[\w-]+/locks/", "lock_id", lambda w: w.lock.pk),
    (r"admin/audit/dashboard/anomalies/", "anomaly_id", lambda w: w.anomaly.pk),
    (r"admin/r/", "content_type_id", lambda w: ContentType.objects.get_for_model(Repository).pk),
    (r"admin/r/\d+/", "object_id", lambda w: w.repository.pk),
    (r"admin/auth/user/", "id", lambda w: w.target.pk),
    (r"admin/(\w+/\w+)/", "object_id", lambda w, model: admin_object(model, w)),
]


def concrete_url(pattern: str, world: World) -> str:
    """The pattern with each parameter filled with the id (or slug) of an object of the world."""
    if pattern in REGEX_URLS:
        return REGEX_URLS[pattern]
    url = pattern
    while placeholder := re.search(r"<(?:\w+:)?(\w+)>", url):
        before, name = url[: placeholder.start()], placeholder.group(1)
        for regex, parameter, value in PARAMETERS:
            match = re.fullmatch(regex, before)
            if match and parameter == name:
                url = before + str(value(world, *match.groups())) + url[placeholder.end() :]
                break
        else:
            raise AssertionError(f"no value for <{name}> of {pattern}: add one to PARAMETERS")
    return "/" + url


def write_body(pattern: str, method: str, world: World) -> dict[str, Any]:
    """A minimal valid body for each write of the table: what a caller with the right gets through with."""
    reason = {"reason": "authorization matrix"}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("api/audit/events", "POST"): {"action": CODE},
        ("api/audit/events/batch", "POST"): {"events": [{"action": CODE}]},
        ("api/rbac/roles", "POST"): {"name": "matrix new role", **reason},
        ("api/rbac/roles/<int:pk>", "PATCH"): {"description": "changed", **reason},
        ("api/rbac/roles/<int:pk>", "DELETE"): reason,
        ("api/rbac/roles/<int:pk>/permissions", "PUT"): {"permissions": ["locks.view_repository"], **reason},
        ("api/rbac/groups", "POST"): {"name": "matrix new group", **reason},
        ("api/rbac/groups/<int:pk>", "PATCH"): {"name": "matrix renamed", **reason},
        ("api/rbac/groups/<int:pk>", "DELETE"): reason,
        ("api/rbac/groups/<int:pk>/members", "PUT"): {"members": [world.target.pk], **reason},
        ("api/rbac/groups/<int:pk>/scope", "PUT"): {"branch_scope": {"allow": [1]}, **reason},
        ("api/rbac/users/<int:pk>/roles", "PUT"): {"roles": [world.role.pk], **reason},
        ("api/locks", "POST"): {"repository": world.repository.slug, "path": "matrix/new.bin"},
        ("api/locks/<int:pk>/checkin", "POST"): {},
        ("api/locks/<int:pk>/force-checkin", "POST"): reason,
        ("api/lfs/<slug:repository>/locks", "POST"): {"path": "matrix/new.bin"},
        ("api/lfs/<slug:repository>/locks/verify", "POST"): {},
        ("api/lfs/<slug:repository>/locks/<str:lock_id>/unlock", "POST"): {"force": True},
        ("admin/audit/dashboard/anomalies/<int:anomaly_id>/acknowledge/", "POST"): {"note": "checked"},
    }
    if (pattern, method) not in bodies:
        raise AssertionError(f"no body for {method} {pattern}: add one to write_body()")
    return bodies[(pattern, method)]


@dataclass
class Answer:
    status: int | str
    body: bytes


def call(world: World, caller: str, pattern: str, method: str) -> Answer:
    """One request of ``caller``: the API with HTTP Basic, the console with a session."""
    user = world.users[caller]
    url = concrete_url(pattern, world)
    if url.startswith("/api/"):
        client: Client = APIClient()
        if user is not None:
            token = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode("ascii")
            client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
        if method == "GET":
            response = client.get(url)
        else:
            content_type = LFS_MEDIA_TYPE if url.startswith("/api/lfs/") else "application/json"
            body = json.dumps(write_body(pattern, method, world))
            response = client.generic(method, url, body, content_type=content_type)
    else:
        client = Client()
        if user is not None:
            client.force_login(user)
        response = client.get(url) if method == "GET" else client.post(url, write_body(pattern, method, world))
    status: int | str = response.status_code
    if status == 302:
        location = response["Location"]
        if location == f"/admin/login/?next={url}":
            status = LOGIN
        elif location == "/admin/":
            status = INDEX
        elif location == "/admin/audit/dashboard/":
            status = DASHBOARD
        elif location == url + "change/":
            status = CHANGE
    body = b"" if getattr(response, "streaming", False) else response.content
    return Answer(status, body)


def view_class(pattern: str, world: World) -> Any:
    """The class of the view behind a pattern (None for a function view)."""
    func = resolve(concrete_url(pattern, world)).func
    return getattr(func, "cls", None) or getattr(func, "view_class", None)


GET_CELLS = sorted(TABLE)
PATTERNS = frozenset(all_patterns())


def skip_if_stale(pattern: str) -> None:
    if pattern not in PATTERNS:
        pytest.skip(f"no URL pattern {pattern} any more: test_every_url_pattern_has_a_row_in_the_table reports it")


WRITE_CELLS = [
    (pattern, method, caller)
    for pattern, methods in sorted(TABLE.items())
    for method in methods
    if method != "GET"
    for caller in CALLERS
]


# --- the table and the resolver agree ------------------------------------------------------------------------


def test_every_url_pattern_has_a_row_in_the_table():
    """Each pattern of the resolver has a row, and each row names a pattern that exists: a new URL (an API view,
    an admin model's pages) fails here until someone has decided who may reach it."""
    patterns = all_patterns()
    missing = [f"add a row for {pattern}" for pattern in patterns if pattern not in TABLE]
    stale = [
        f"remove the row for {pattern}: no such URL pattern any more" for pattern in TABLE if pattern not in patterns
    ]

    assert not missing + stale, "\n".join(missing + stale)


def test_every_row_declares_a_get_for_each_of_the_five_callers():
    """Each row declares GET, and each method of a row names exactly the five callers."""
    wrong = [pattern for pattern, methods in TABLE.items() if "GET" not in methods]
    wrong += [
        f"{method} {pattern}: {sorted(statuses)}"
        for pattern, methods in TABLE.items()
        for method, statuses in methods.items()
        if set(statuses) != set(CALLERS)
    ]

    assert not wrong, wrong


def test_every_write_method_of_an_api_view_has_its_row(world):
    """Each write method an API view answers (POST, PUT, PATCH, DELETE) is declared in its row, and a row declares
    no write the view does not have: a new write method fails here until its statuses are written."""
    differences = []
    for pattern, methods in TABLE.items():
        if not pattern.startswith("api/") or pattern not in PATTERNS:
            continue  # a stale row is test_every_url_pattern_has_a_row_in_the_table's to report
        cls = view_class(pattern, world)
        served = {method for method in WRITE_METHODS if hasattr(cls, method.lower())}
        declared = set(methods) - {"GET"}
        if served != declared:
            differences.append(f"{pattern}: the view writes with {sorted(served)}, the row has {sorted(declared)}")

    assert not differences, "\n".join(differences)


# --- the matrix ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", GET_CELLS)
def test_get_answers_each_caller_as_the_table_says(world, pattern):
    """A GET of the pattern's URL answers each of the five callers with the status of its row (never a 5xx)."""
    skip_if_stale(pattern)
    expected = TABLE[pattern]["GET"]

    observed = {caller: call(world, caller, pattern, "GET").status for caller in CALLERS}

    differing = {
        caller: f"expected {expected[caller]}, got {observed[caller]}"
        for caller in CALLERS
        if observed[caller] != expected[caller]
    }
    assert not differing, f"GET {concrete_url(pattern, world)} ({pattern}): {differing}"


@pytest.mark.parametrize(("pattern", "method", "caller"), WRITE_CELLS)
def test_write_answers_the_caller_as_the_table_says(world, pattern, method, caller):
    """A write (the view's method with a minimal valid body) answers the caller with the status of its row, on
    objects no other caller's write has touched."""
    skip_if_stale(pattern)
    expected = TABLE[pattern][method][caller]

    observed = call(world, caller, pattern, method).status

    assert observed == expected, f"{method} {concrete_url(pattern, world)} ({pattern}) as {caller}"


def test_no_page_an_ordinary_user_reads_shows_officer_only_data(world):
    """Wherever the ordinary user gets a 200 on a GET, the answer shows neither the admin's audit entry nor the
    role or group only officers may list; the officer does see the entry in the events list (the check can fail)."""
    readable = [pattern for pattern in GET_CELLS if TABLE[pattern]["GET"]["user"] == 200 and pattern in PATTERNS]
    leaks = []
    for pattern in readable:
        answer = call(world, "user", pattern, "GET")
        assert answer.status == 200, pattern
        leaks += [f"{pattern} shows {marker}" for marker in OFFICER_ONLY_MARKERS if marker.encode() in answer.body]

    assert "api/audit/events" in readable
    assert not leaks, leaks
    assert OFFICER_ONLY_MARKERS[0].encode() in call(world, "officer", "api/audit/events", "GET").body
