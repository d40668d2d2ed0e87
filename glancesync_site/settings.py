"""Django settings for the GlanceSync console.

Everything deployment-specific comes from environment variables with safe defaults; the README's
"Configuration" section lists them. Nothing secret is hard-coded: without DJANGO_SECRET_KEY a key is
generated on first run into <data dir>/secret_key (mode 0600).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from glancesync_site.environment import (
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_role_mapping,
    env_str,
    load_or_create_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Local state (SQLite database, generated secret key, collected static files, demo cloud).
DATA_DIR = Path(env_str("GLANCESYNC_DATA_DIR", str(BASE_DIR / "var"))).expanduser().resolve()
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

# --- Core ------------------------------------------------------------------------------------------------

SECRET_KEY = env_str("DJANGO_SECRET_KEY") or load_or_create_secret_key(DATA_DIR / "secret_key")

DEBUG = env_bool("DJANGO_DEBUG", default=False)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# Needed behind an HTTPS reverse proxy whose public origin differs from the Host header.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    # Not "ninja": the API (sync/api.py) needs no app of it (no Swagger UI, so none of its templates or static
    # files), and listing it would import ninja and pydantic in every process, ~0.35 s of each manage.py command;
    # the URLconf imports it where the web serves.
    "sync.apps.SyncAppConfig",
    "csp",
    "axes",  # last, as django-axes asks
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, before anything that needs a session
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "sync.middleware.api_errors",
    "axes.middleware.AxesMiddleware",  # answers a locked-out login with the lockout page
]

ROOT_URLCONF = "glancesync_site.urls"
WSGI_APPLICATION = "glancesync_site.wsgi.application"
ASGI_APPLICATION = "glancesync_site.asgi.application"

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

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Database --------------------------------------------------------------------------------------------

_DB_ENGINE = env_str("GLANCESYNC_DB_ENGINE", "sqlite").lower()

if _DB_ENGINE in {"sqlite", "sqlite3"}:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # GLANCESYNC_DB_NAME: another database file (the queue tests point a qcluster at the test database).
            "NAME": env_str("GLANCESYNC_DB_NAME") or DATA_DIR / "glancesync.sqlite3",
            # A file, not memory: the queue tests share the test database with a qcluster process.
            "TEST": {"NAME": DATA_DIR / "test_glancesync.sqlite3"},
            "OPTIONS": {
                # WAL lets the web pages read while a task worker writes; IMMEDIATE transactions take the
                # write lock up front so concurrent writers wait (up to `timeout` s) instead of failing
                # with "database is locked" when upgrading a read lock. synchronous=NORMAL: under WAL a commit
                # no longer waits for an fsync (only a checkpoint does); a power cut may lose the last
                # transactions, never the database's consistency. Django runs each statement of the command.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
elif _DB_ENGINE in {"postgresql", "postgres"}:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env_str("GLANCESYNC_DB_NAME", "glancesync"),
            "USER": env_str("GLANCESYNC_DB_USER"),
            "PASSWORD": env_str("GLANCESYNC_DB_PASSWORD"),
            "HOST": env_str("GLANCESYNC_DB_HOST"),
            "PORT": env_str("GLANCESYNC_DB_PORT"),
        }
    }
else:
    raise ImproperlyConfigured(f"GLANCESYNC_DB_ENGINE={_DB_ENGINE!r} is not supported (use 'sqlite' or 'postgresql')")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication --------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "sync:overview"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation --------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("GLANCESYNC_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("GLANCESYNC_STATIC_ROOT", str(DATA_DIR / "static"))).expanduser().resolve()
# `collectstatic` (scripts/run does it) writes hashed, compressed copies; WhiteNoise serves them with a cache
# lifetime of a year, since a changed file gets a new name. The development server (GLANCESYNC_DEV) and the tests
# (tests/conftest.py) use the plain storage, which needs no collectstatic.
DEV = env_bool("GLANCESYNC_DEV", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEV
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Background tasks (django-q2) ------------------------------------------------------------------------

# A region's sync can upload for hours: the task timeout is a generous backstop, and a dead worker is
# detected by its lease instead (GLANCESYNC_LEASE_SECONDS). `retry` exceeds `timeout` so the ORM broker
# never hands a task still running to a second worker; a task delivered twice is a no-op anyway.
_TASK_TIMEOUT = env_int("GLANCESYNC_TASK_TIMEOUT", 24 * 3600)
Q_CLUSTER = {
    "name": "glancesync",
    "orm": "default",
    "workers": env_int("GLANCESYNC_WORKERS", 4),
    "timeout": _TASK_TIMEOUT,
    "retry": _TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "catch_up": False,  # a cluster that was down fires a missed schedule once, not once per missed slot
}
_REDIS_URL = env_str("GLANCESYNC_REDIS_URL")
if _REDIS_URL:
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = _REDIS_URL

# --- GlanceSync ------------------------------------------------------------------------------------------

# How long a region stays locked after its worker's last heartbeat (renewed every quarter of it).
GLANCESYNC_LEASE_SECONDS = env_int("GLANCESYNC_LEASE_SECONDS", 60)
# A region task enqueued this long ago and not started is enqueued again (a broker may lose tasks; a second
# delivery is a no-op). Longer than tasks usually wait for a free worker, or copies pile up in the queue.
GLANCESYNC_REDISPATCH_SECONDS = env_int("GLANCESYNC_REDISPATCH_SECONDS", 900)
# /readyz: a task cluster beats every minute (the recovery sweep); the snapshot is refreshed every 15 minutes.
GLANCESYNC_READY_HEARTBEAT_SECONDS = env_int("GLANCESYNC_READY_HEARTBEAT_SECONDS", 180)
GLANCESYNC_READY_REFRESH_SECONDS = env_int("GLANCESYNC_READY_REFRESH_SECONDS", 3600)
# A console or admin refresh request not finished this long after it was asked for counts as lost (its task was
# lost, or its worker died): the pages stop saying "Refreshing". Generous: it may wait for a worker behind syncs.
GLANCESYNC_REFRESH_TIMEOUT_SECONDS = env_int("GLANCESYNC_REFRESH_TIMEOUT_SECONDS", 3600)
# A status refresh lists this many regions at once (the listings are network calls on an OpenStack), so a slow or
# unreachable region costs its own timeout, not the sum of all; the database writes stay in one thread.
GLANCESYNC_REFRESH_WORKERS = max(1, env_int("GLANCESYNC_REFRESH_WORKERS", 8))
# Processes that list and compute a refresh's regions on a cloud that forks safely (the file cloud, whose listing is
# CPU work); the task's process keeps every query and the storing. 0: one per usable CPU once a refresh has enough
# pairs to compute for forking to pay; 1: none.
GLANCESYNC_REFRESH_PROCESSES = max(0, env_int("GLANCESYNC_REFRESH_PROCESSES", 0))
# SQLite's page cache (MiB) of the connection that stores a refresh, while it does: a fleet's snapshot indexes are
# hundreds of MB, and each region's rows go in all over them; with SQLite's 2 MiB default, most of a first refresh
# was pages evicted and read again. Other connections keep the default.
GLANCESYNC_REFRESH_SQLITE_CACHE_MB = max(2, env_int("GLANCESYNC_REFRESH_SQLITE_CACHE_MB", 256))
# Sync runs (with their logs), status refreshes, refresh requests and alerts older than this many days are deleted
# by the daily prune (sync/retention.py), all but what the pages, /metrics and /readyz still read. 0: keep all.
GLANCESYNC_HISTORY_DAYS = max(0, env_int("GLANCESYNC_HISTORY_DAYS", 90))
# The overview's regions table is rendered at most once per this many seconds per web process and shared by every
# viewer polling it (0: every request renders it). Its polls come every 2 s, so 1 s of age is never seen.
GLANCESYNC_PAGE_CACHE_SECONDS = env_int("GLANCESYNC_PAGE_CACHE_SECONDS", 1)

# --- Alerts (issue #14) ----------------------------------------------------------------------------------

# E-mail channels send through this SMTP server (Django's SMTP backend); the password lives only here.
EMAIL_BACKEND = env_str("GLANCESYNC_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("GLANCESYNC_SMTP_HOST", "localhost")
EMAIL_PORT = env_int("GLANCESYNC_SMTP_PORT", 25)
EMAIL_HOST_USER = env_str("GLANCESYNC_SMTP_USER", "")
EMAIL_HOST_PASSWORD = env_str("GLANCESYNC_SMTP_PASSWORD", "")
EMAIL_USE_TLS = env_bool("GLANCESYNC_SMTP_STARTTLS", default=False)
EMAIL_USE_SSL = env_bool("GLANCESYNC_SMTP_SSL", default=False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("GLANCESYNC_SMTP_STARTTLS and GLANCESYNC_SMTP_SSL exclude each other: choose one")
EMAIL_TIMEOUT = env_int("GLANCESYNC_ALERT_TIMEOUT_SECONDS", 10)
DEFAULT_FROM_EMAIL = env_str("GLANCESYNC_ALERT_FROM", "glancesync@localhost")
# Alerts link to the console's pages when its public address is known (e.g. https://glancesync.example.org).
GLANCESYNC_CONSOLE_URL = env_str("GLANCESYNC_CONSOLE_URL", "").rstrip("/")
# A delivery is tried this many times in all; retry n waits GLANCESYNC_ALERT_RETRY_SECONDS * 4**(n-1).
GLANCESYNC_ALERT_ATTEMPTS = env_int("GLANCESYNC_ALERT_ATTEMPTS", 4)
GLANCESYNC_ALERT_RETRY_SECONDS = env_int("GLANCESYNC_ALERT_RETRY_SECONDS", 60)
GLANCESYNC_ALERT_TIMEOUT_SECONDS = EMAIL_TIMEOUT  # webhook requests too

# /metrics answers, without a token, to clients whose address (REMOTE_ADDR: not behind a proxy) is in these.
GLANCESYNC_METRICS_NETWORKS = env_networks("GLANCESYNC_METRICS_NETWORKS")

# Where images live: "files:<folder of backup CSVs>" (the demo cloud) or "openstack".
GLANCESYNC_CLOUD = env_str("GLANCESYNC_CLOUD", f"files:{DATA_DIR / 'demo-cloud'}")
# Legacy glancesync.conf used by the command line (and to seed the console).
GLANCESYNC_CONFIG_FILE = env_str("GLANCESYNC_CONFIG", str(BASE_DIR / "sync" / "demo" / "glancesync.conf"))

# --- Logging ---------------------------------------------------------------------------------------------

LOG_LEVEL = env_str("GLANCESYNC_LOG_LEVEL", "INFO").upper()
if not isinstance(logging.getLevelName(LOG_LEVEL), int):
    raise ImproperlyConfigured(
        f"GLANCESYNC_LOG_LEVEL={LOG_LEVEL!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # django-axes says INFO at every start and login; its lockouts are warnings. Logins are in the audit log.
    "loggers": {"axes": {"level": "WARNING"}},
}

# --- Content-Security-Policy (django-csp) ----------------------------------------------------------------

# Scripts only from our own static files: no inline script or handler runs, so injected markup cannot run code.
# Inline styles stay allowed: progress bars set their width, and Bootstrap's and htmx's scripts set styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],  # Bootstrap's icons are data: SVGs
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Keystone login (issue #16) ---------------------------------------------------------------------------

# The login form also accepts Keystone credentials, checked against the master target's Keystone (auth URL, API
# version, TLS settings, user domain, project) when the console's cloud is OpenStack; each variable below that is
# set replaces one of those. The console's roles come from the user's Keystone roles in that project, at every login.
GLANCESYNC_KEYSTONE_LOGIN = env_bool("GLANCESYNC_KEYSTONE_LOGIN", default=True)
GLANCESYNC_KEYSTONE_URL = env_str("GLANCESYNC_KEYSTONE_URL")
GLANCESYNC_KEYSTONE_PROJECT = env_str("GLANCESYNC_KEYSTONE_PROJECT")
GLANCESYNC_KEYSTONE_PROJECT_DOMAIN = env_str("GLANCESYNC_KEYSTONE_PROJECT_DOMAIN")
GLANCESYNC_KEYSTONE_USER_DOMAIN = env_str("GLANCESYNC_KEYSTONE_USER_DOMAIN")  # the form's default domain
GLANCESYNC_KEYSTONE_CACERT = env_str("GLANCESYNC_KEYSTONE_CACERT")
GLANCESYNC_KEYSTONE_INSECURE = env_bool("GLANCESYNC_KEYSTONE_INSECURE", default=None)  # None: the master target's
# Keystone role name -> console role (viewer, operator, or staff: operator and the admin site).
GLANCESYNC_KEYSTONE_ROLES = env_role_mapping(
    "GLANCESYNC_KEYSTONE_ROLES", "reader=viewer,member=operator,admin=staff", ("viewer", "operator", "staff")
)
# A Keystone user's session ends when its token would (Keystone's token lifetime), or after this many seconds if
# that comes first; 0: the token's lifetime only.
GLANCESYNC_KEYSTONE_SESSION_SECONDS = env_int("GLANCESYNC_KEYSTONE_SESSION_SECONDS", 0)
GLANCESYNC_KEYSTONE_TIMEOUT = env_int("GLANCESYNC_KEYSTONE_TIMEOUT", 10)  # seconds per request to Keystone
# Off: while Keystone login is on (and a Keystone configured), local passwords log in superusers only (break-glass).
GLANCESYNC_LOCAL_LOGIN = env_bool("GLANCESYNC_LOCAL_LOGIN", default=True)
if GLANCESYNC_KEYSTONE_SESSION_SECONDS < 0:
    raise ImproperlyConfigured("GLANCESYNC_KEYSTONE_SESSION_SECONDS must be 0 (the token's lifetime) or more")
if GLANCESYNC_KEYSTONE_TIMEOUT < 1:
    raise ImproperlyConfigured("GLANCESYNC_KEYSTONE_TIMEOUT must be at least 1 second")

# --- Login throttling (django-axes) -----------------------------------------------------------------------

# After GLANCESYNC_LOGIN_ATTEMPTS failed logins of one user name from one address, that pair is locked out for
# GLANCESYNC_LOGIN_LOCKOUT_MINUTES (the console's and the admin's login alike); a success resets the count. The
# address is REMOTE_ADDR: behind a proxy that is the proxy's, so the lockout is then per user name.
# Then local accounts (Django's ModelBackend, which also gives every user the permissions of its groups), then
# Keystone (sync/keystone_login.py): throttling and the login audit cover both.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "sync.keystone_login.LocalAccountBackend",
    "sync.keystone_login.KeystoneBackend",
]
AXES_FAILURE_LIMIT = env_int("GLANCESYNC_LOGIN_ATTEMPTS", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("GLANCESYNC_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# --- Security --------------------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Templates send the CSRF token in a header (hx-headers), so scripts never need to read the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

HTTPS = env_bool("GLANCESYNC_HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
if HTTPS:
    SECURE_HSTS_SECONDS = env_int("GLANCESYNC_HSTS_SECONDS", 3600)
    # Behind the HTTPS proxy, which must set X-Forwarded-Proto (and pass Host): requests are known to be HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes and scrapers on the inside
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("GLANCESYNC_HSTS_INCLUDE_SUBDOMAINS", default=False)
    # includeSubDomains and preload bind every host of the domain: the domain owner's decision, not the console's.
    SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
