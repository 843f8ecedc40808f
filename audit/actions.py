"""The catalogue of action codes this project records.

Codes are ``ENTITY.OPERATION`` in upper case, optionally hierarchical (``ROLE.PERM.REPLACE``). Each code has a
one-line description (its label) and the requirements it answers, so the catalogue doubles as the record of
processing (GDPR Art. 30) that an auditor asks for.
"""

import re

from django.db import models

ACTION_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+$")


class AuditAction(models.TextChoices):
    AUDIT_VIEW = "AUDIT.VIEW", "Audit entries listed or opened"
    AUDIT_EXPORT = "AUDIT.EXPORT", "Audit entries exported"
    AUDIT_VERIFY = "AUDIT.VERIFY", "Audit chain verified"
    AUDIT_ANOMALY = "AUDIT.ANOMALY", "Anomaly found by the automated review of the audit trail"
    AUDIT_ANOMALY_ACK = "AUDIT.ANOMALY.ACK", "Anomaly acknowledged by an officer, with a note"
    AUDIT_ARCHIVE = "AUDIT.ARCHIVE", "Old audit entries written to signed segments and removed from the database"
    AUDIT_ARCHIVE_REQUEST = "AUDIT.ARCHIVE.REQUEST", "Archive and removal of old audit entries requested by an officer"
    AUDIT_ARCHIVE_APPROVE = "AUDIT.ARCHIVE.APPROVE", "Archive request approved by a second officer"
    AUDIT_HOLD_CREATE = "AUDIT.HOLD.CREATE", "Legal hold placed on audit entries: they are not archived while it lasts"
    AUDIT_HOLD_RELEASE = "AUDIT.HOLD.RELEASE", "Legal hold released, with a reason"
    AUDIT_PARTITIONS_CREATE = "AUDIT.PARTITIONS.CREATE", "Monthly partitions of the audit table created"
    AUDIT_SUBJECT_ERASE = "AUDIT.SUBJECT.ERASE", "A data subject's personal fields erased by destroying their key"
    AUDIT_SUBJECT_ACCESS = "AUDIT.SUBJECT.ACCESS", "The audit entries about a data subject exported for them"
    ACCESS_DENIED = "ACCESS.DENIED", "Request refused for lack of a permission"
    AUDIT_INGEST = "AUDIT.INGEST", "Events submitted by another system"
    ACTION_REGISTER = "ACTION.REGISTER", "Action code of another system registered"
    ACTION_UPDATE = "ACTION.UPDATE", "Registered action code changed"
    REDACTION_PROFILE_CREATE = "REDACTION_PROFILE.CREATE", "Redaction profile for FOIA releases created"
    REDACTION_PROFILE_UPDATE = "REDACTION_PROFILE.UPDATE", "Redaction profile changed"
    REDACTION_PROFILE_DELETE = "REDACTION_PROFILE.DELETE", "Redaction profile deleted"
    USER_TOKEN_CREATE = "USER.TOKEN.CREATE", "API token issued to a user or service account (never the token itself)"
    USER_TOKEN_DELETE = "USER.TOKEN.DELETE", "API token revoked"
    USER_LOGIN = "USER.LOGIN", "User logged in"
    USER_LOGIN_FAILED = "USER.LOGIN_FAILED", "Login attempt failed"
    USER_LOGOUT = "USER.LOGOUT", "User logged out"
    USER_CREATE = "USER.CREATE", "User account created"
    USER_UPDATE = "USER.UPDATE", "User account changed"
    USER_DEACTIVATE = "USER.DEACTIVATE", "User account deactivated"
    USER_PASSWORD_CHANGE = "USER.PASSWORD.CHANGE", "User password changed"
    USER_ROLES_SET = "USER.ROLES.SET", "User's roles replaced"
    ROLE_CREATE = "ROLE.CREATE", "Role created"
    ROLE_UPDATE = "ROLE.UPDATE", "Role changed"
    ROLE_DELETE = "ROLE.DELETE", "Role deleted"
    ROLE_PERM_REPLACE = "ROLE.PERM.REPLACE", "Role permissions replaced"
    GROUP_CREATE = "GROUP.CREATE", "Group created"
    GROUP_UPDATE = "GROUP.UPDATE", "Group changed"
    GROUP_DELETE = "GROUP.DELETE", "Group deleted"
    GROUP_MEMBERS_SET = "GROUP.MEMBERS.SET", "Group membership replaced"
    GROUP_SCOPE_SET = "GROUP.SCOPE.SET", "Group branch scope replaced"
    LOCK_CREATE = "LOCK.CREATE", "File checked out (locked)"
    LOCK_RELEASE = "LOCK.RELEASE", "File checked in (unlocked) by its owner"
    REPOSITORY_CREATE = "REPOSITORY.CREATE", "Repository created"
    REPOSITORY_UPDATE = "REPOSITORY.UPDATE", "Repository renamed"
    REPOSITORY_DELETE = "REPOSITORY.DELETE", "Repository deleted"
    REPOSITORY_PERM_GRANT = "REPOSITORY.PERM.GRANT", "Right to force-release locks in one repository given"
    REPOSITORY_PERM_REVOKE = "REPOSITORY.PERM.REVOKE", "Right to force-release locks in one repository taken away"
    LOCK_FORCE_RELEASE = "LOCK.FORCE_RELEASE", "Lock released by an administrator on someone else's behalf"
    FOIA_REQUEST_CREATE = "FOIA.REQUEST.CREATE", "FOIA request logged with its tracking number"
    FOIA_REQUEST_UPDATE = "FOIA.REQUEST.UPDATE", "FOIA request changed (status, scope, requester or redaction profile)"


# The requirements each code answers (see the compliance mapping in the README).
COMPLIANCE: dict[str, tuple[str, ...]] = {
    AuditAction.AUDIT_VIEW: ("PCI DSS 10.2.1.3", "NIST AU-9(4)"),
    AuditAction.AUDIT_EXPORT: ("PCI DSS 10.2.1.3",),
    AuditAction.AUDIT_VERIFY: ("PCI DSS 10.3.4", "NIST AU-9"),
    AuditAction.AUDIT_ANOMALY: ("PCI DSS 10.4.1.1", "SOC 2 CC7.2", "NIST AU-6(1)"),
    AuditAction.AUDIT_ANOMALY_ACK: ("PCI DSS 10.4.1.1", "SOC 2 CC7.2", "NIST AU-6"),
    AuditAction.AUDIT_ARCHIVE: ("PCI DSS 10.3.3", "PCI DSS 10.5.1", "NIST AU-11", "NIST AU-9(5)", "GDPR Art. 5(1)(e)"),
    AuditAction.AUDIT_ARCHIVE_REQUEST: ("NIST AU-9(5)", "PCI DSS 10.5.1"),
    AuditAction.AUDIT_ARCHIVE_APPROVE: ("NIST AU-9(5)", "PCI DSS 10.5.1"),
    AuditAction.AUDIT_HOLD_CREATE: ("NIST AU-11", "PCI DSS 10.5.1"),
    AuditAction.AUDIT_HOLD_RELEASE: ("NIST AU-11", "PCI DSS 10.5.1"),
    AuditAction.AUDIT_PARTITIONS_CREATE: ("PCI DSS 10.2.1.7", "NIST AU-4"),
    AuditAction.AUDIT_SUBJECT_ERASE: ("GDPR Art. 17", "PCI DSS 10.2.1.3"),
    AuditAction.AUDIT_SUBJECT_ACCESS: ("GDPR Art. 15", "PCI DSS 10.2.1.3"),
    AuditAction.ACCESS_DENIED: ("PCI DSS 10.2.1.4",),
    AuditAction.AUDIT_INGEST: ("PCI DSS 10.2.1.4",),
    AuditAction.ACTION_REGISTER: ("GDPR Art. 30", "PCI DSS 10.2.1.6"),
    AuditAction.ACTION_UPDATE: ("GDPR Art. 30", "PCI DSS 10.2.1.6"),
    AuditAction.REDACTION_PROFILE_CREATE: ("FOIA 5 U.S.C. 552(b)", "SOC 2 CC8.1"),
    AuditAction.REDACTION_PROFILE_UPDATE: ("FOIA 5 U.S.C. 552(b)", "SOC 2 CC8.1"),
    AuditAction.REDACTION_PROFILE_DELETE: ("FOIA 5 U.S.C. 552(b)", "SOC 2 CC8.1"),
    AuditAction.USER_TOKEN_CREATE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.USER_TOKEN_DELETE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.USER_LOGIN: ("PCI DSS 10.2.1", "SOC 2 CC6.1"),
    AuditAction.USER_LOGIN_FAILED: ("PCI DSS 10.2.1.4",),
    AuditAction.USER_LOGOUT: ("PCI DSS 10.2.1",),
    AuditAction.USER_CREATE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.USER_UPDATE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.USER_DEACTIVATE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.USER_PASSWORD_CHANGE: ("PCI DSS 10.2.1.5",),
    AuditAction.USER_ROLES_SET: ("PCI DSS 10.2.1.5", "SOC 2 CC6.3"),
    AuditAction.ROLE_CREATE: ("PCI DSS 10.2.1.2", "PCI DSS 10.2.1.7"),
    AuditAction.ROLE_UPDATE: ("PCI DSS 10.2.1.2",),
    AuditAction.ROLE_DELETE: ("PCI DSS 10.2.1.2", "PCI DSS 10.2.1.7"),
    AuditAction.ROLE_PERM_REPLACE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.3"),
    AuditAction.GROUP_CREATE: ("PCI DSS 10.2.1.2", "PCI DSS 10.2.1.7"),
    AuditAction.GROUP_UPDATE: ("PCI DSS 10.2.1.2",),
    AuditAction.GROUP_DELETE: ("PCI DSS 10.2.1.2", "PCI DSS 10.2.1.7"),
    AuditAction.GROUP_MEMBERS_SET: ("PCI DSS 10.2.1.5", "SOC 2 CC6.2"),
    AuditAction.GROUP_SCOPE_SET: ("PCI DSS 10.2.1.5", "SOC 2 CC6.3"),
    AuditAction.LOCK_CREATE: ("SOC 2 CC6.1",),
    AuditAction.LOCK_RELEASE: ("SOC 2 CC6.1",),
    AuditAction.REPOSITORY_CREATE: ("SOC 2 CC8.1",),
    AuditAction.REPOSITORY_UPDATE: ("SOC 2 CC8.1",),
    AuditAction.REPOSITORY_DELETE: ("SOC 2 CC8.1",),
    AuditAction.REPOSITORY_PERM_GRANT: ("PCI DSS 10.2.1.5", "SOC 2 CC6.3"),
    AuditAction.REPOSITORY_PERM_REVOKE: ("PCI DSS 10.2.1.5", "SOC 2 CC6.3"),
    AuditAction.LOCK_FORCE_RELEASE: ("PCI DSS 10.2.1.2",),
    AuditAction.FOIA_REQUEST_CREATE: ("FOIA 5 U.S.C. 552(a)(7)",),
    AuditAction.FOIA_REQUEST_UPDATE: ("FOIA 5 U.S.C. 552(a)(7)",),
}


def action_family(code: str) -> str:
    """``ROLE.PERM.REPLACE`` -> ``ROLE``: the first segment groups codes for filters and charts."""
    return code.split(".", 1)[0]


def families() -> list[str]:
    return sorted({action_family(code) for code in AuditAction.values})


# Entity labels recorded by this project; the admin offers them as filter choices without a DISTINCT query.
ENTITIES: tuple[str, ...] = (
    "AuditLog",
    "SignedDigest",
    "RegisteredAction",
    "User",
    "Role",
    "Group",
    "Repository",
    "FileLock",
    "FoiaRequest",
    "RedactionProfile",
    "Anomaly",
    "ArchiveRequest",
    "LegalHold",
)
