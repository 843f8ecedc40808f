"""Removal of secrets from what is written to the audit trail."""

import re
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# Matched against keys with case, dashes, underscores and spaces ignored ("X-Api-Key" -> "xapikey").
_IGNORED = re.compile(r"[\s_\-]")
_SENSITIVE = re.compile(r"passw|passwd|pwd|secret|token|authorization|apikey|cookie|session|credential|privatekey")


def is_sensitive_key(key: object) -> bool:
    name = str(key)
    # Every entry's ``changes`` and ``meta`` repeat the same few keys; long ones are not kept, so that what the
    # cache holds stays small whatever a caller sends.
    return _remembered(name) if len(name) <= _REMEMBERED_LENGTH else _is_sensitive_name(name)


def _is_sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE.search(_IGNORED.sub("", name.lower())))


_REMEMBERED_LENGTH = 64
_remembered = lru_cache(maxsize=4096)(_is_sensitive_name)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every value under a sensitive key replaced, at any depth of dicts and lists."""
    if isinstance(value, dict):
        return {key: REDACTED if is_sensitive_key(key) else redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
