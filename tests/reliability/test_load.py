"""Load: 50 logged-in clients poll the live pages while a sync of several regions runs on a real qcluster.

The web server is a separate `manage.py runserver` process on the test database, so the clients (threads here)
do not share its interpreter. Asserted: zero errors. Reported (printed and written to
test-artifacts/load.json): p50 / p95 latency, and the sync's throughput under load as a ratio to the same sync
without load.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
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

CLIENTS = 50
REGIONS = ["Bilbao", "Malaga", "Sevilla", "Valencia"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def web(transactional_db, tmp_path, demo_cloud, settings):
    """A runserver process and a qcluster on the test database; the demo cloud has 0.3 s per upload."""
    settings.GLANCESYNC_CLOUD = f"files:{demo_cloud}?latency=0.3"
    refresh_status()
    cluster = Cluster(tmp_path, settings.GLANCESYNC_CLOUD)
    cluster.start()
    server, url = start_web(tmp_path, settings.GLANCESYNC_CLOUD, free_port())
    yield url, cluster
    server.terminate()
    server.wait(timeout=15)
    cluster.stop()


def start_web(tmp_path: Path, cloud_url: str, port: int) -> tuple[subprocess.Popen, str]:
    """`manage.py runserver` on the test database, in its own process group; wait until it answers."""
    env = Cluster(tmp_path, cloud_url).env
    with open(tmp_path / f"runserver-{port}.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url), timeout=30, what="runserver")
    return server, url


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/accounts/login/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def reset_cloud(folder: Path) -> None:
    for csv in folder.glob("backup_*.csv"):
        csv.unlink()
    for csv in (DEMO / "cloud").glob("backup_*.csv"):
        shutil.copyfile(csv, folder / csv.name)


def timed_run() -> SyncRun:
    run = runs.start_run(REGIONS, dry_run=False, trigger="cli", max_children=2)
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).finished, timeout=120, what="the run")
    run.refresh_from_db()
    assert run.state == "done", [(r.region, r.error) for r in run.region_runs.all()]
    return run


def wall(run: SyncRun) -> float:
    return (run.finished_at - run.created_at).total_seconds()


def poll(url: str, cookie: str, stop: threading.Event, samples: list, errors: list) -> None:
    session = requests.Session()
    session.cookies.set("sessionid", cookie)
    pages = ["/", "/runs/"]
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


def test_fifty_clients_poll_while_a_sync_runs(web, demo_cloud, django_user_model, capsys):
    url, _ = web
    viewer = user_with_role(django_user_model, "vera", "viewer")
    cookies = []
    for _ in range(CLIENTS):
        client = Client()
        client.force_login(viewer)
        cookies.append(client.cookies["sessionid"].value)

    quiet = wall(timed_run())
    reset_cloud(demo_cloud)

    stop, samples, errors = threading.Event(), [], []
    threads = [threading.Thread(target=poll, args=(url, c, stop, samples, errors)) for c in cookies]
    for thread in threads:
        thread.start()
    try:
        loaded = wall(timed_run())
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
