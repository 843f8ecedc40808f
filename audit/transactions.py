"""Where an audit write happens relative to the caller's transaction."""

from django.db import connections

# The second connection that writes what must outlive the caller's transaction (settings.DATABASES).
INDEPENDENT_ALIAS = "audit_independent"


def in_caller_transaction(using: str) -> bool:
    """Whether a transaction other than a test case's own wrapper is open on ``using``."""
    connection = connections[using]
    return connection.in_atomic_block and not all(
        getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    )
