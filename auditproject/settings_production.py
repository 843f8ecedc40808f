"""Production: HTTPS only, secure cookies, HSTS, hashed static files. Everything else as in ``settings``.

    DJANGO_SETTINGS_MODULE=auditproject.settings_production SECRET_KEY=... ALLOWED_HOSTS=audit.example.org \\
        gunicorn auditproject.wsgi

``manage.py check --deploy`` is clean with these settings.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F403
from .settings import DEBUG, SECRET_KEY, env_bool

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production")
if not os.environ.get("SECRET_KEY") or SECRET_KEY.startswith("django-insecure-"):
    raise ImproperlyConfigured("SECRET_KEY must be set to a long random value in production")

# Behind a proxy that terminates TLS, it must set X-Forwarded-Proto; the app then knows a request was HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Audit consoles are not left logged in: a working day at most.
SESSION_COOKIE_AGE = 8 * 3600

# `manage.py collectstatic` copies the static files here, with hashed names.
STATIC_ROOT = BASE_DIR / "staticfiles"  # noqa: F405
WHITENOISE_USE_FINDERS = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Many writers on PostgreSQL: seal in batches behind the writers (see AUDIT_SEALING in settings).
AUDIT_SEALING = os.environ.get("AUDIT_SEALING", "background")
