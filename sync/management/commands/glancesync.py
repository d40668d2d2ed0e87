"""`manage.py glancesync`: the original `sync.py` command line, same flags and outputs (spec §5.9)."""

from __future__ import annotations

import contextlib
import gc
import getpass
import io
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from sync.clouds import cloud_from_url
from sync.dbconfig import database_configured, load_db_config_with
from sync.engine.config import load_config, parse_override_items
from sync.engine.glancesync import GlanceSync
from sync.engine.memory import collector_paused
from sync.engine.model import GlanceSyncError, SyncConfig
from sync.engine.regions import build_region_list, parse_region
from sync.engine.reporter import CLIENT_LOGGER, RecordingReporter, Reporter
from sync.models import MasterSettings

DEFAULT_CLOUD = "openstack"


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a CLI run must start fast; `manage.py check` covers the project
    help = "Synchronise Glance images from the master region to other regions (the original sync.py)."

    def add_arguments(self, parser):
        parser.add_argument(
            "regions",
            nargs="*",
            metavar="region",
            help="Region, master:Region, target:Region, or target: for all regions of a target "
            "(default: every region of the master target)",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
        mode.add_argument("--show-status", action="store_true", help="print status,region,image CSV rows")
        mode.add_argument("--show-regions", action="store_true", help="print the regions that would be synced")
        mode.add_argument(
            "--make-backup",
            "--make-backups",
            dest="make_backup",
            action="store_true",
            help="write backup_<region>.csv files (master region included) into backup_glance_<timestamp>",
        )
        parser.add_argument(
            "--parallel",
            action="store_true",
            help="sync regions concurrently (max_children at once), one log file per region in sync_<date>",
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="start a background run on the cluster (manage.py qcluster) instead of syncing here; "
            "it uses the console's configuration",
        )
        parser.add_argument(
            "--config",
            nargs="+",
            action="extend",  # the original kept only the last --config; repeating it now adds up
            metavar="KEY=VALUE",
            default=[],
            help="override configuration: key=value (every section) or section.key=value",
        )
        parser.add_argument(
            "--config-file", metavar="PATH", help="a legacy glancesync.conf (default: the database configuration)"
        )
        parser.add_argument(
            "--cloud",
            metavar="URL",
            help="openstack (default) or files:DIR, a folder of backup CSVs; also GLANCESYNC_CLOUD",
        )

    def handle(self, *args, **options):
        try:
            self._run(options)
        except CommandError:
            raise
        except GlanceSyncError as error:
            raise CommandError(str(error)) from None
        except Exception as error:  # an operator gets one line, never a traceback
            raise CommandError(f"{type(error).__name__}: {error}") from None

    def _run(self, options) -> None:
        if options["queue"]:
            self._queue(options)
            return
        log_stream = self.stderr if options["show_status"] else self.stdout
        reporter = Reporter(_client_logger(log_stream))
        config, cloud_url = _configuration(options)
        cloud = cloud_from_url(cloud_url, images_dir=config.images_dir)
        engine = GlanceSync(config, cloud, reporter)
        regions = build_region_list(options["regions"], config, engine.region_names)
        self._check_regions(engine, config, regions)
        if options["show_status"]:
            failed = self._show_status(engine, regions)
        elif options["show_regions"]:
            failed = self._show_regions(engine, config)
        elif options["make_backup"]:
            failed = self._make_backups(engine, regions)
        elif options["parallel"]:
            failed = self._sync_parallel(engine, regions, options["dry_run"])
        else:
            failed = self._sync_sequential(engine, regions, options["dry_run"])
        if failed:
            raise CommandError(f"failed regions: {', '.join(failed)}")

    def _refuse_with_queue(self, options) -> None:
        """A queued run is made by the cluster with the console's configuration: local choices cannot apply."""
        local = [f"--{o.replace('_', '-')}" for o in ("config_file", "cloud", "config") if options[o]]
        local += [
            f"--{o.replace('_', '-')}" for o in ("show_status", "show_regions", "make_backup", "parallel") if options[o]
        ]
        if local:
            raise CommandError(
                f"--queue cannot be combined with {', '.join(local)}: the cluster runs syncs "
                "(or dry runs) with the console's configuration"
            )

    def _queue(self, options) -> None:
        """Start a background run with the configuration the cluster uses (the console's)."""
        from sync.connect import ConsoleError, build_engine
        from sync.runs import RegionBusy, start_run

        self._refuse_with_queue(options)
        try:
            engine = build_engine(Reporter(_client_logger(self.stdout)))
        except ConsoleError as error:
            raise CommandError(str(error)) from None
        regions = build_region_list(options["regions"], engine.config, engine.region_names)
        self._check_regions(engine, engine.config, regions)
        dry_run = options["dry_run"]
        fullnames = [parse_region(region, engine.config).fullname for region in regions]
        try:
            run = start_run(fullnames, dry_run=dry_run, trigger="cli", started_by=_os_user())
        except RegionBusy as busy:
            raise CommandError(str(busy)) from None
        kind = "Dry run" if dry_run else "Sync"
        self.stdout.write(f"{kind} #{run.pk} queued for {', '.join(fullnames)} (at most {run.max_children} at once).")

    def _check_regions(self, engine: GlanceSync, config: SyncConfig, regions: list[str]) -> None:
        """Refuse unknown targets and regions before doing anything.

        A target whose region list cannot be read is not checked here: its regions fail one by one later,
        so one unreachable Keystone does not stop the other targets.
        """
        known: dict[str, list[str] | None] = {}
        for region in regions:
            ref = parse_region(region, config)
            if ref.target not in known:
                try:
                    known[ref.target] = engine.region_names(ref.target)
                except Exception:  # reported per region when it is processed
                    known[ref.target] = None
            names = known[ref.target]
            if names is not None and ref.name not in names:
                raise CommandError(f"unknown region '{region}' (regions of {ref.target}: {', '.join(names)})")

    def _show_status(self, engine: GlanceSync, regions: list[str]) -> list[str]:
        failed = []
        for region, (records, rows, error) in zip(regions, _region_statuses(engine, regions), strict=True):
            _replay(engine.reporter, records)  # a worker's log, given here in the regions' order
            if error is not None:
                engine.reporter.error(f"{region}: Error retrieving images from region. Cause {error}")
                failed.append(region)
                continue
            self.stdout.write(rows, ending="")
        return failed

    def _show_regions(self, engine: GlanceSync, config: SyncConfig) -> list[str]:
        regions = engine.get_regions()
        for target in config.targets:
            if target != "master":
                regions += engine.get_regions(target)
        self.stdout.write(" ".join(regions))
        return []

    def _make_backups(self, engine: GlanceSync, regions: list[str]) -> list[str]:
        directory = "backup_glance_" + datetime.now().isoformat()
        os.mkdir(directory)
        failed = []
        master = engine.config.master_region
        for region in regions + ([master] if master not in regions else []):
            try:
                engine.backup_region(region, directory)
            except Exception:  # logged by backup_region; the other regions are still backed up
                failed.append(region)
        return failed

    def _sync_sequential(self, engine: GlanceSync, regions: list[str], dry_run: bool) -> list[str]:
        self.stdout.write(f"======Master is {engine.config.master_region}")
        failed = []
        for region in regions:
            self.stdout.write(f"======{region}")
            if not engine.sync_region(region, dry_run=dry_run).ok:
                failed.append(region)
        return failed

    def _sync_parallel(self, engine: GlanceSync, regions: list[str], dry_run: bool) -> list[str]:
        """Up to max_children regions at once, each logging to `sync_<date>_<time>/<region>.txt`."""
        self.stdout.write(f"======Master is {engine.config.master_region}")
        directory = _new_directory(datetime.now().strftime("sync_%Y%m%d_%H%M"))
        failed = []
        with ThreadPoolExecutor(max_workers=engine.config.max_children) as pool:
            futures = {pool.submit(_sync_to_file, engine, r, dry_run, directory): r for r in regions}
            for future in as_completed(futures):
                region = futures[future]
                if future.result():
                    self.stdout.write(f"Region {region} has finished")
                else:
                    self.stdout.write(f"Region {region} has finished with errors")
                    failed.append(region)
        self.stdout.write("All is done.")
        return failed


# A region's status as _show_status prints it: the log records of a worker (none when logged as they come),
# the CSV rows, and the error that stopped it.
RegionRows = tuple[list[tuple[int, str]], str, str | None]
STATUS_WORKERS = "GLANCESYNC_STATUS_WORKERS"  # processes computing --show-status regions; 1: none
_forked_engine: GlanceSync | None = None  # the engine worker processes inherit when forked


def _region_statuses(engine: GlanceSync, regions: list[str]) -> Iterator[RegionRows]:
    """Each region's status, in the regions' order. The regions of a cloud that forks safely (a folder of
    files: no connection nor thread to share) are computed by worker processes forked once the master and
    the selections are known, up to one per CPU: a big fleet's status is CPU-bound, reading and matching."""
    workers = _status_workers(engine, len(regions))
    if workers <= 1:
        return _sequential_statuses(engine, regions)
    return _forked_statuses(engine, regions, workers)


def _sequential_statuses(engine: GlanceSync, regions: list[str]) -> Iterator[RegionRows]:
    """The regions one after another in this process. On a cloud that forks safely (a folder of files) the
    cyclic collector stays off for them all, as in the workers: re-enabled after each region's paused
    blocks, it found their many new objects to count and ran collections, full ones every few regions
    (some 2.6 s over the fleet's 100 regions). Another cloud's driver (HTTP sessions) may make cycles."""
    pause = collector_paused() if getattr(engine.cloud, "forks_safely", False) else contextlib.nullcontext()
    with pause:
        for region in regions:
            yield _region_rows(engine, region, None)


def _status_workers(engine: GlanceSync, regions: int) -> int:
    if not getattr(engine.cloud, "forks_safely", False) or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    wanted = os.environ.get(STATUS_WORKERS, "").strip()
    try:
        workers = int(wanted) if wanted else len(os.sched_getaffinity(0))
    except ValueError:
        raise GlanceSyncError(f"{STATUS_WORKERS}={wanted!r}: not a number of processes") from None
    return max(1, min(workers, regions))


def _forked_statuses(engine: GlanceSync, regions: list[str], workers: int) -> Iterator[RegionRows]:
    global _forked_engine  # noqa: PLW0603 (what the forked workers inherit)
    targets = [parse_region(region, engine.config).target for region in regions]
    tasks, alone = status_tasks(targets, workers)
    engine.prepare(sorted(set(targets) - alone))  # a target of one task: its worker prepares it, meanwhile
    _forked_engine = engine  # the workers touch no database connection and end without closing any
    gc.freeze()  # what the workers inherit is never scanned there, so its pages stay shared (not copied)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=gc.disable) as pool:
            batches = [[(index, regions[index]) for index in task] for task in tasks]
            done: dict[int, RegionRows] = {}
            following = 0  # the next region to give, in the regions' order
            for results in pool.imap_unordered(_forked_regions_rows, batches):
                done.update(results)
                while following in done:
                    yield done.pop(following)
                    following += 1
    finally:
        _forked_engine = None
        gc.unfreeze()


def status_tasks(targets: list[str], workers: int) -> tuple[list[list[int]], set[str]]:
    """The workers' tasks (lists of region indices) in the order they are handed out, and the targets whose
    regions make a single task. The target with the most regions is prepared before the fork (selection,
    twins), and each of its regions is a task, so that they spread over every worker. Another target with
    few regions (at most one in 2 x workers of them all) is one task, handed out first: its worker prepares
    the target (for a metadata_condition, an evaluation per master image) while the others start on the
    rest, instead of every worker waiting for it before the fork."""
    indices: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        indices.setdefault(target, []).append(index)
    widest = max(indices, key=lambda target: len(indices[target]))
    alone = {t for t, found in indices.items() if t != widest and len(found) * 2 * workers <= len(targets)}
    tasks = [indices[target] for target in indices if target in alone]
    tasks += [[index] for index, target in enumerate(targets) if target not in alone]
    return tasks, alone


# The workers run without the cyclic collector: a region's status makes no cycle, and each collection would
# scan every image alive (a fifth of a region's time) and write to pages shared with the parent.


def _forked_regions_rows(batch: list[tuple[int, str]]) -> list[tuple[int, RegionRows]]:
    assert _forked_engine is not None
    return [(index, _region_rows(_forked_engine, region, RecordingReporter())) for index, region in batch]


def _region_rows(engine: GlanceSync, region: str, reporter: RecordingReporter | None) -> RegionRows:
    """A region's status rows; `reporter`: where its log goes (None: the engine's, as it comes)."""
    buffer = io.StringIO()
    try:
        engine.export_status(region, buffer, reporter)
    except Exception as error:  # noqa: BLE001 (the region's failure, reported in its turn)
        return (reporter.records if reporter else []), "", str(error)
    return (reporter.records if reporter else []), buffer.getvalue(), None


def _configuration(options) -> tuple[SyncConfig, str]:
    """The configuration and the cloud URL: from --config-file, else from the database once a master region
    is set there, else from the original's lookup ($GLANCESYNC_CONFIG, /etc/glancesync.conf, OS_* variables)."""
    overrides = parse_override_items(options["config"])
    cloud_url = options["cloud"] or os.environ.get("GLANCESYNC_CLOUD")
    if options["config_file"] is None and database_configured():
        cloud_url = cloud_url or MasterSettings.load().cloud or DEFAULT_CLOUD
        return load_db_config_with(overrides, require_credentials=not cloud_url.startswith("files:")), cloud_url
    cloud_url = cloud_url or DEFAULT_CLOUD
    files = cloud_url.startswith("files:")
    return load_config(options["config_file"], overrides, require_credentials=not files), cloud_url


def _replay(reporter: Reporter, records: list[tuple[int, str]]) -> None:
    """Log a worker's records here, as `reporter.log` would. When the reporter's logger is the command's as
    _client_logger made it (one stream handler with its format; no filter, nothing propagated), the lines
    that handler would write are written to its stream directly, and flushed once: a LogRecord apiece, for
    a big fleet's tens of thousands of warnings, was most of this process's time while its workers ran."""
    if not records:  # logged as they came (one process)
        return
    handler = _plain_handler(reporter)
    if handler is None:
        for level, message in records:
            reporter.log(level, message)
        return
    logger, write, terminator = reporter.logger, handler.stream.write, handler.terminator
    with _handler_lock(handler):
        for level, message in records:
            if level >= handler.level and logger.isEnabledFor(level):
                write(f"{logging.getLevelName(level)}:{message}{terminator}")
        handler.flush()


def _plain_handler(reporter: Reporter) -> logging.StreamHandler | None:
    """The logger's only handler if a record reaches nothing else and comes out as `LEVEL:message`."""
    logger = getattr(reporter, "logger", None)
    if type(reporter) is not Reporter or logger is None or logger.filters or logger.propagate or logger.disabled:
        return None
    handler = logger.handlers[0] if len(logger.handlers) == 1 else None
    if type(handler) is not logging.StreamHandler or handler.filters:
        return None
    formatter = handler.formatter
    if type(formatter) is not logging.Formatter or type(formatter._style) is not logging.PercentStyle:
        return None
    if formatter._style._fmt != LOG_FORMAT:
        return None
    return handler


@contextlib.contextmanager
def _handler_lock(handler: logging.Handler) -> Iterator[None]:
    handler.acquire()
    try:
        yield
    finally:
        handler.release()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without passwd entry)
        return ""


LOG_FORMAT = "%(levelname)s:%(message)s"


def _client_logger(stream) -> logging.Logger:
    """The original printed `LEVEL:message` lines; show-status keeps stdout for the CSV rows only."""
    logger = logging.getLogger(CLIENT_LOGGER)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _new_directory(base: str) -> str:
    """Create `base` (or `base_2`, `base_3`… when a run in the same minute already made it)."""
    name, n = base, 1
    while True:
        try:
            os.mkdir(name)
            return name
        except FileExistsError:
            n += 1
            name = f"{base}_{n}"


def _sync_to_file(engine: GlanceSync, region: str, dry_run: bool, directory: str) -> bool:
    logger = logging.getLogger(f"{CLIENT_LOGGER}.{region}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with open(os.path.join(directory, f"{region}.txt"), "w") as log_file:
        handler = logging.StreamHandler(log_file)
        logger.handlers = [handler]
        try:
            return engine.sync_region(region, dry_run=dry_run, reporter=Reporter(logger)).ok
        finally:
            logger.handlers = []
