"""The audit app's knobs, read from settings when first asked for and again after a change of the setting, so
that tests can override them."""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

# Values as read, by setting name. Every write reads several knobs, and an unset one costs Django an exception per
# read. ``override_settings`` and pytest-django's ``settings`` announce each change, which drops the value read;
# a setting deleted unannounced (pytest-django's ``del settings.X``) is seen only after its next change.
_read: dict[str, Any] = {}
_UNSET = object()
_changes = 0  # settings changes so far: a value read across a change (another thread) is not kept


def _setting(name: str, default: Any) -> Any:
    value = _read.get(name, _UNSET)
    if value is _UNSET:
        changes = _changes
        value = getattr(settings, name, default)
        if changes == _changes:
            _read[name] = value
    return value


@receiver(setting_changed)
def _forget_changed_setting(*, setting: str, **kwargs: Any) -> None:
    global _changes
    _changes += 1
    _read.pop(setting, None)


def seal_grace() -> dt.timedelta:
    """How long a committed entry may stay unsealed before ``audit_verify`` reports it."""
    return dt.timedelta(seconds=_setting("AUDIT_SEAL_GRACE_SECONDS", 300))


def seal_batch_size() -> int:
    return _setting("AUDIT_SEAL_BATCH_SIZE", 1000)


def seal_lookback() -> int:
    """How many recent chain positions the sealer looks behind for entries that committed out of order."""
    return _setting("AUDIT_SEAL_LOOKBACK", 10000)


def seal_lookback_every() -> dt.timedelta:
    """How often the sealer after a commit also looks behind (per process); ``audit_seal`` always does."""
    return dt.timedelta(seconds=_setting("AUDIT_SEAL_LOOKBACK_EVERY_SECONDS", 10))


SEALING_MODES = ("inline", "background")


def sealing_mode() -> str:
    """``inline``: a writer seals its entries after its commit and returns once they are sealed. ``background``
    (PostgreSQL; SQLite seals inline, it has one writer): a sealer thread of the process seals them, many writes
    to a batch, and the writer returns after its commit (``audit/background_sealing.py``)."""
    mode = str(_setting("AUDIT_SEALING", "inline"))
    if mode not in SEALING_MODES:
        raise ImproperlyConfigured(f"AUDIT_SEALING must be one of {', '.join(SEALING_MODES)}, got {mode!r}")
    return mode


def seal_linger() -> float:
    """With background sealing: how long the first entry of a batch waits for others (seconds)."""
    return float(_setting("AUDIT_SEAL_LINGER_MS", 50)) / 1000


def prepared_statements() -> bool:
    """PostgreSQL: prepare the statements every write runs, once per connection. Off behind a connection pooler
    in transaction mode that does not keep prepared statements (PgBouncer before 1.21)."""
    return bool(_setting("AUDIT_PREPARED_STATEMENTS", True))


def anomaly_scan_every() -> float:
    """With background sealing: seconds between anomaly scans after sealing (a scan after every batch would cost
    a transaction per batch); one process scans for all while its scans keep coming (``sealing._review``)."""
    return float(_setting("AUDIT_ANOMALY_SCAN_EVERY_SECONDS", 1.0))


def max_json_bytes() -> int:
    """Upper bound for the serialised size of ``changes`` and of ``meta`` of one entry."""
    return _setting("AUDIT_MAX_JSON_BYTES", 64 * 1024)


def trusted_proxies() -> list[str]:
    return list(_setting("AUDIT_TRUSTED_PROXIES", []))


def api_page_size() -> int:
    return _setting("AUDIT_API_PAGE_SIZE", 50)


def api_max_page_size() -> int:
    return _setting("AUDIT_API_MAX_PAGE_SIZE", 1000)


def digest_every_entries() -> int:
    """A signed digest is made once this many entries were sealed since the last one..."""
    return _setting("AUDIT_DIGEST_EVERY_ENTRIES", 1000)


def digest_every() -> dt.timedelta:
    """...or once this much time has passed, whichever comes first."""
    return dt.timedelta(minutes=_setting("AUDIT_DIGEST_EVERY_MINUTES", 60))


# --- anomaly rules (audit/anomalies.py) ---------------------------------------------------------------------------

# Codes after which a run of refusals is alarming (SOC 2 CC7.2): "X.*" stands for every code starting "X.".
DEFAULT_PRIVILEGED_ACTIONS: tuple[str, ...] = (
    "ROLE.*",
    "USER.ROLES.SET",
    "USER.UPDATE",
    "USER.CREATE",
    "GROUP.MEMBERS.SET",
    "GROUP.UPDATE",
    "LOCK.FORCE_RELEASE",
    "ACTION.*",
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def anomaly_window() -> dt.timedelta:
    """How close together the events of one anomaly must be (fractions of a minute allowed)."""
    minutes = float(_setting("AUDIT_ANOMALY_WINDOW_MINUTES", 15))
    if not minutes > 0:
        raise ImproperlyConfigured(f"AUDIT_ANOMALY_WINDOW_MINUTES must be more than 0, got {minutes}")
    return dt.timedelta(minutes=minutes)


def anomaly_denied_count() -> int:
    """How many refused attempts (outcome ``denied``) before a privileged action make an anomaly (at least)."""
    count = int(_setting("AUDIT_ANOMALY_DENIED_COUNT", 3))
    if count < 1:
        raise ImproperlyConfigured(f"AUDIT_ANOMALY_DENIED_COUNT must be at least 1, got {count}")
    return count


def anomaly_failed_logins() -> int:
    """Failed logins for one user name or one address within the window make an anomaly once *above* this."""
    limit = int(_setting("AUDIT_ANOMALY_FAILED_LOGINS", 5))
    if limit < 0:
        raise ImproperlyConfigured(f"AUDIT_ANOMALY_FAILED_LOGINS must be 0 or more, got {limit}")
    return limit


def anomaly_privileged_actions() -> tuple[str, ...]:
    return tuple(_setting("AUDIT_ANOMALY_PRIVILEGED_ACTIONS", DEFAULT_PRIVILEGED_ACTIONS))


def anomaly_scan_batch_size() -> int:
    """Entries examined per transaction of the anomaly scan."""
    return int(_setting("AUDIT_ANOMALY_SCAN_BATCH_SIZE", 1000))


def anomaly_scan_after_seal() -> bool:
    """Whether the sealer runs the incremental anomaly scan after sealing (else only ``manage.py audit_scan``)."""
    return bool(_setting("AUDIT_ANOMALY_SCAN_AFTER_SEAL", True))


def working_hours() -> tuple[dt.time, dt.time]:
    """``AUDIT_WORKING_HOURS`` as (start, end): "08:00-18:00"; start inclusive, end exclusive. A start after the
    end spans midnight ("22:00-06:00" for a night shift)."""
    value = _setting("AUDIT_WORKING_HOURS", "08:00-18:00")
    try:
        start, end = (dt.time.fromisoformat(part.strip()) for part in str(value).split("-"))
    except ValueError as exc:
        raise ImproperlyConfigured(f'AUDIT_WORKING_HOURS must look like "08:00-18:00", got {value!r}') from exc
    if start == end:
        raise ImproperlyConfigured(f"AUDIT_WORKING_HOURS starts and ends at the same time: {value!r}")
    return start, end


def working_days() -> frozenset[int]:
    """``AUDIT_WORKING_DAYS`` as weekday numbers (Monday 0): numbers or English day names, default Monday-Friday."""
    value = _setting("AUDIT_WORKING_DAYS", (0, 1, 2, 3, 4))
    days = set()
    for day in value:
        name = str(day).strip().lower()
        if name.isdigit() and 0 <= int(name) <= 6:
            days.add(int(name))
            continue
        matches = [number for number, weekday in enumerate(_WEEKDAYS) if len(name) >= 3 and weekday.startswith(name)]
        if len(matches) != 1:
            raise ImproperlyConfigured(f"AUDIT_WORKING_DAYS: {day!r} is neither 0 (Monday) to 6 nor a day's name")
        days.add(matches[0])
    return frozenset(days)


def working_timezone() -> ZoneInfo:
    """The time zone the working hours are meant in (``AUDIT_WORKING_TIMEZONE``, an IANA name, default UTC)."""
    name = _setting("AUDIT_WORKING_TIMEZONE", "UTC")
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(f"AUDIT_WORKING_TIMEZONE is not a known time zone: {name!r}") from exc


# --- retention and archive (audit/archive.py) ---------------------------------------------------------------------


def retention_days() -> int:
    """How many days entries stay in the database at least; ``audit_archive`` refuses anything younger."""
    days = int(_setting("AUDIT_RETENTION_DAYS", 90))
    if days < 1:
        raise ImproperlyConfigured(f"AUDIT_RETENTION_DAYS must be at least 1, got {days}")
    return days


def archive_dir() -> str:
    """Where ``audit_archive`` writes its signed segments (``AUDIT_ARCHIVE_DIR``)."""
    directory = _setting("AUDIT_ARCHIVE_DIR", "") or str(settings.BASE_DIR / "var" / "archive")
    return str(directory)


# --- privacy (audit/privacy.py) -------------------------------------------------------------------------------------


def personal_meta_keys() -> tuple[str, ...]:
    """Top-level ``meta`` keys that hold personal data of the actor, encrypted like the actor's label and address."""
    return tuple(_setting("AUDIT_PERSONAL_META_KEYS", ("email",)))


def subject_key_cache_seconds() -> float:
    """How long a process writes with a subject key it read before reading it again: the longest time another
    process may go on encrypting under a key that an erasure has just destroyed."""
    return float(_setting("AUDIT_SUBJECT_KEY_CACHE_SECONDS", 60))
