"""Removal of secrets from what is written to the audit trail."""

import re
from typing import Any

REDACTED = "[REDACTED]"

# Matched against keys with case, dashes, underscores and spaces ignored ("X-Api-Key" -> "xapikey").
_SENSITIVE = re.compile(r"passw|passwd|pwd|secret|token|authorization|apikey|cookie|session|credential|privatekey")


def is_sensitive_key(key: object) -> bool:
    return bool(_SENSITIVE.search(re.sub(r"[\s_\-]", "", str(key).lower())))


def redact(value: Any) -> Any:
    """A copy of ``value`` with every value under a sensitive key replaced, at any depth of dicts and lists."""
    if isinstance(value, dict):
        return {key: REDACTED if is_sensitive_key(key) else redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
