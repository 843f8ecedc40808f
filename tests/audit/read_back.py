"""Reading an entry back as the console shows it: personal fields decrypted (they are stored encrypted)."""

from typing import Any

from audit.models import AuditLog
from audit.privacy import reveal


def read_back(**lookup: Any) -> AuditLog:
    entry = AuditLog.objects.get(**lookup)
    reveal([entry])
    return entry
