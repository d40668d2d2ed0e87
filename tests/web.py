"""The console served as in production, for the browser and load tests: gunicorn (glancesync_site/gunicorn.conf.py)
and WhiteNoise's collected static files, on the test database, in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.alert_receivers import free_port
from tests.cluster import ROOT, Cluster

_collected: dict[str, Path] = {}


def collected_static(folder: Path) -> Path:
    """`collectstatic` once per test session (hashed, compressed copies, as scripts/run makes them)."""
    if "root" not in _collected:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT, env=dict(os.environ, GLANCESYNC_STATIC_ROOT=str(folder)), check=True, timeout=300,
        )  # fmt: skip
        _collected["root"] = folder
    return _collected["root"]


class Web:
    """gunicorn on the test database and the given cloud (same settings as the qcluster of `Cluster`)."""

    def __init__(self, tmp_path: Path, cloud_url: str, static_root: Path, workers: int = 2, threads: int = 8) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.env = dict(
            Cluster(tmp_path, cloud_url).env,
            GLANCESYNC_STATIC_ROOT=str(static_root), GLANCESYNC_HOST="127.0.0.1", GLANCESYNC_PORT=str(self.port),
            GLANCESYNC_WEB_WORKERS=str(workers), GLANCESYNC_WEB_THREADS=str(threads),
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Web:
        log = open(self.tmp_path / f"gunicorn-{self.port}.log", "w")  # noqa: SIM115 (closed by the process end)
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", "glancesync_site/gunicorn.conf.py",
             "glancesync_site.wsgi"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"gunicorn did not start: {self.logs()[-3000:]}")
            time.sleep(0.2)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def logs(self) -> str:
        return (self.tmp_path / f"gunicorn-{self.port}.log").read_text()

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the arbiter stops its workers
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
