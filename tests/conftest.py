"""Fixtures shared by the console's tests."""

import shutil
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "sync" / "demo"


@pytest.fixture
def demo_cloud(tmp_path, settings):
    """A scratch copy of the demo cloud, which the console's settings point at (with the demo configuration)."""
    folder = tmp_path / "demo-cloud"
    shutil.copytree(DEMO / "cloud", folder)
    settings.GLANCESYNC_CLOUD = f"files:{folder}"
    settings.GLANCESYNC_CONFIG_FILE = str(DEMO / "glancesync.conf")
    return folder


ROLE_PERMISSIONS = {"viewer": ["view_console"], "operator": ["view_console", "operate_console"]}


def role_group(role: str):
    """The role's group, made again if a transactional test flushed the one the migration created."""
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name=role)
    if created:
        group.permissions.add(*Permission.objects.filter(codename__in=ROLE_PERMISSIONS[role]))
    return group


def user_with_role(django_user_model, name: str, role: str, password: str = "unused-in-tests"):
    user = django_user_model.objects.create_user(name, password=password)
    user.groups.add(role_group(role))
    return user


@pytest.fixture
def viewer(django_user_model):
    return user_with_role(django_user_model, "vera", "viewer")


@pytest.fixture
def operator(django_user_model):
    return user_with_role(django_user_model, "otto", "operator")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on loopback, which Django's SMTP backend sends the alert e-mails to."""
    from tests.alert_receivers import SmtpServer

    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


@pytest.fixture
def webhook():
    """A real HTTP receiver on loopback that answers 200 (set `statuses` / `delay` to make it fail)."""
    from tests.alert_receivers import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


def pytest_configure(config):
    """Pages render with the plain static storage: the hashed one needs `collectstatic`, which scripts/run and the
    tests of serving (tests/test_serving.py) run themselves."""
    from django.conf import settings

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.STATIC_ROOT = None  # nothing collected: WhiteNoise serves nothing from it (and does not warn)
    # Tests read the overview right after changing the database: no shared table (tests/test_overview.py tests it).
    settings.GLANCESYNC_PAGE_CACHE_SECONDS = 0
    # Users are made in most tests: hashing their passwords at the real cost was a fifth of the suite's time.
    settings.PASSWORD_HASHERS = ["tests.hashers.OneIterationPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]
