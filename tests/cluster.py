"""A real `manage.py qcluster` process on the test database, for the queue and browser tests."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sync" / "demo"
LEASE_SECONDS = 3


class Cluster:
    """Start `manage.py qcluster` processes on the test database; stop them all at the end."""

    def __init__(self, tmp_path: Path, cloud_url: str) -> None:
        from django.db import connection

        self.tmp_path = tmp_path
        self.env = dict(
            os.environ,
            GLANCESYNC_DB_NAME=str(connection.settings_dict["NAME"]),
            GLANCESYNC_CLOUD=cloud_url,
            GLANCESYNC_CONFIG=str(DEMO / "glancesync.conf"),
            GLANCESYNC_LEASE_SECONDS=str(LEASE_SECONDS),
            GLANCESYNC_WORKERS="4",
        )
        self.processes: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        log = open(self.tmp_path / f"qcluster-{len(self.processes)}.log", "w")  # noqa: SIM115 (closed by the process end)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("qcluster-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()  # the cluster's main process stops its workers itself (~2 s)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(ProcessLookupError):  # a worker its main process left behind
                os.killpg(process.pid, signal.SIGKILL)


def wait_for(predicate, timeout: float = 60, what: str = "the condition", cluster: Cluster | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    logs = cluster.logs()[-3000:] if cluster else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
