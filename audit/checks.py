"""System checks of the audit app's settings: a typo must stop `manage.py check` / `runserver`, not silently switch
off an anomaly rule at the first scan."""

from collections.abc import Callable
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf

_ANOMALY_SETTINGS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("AUDIT_ANOMALY_WINDOW_MINUTES", conf.anomaly_window),
    ("AUDIT_ANOMALY_DENIED_COUNT", conf.anomaly_denied_count),
    ("AUDIT_ANOMALY_FAILED_LOGINS", conf.anomaly_failed_logins),
    ("AUDIT_WORKING_HOURS", conf.working_hours),
    ("AUDIT_WORKING_DAYS", conf.working_days),
    ("AUDIT_WORKING_TIMEZONE", conf.working_timezone),
)


@checks.register()
def check_anomaly_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for number, (name, getter) in enumerate(_ANOMALY_SETTINGS, start=1):
        try:
            getter()
        except (ImproperlyConfigured, TypeError, ValueError) as exc:
            errors.append(checks.Error(f"{name}: {exc}", id=f"audit.E{number:03d}"))
    return errors
