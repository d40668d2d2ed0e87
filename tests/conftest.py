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
