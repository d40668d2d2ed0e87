"""Parallel regions benchmark: runs of 8 regions through a real qcluster, with max_children 1, 2 and 4.

Usage: .venv/bin/python bench/parallel.py [--runs 3] [--images 5] [--latency 0.4]

A file cloud (a temporary folder) has a master region with --images images and 8 empty regions; every upload
sleeps --latency seconds (the file cloud's simulated latency). Each measurement resets the cloud, starts a run
(sync.runs.start_run) on a temporary SQLite database served by one `manage.py qcluster` with 4 workers (the
ORM broker, as the embedded default), and takes the run's wall time from its database row (created -> finished).

Reports medians of --runs: one region alone (t1), then 8 regions with k = 1, 2, 4, and the ratio of each to
8/k x t1, the time perfect parallelism would take. Goal (issue #5): ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGIONS = [f"Region{i}" for i in range(1, 9)]
CONFIG = "[main]\nmaster_region = Master\n\n[master]\nuser = bench\npassword = bench\ntenant = bench\nkeystone_url = http://keystone.invalid:5000/v3\n"


def write_cloud(folder: Path, images: int) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    rows = [
        f"Master,image{i:02d},id{i:02d},active,{(i + 1) * 1024**2},c{i:02d},benchid,True,{{}}" for i in range(images)
    ]
    (folder / "backup_Master.csv").write_text("\r\n".join(rows) + "\r\n")
    for region in REGIONS:
        (folder / f"backup_{region}.csv").write_text("")


def wall_time(regions: list[str], max_children: int) -> float:
    from sync.models import SyncRun
    from sync.runs import start_run

    run = start_run(regions, dry_run=False, trigger=SyncRun.Trigger.CLI, started_by="bench", max_children=max_children)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.finished:
            if run.state != "done":
                errors = list(run.region_runs.exclude(state="done").values_list("region", "error"))
                raise SystemExit(f"run #{run.pk} ended {run.state}: {errors}")
            return (run.finished_at - run.created_at).total_seconds()
        time.sleep(0.05)
    raise SystemExit(f"run #{run.pk} did not finish in 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="glancesync-bench-parallel-"))
    cloud = work / "cloud"
    (work / "glancesync.conf").write_text(CONFIG)
    os.environ.update(
        GLANCESYNC_DATA_DIR=str(work / "data"),
        GLANCESYNC_CLOUD=f"files:{cloud}?latency={args.latency}",
        GLANCESYNC_CONFIG=str(work / "glancesync.conf"),
        GLANCESYNC_WORKERS="4",
        GLANCESYNC_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="glancesync_site.settings",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    with open(work / "qcluster.log", "w") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        results = measure(cloud, args.images, args.runs)
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def measure(cloud: Path, images: int, runs: int) -> dict[str, list[float]]:
    cases = [("t1", REGIONS[:1], 1), ("k=1", REGIONS, 1), ("k=2", REGIONS, 2), ("k=4", REGIONS, 4)]
    write_cloud(cloud, images)
    wall_time(REGIONS, 4)  # warm-up: every worker imports the project once, outside the measurements
    results: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(runs):
        for label, regions, k in cases:  # interleaved, so a noisy moment hits every case alike
            write_cloud(cloud, images)
            results[label].append(wall_time(regions, k))
    return results


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    t1 = statistics.median(results["t1"])
    print(
        f"8 regions x {args.images} uploads of {args.latency} s each; one qcluster with 4 workers "
        f"(SQLite + ORM broker); {os.cpu_count()} CPUs; medians of {args.runs}"
    )
    print(f"  one region alone: t1 = {t1:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in results['t1'])})")
    for k in (1, 2, 4):
        wall = statistics.median(results[f"k={k}"])
        ideal = 8 / k * t1
        ratio = wall / ideal
        verdict = "PASS" if ratio <= 1.2 else "FAIL"
        runs = ", ".join(f"{t:.2f}" for t in results[f"k={k}"])
        print(f"  max_children={k}: {wall:6.2f} s, ideal 8/{k} x t1 = {ideal:6.2f} s, ratio {ratio:.2f} ({verdict})")
        print(f"                  runs: {runs}")


if __name__ == "__main__":
    main()
