"""`manage.py demo_data` (run by `make demo`): demo users with their roles, events through the services, a chain
that verifies, and a second run that changes nothing."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from audit.models import AuditLog
from audit.verify import verify_chain


@pytest.mark.django_db
def test_demo_data_creates_the_demo_users_with_their_rights_and_a_verifiable_trail():
    out = StringIO()
    call_command("demo_data", "--events", "40", stdout=out)

    users = {user.username: user for user in get_user_model().objects.all()}
    assert {"admin", "officer", "records", "alice", "bob"} <= set(users)
    assert users["alice"].has_perm("locks.add_filelock") and not users["alice"].has_perm("audit.view_auditlog")
    assert users["officer"].has_perm("audit.view_auditlog")
    # Two records officers: one requests archiving, the other approves.
    assert users["records"].has_perm("audit.request_archive") and users["officer"].has_perm("audit.approve_archive")
    assert "records / records-demo-password" in out.getvalue()
    assert verify_chain().ok

    entries = AuditLog.objects.count()
    call_command("demo_data", stdout=StringIO())
    assert AuditLog.objects.count() == entries
