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


def _user_with_role(django_user_model, name: str, role: str):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(name, password="unused-in-tests")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(django_user_model):
    return _user_with_role(django_user_model, "vera", "viewer")


@pytest.fixture
def operator(django_user_model):
    return _user_with_role(django_user_model, "otto", "operator")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client
