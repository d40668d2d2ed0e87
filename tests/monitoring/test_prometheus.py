"""A real Prometheus (Debian's `prometheus` package) scrapes the live server's /metrics with an API token, every
second, while a real sync of the demo file cloud runs with one region unreadable; its HTTP API then answers with
the series and values, and the README's alerting rule is pending for that region.

Skipped without /usr/bin/prometheus (apt install prometheus), unless GLANCESYNC_REQUIRE_PROMETHEUS=1 (CI) makes
that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from django_q.conf import Conf

from sync import runs
from sync.models import ApiToken, ClusterHeartbeat, ImageState, RegionRun, SyncRun
from sync.tasks import refresh_status

PROMETHEUS = os.environ.get("GLANCESYNC_PROMETHEUS", "/usr/bin/prometheus")
# The README's alerting rules ("Metrics"); evaluated every second here, so the first is seen pending.
ALERT_RULES = {
    "groups": [
        {
            "name": "glancesync",
            "rules": [
                {
                    "alert": "GlanceSyncRegionUnreadable",
                    "expr": "glancesync_region_readable == 0",
                    "for": "30m",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "GlanceSync cannot list the images of {{ $labels.region }}"},
                },
                {
                    "alert": "GlanceSyncNoSuccessfulSync",
                    "expr": "time() - glancesync_region_last_success_timestamp_seconds > 26 * 3600",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "No successful sync of {{ $labels.region }} for 26 hours"},
                },
            ],
        }
    ]
}

pytestmark = pytest.mark.prometheus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """A Prometheus server of its own (config, data, port) scraping one target; stopped by `stop()`."""

    def __init__(self, folder: Path, target: str, token: str) -> None:
        folder.mkdir()
        (folder / "rules.yml").write_text(yaml.safe_dump(ALERT_RULES))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "glancesync",
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials": token},
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "prometheus.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.wait_for(lambda: self._get("/-/ready"), "Prometheus to be ready")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.read()
        except OSError:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()}"
                ) from None
            return None

    def api(self, path: str, **params) -> list | dict:
        body = json.loads(self._get(f"/api/v1/{path}?{urllib.parse.urlencode(params)}") or b"{}")
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expression: str) -> dict[tuple, float]:
        """{label values other than job and instance: value} of an instant query."""
        found = {}
        for series in self.api("query", query=expression)["result"]:
            labels = {k: v for k, v in series["metric"].items() if k not in ("job", "instance", "__name__")}
            found[tuple(sorted(labels.items()))] = float(series["value"][1])
        return found

    def wait_for(self, predicate, what: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus(live_server, viewer, tmp_path):
    if not shutil.which(PROMETHEUS):
        if os.environ.get("GLANCESYNC_REQUIRE_PROMETHEUS"):
            pytest.fail(f"no prometheus at {PROMETHEUS} (apt install prometheus)")
        pytest.skip(f"no prometheus at {PROMETHEUS} (apt install prometheus)")
    _, token = ApiToken.issue(viewer, "prometheus")
    target = live_server.url.removeprefix("http://").replace("localhost", "127.0.0.1")
    server = Prometheus(tmp_path / "prometheus", target, token)
    yield server
    server.stop()


def test_prometheus_scrapes_the_runs_regions_and_images_of_a_real_sync(prometheus, demo_cloud, monkeypatch):
    up = prometheus.wait_for(lambda: prometheus.query('up{job="glancesync"} == 1'), "a successful scrape")
    assert up == {(): 1.0}  # the bearer token was accepted: a 401 would make up 0

    monkeypatch.setattr(Conf, "SYNC", True)  # the region tasks run at once, in this process
    (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    run = runs.start_run(["Zaragoza", "Sevilla"], dry_run=False, trigger=SyncRun.Trigger.CLI, max_children=1)
    refresh_status()
    ClusterHeartbeat.beat()
    assert RegionRun.objects.get(run=run, region="Zaragoza").state == "failed"

    # The heartbeat was written last: once Prometheus has it, its latest scrape saw everything above.
    age = prometheus.wait_for(lambda: prometheus.query("glancesync_cluster_heartbeat_age_seconds"), "a later scrape")
    assert 0 <= age[()] < 60
    failed = prometheus.query('glancesync_region_tasks_total{state="failed",dry_run="false"}')
    assert failed == {(("dry_run", "false"), ("state", "failed")): 1.0}
    readable = prometheus.query('glancesync_region_readable{target="master"}')
    assert readable[(("region", "Zaragoza"), ("target", "master"))] == 0
    assert readable[(("region", "Sevilla"), ("target", "master"))] == 1
    assert prometheus.query('glancesync_region_tasks_total{state="done",dry_run="false"}') == {
        (("dry_run", "false"), ("state", "done")): 1.0
    }
    images = prometheus.query('glancesync_images{region="Sevilla"} > 0')
    sevilla = Counter(ImageState.objects.filter(region="Sevilla").values_list("status", flat=True))
    assert {dict(labels)["status"]: value for labels, value in images.items()} == dict(sevilla)
    assert prometheus.query("sum(glancesync_images)") == {(): ImageState.objects.count()}
    bytes_done = RegionRun.objects.get(run=run, region="Sevilla").bytes_done
    assert bytes_done > 0 and prometheus.query("glancesync_uploaded_bytes_total") == {(): bytes_done}
    assert set(prometheus.query("glancesync_region_last_success_timestamp_seconds")) == {
        (("region", "Sevilla"), ("target", "master"))
    }
    durations = prometheus.query('glancesync_region_task_duration_seconds_count{dry_run="false"}')
    assert durations == {(("dry_run", "false"),): 2}

    alerts = prometheus.wait_for(lambda: prometheus.api("alerts")["alerts"], "the README's first rule to be pending")
    assert [(a["labels"]["alertname"], a["labels"]["region"], a["state"]) for a in alerts] == [
        ("GlanceSyncRegionUnreadable", "Zaragoza", "pending")  # Sevilla was synced just now: no second alert
    ]
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert [(rule["name"], rule["health"]) for rule in rules] == [
        ("GlanceSyncRegionUnreadable", "ok"), ("GlanceSyncNoSuccessfulSync", "ok"),
    ]  # fmt: skip
