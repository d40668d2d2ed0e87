"""Load: 100 logged-in clients poll the live pages while a sync of several regions runs on a real qcluster.

The web server is gunicorn with WhiteNoise (tests/web.py), as scripts/run and production serve the console, in
its own processes on the test database. Each client polls like the pages' htmx does, every 2 s, one of the two
live pages an operator watches during a sync: half of them the overview's table, half the run's page.
Asserted: zero errors. Reported (printed and written to test-artifacts/load.json): p50 / p95 latency (goal:
p95 <= 500 ms on 2 CPUs shared with the cluster and the clients), and the sync's throughput under load as a
ratio to the same sync without load.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests
from django.test import Client

from sync import runs
from sync.models import SyncRun
from sync.tasks import refresh_status
from tests.cluster import DEMO, ROOT, Cluster, wait_for
from tests.conftest import user_with_role
from tests.web import Web, collected_static

CLIENTS = 100
POLL_SECONDS = 2  # hx-trigger="every 2s" on the live pages
REGIONS = ["Bilbao", "Malaga", "Sevilla", "Valencia"]


@pytest.fixture
def web(transactional_db, tmp_path, tmp_path_factory, demo_cloud, settings):
    """gunicorn and a qcluster on the test database; the demo cloud has 0.3 s per upload."""
    settings.GLANCESYNC_CLOUD = f"files:{demo_cloud}?latency=0.3"
    refresh_status()
    cluster = Cluster(tmp_path, settings.GLANCESYNC_CLOUD)
    cluster.start()
    server = Web(tmp_path, settings.GLANCESYNC_CLOUD, collected_static(tmp_path_factory.mktemp("static"))).start()
    yield server.url, cluster
    server.stop()
    cluster.stop()


def reset_cloud(folder: Path) -> None:
    for csv in folder.glob("backup_*.csv"):
        csv.unlink()
    for csv in (DEMO / "cloud").glob("backup_*.csv"):
        shutil.copyfile(csv, folder / csv.name)


def start_run() -> SyncRun:
    return runs.start_run(REGIONS, dry_run=False, trigger="cli", max_children=2)


def finished(run: SyncRun) -> SyncRun:
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).finished, timeout=120, what="the run")
    run.refresh_from_db()
    assert run.state == "done", [(r.region, r.error) for r in run.region_runs.all()]
    return run


def wall(run: SyncRun) -> float:
    return (run.finished_at - run.created_at).total_seconds()


def poll(url: str, page: str, cookie: str, stop: threading.Event, samples: list, errors: list) -> None:
    """One client with one live page open: htmx re-reads its polled part every POLL_SECONDS."""
    session = requests.Session()
    session.cookies.set("sessionid", cookie)
    pages = [page]
    stop.wait(POLL_SECONDS * random.random())  # the clients do not all poll at the same instant
    while not stop.is_set():
        for page in pages:
            start = time.perf_counter()
            try:
                response = session.get(url + page, headers={"HX-Request": "true"}, timeout=30)
                if response.status_code not in (200, 286):
                    errors.append(f"{page}: HTTP {response.status_code}")
            except requests.RequestException as error:
                errors.append(f"{page}: {type(error).__name__}")
                continue
            samples.append(time.perf_counter() - start)
        stop.wait(POLL_SECONDS)


def test_a_hundred_clients_poll_while_a_sync_runs(web, demo_cloud, django_user_model, capsys):
    url, _ = web
    viewer = user_with_role(django_user_model, "vera", "viewer")
    cookies = []
    for _ in range(CLIENTS):
        client = Client()
        client.force_login(viewer)
        cookies.append(client.cookies["sessionid"].value)

    quiet = wall(finished(start_run()))
    reset_cloud(demo_cloud)

    stop, samples, errors = threading.Event(), [], []
    run = start_run()
    threads = [  # half of them watch the overview, half the run's page
        threading.Thread(target=poll, args=(url, ("/", f"/runs/{run.pk}/")[i % 2], c, stop, samples, errors))
        for i, c in enumerate(cookies)
    ]
    for thread in threads:
        thread.start()
    try:
        loaded = wall(finished(run))
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    latencies = sorted(samples)
    figures = {
        "clients": CLIENTS,
        "requests": len(samples),
        "errors": len(errors),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "sync_without_load_s": round(quiet, 2),
        "sync_under_load_s": round(loaded, 2),
        "throughput_ratio": round(quiet / loaded, 2),
    }
    artifacts = Path(os.environ.get("GLANCESYNC_ARTIFACTS_DIR", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "load.json").write_text(json.dumps(figures, indent=2))
    with capsys.disabled():
        print(f"\nload: {figures}")
    assert errors == []
    assert len(samples) > CLIENTS * 2
