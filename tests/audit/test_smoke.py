from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import record


def test_record_writes_one_entry(db, user):
    """record() writes one entry with the actor's name snapshot."""
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    assert AuditLog.objects.get().actor_label == user.username == entry.actor_label
