"""The audit app's knobs, read from settings at call time so tests can override them."""

import datetime as dt

from django.conf import settings


def seal_grace() -> dt.timedelta:
    """How long a committed entry may stay unsealed before ``audit_verify`` reports it."""
    return dt.timedelta(seconds=getattr(settings, "AUDIT_SEAL_GRACE_SECONDS", 300))


def seal_batch_size() -> int:
    return getattr(settings, "AUDIT_SEAL_BATCH_SIZE", 1000)


def seal_lookback() -> int:
    """How many recent chain positions the sealer looks behind for entries that committed out of order."""
    return getattr(settings, "AUDIT_SEAL_LOOKBACK", 10000)


def max_json_bytes() -> int:
    """Upper bound for the serialised size of ``changes`` and of ``meta`` of one entry."""
    return getattr(settings, "AUDIT_MAX_JSON_BYTES", 64 * 1024)


def trusted_proxies() -> list[str]:
    return list(getattr(settings, "AUDIT_TRUSTED_PROXIES", []))


def api_page_size() -> int:
    return getattr(settings, "AUDIT_API_PAGE_SIZE", 50)


def api_max_page_size() -> int:
    return getattr(settings, "AUDIT_API_MAX_PAGE_SIZE", 1000)


def digest_every_entries() -> int:
    """A signed digest is made once this many entries were sealed since the last one..."""
    return getattr(settings, "AUDIT_DIGEST_EVERY_ENTRIES", 1000)


def digest_every() -> dt.timedelta:
    """...or once this much time has passed, whichever comes first."""
    return dt.timedelta(minutes=getattr(settings, "AUDIT_DIGEST_EVERY_MINUTES", 60))
