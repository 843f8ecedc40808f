"""Settings of the benchmarks: the project's, plus the bench-only app and django-auditlog (bench/requirements.txt)."""

from auditproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.benchapp.apps.BenchAppConfig", "auditlog"]  # noqa: F405
