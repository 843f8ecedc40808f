class AuditLogImmutableError(Exception):
    """An audit entry or seal was about to be changed or removed: the trail is append-only."""


class InvalidAuditEntry(ValueError):
    """record() was called with values that cannot form an entry (unknown code, not JSON, too large)."""
