"""Fleet benchmark: the status refresh of a generated fleet (20,000 master images x 100 regions by default),
through the console's real path, on SQLite or PostgreSQL.

What is measured, and why
-------------------------
The fleet is bench/plan.py's deterministic file cloud (imported from it, cached in --workdir) with its
configuration written as a legacy glancesync.conf. The database gets it through `import_glancesync_conf`, and the
snapshot through `sync.tasks.refresh_status` (what the 15-minute schedule runs): nothing writes snapshot rows
directly. Three refreshes are timed, in this order, in each run:

* full      - the first refresh: the configuration is imported, the snapshot is empty (emptied before each run);
* unchanged - the same again, nothing changed in the cloud: it should write no ImageState row;
* changed   - the checksum of 1 % of each region's images changed in the region's backup file: it should write
              about 1 % of the rows. The files are then restored and refreshed again (untimed but counted).

Each gives seconds (wall clock), CPU seconds (this process and the processes it forked; on a local PostgreSQL
the server's processes apart), the seconds storing (`sync.snapshot.store_rows`) and building the indexes a first
refresh dropped, and the ImageState rows written (inserted, changed, moved, deleted, as `store_rows` reports
them). The database is SQLite under --workdir (its size is reported), or,
with --database postgres, the PostgreSQL of the GLANCESYNC_DB_* variables (`eval "$(tests/services/start.sh)"`).

Pages can be measured on the same fleet: `ready_fleet()` returns a fleet whose database has the configuration
and a full snapshot (made once, then reused from --workdir), with Django set up for it.

Usage: .venv/bin/python bench/fleet.py [--images 20000] [--regions 100] [--runs 3] [--workdir DIR]
                                       [--database sqlite|postgres] [--changed 0.01] [--refreshes 1-4]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from bench import plan  # noqa: E402  (the generator; pure Python, no Django)
from sync.engine import backup  # noqa: E402

DEFAULT_WORKDIR = Path("/tmp/glancesync-bench-fleet")
PROCESSES = "GLANCESYNC_REFRESH_PROCESSES"  # sync.snapshot.PROCESSES (importing it needs Django set up)
FLEET_VERSION = 1  # bump when the configuration or the database layout of the fleet changes


@dataclass(frozen=True)
class Fleet:
    """A generated fleet: its cloud (a working copy of the generated folder, which the bench changes and
    restores), its glancesync.conf and the database it is imported into."""

    params: plan.Params
    pristine: Path  # bench/plan.py's cached folder: never changed
    cloud: Path
    config: Path
    database: str  # "sqlite" or "postgres"
    data_dir: Path

    @property
    def regions(self) -> list[str]:
        """The backup keys of the regions besides the master (`Region001`, `other:Region096`, ...)."""
        return self.params.region_keys()


# --- the fleet: cloud, configuration, database ------------------------------------------------------------


def config_text() -> str:
    """bench/plan.py's make_config() as a legacy glancesync.conf (the credentials are fake: a file cloud)."""
    return f"""[main]
master_region = {plan.MASTER_REGION}

[master]
credential = fleet,ZmxlZXQtYmVuY2g=,http://keystone.fleet.example:5000/v3,fleet
tenant_id = {plan.MASTER_TENANT}
metadata_set = type, nid
dontupdate = {", ".join(sorted(plan.DONTUPDATE))}
replace = {", ".join(sorted(plan.REPLACE))}
rename = {", ".join(sorted(plan.RENAME))}

[{plan.OTHER}]
credential = fleet-other,ZmxlZXQtYmVuY2g=,http://keystone.fleet.example:5000/v3,other
tenant_id = {plan.OTHER_TENANT}
metadata_condition = {plan.OTHER_CONDITION}
metadata_set = type
replace = any
"""


def make_fleet(params: plan.Params, workdir: Path, database: str) -> Fleet:
    """The fleet's files (generated once), and the environment that points Django at its database and cloud;
    call before django.setup()."""
    pristine = plan.generate(params, workdir / "clouds")
    name = f"fleet-{params.folder_name()}-v{FLEET_VERSION}"
    cloud = workdir / f"{name}-cloud"
    if not (cloud / "COMPLETE").exists():
        shutil.rmtree(cloud, ignore_errors=True)
        shutil.copytree(pristine, cloud)
    config = workdir / f"{name}.conf"
    config.write_text(config_text())
    data_dir = workdir / f"{name}-{database}"
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        GLANCESYNC_DATA_DIR=str(data_dir), GLANCESYNC_CLOUD=f"files:{cloud}", GLANCESYNC_CONFIG=str(config),
        DJANGO_SETTINGS_MODULE="glancesync_site.settings", GLANCESYNC_LOG_LEVEL="WARNING",
    )  # fmt: skip
    if database == "postgres":
        if not os.environ.get("GLANCESYNC_DB_HOST"):
            raise SystemExit('--database postgres: set GLANCESYNC_DB_* first: eval "$(tests/services/start.sh)"')
        os.environ["GLANCESYNC_DB_ENGINE"] = "postgresql"
    else:
        os.environ["GLANCESYNC_DB_ENGINE"] = "sqlite"
        os.environ.pop("GLANCESYNC_DB_NAME", None)
    return Fleet(params, pristine, cloud, config, database, data_dir)


def setup_database(fleet: Fleet) -> None:
    """Django set up, migrated, and the fleet's configuration imported (a no-op once done)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("import_glancesync_conf", str(fleet.config), stdout=io.StringIO())


def ready_fleet(params: plan.Params | None = None, workdir: Path = DEFAULT_WORKDIR, database: str = "sqlite") -> Fleet:
    """A fleet whose database holds its configuration and a full snapshot, with Django set up for it: what a
    page benchmark needs. The snapshot is made once and kept in `workdir` (SQLite) or in the database."""
    fleet = make_fleet(params or plan.Params(20000, 100, 1), workdir, database)
    setup_database(fleet)
    restore(fleet)
    from sync.models import RegionSnapshot

    if RegionSnapshot.objects.filter(error="").count() < len(fleet.regions) + 1:
        refresh()
    return fleet


# --- changing the cloud -----------------------------------------------------------------------------------


def change(fleet: Fleet, share: float) -> int:
    """Give `share` of each region's images (chosen by a seeded draw) a new checksum in the region's file;
    returns how many images changed."""
    changed = 0
    for key in fleet.regions:
        path = fleet.cloud / backup.backup_file_name(key)
        images = backup.read_backup(path, path.name)
        rng = random.Random(f"fleet-change-{key}")
        for image in rng.sample(images, round(len(images) * share)):
            image.checksum = hashlib.md5(f"fleet-change-{key}-{image.id}".encode()).hexdigest()
            changed += 1
        with open(path, "w", newline="", encoding="utf-8") as stream:
            backup.write_backup(images, stream)
    return changed


def restore(fleet: Fleet) -> None:
    """Every region's file as generated."""
    for key in fleet.regions:
        name = backup.backup_file_name(key)
        if (fleet.cloud / name).read_bytes() != (fleet.pristine / name).read_bytes():
            shutil.copyfile(fleet.pristine / name, fleet.cloud / name)


# --- measuring --------------------------------------------------------------------------------------------


@dataclass
class Written:
    """ImageState rows written by one refresh, summed over its regions."""

    inserted: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    seconds: float = 0.0  # spent in store_rows: reading the old rows, diffing, writing (the rows are built before)
    indexing: float = 0.0  # spent building ImageState's indexes a first refresh dropped (build_missing_indexes)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.moved + self.deleted

    def __str__(self) -> str:
        return f"{self.total:,} rows ({self.inserted:,} new, {self.updated:,} changed, {self.moved:,} moved, " + (
            f"{self.deleted:,} removed)"
        )


class RowCounter:
    """Wraps sync.snapshot.store_rows (which a refresh calls by its module name) to add up the rows
    each call reports having written, and the time it takes (the rest of a refresh is listing and the engine)."""

    def __init__(self) -> None:
        from sync import snapshot, snapshot_indexes

        self.written = Written()
        self._original, self._build = snapshot.store_rows, snapshot_indexes.build_missing_indexes
        snapshot.store_rows, snapshot_indexes.build_missing_indexes = self._counting, self._building

    def _building(self) -> None:
        start = time.perf_counter()
        self._build()
        self.written.indexing += time.perf_counter() - start

    def _counting(self, *args, **kwargs):
        start = time.perf_counter()
        stored = self._original(*args, **kwargs)
        self.written.seconds += time.perf_counter() - start
        for name in ("inserted", "updated", "moved", "deleted"):
            setattr(self.written, name, getattr(self.written, name) + getattr(stored, name))
        return stored

    def take(self) -> Written:
        written, self.written = self.written, Written()
        return written


def refresh() -> tuple[float, float]:
    """One refresh_status() of every region: (wall-clock seconds, CPU seconds of this process and of the
    processes it forked: less sensitive to a busy machine; the database's own work is in it on SQLite, not on
    PostgreSQL)."""
    from sync.tasks import refresh_status

    start, cpu = time.perf_counter(), cpu_seconds()
    summary = refresh_status()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if "; " in summary or not summary.startswith("statuses of"):
        raise SystemExit(f"refresh failed: {summary}")
    return seconds, cpu


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (a refresh's forked processes end with it)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def server_cpu() -> float | None:
    """CPU seconds of the PostgreSQL server's processes so far, those that ended included (counted in their
    postmaster's children's time), when it runs on this machine; None on SQLite or a server elsewhere."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    try:
        postmaster = _proc_stat(backend)[1]
        times = _proc_stat(postmaster)
    except OSError:
        return None
    total = sum(times[11:15])  # its own user and system time, and its ended children's
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with suppress(OSError):
                fields = _proc_stat(int(entry.name))
                if fields[1] == postmaster:
                    total += fields[11] + fields[12]
    return total / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[int]:
    """/proc/PID/stat's numbers after the command's name, its state as 0: [1] is the parent's pid, [11:15] the
    user, system, ended children's user and ended children's system times, in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return [0] + [int(value) for value in text[text.rindex(")") + 2 :].split()[1:15]]


def empty_snapshot() -> None:
    """No snapshot, as on a new install. On PostgreSQL the tables are truncated: a DELETE would leave the last
    run's 1.5 M dead rows for the next first refresh's inserts and index builds to wade through."""
    from django.db import connection

    from sync.models import ImageState, RegionSnapshot, StatusRefresh

    models = (ImageState, RegionSnapshot, StatusRefresh)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE " + ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models))
        return
    for model in models:
        model.objects.all().delete()


@dataclass
class Series:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    server: list[float] = field(default_factory=list)

    def add(self, seconds: float, cpu: float, written: Written, server: float | None = None) -> None:
        self.seconds.append(seconds)
        self.cpu.append(cpu)
        self.written.append(written)
        if server is not None:
            self.server.append(server)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def progress(text: str) -> None:
    print(text, flush=True)


REFRESHES = ("full", "unchanged", "changed", "restored")


def measure(
    fleet: Fleet, runs: int, share: float, log: Callable[[str], None] = progress, refreshes: int = len(REFRESHES)
) -> dict[str, Series]:
    """`refreshes`: the first that many of REFRESHES in each run (1: the first full refresh only)."""
    counter = RowCounter()
    results = {name: Series() for name in REFRESHES[:refreshes]}
    for run in range(1, runs + 1):
        restore(fleet)
        empty_snapshot()
        counter.take()
        for name in results:
            if name == "changed":
                log(f"  run {run}: {change(fleet, share):,} images changed in the cloud")
            elif name == "restored":
                restore(fleet)
            own, server = time.process_time(), server_cpu()
            seconds, cpu = refresh()
            own = time.process_time() - own
            server = server_cpu() - server if server is not None else None
            written = counter.take()
            results[name].add(seconds, cpu, written, server)
            timing = f"{seconds:6.1f} s (cpu {cpu:6.1f} s, this process {own:6.1f} s"
            timing += f", server {server:6.1f} s" if server is not None else ""
            timing += f", storing {written.seconds:5.1f} s, indexing {written.indexing:5.1f} s)"
            load = os.getloadavg()[0]  # the machine's load when it ended: wall times depend on it
            log(f"  run {run}: {name:9} {timing}, {written}, load average {load:.1f}")
    restore(fleet)
    return results


def pairs() -> int:
    from sync.models import ImageState

    return ImageState.objects.count()


def database_size(fleet: Fleet) -> str:
    from django.db import connection

    if fleet.database == "sqlite":  # the pages in use: the WAL and the pages freed by emptying it are left out
        with connection.cursor() as cursor:
            used = [cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count")]
            cursor.execute("PRAGMA page_size")
            return f"{(used[0] - used[1]) * cursor.fetchone()[0] / 1e6:,.0f} MB (SQLite pages in use)"

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return f"{cursor.fetchone()[0] / 1e6:,.0f} MB (pg_database_size)"


def report(fleet: Fleet, results: dict[str, Series], runs: int) -> None:
    from django.conf import settings

    print()
    print(f"GlanceSync fleet benchmark (bench/fleet.py), {fleet.database}")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}")
    print(f"Fleet: {fleet.params.images:,} master images x {fleet.params.regions} regions, {pairs():,} pairs")
    print(f"Listing threads (GLANCESYNC_REFRESH_WORKERS): {settings.GLANCESYNC_REFRESH_WORKERS}")
    print(f"Processes ({PROCESSES}): {os.environ.get(PROCESSES) or 'CPUs, when the cloud forks safely'}")
    print(f"Database: {database_size(fleet)}")
    print(f"Medians of {runs} runs:")
    print("| refresh | median | runs | cpu (median) | server cpu (median) | storing (median) | indexing (median) |"
          " rows written |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, series in results.items():
        runs_text = " ".join(f"{s:.1f}" for s in series.seconds)
        cpu, storing = statistics.median(series.cpu), statistics.median(w.seconds for w in series.written)
        indexing = statistics.median(w.indexing for w in series.written)
        server = f"{statistics.median(series.server):.1f} s" if series.server else "-"
        print(
            f"| {name} | {series.median:.1f} s | {runs_text} | {cpu:.1f} s | {server} | {storing:.1f} s "
            f"| {indexing:.1f} s | {series.written[-1]} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000, help="master images (default 20000)")
    parser.add_argument("--regions", type=int, default=100, help="regions besides the master (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the three refreshes (default 3)")
    parser.add_argument("--changed", type=float, default=0.01, help="share of images changed (default 0.01)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="cache folder")
    parser.add_argument(
        "--refreshes", type=int, choices=range(1, len(REFRESHES) + 1), default=len(REFRESHES),
        help="the first N of the refreshes in each run (1: the first full one only; default all 4)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fleet = make_fleet(plan.Params(args.images, args.regions, args.seed), args.workdir, args.database)
    setup_database(fleet)
    results = measure(fleet, args.runs, args.changed, refreshes=args.refreshes)
    report(fleet, results, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
