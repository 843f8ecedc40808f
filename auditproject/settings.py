"""Settings for the compliance console.

Deployment-specific values come from the environment; everything else is fixed here.
App knobs (grace periods, page sizes) are read at call time through ``audit.conf``.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Without SECRET_KEY the development key applies; its "django-insecure-" prefix makes `check --deploy` refuse it.
SECRET_KEY = os.environ.get("SECRET_KEY") or "django-insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")

# Client addresses (or networks, CIDR) of reverse proxies whose X-Forwarded-For is believed.
AUDIT_TRUSTED_PROXIES = env_list("AUDIT_TRUSTED_PROXIES")
# Ed25519 keys of signed digests and exports (PEM files; `manage.py audit_keygen` writes a pair). Without a
# signing key no digest is made; without a verify key the signing key's public half checks them.
AUDIT_SIGNING_KEY_FILE = os.environ.get("AUDIT_SIGNING_KEY_FILE", "")
AUDIT_VERIFY_KEY_FILE = os.environ.get("AUDIT_VERIFY_KEY_FILE", "")
# Retention (PCI DSS 10.5.1, NIST AU-11): entries stay in the database at least this many days; `audit_archive`
# then moves whole months into signed segments in AUDIT_ARCHIVE_DIR (keep those 12 months or more, on WORM storage).
AUDIT_RETENTION_DAYS = int(os.environ.get("AUDIT_RETENTION_DAYS", "90"))
AUDIT_ARCHIVE_DIR = os.environ.get("AUDIT_ARCHIVE_DIR", str(BASE_DIR / "var" / "archive"))
# "inline": a writer returns once its entries are sealed. "background" (PostgreSQL): a sealer thread per process
# seals them in batches a few milliseconds after the commit, and a write costs one transaction.
AUDIT_SEALING = os.environ.get("AUDIT_SEALING", "inline")

INSTALLED_APPS = [
    "auditproject.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files of our own: the docs page loads nothing from a CDN.
    "drf_spectacular_sidecar",
    "guardian",
    "audit",
    "rbac",
    "locks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body (sessions, CSRF's form parsing), after the security headers are in place.
    "auditproject.body_limits.BodySizeLimitMiddleware",
    # Static files (the admin's, the API docs') served by the app itself, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: the context reads request.user lazily when an entry is recorded.
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "auditproject.urls"

# The largest request body any endpoint accepts (a full ingestion batch fits); larger ones get 413. Django's own
# limit on form data is the same, so admin forms answer alike.
REQUEST_BODY_MAX_BYTES = int(os.environ.get("REQUEST_BODY_MAX_BYTES", str(5 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES
WSGI_APPLICATION = "auditproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env() -> dict:
    config = dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of failing on lock upgrade.
        config["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    return config


DATABASES = {"default": database_from_env()}
# A second connection to the same database: denied and failed attempts are written through it when the
# caller's transaction is still open, so that its rollback cannot take the record with it.
DATABASES["audit_independent"] = {**database_from_env(), "TEST": {"MIRROR": "default"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "rbac.backends.RoleBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Development and tests serve static files straight from the apps; production serves the collected, hashed copies.
WHITENOISE_USE_FINDERS = True

# Headers every response carries, whatever the deployment.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

LOGIN_URL = "admin:login"

REST_FRAMEWORK = {
    # Basic first: its WWW-Authenticate header turns "not authenticated" into a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "audit.authentication.AuditedTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "auditproject.parsers.UnicodeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "auditproject.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Compliance console API",
    "DESCRIPTION": "The tamper-evident audit trail: query, verify, and record events from other systems.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from drf_spectacular_sidecar's static files: the docs work offline and leak no visit to a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Every handler escapes control characters in messages: one log record is one line, whatever a caller sent.
    "filters": {"escape_control_characters": {"()": "audit.log_filters.EscapeControlCharacters"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["escape_control_characters"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "audit.request": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# FOIA response letters (audit/export/cover.py). The defaults are placeholders: set the agency's own values.
FOIA_ORGANISATION = os.environ.get("FOIA_ORGANISATION", "Example Agency")
FOIA_PUBLIC_LIAISON = {
    "name": os.environ.get("FOIA_PUBLIC_LIAISON_NAME", "FOIA Public Liaison"),
    "email": os.environ.get("FOIA_PUBLIC_LIAISON_EMAIL", "foia-liaison@example.gov"),
    "phone": os.environ.get("FOIA_PUBLIC_LIAISON_PHONE", "(000) 000-0000"),
}
FOIA_OGIS_CONTACT = os.environ.get(
    "FOIA_OGIS_CONTACT",
    "Office of Government Information Services (OGIS), National Archives and Records Administration, "
    "8601 Adelphi Road - OGIS, College Park, MD 20740-6001, ogis@nara.gov, 202-741-5770",
)
try:
    # 5 U.S.C. 552(a)(6)(A)(i)(III)(aa): a requester has at least 90 days to appeal; a shorter value is raised.
    FOIA_APPEAL_DAYS = max(90, int(os.environ.get("FOIA_APPEAL_DAYS", "90")))
except ValueError as error:
    raise ImproperlyConfigured(f"FOIA_APPEAL_DAYS must be a whole number of days: {error}") from error
FOIA_APPEAL_ADDRESS = os.environ.get(
    "FOIA_APPEAL_ADDRESS",
    "FOIA Appeals Officer, Example Agency, 1 Example Plaza, Washington, DC 20000, foia-appeals@example.gov",
)
