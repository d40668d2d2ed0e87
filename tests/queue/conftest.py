"""A real `manage.py qcluster` process on the test database (SQLite file, or PostgreSQL + Redis when the
GLANCESYNC_DB_ENGINE / GLANCESYNC_REDIS_URL variables select them), with a scratch copy of the demo cloud."""

import os

import pytest

from tests.cluster import LEASE_SECONDS, Cluster


@pytest.fixture
def demo_cloud(demo_cloud, settings):
    settings.GLANCESYNC_LEASE_SECONDS = LEASE_SECONDS
    return demo_cloud


@pytest.fixture
def cluster(transactional_db, tmp_path, demo_cloud, settings):
    """One cluster started; `cluster.start()` adds another. The cloud has 0.3 s of latency per upload."""
    settings.GLANCESYNC_CLOUD = f"files:{demo_cloud}?latency=0.3"
    if os.environ.get("GLANCESYNC_REDIS_URL"):  # tasks of an earlier test run must not reach this cluster
        import redis

        redis.Redis.from_url(os.environ["GLANCESYNC_REDIS_URL"]).flushdb()
    running = Cluster(tmp_path, settings.GLANCESYNC_CLOUD)
    running.start()
    yield running
    running.stop()
