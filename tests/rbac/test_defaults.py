"""rbac_bootstrap: the four default roles, created by the system through the audited services, once."""

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from audit.actions import AuditAction
from audit.bootstrap import COMPLIANCE_OFFICERS
from audit.models import AuditLog
from rbac.defaults import DEFAULT_ROLES, bootstrap_default_roles
from rbac.models import Role
from rbac.services import permission_codes

DEFAULT_NAMES = ["administrator", "compliance officer", "lock administrator", "member", "records officer"]
REASON = "default roles of a new installation"


def _bootstrap() -> str:
    out = StringIO()
    call_command("rbac_bootstrap", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_creates_the_five_default_roles_with_their_privileged_flags():
    """A first run creates administrator, compliance officer, records officer, lock administrator and member;
    administrator, records officer and lock administrator are privileged."""
    output = _bootstrap()

    assert sorted(Role.objects.values_list("name", flat=True)) == DEFAULT_NAMES
    assert dict(Role.objects.values_list("name", "privileged")) == {
        "administrator": True,
        "compliance officer": False,
        "records officer": True,
        "lock administrator": True,
        "member": False,
    }
    assert output.strip() == f"Default roles created: {', '.join(DEFAULT_NAMES)}."


@pytest.mark.django_db
def test_roles_carry_the_listed_permissions():
    """Every installed app is migrated, so each role holds exactly the permissions listed for it."""
    _bootstrap()

    for default in DEFAULT_ROLES:
        role = Role.objects.get(name=default.name)
        assert permission_codes(role.permissions.all()) == sorted(default.permissions), default.name
        assert role.description == default.description


@pytest.mark.django_db
def test_each_role_is_recorded_as_created_by_the_system():
    """One ROLE.CREATE success entry per role, by the system (no actor, empty label and permissions), naming the
    role, with its snapshot and the bootstrap's reason."""
    _bootstrap()

    entries = list(AuditLog.objects.filter(action=AuditAction.ROLE_CREATE).order_by("id"))
    assert [entry.changes["name"]["after"] for entry in entries] == DEFAULT_NAMES
    for entry in entries:
        role = Role.objects.get(name=entry.changes["name"]["after"])
        assert (entry.outcome, entry.entity, entry.entity_id) == ("success", "Role", str(role.pk))
        assert (entry.actor_id, entry.actor_label) == (None, "")
        assert entry.perms_snapshot == {"perms": []}
        assert entry.meta == {"reason": REASON}
        assert entry.changes["privileged"] == {"before": None, "after": role.privileged}
        assert entry.changes["permissions"]["after"] == permission_codes(role.permissions.all())


@pytest.mark.django_db
def test_compliance_officers_group_gets_the_compliance_officer_role():
    """The "Compliance officers" group is given the compliance officer role, recorded as a GROUP.UPDATE by the
    system; the run writes nothing else."""
    group = Group.objects.get(name=COMPLIANCE_OFFICERS)

    _bootstrap()

    assert list(group.rbac_roles.values_list("name", flat=True)) == ["compliance officer"]
    entry = AuditLog.objects.get(action=AuditAction.GROUP_UPDATE)
    assert (entry.entity, entry.entity_id, entry.actor_id) == ("Group", str(group.pk), None)
    assert entry.changes == {
        "roles": {"before": [], "after": ["compliance officer"], "added": ["compliance officer"], "removed": []}
    }
    assert AuditLog.objects.count() == len(DEFAULT_NAMES) + 1


@pytest.mark.django_db
def test_officers_get_the_roles_permissions(officer):
    """Members of the officers group hold the compliance officer role's permissions through the group."""
    assert not officer.has_perm("rbac.view_role")

    _bootstrap()

    officer = type(officer).objects.get(pk=officer.pk)
    assert officer.has_perm("rbac.view_role")
    assert officer.has_perm("audit.view_registeredaction")


@pytest.mark.django_db
def test_second_run_creates_nothing_and_records_nothing():
    """Running again changes no role and writes no entry."""
    _bootstrap()
    roles_before = list(Role.objects.order_by("pk").values("pk", "name", "privileged", "updated_at"))
    entries_before = AuditLog.objects.count()

    output = _bootstrap()

    assert bootstrap_default_roles() == []
    assert list(Role.objects.order_by("pk").values("pk", "name", "privileged", "updated_at")) == roles_before
    assert AuditLog.objects.count() == entries_before
    assert output.strip() == "Default roles created: none (all present)."


@pytest.mark.django_db
def test_existing_role_of_the_same_name_is_left_as_it_is():
    """A role that already exists under a default name is not touched; only the missing ones are created."""
    Role.objects.create(name="member", description="our own", privileged=True)

    created = bootstrap_default_roles()

    assert [role.name for role in created] == [
        "administrator",
        "compliance officer",
        "lock administrator",
        "records officer",
    ]
    member = Role.objects.get(name="member")
    assert (member.description, member.privileged, member.permissions.count()) == ("our own", True, 0)
    assert AuditLog.objects.filter(action=AuditAction.ROLE_CREATE).count() == len(created)


@pytest.mark.django_db
def test_officers_group_keeps_the_roles_it_already_has():
    """Giving the officers group the compliance officer role adds it: roles the group already had stay."""
    group = Group.objects.get(name=COMPLIANCE_OFFICERS)
    Role.objects.create(name="reviewer").groups.add(group)

    _bootstrap()

    assert sorted(group.rbac_roles.values_list("name", flat=True)) == ["compliance officer", "reviewer"]
    entry = AuditLog.objects.get(action=AuditAction.GROUP_UPDATE)
    assert entry.changes["roles"]["removed"] == []


@pytest.mark.django_db
def test_without_the_officers_group_the_roles_are_still_created():
    """If the officers group was removed, the roles are created and no group entry is written."""
    Group.objects.filter(name=COMPLIANCE_OFFICERS).delete()

    _bootstrap()

    assert sorted(Role.objects.values_list("name", flat=True)) == DEFAULT_NAMES
    assert not AuditLog.objects.filter(action=AuditAction.GROUP_UPDATE).exists()
