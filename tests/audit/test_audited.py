"""@audited service functions: the change and its entry commit together, failures are recorded, and no change
happens without its entry (fail closed)."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from rest_framework import exceptions as drf_exceptions

from audit.actions import AuditAction
from audit.exceptions import InvalidAuditEntry
from audit.models import AuditLog, Seal
from audit.services import audited, record
from tests.audit.read_back import read_back

# --- services under test -------------------------------------------------------------------------------------------


def _group(group_id: int, **kwargs: object) -> Group:
    return Group.objects.get(pk=group_id)


def _user(user_id: int, **kwargs: object) -> User:
    return User.objects.get(pk=user_id)


@audited(AuditAction.GROUP_UPDATE, entity="Group", pre_fetch=_group, diff_keys=("name",))
def rename_group(group_id: int, *, name: str, actor: User, reason: object = "") -> Group:
    group = Group.objects.get(pk=group_id)
    group.name = name
    group.save(update_fields=["name"])
    return group


@audited(AuditAction.USER_ROLES_SET, entity="User", pre_fetch=_user, diff_keys=("groups", "is_staff"))
def set_user_groups(user_id: int, *, group_ids: list[int], actor: User, reason: str = "") -> User:
    user = User.objects.get(pk=user_id)
    user.groups.set(group_ids)
    return user


@audited(AuditAction.GROUP_CREATE, entity="Group", diff_keys=("name",))
def create_group(*, name: str, actor: User, reason: str = "") -> Group:
    return Group.objects.create(name=name)


@audited(AuditAction.GROUP_DELETE, entity="Group", pre_fetch=_group, diff_keys=("name",))
def delete_group(group_id: int, *, actor: User, reason: str = "") -> None:
    Group.objects.get(pk=group_id).delete()


@audited(AuditAction.GROUP_UPDATE, entity="Group", pre_fetch=_group, diff_keys=("name",))
def rename_group_then_fail(group_id: int, *, name: str, actor: User, reason: str = "") -> Group:
    Group.objects.filter(pk=group_id).update(name=name)
    raise ValueError(f"the name {name} is reserved")


@audited(AuditAction.GROUP_UPDATE, entity="Group", pre_fetch=_group, diff_keys=("name",))
def rename_group_forbidden(group_id: int, *, name: str, actor: User, reason: str = "") -> Group:
    Group.objects.filter(pk=group_id).update(name=name)
    raise PermissionDenied("only officers may rename groups")


@audited(AuditAction.GROUP_UPDATE, entity="Group", pre_fetch=_group, diff_keys=("name",))
def rename_group_api_forbidden(group_id: int, *, name: str, actor: User, reason: str = "") -> Group:
    raise drf_exceptions.PermissionDenied("not for you")


# --- success -------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_success_records_one_entry_with_the_diff_actor_and_reason(user):
    """A successful call changes the row and writes exactly one success entry with {"field": {"before", "after"}},
    the entity and its id, the actor and meta.reason."""
    group = Group.objects.create(name="Auditors")

    result = rename_group(group.pk, name="Reviewers", actor=user, reason="ticket 1234")

    assert result.pk == group.pk
    group.refresh_from_db()
    assert group.name == "Reviewers"
    entry = read_back()
    assert entry.action == AuditAction.GROUP_UPDATE
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert (entry.entity, entry.entity_id) == ("Group", str(group.pk))
    assert entry.changes == {"name": {"before": "Auditors", "after": "Reviewers"}}
    assert (entry.actor_id, entry.actor_label) == (user.pk, user.username)
    assert entry.meta == {"reason": "ticket 1234"}


@pytest.mark.django_db
def test_related_set_changes_list_added_and_removed(user, officer):
    """Replacing a user's groups records the sets as sorted ids with what was added and removed; unchanged fields
    are left out of changes."""
    kept = Group.objects.create(name="Kept")
    dropped = Group.objects.create(name="Dropped")
    gained = Group.objects.create(name="Gained")
    user.groups.set([kept, dropped])

    set_user_groups(user.pk, group_ids=[kept.pk, gained.pk], actor=officer, reason="role review")

    assert set(user.groups.values_list("pk", flat=True)) == {kept.pk, gained.pk}
    entry = AuditLog.objects.get()
    assert (entry.action, entry.entity, entry.entity_id) == (AuditAction.USER_ROLES_SET, "User", str(user.pk))
    assert entry.changes == {
        "groups": {
            "before": sorted([kept.pk, dropped.pk]),
            "after": sorted([kept.pk, gained.pk]),
            "added": [gained.pk],
            "removed": [dropped.pk],
        }
    }
    assert entry.actor_id == officer.pk
    assert entry.meta == {"reason": "role review"}


@pytest.mark.django_db
def test_create_records_before_none_and_the_new_id(user):
    """A service without pre_fetch creates: every diffed field has before None, and entity_id is the new row's id."""
    group = create_group(name="Newcomers", actor=user)

    entry = AuditLog.objects.get()
    assert entry.entity_id == str(group.pk)
    assert entry.changes == {"name": {"before": None, "after": "Newcomers"}}
    assert entry.meta == {}


@pytest.mark.django_db
def test_delete_records_after_none_and_the_old_id(user):
    """A service returning None deleted its object: after is None and entity_id is the id it had."""
    group = Group.objects.create(name="Leaving")

    delete_group(group.pk, actor=user, reason="obsolete")

    assert not Group.objects.filter(pk=group.pk).exists()
    entry = AuditLog.objects.get()
    assert (entry.action, entry.entity_id) == (AuditAction.GROUP_DELETE, str(group.pk))
    assert entry.changes == {"name": {"before": "Leaving", "after": None}}


@pytest.mark.django_db
def test_change_and_entry_roll_back_together_with_the_callers_transaction(user):
    """The success entry is written in the change's transaction: when the caller rolls back, both are gone."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            rename_group(group.pk, name="Reviewers", actor=user, reason="undone")
            assert AuditLog.objects.count() == 1
            raise RuntimeError("the caller changes its mind")

    group.refresh_from_db()
    assert group.name == "Auditors"
    assert AuditLog.objects.count() == 0


def test_change_and_entry_commit_together(committed_db, user):
    """With real commits, the change is committed and its entry is committed and then sealed (the sealer runs only
    after the entry's transaction commits)."""
    group = Group.objects.create(name="Auditors")

    rename_group(group.pk, name="Reviewers", actor=user, reason="ticket 9")

    assert Group.objects.get(pk=group.pk).name == "Reviewers"
    entry = AuditLog.objects.get()
    assert (entry.outcome, entry.changes) == ("success", {"name": {"before": "Auditors", "after": "Reviewers"}})
    assert Seal.objects.filter(entry=entry).exists()


# --- failure and denial --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_failure_rolls_back_the_change_records_failure_and_reraises(user):
    """When the service raises, its change is rolled back, one failure entry names the error, and the exception
    reaches the caller."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(ValueError, match="the name Admins is reserved"):
        rename_group_then_fail(group.pk, name="Admins", actor=user, reason="ticket 77")

    group.refresh_from_db()
    assert group.name == "Auditors"
    entry = AuditLog.objects.get()
    assert entry.action == AuditAction.GROUP_UPDATE
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert (entry.entity, entry.entity_id) == ("Group", str(group.pk))
    assert entry.actor_id == user.pk
    assert entry.meta == {"reason": "ticket 77", "error": "ValueError", "message": "the name Admins is reserved"}
    assert entry.changes == {}


@pytest.mark.django_db
def test_permission_denied_is_recorded_as_denied(user):
    """A Django PermissionDenied from the service rolls back and is recorded with outcome denied."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(PermissionDenied):
        rename_group_forbidden(group.pk, name="Mine now", actor=user)

    assert Group.objects.get(pk=group.pk).name == "Auditors"
    entry = AuditLog.objects.get()
    assert entry.outcome == AuditLog.Outcome.DENIED
    assert entry.meta == {"error": "PermissionDenied", "message": "only officers may rename groups"}
    assert entry.actor_id == user.pk


@pytest.mark.django_db
def test_drf_permission_denied_is_recorded_as_denied(user):
    """DRF's PermissionDenied counts as a denial too."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(drf_exceptions.PermissionDenied):
        rename_group_api_forbidden(group.pk, name="x", actor=user)

    assert AuditLog.objects.get().outcome == AuditLog.Outcome.DENIED


@pytest.mark.django_db
def test_failure_of_a_missing_object_is_recorded_without_an_id(user):
    """A pre_fetch that finds nothing is a failure too; the entry has no entity id to name."""
    with pytest.raises(Group.DoesNotExist):
        rename_group(987654, name="Ghost", actor=user)

    entry = AuditLog.objects.get()
    assert (entry.outcome, entry.entity_id, entry.meta["error"]) == ("failure", "", "DoesNotExist")


# --- fail closed ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_entry_that_cannot_be_written_leaves_no_change_non_json_reason(user, caplog):
    """A reason that is not JSON makes the entry unwritable: the rename is rolled back and InvalidAuditEntry raised;
    the failure entry cannot be written either, which is logged."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(InvalidAuditEntry):
        rename_group(group.pk, name="Reviewers", actor=user, reason=object())

    group.refresh_from_db()
    assert group.name == "Auditors"
    assert AuditLog.objects.count() == 0
    assert any(
        record.name == "audit.services" and "could not record the failure of GROUP.UPDATE" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.django_db
def test_entry_that_cannot_be_written_leaves_no_change_oversized_meta(user, settings):
    """A reason that makes meta larger than AUDIT_MAX_JSON_BYTES: no entry, and the group keeps its old members."""
    settings.AUDIT_MAX_JSON_BYTES = 256
    group = Group.objects.create(name="Auditors")

    with pytest.raises(InvalidAuditEntry, match="larger than"):
        set_user_groups(user.pk, group_ids=[group.pk], actor=user, reason="x" * 1000)

    assert not user.groups.exists()
    assert AuditLog.objects.count() == 0


def test_fail_closed_with_real_commits(committed_db, user, settings):
    """With real commits: an unwritable entry leaves nothing committed, neither the change nor an entry."""
    settings.AUDIT_MAX_JSON_BYTES = 256
    group = Group.objects.create(name="Auditors")

    with pytest.raises(InvalidAuditEntry):
        rename_group(group.pk, name="Reviewers", actor=user, reason="y" * 1000)

    assert Group.objects.get(pk=group.pk).name == "Auditors"
    assert AuditLog.objects.count() == 0
    assert Seal.objects.count() == 0


# --- the failure entry survives the caller's rollback (PostgreSQL) ---------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_failure_entry_survives_rollback_of_the_callers_transaction(postgres_only, committed_db, user):
    """A service failing inside a caller's own transaction, which is then rolled back, still leaves its failure
    entry: it is written and committed through the second connection ("audit_independent")."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(ValueError):
        with transaction.atomic():
            Group.objects.create(name="Made by the caller")
            rename_group_then_fail(group.pk, name="Admins", actor=user, reason="bulk import")

    assert not Group.objects.filter(name="Made by the caller").exists()
    assert Group.objects.get(pk=group.pk).name == "Auditors"
    entry = AuditLog.objects.get()
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.actor_id == user.pk
    assert entry.meta == {"reason": "bulk import", "error": "ValueError", "message": "the name Admins is reserved"}
    assert Seal.objects.filter(entry=entry).exists()


@pytest.mark.django_db(transaction=True, databases=["default", "audit_independent"])
def test_success_entry_inside_a_rolled_back_caller_transaction_is_rolled_back(postgres_only, committed_db, user):
    """Only failures go through the second connection: a success entry stays in the caller's transaction and
    disappears with its change."""
    group = Group.objects.create(name="Auditors")

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            rename_group(group.pk, name="Reviewers", actor=user)
            raise RuntimeError("rolled back by the caller")

    assert Group.objects.get(pk=group.pk).name == "Auditors"
    assert AuditLog.objects.count() == 0


@pytest.mark.django_db
def test_triggers_are_back_after_the_second_connection_tests():
    """The append-only triggers are installed again once the tests above have emptied the tables."""
    entry = record(AuditAction.AUDIT_VERIFY, entity="AuditLog")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET action = 'X.Y' WHERE id = %s", [entry.pk])
