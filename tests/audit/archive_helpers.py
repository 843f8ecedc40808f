"""Shared by the retention tests: officers with the archive rights, keys, and entries months old.

The recorder stamps every entry with the current time, and nothing may change an entry afterwards; an archive needs
entries older than the retention, so the tests insert them as the recorder would, with a time in the past (INSERT is
the one thing the audit table allows).
"""

import datetime as dt
import os
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Permission, User
from django.core.management import call_command

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.sealing import seal_pending

CUTOFF = dt.date(2025, 3, 1)


def utc(year: int, month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def grant(user: User, *codenames: str) -> User:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="audit", codename__in=codenames))
    # A fresh instance: the permission cache of the old one predates the grant.
    return User.objects.get(pk=user.pk)


def old_entry(created_at: dt.datetime, **fields: Any) -> AuditLog:
    values = {"action": AuditAction.ROLE_UPDATE, "entity": "Role", "entity_id": "1", "actor_label": "alice", **fields}
    entry = AuditLog(created_at=created_at, salt=os.urandom(16), **values)
    entry.save()
    return entry


@dataclass
class Keys:
    private: Path
    public: Path


def make_keys(directory: Path, settings: Any) -> Keys:
    """A fresh pair from audit_keygen, configured as the signing key (the verify key is its public half)."""
    call_command("audit_keygen", "--out", str(directory), stdout=StringIO())
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = str(directory / "audit-signing.key")
    settings.AUDIT_VERIFY_KEY = ""
    settings.AUDIT_VERIFY_KEY_FILE = ""
    return Keys(directory / "audit-signing.key", directory / "audit-signing.pub")


@dataclass
class Trail:
    january: list[AuditLog]
    february: list[AuditLog]
    march: list[AuditLog]

    @property
    def archivable(self) -> list[AuditLog]:
        return self.january + self.february


def old_trail() -> Trail:
    """Three entries in January 2025, two in February, two in March, sealed in that order."""
    trail = Trail(
        january=[old_entry(utc(2025, 1, day), entity_id=str(day)) for day in (5, 15, 25)],
        february=[old_entry(utc(2025, 2, day), entity_id=str(10 + day), entity="Group") for day in (3, 17)],
        march=[old_entry(utc(2025, 3, day), entity_id=str(20 + day)) for day in (2, 9)],
    )
    seal_pending()
    return trail
