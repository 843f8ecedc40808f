"""The locks in the console: per-repository lists with owner and age, no add/change/delete, and the
"Force-release selected locks" action that asks for a reason and goes through services.force_checkin."""

import datetime as dt
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.actions import AuditAction
from audit.models import AuditLog
from locks import services
from locks.admin import lock_age
from locks.models import FileLock, Repository
from rbac.defaults import bootstrap_default_roles
from rbac.models import Role
from tests.factories.users import UserFactory

CHANGELIST_URL = reverse("admin:locks_filelock_changelist")
REPOSITORIES_URL = reverse("admin:locks_repository_changelist")
DENIED = AuditLog.Outcome.DENIED
SUCCESS = AuditLog.Outcome.SUCCESS


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    # Users are created per test; the production hasher's iterations would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roles(db) -> dict[str, Role]:
    bootstrap_default_roles()
    return {role.name: role for role in Role.objects.all()}


@pytest.fixture
def art(db) -> Repository:
    return Repository.objects.create(slug="game-art", name="Game art")


@pytest.fixture
def web(db) -> Repository:
    return Repository.objects.create(slug="website", name="Website")


def member(roles: dict[str, Role], **fields: Any):
    user = UserFactory(**fields)
    roles["member"].users.add(user)
    return user


@pytest.fixture
def alice(roles):
    return member(roles, username="alice")


@pytest.fixture
def bob(roles):
    return member(roles, username="bob")


@pytest.fixture
def locks(alice, bob, art, web) -> dict[str, FileLock]:
    """Three locks in two repositories; alice's art lock is 3 hours and 5 minutes old."""
    made = {
        "art_alice": services.checkout(actor=alice, repository=art, path="design/model.psd"),
        "art_bob": services.checkout(actor=bob, repository=art, path="design/logo.psd"),
        "web_bob": services.checkout(actor=bob, repository=web, path="index.html"),
    }
    FileLock.objects.filter(pk=made["art_alice"].pk).update(locked_at=timezone.now() - dt.timedelta(hours=3, minutes=5))
    return made


def staff_client(user: Any) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lock_admin_client(roles) -> tuple[Any, Client]:
    """A staff user with the "lock administrator" role (view locks, force_unlock everywhere)."""
    admin = UserFactory(username="lockadmin")
    roles["lock administrator"].users.add(admin)
    return admin, staff_client(admin)


def select(*locks: FileLock, **extra: Any) -> dict[str, Any]:
    """The POST of the action form (first step) or, with ``apply`` and ``reason``, of the confirmation page."""
    return {"action": "force_release", ACTION_CHECKBOX_NAME: [str(lock.pk) for lock in locks], **extra}


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def force_entries() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=AuditAction.LOCK_FORCE_RELEASE).order_by("id"))


# --- the lists ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (dt.timedelta(seconds=30), "0 min"),
        (dt.timedelta(minutes=59), "59 min"),
        (dt.timedelta(hours=3, minutes=5), "3 h"),
        (dt.timedelta(hours=47, minutes=59), "47 h"),
        (dt.timedelta(days=9, hours=1), "9 d"),
        (dt.timedelta(seconds=-5), "0 min"),
    ],
)
def test_lock_age_is_coarse_minutes_hours_or_days(delta, expected):
    """The age column says "N min" under an hour, "N h" under two days, "N d" after; a clock skew never makes
    it negative."""
    now = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)

    assert lock_age(now - delta, now) == expected


def test_changelist_shows_owner_and_age_of_each_lock(locks, lock_admin_client):
    """A lock administrator sees every lock with its path, repository, owner and age ("3 h")."""
    _, client = lock_admin_client

    response = client.get(CHANGELIST_URL)

    assert response.status_code == 200
    assert {lock.pk for lock in response.context["cl"].result_list} == {lock.pk for lock in locks.values()}
    row = next(result for result in response.context["results"] if f">{locks['art_alice'].path}<" in "".join(result))
    cells = "".join(row)
    assert ">alice<" in cells
    assert ">3 h<" in cells
    assert ">game-art<" in cells


def test_changelist_filters_by_repository(locks, lock_admin_client, web):
    """The repository filter lists one repository's locks; the owners and repositories come joined in one query."""
    _, client = lock_admin_client

    response = client.get(CHANGELIST_URL, {"repository__id__exact": web.pk})

    assert [lock.pk for lock in response.context["cl"].result_list] == [locks["web_bob"].pk]
    assert response.context["cl"].list_select_related == ("repository", "owner")


def test_changelist_searches_by_path(locks, lock_admin_client):
    """The search box matches part of the path."""
    _, client = lock_admin_client

    response = client.get(CHANGELIST_URL, {"q": "logo"})

    assert [lock.pk for lock in response.context["cl"].result_list] == [locks["art_bob"].pk]


def test_repository_list_shows_slug_name_and_lock_count_linking_to_its_locks(locks, admin_client, art, web):
    """Each repository shows its slug, name and number of locks; the count links to its locks' list."""
    response = admin_client.get(REPOSITORIES_URL)

    assert response.status_code == 200
    counts = {repository.slug: repository.lock_count for repository in response.context["cl"].result_list}
    assert counts == {"game-art": 2, "website": 1}
    content = response.content.decode()
    assert f'href="{CHANGELIST_URL}?repository__id__exact={art.pk}">2</a>' in content
    assert "Game art" in content


def test_repository_slug_cannot_be_changed_after_creation(admin_client, art):
    """The slug names the repository in Git LFS URLs and in the trail: read-only on an existing repository."""
    url = reverse("admin:locks_repository_change", args=[art.pk])

    admin_client.post(url, {"slug": "renamed", "name": "New name"})

    art.refresh_from_db()
    assert (art.slug, art.name) == ("game-art", "New name")


# --- no add, change or delete ---------------------------------------------------------------------------------------


def test_locks_cannot_be_added_changed_or_deleted_in_the_admin(locks, admin_client):
    """Even a superuser cannot add, edit or plainly delete a lock: add and delete answer 403, a change POST does
    nothing, and "delete selected" is not offered."""
    lock = locks["art_alice"]

    assert admin_client.get(reverse("admin:locks_filelock_add")).status_code == 403
    assert admin_client.post(reverse("admin:locks_filelock_delete", args=[lock.pk]), {"post": "yes"}).status_code == 403
    admin_client.post(reverse("admin:locks_filelock_change", args=[lock.pk]), {"path": "x", "owner": "1"})
    assert FileLock.objects.get(pk=lock.pk).path == "design/model.psd"
    actions = dict(admin_client.get(CHANGELIST_URL).context["action_form"].fields["action"].choices)
    assert "delete_selected" not in actions
    assert actions["force_release"] == "Force-release selected locks"
    assert FileLock.objects.count() == 3


# --- the force-release action ---------------------------------------------------------------------------------------


def test_force_release_first_asks_for_a_reason(locks, lock_admin_client):
    """Choosing the action shows a confirmation page listing the selected locks with a reason field; nothing is
    released yet and nothing is recorded."""
    _, client = lock_admin_client

    # "index" is what the changelist's action bar sends; the confirmation page posts without it.
    response = client.post(CHANGELIST_URL, select(locks["art_alice"], locks["web_bob"], index="0"))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/locks/filelock/force_release.html"
    content = response.content.decode()
    assert 'name="reason"' in content
    assert "game-art: design/model.psd" in content
    assert "website: index.html" in content
    assert "design/logo.psd" not in content
    assert FileLock.objects.count() == 3
    assert force_entries() == []


def test_force_release_with_a_reason_releases_through_force_checkin(locks, lock_admin_client, alice, bob):
    """Confirming with a reason releases each selected lock through force_checkin: one LOCK.FORCE_RELEASE success
    entry per lock with the reason, override and the previous owner, and a success message."""
    admin, client = lock_admin_client

    response = client.post(
        CHANGELIST_URL, select(locks["art_alice"], locks["web_bob"], apply="1", reason="owners left the project")
    )

    assert response.status_code == 302
    assert list(FileLock.objects.values_list("pk", flat=True)) == [locks["art_bob"].pk]
    entries = force_entries()
    assert [(e.entity_id, e.outcome, e.actor_id) for e in entries] == [
        (str(locks["art_alice"].pk), SUCCESS, admin.pk),
        (str(locks["web_bob"].pk), SUCCESS, admin.pk),
    ]
    assert [(e.meta["reason"], e.meta["override"], e.meta["previous_owner"]) for e in entries] == [
        ("owners left the project", True, "alice"),
        ("owners left the project", True, "bob"),
    ]
    assert texts(response) == ["Released 2 lock(s): game-art:design/model.psd, website:index.html"]


@pytest.mark.parametrize("reason", ["", "   "])
def test_force_release_without_a_reason_is_refused(reason, locks, lock_admin_client):
    """Confirming with an empty reason shows the page again with the error; no lock is released and no entry
    written."""
    _, client = lock_admin_client

    response = client.post(CHANGELIST_URL, select(locks["art_alice"], apply="1", reason=reason))

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert FileLock.objects.count() == 3
    assert force_entries() == []


def test_staff_without_the_right_gets_refusals_recorded_as_denied(locks, roles):
    """A staff member who can see the locks but may not force-release them gets an error message per lock, never
    a 500; the locks stay and each attempt is a LOCK.FORCE_RELEASE "denied" entry with the reason."""
    carol = member(roles, username="carol")
    client = staff_client(carol)

    response = client.post(CHANGELIST_URL, select(locks["art_alice"], locks["web_bob"], apply="1", reason="mine now"))

    assert response.status_code == 302
    assert FileLock.objects.count() == 3
    entries = force_entries()
    assert [(e.entity_id, e.outcome, e.actor_id, e.meta["reason"]) for e in entries] == [
        (str(locks["art_alice"].pk), DENIED, carol.pk, "mine now"),
        (str(locks["web_bob"].pk), DENIED, carol.pk, "mine now"),
    ]
    assert texts(response) == [
        "game-art:design/model.psd: not released: carol may not release other people's locks in game-art",
        "website:index.html: not released: carol may not release other people's locks in website",
    ]


def test_per_repository_right_releases_there_and_is_refused_elsewhere(locks, roles, art):
    """A staff member with force_unlock on one repository (guardian) releases that repository's lock and is
    refused the other's, each recorded with its outcome, in one go."""
    dave = member(roles, username="dave")
    assign_perm("locks.force_unlock", dave, art)
    client = staff_client(dave)

    response = client.post(CHANGELIST_URL, select(locks["art_alice"], locks["web_bob"], apply="1", reason="cleanup"))

    assert response.status_code == 302
    assert set(FileLock.objects.values_list("pk", flat=True)) == {locks["art_bob"].pk, locks["web_bob"].pk}
    assert [(e.entity_id, e.outcome) for e in force_entries()] == [
        (str(locks["art_alice"].pk), SUCCESS),
        (str(locks["web_bob"].pk), DENIED),
    ]
    assert texts(response) == [
        "website:index.html: not released: dave may not release other people's locks in website",
        "Released 1 lock(s): game-art:design/model.psd",
    ]


def test_user_who_cannot_view_locks_cannot_run_the_action(locks, roles):
    """A staff user without any locks right does not reach the changelist or its action: 403, nothing recorded."""
    erin = UserFactory(username="erin")
    client = staff_client(erin)

    response = client.post(CHANGELIST_URL, select(locks["art_alice"], apply="1", reason="x"))

    assert response.status_code == 403
    assert FileLock.objects.count() == 3
    assert force_entries() == []


# --- the per-repository right (django-guardian) ---------------------------------------------------------------------


def test_repository_page_shows_who_holds_the_per_repository_right(admin_client, art, bob):
    """The repository's page lists who may force-release there, after a grant through the audited service."""
    services.repository_force_unlock_grant(actor=None, repository_id=art.pk, user=bob, reason="on call")

    page = admin_client.get(reverse("admin:locks_repository_change", args=[art.pk]))

    assert page.status_code == 200
    assert bob.username in page.content.decode()


def test_no_unaudited_object_permission_pages_exist(art):
    """guardian's object-permission pages would change rights without an audit entry: they are not offered."""
    with pytest.raises(NoReverseMatch):
        reverse("admin:locks_repository_permissions", args=[art.pk])
