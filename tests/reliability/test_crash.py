"""Crashes: the web server (gunicorn, every process of it) killed (-9) in the middle of requests that start runs;
after a restart nothing is half-written and nothing is stuck. (A worker killed mid-upload:
tests/queue/test_cluster.py, with its recovery.)"""

from __future__ import annotations

import os
import signal
import threading

import pytest
import requests
from django.test import Client

from sync.models import RegionRun, SyncRun
from sync.tasks import refresh_status
from tests.cluster import wait_for
from tests.conftest import user_with_role
from tests.reliability.test_load import REGIONS
from tests.web import Web, collected_static

pytestmark = pytest.mark.django_db(transaction=True)


def test_killing_the_web_process_mid_request_leaves_no_half_written_run(
    tmp_path, tmp_path_factory, demo_cloud, settings, django_user_model
):
    refresh_status()
    client = Client()
    client.force_login(user_with_role(django_user_model, "otto", "operator"))
    cookie, csrf = client.cookies["sessionid"].value, "x" * 32
    static = collected_static(tmp_path_factory.mktemp("static"))
    server = Web(tmp_path, settings.GLANCESYNC_CLOUD, static).start()
    url = server.url

    def hammer(region: str) -> None:
        session = requests.Session()
        session.cookies.update({"sessionid": cookie, "csrftoken": csrf})
        headers = {"X-CSRFToken": csrf, "Referer": url}
        for _ in range(20):
            try:
                session.post(f"{url}/runs/start/", data={"region": region, "dry_run": "1"}, headers=headers, timeout=5)
                RegionRun.objects.filter(region=region).update(state="done")  # let the next request in
            except requests.RequestException:
                return

    threads = [threading.Thread(target=hammer, args=(region,)) for region in REGIONS]
    for thread in threads:
        thread.start()
    wait_for(lambda: SyncRun.objects.count() >= 4, timeout=30, what="some runs to be started")
    os.killpg(server.process.pid, signal.SIGKILL)  # the arbiter and its workers at once
    server.process.wait()
    for thread in threads:
        thread.join()

    # Every run the dead process recorded is whole: one RegionRun per region asked for.
    for run in SyncRun.objects.all():
        assert run.region_runs.count() == len(run.regions), run
    server = Web(tmp_path, settings.GLANCESYNC_CLOUD, static).start()
    try:
        session = requests.Session()
        session.cookies.update({"sessionid": cookie})
        assert session.get(f"{server.url}/runs/", timeout=10).status_code == 200  # the restarted site works
    finally:
        server.stop()
