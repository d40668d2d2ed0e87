"""The ImageState snapshot: the latest status of every (region, master image) pair, which the pages read."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import marshal
import os
import pickle
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

import sync
from sync import alerts
from sync.connect import safe_message
from sync.engine.glancesync import GlanceSync, is_renamed
from sync.engine.memory import collector_paused
from sync.engine.model import UPLOAD_STATUSES, Image, TargetPolicy
from sync.engine.regions import RegionRef, parse_region
from sync.engine.reporter import RecordingReporter
from sync.engine.selection import is_foreign
from sync.engine.status import ImageStatus, missing_ami_references
from sync.engine.updates import updated_metadata
from sync.models import ImageState, RegionSnapshot
from sync.models.snapshot import PROTECTED_COPY, plan_totals
from sync.snapshot_indexes import indexes_built_after

logger = logging.getLogger(__name__)


def all_regions(engine: GlanceSync) -> list[str]:
    """Full names of every region of every target (the master region first), as the overview lists them."""
    targets = ["master"] + [t for t in engine.config.targets if t != "master"]
    regions = [engine.config.master_region]
    return regions + [region for target in targets for region in engine.get_regions(target)]


def refresh_regions(engine: GlanceSync, regions: list[str]) -> dict[str, str]:
    """Recompute and store the statuses of these regions; return {region: error} for those that failed.

    A region whose driver fingerprint is the one it was stored with is not even listed. The others are listed
    concurrently (see `listings`) and computed one at a time in this thread as their listings arrive, or
    computed by forked processes (see `_processes`), then stored a few at a time in this thread (see `_Batch`).
    The new conflicts found in all of them go out as one alert, in the regions' order."""
    failed, found = {}, {}
    master = master_inputs(engine)
    known = {region: fingerprint_inputs(engine, parse_region(region, engine.config), master) for region in regions}
    stale = [region for region in regions if not _fresh_unlisted(engine, region, known[region])]
    # The collector off for the whole loop (a batch holds computed regions across listings): collecting over
    # them cost 10 % of a refresh that computes every region. Listing threads pause it too (the CSV reader).
    with _large_sqlite_cache(), indexes_built_after(len(engine.master) * len(stale)), collector_paused():
        batch = _Batch()
        for region, result in _computed_regions(engine, stale, known, master):
            found[region] = []
            if isinstance(result, str):
                if result:
                    failed[region] = result
            elif batch.add(result, found[region]):
                batch.store()
        batch.store()
    alerts.new_problems([problem for region in regions for problem in found.get(region, [])])
    return {region: failed[region] for region in regions if region in failed}


def refresh_region(engine: GlanceSync, region: str, new_problems: list[dict] | None = None) -> str:
    """Store one region's statuses (one listing of the region); on failure keep the old rows, store why.

    The problems that were not there before are added to `new_problems`, or alerted at once without it."""
    ref, master = parse_region(region, engine.config), master_inputs(engine)
    inputs = fingerprint_inputs(engine, ref, master)
    if _fresh_unlisted(engine, region, inputs):
        return ""
    with collector_paused():
        result = _compute(engine, ref, _list(engine, ref), master, inputs)
        if isinstance(result, str):
            return result
        batch = _Batch()
        batch.add(result, new_problems)
        batch.store()
    return ""


Listing = list[Image] | Exception  # a region's images, or why they could not be listed


def _computed_regions(
    engine: GlanceSync, regions: list[str], known: dict[str, str], master: bytes
) -> Iterator[tuple[str, _Computed | str]]:
    """(region, `_compute`'s result) of each region, computed by forked processes or in this thread."""
    processes = _processes(engine, len(regions))
    if processes > 1:
        yield from _forked(engine, regions, known, master, processes)
        return
    for region, ref, listing in listings(engine, regions):
        yield region, _compute(engine, ref, listing, master, known[region])


def listings(engine: GlanceSync, regions: list[str]) -> Iterator[tuple[str, RegionRef, Listing]]:
    """(region, ref, listing) of each region, in the order the listings end: GLANCESYNC_REFRESH_WORKERS threads
    list at once, so a slow or unreachable region costs its own timeout (the target's list_images_timeout),
    not the sum of all. At most that many listings are held in memory besides the one being stored."""
    refs = {region: parse_region(region, engine.config) for region in regions}
    for target in dict.fromkeys(ref.target for ref in refs.values()):
        engine.session(target)  # opened here: the engine's table of sessions is not meant for threads
    workers = max(1, min(settings.GLANCESYNC_REFRESH_WORKERS, len(refs)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh-listing")
    waiting, running = iter(refs), {}

    def start_next() -> None:
        region = next(waiting, None)
        if region is not None:
            running[pool.submit(_list, engine, refs[region])] = region

    try:
        for _ in range(workers):
            start_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                region = running.pop(future)
                start_next()  # the next listing runs while this one is stored
                yield region, refs[region], future.result()
    finally:  # stopped early (an error while storing): drop what has not started, do not wait for the rest
        pool.shutdown(wait=False, cancel_futures=True)


def _list(engine: GlanceSync, ref: RegionRef) -> Listing:
    """The region's listing, or the error (returned: it is reported when the region is stored)."""
    try:
        return engine.session(ref.target).list_images(ref.name)
    except Exception as error:
        return error


@contextmanager
def _large_sqlite_cache() -> Iterator[None]:
    """SQLite's page cache of this connection at GLANCESYNC_REFRESH_SQLITE_CACHE_MB while the refresh stores
    (see the setting), then back to what it was, which frees the pages."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (before,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = -{int(settings.GLANCESYNC_REFRESH_SQLITE_CACHE_MB) * 1024}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(before)}")


@dataclass
class _Computed:
    """A region's statuses and what the pages show with them, computed and not yet stored."""

    ref: RegionRef
    rows: list[_Row]
    warnings: list[str]
    others: list[dict]  # the first RegionSnapshot.OTHER_IMAGES_KEPT
    others_total: int
    inputs: str
    transfer: str  # "": no upload planned


def _compute(engine: GlanceSync, ref: RegionRef, listing: Listing, master: bytes, inputs: str) -> _Computed | str:
    """The region's statuses; "" when its inputs are those of its stored snapshot (nothing to store), or why
    it cannot be read (stored at once: its old rows are kept). `inputs`: the driver's fingerprint's, already
    found stale (`fingerprint_inputs`), or "": the listing is hashed."""
    try:
        if isinstance(listing, Exception):
            raise listing
        if not inputs:
            inputs = region_inputs(engine, ref, listing, master)
            if _still_fresh(engine, ref, inputs):
                return ""
        return _computed(engine, ref, listing, inputs)
    except Exception as error:  # the region is unreadable now: say so, keep its last known statuses
        message = safe_message(error, engine.config)
        _unreadable(ref, message)
        return message


def _computed(engine: GlanceSync, ref: RegionRef, listing: list[Image], inputs: str) -> _Computed:
    """The region's rows and the rest of its snapshot, from its listing (no database: forked processes run it)."""
    reporter = RecordingReporter()
    statuses, region_map = engine.statuses(ref, listing, reporter)
    changes = metadata_changes(engine, ref, statuses, region_map)
    reasons = status_reasons(statuses, region_map)
    others, others_total = other_images(listing, statuses, engine.tenant_id(ref.target))
    uploads = any(entry.status in UPLOAD_STATUSES for entry in statuses)
    transfer = engine.planned_transfer(ref) if uploads else ""  # asks the region's Glance once
    rows = [_row(entry, changes, reasons) for entry in statuses]
    return _Computed(ref, rows, reporter.messages(), others, others_total, inputs, transfer)


# --- computing regions in forked processes -----------------------------------------------------------------
#
# On a cloud whose listing is local CPU work that forks safely (the file cloud: no connection, no thread), a
# refresh that computes many regions is CPU-bound: listing, matching and building rows. Processes forked once
# the master images and the selections are known compute the regions (`_computed`, no database); this process
# keeps every database query and stores the regions as they come.

FORK_PAIRS = 200_000  # (region, master image) pairs to compute below which forking costs more than it saves


def _processes(engine: GlanceSync, regions: int) -> int:
    """GLANCESYNC_REFRESH_PROCESSES (0: one per usable CPU, once there are FORK_PAIRS pairs to compute)."""
    if not getattr(engine.cloud, "forks_safely", False) or not hasattr(os, "fork"):
        return 1
    wanted = settings.GLANCESYNC_REFRESH_PROCESSES
    if not wanted and len(engine.master) * regions < FORK_PAIRS:
        return 1
    return max(1, min(wanted or len(os.sched_getaffinity(0)), regions))


def _forked(
    engine: GlanceSync, regions: list[str], known: dict[str, str], master: bytes, processes: int
) -> Iterator[tuple[str, _Computed | str]]:
    """Each region's result, in order. Process k computes regions k, k + processes... and sends each down its
    pipe, whose buffer lets it compute about one region ahead (the rows waiting are held in memory). Raw
    os.fork: a django-q worker is a daemonic process, which multiprocessing lets have no children."""
    engine.prepare(sorted({parse_region(region, engine.config).target for region in regions}))
    children = []
    try:
        for index in range(processes):
            children.append(_fork(engine, master, [(region, known[region]) for region in regions[index::processes]]))
        for index, region in enumerate(regions):
            try:
                error, computed = _receive(children[index % processes][1])
            except EOFError:
                raise RuntimeError(f"{region}: the process computing it ended early") from None
            yield region, _forked_result(engine, region, known[region], error, computed)
    finally:  # done, or stopped early (an error while storing): end them all
        for pid, stream in children:
            stream.close()
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _fork(engine: GlanceSync, master: bytes, regions: list[tuple[str, str]]) -> tuple[int, BinaryIO]:
    """A forked process computing these (region, inputs), pickled down a pipe: (its pid, the pipe's end)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, open(read, "rb")  # noqa: SIM115 (closed by _forked)
    code = 1
    try:  # the child: no database, and no way out but os._exit (no parent's cleanup runs twice)
        os.close(read)
        with open(write, "wb") as stream:
            for region, inputs in regions:
                _send(stream, *_forked_compute(engine, master, region, inputs))
        code = 0
    except BrokenPipeError:
        code = 0  # the parent stopped reading
    finally:
        os._exit(code)


def _send(stream: BinaryIO, error: str, computed: _Computed | None) -> None:
    """The rows as plain tuples in marshal's format (a third of pickle's time to write, half to read: a region
    has 15,000), its length first (marshal.load of a stream reads each string with a call), the rest pickled."""
    rows = marshal.dumps([tuple(row) for row in computed.rows] if computed else [], 2)
    if computed:
        computed.rows = []
    pickle.dump((error, computed), stream, pickle.HIGHEST_PROTOCOL)
    stream.write(len(rows).to_bytes(8, "little") + rows)


def _receive(stream: BinaryIO) -> tuple[str, _Computed | None]:
    error, computed = pickle.load(stream)
    size = int.from_bytes(_read(stream, 8), "little")
    rows = marshal.loads(_read(stream, size))
    if computed:
        computed.rows = list(map(_new_row, rows))  # _make without a frame per row
    return error, computed


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _forked_compute(engine: GlanceSync, master: bytes, region: str, inputs: str) -> tuple[str, _Computed | None]:
    """In a forked process: (why the region cannot be read, or "", and its computed snapshot)."""
    ref = parse_region(region, engine.config)
    try:
        listing = _list(engine, ref)
        if isinstance(listing, Exception):
            raise listing
        return "", _computed(engine, ref, listing, inputs or region_inputs(engine, ref, listing, master))
    except Exception as error:
        return safe_message(error, engine.config), None


def _forked_result(engine: GlanceSync, region: str, known: str, error: str, computed: _Computed | None):
    """What `_compute` would have given, from a forked process's result (the queries are made here)."""
    ref = parse_region(region, engine.config)
    if computed is None:
        _unreadable(ref, error)
        return error
    if not known and _still_fresh(engine, ref, computed.inputs):  # a listing hashed there, not checked yet
        return ""
    return computed


class _Batch:
    """Computed regions stored together, in one transaction, once they hold BATCH_ROWS statuses (or at the end).

    On SQLite a transaction's cost is mostly the index pages it dirties, written to the WAL and checkpointed at
    its commit: a first refresh inserts a region's rows all over the indexes that begin with the image name,
    so storing several regions at once writes those pages once instead of once per region. The transaction
    holds nothing but the stores (the statuses are computed before), and readers see each region whole."""

    BATCH_ROWS = 50_000

    def __init__(self) -> None:
        self.regions: list[tuple[_Computed, list[dict] | None]] = []

    def add(self, computed: _Computed, new_problems: list[dict] | None) -> bool:
        """Add a region; True when the batch is full."""
        self.regions.append((computed, new_problems))
        return sum(len(c.rows) for c, _ in self.regions) >= self.BATCH_ROWS

    def store(self) -> None:
        regions, self.regions = self.regions, []
        if not regions:
            return
        done = []
        with transaction.atomic():
            lock_regions([computed.ref.fullname for computed, _ in regions])
            for computed, new_problems in regions:
                done.append((computed, new_problems, _previous_failures(computed.ref), _store(computed)))
        for computed, new_problems, (failures, since), stored in done:
            if failures >= UNREADABLE_ALERT_AFTER and since is not None:
                alerts.region_recovered(computed.ref.fullname, since, failures)
            if new_problems is None:
                alerts.new_problems(stored.new_problems)
            else:
                new_problems.extend(stored.new_problems)


def _previous_failures(ref: RegionRef) -> tuple[int, object]:
    previous = RegionSnapshot.objects.filter(region=ref.fullname).values_list("read_failures", "unreadable_since")
    return previous.first() or (0, None)


def _store(c: _Computed) -> Stored:
    ref = c.ref
    stored = store_rows(
        ref.fullname, ref.target, c.rows, c.warnings, c.others, c.inputs, savepoint=False, others_total=c.others_total
    )
    if c.transfer:  # the preview says how the uploads would go (issue #18)
        RegionSnapshot.objects.filter(region=ref.fullname).update(transfer=c.transfer)
    return stored


UNREADABLE_ALERT_AFTER = 2  # refreshes in a row: a blip pages nobody


# --- skipping a region whose inputs have not changed -------------------------------------------------------
#
# A region's stored snapshot (its rows, counts, totals, warnings and other images) is a function of: the master
# images the engine selected from (after its filtering), the region's listing, the region's target policy, the
# master region's name, the target's tenant id, how many other images are kept, and the code that computes it.
# `region_inputs` hashes exactly those; a refresh that finds the hash it stored last time stores only the time
# (and asks the region's Glance again how uploads would go, which is no input: see `_still_fresh`). Anything
# else that changes the rows in place must clear the hash (RegionSnapshot.recount does).

SNAPSHOT_FORMAT = 1  # bump when the same inputs should give another snapshot without a code change in _CODE
# sync/... whose source the snapshot depends on; the drivers' too, for their listing fingerprints
_CODE = ("engine", "clouds", "snapshot.py", "models/snapshot.py")
# tags (a frozenset, sorted) and user_properties (maybe SharedProperties, which marshal refuses) go apart
_IMAGE_FIELDS = tuple(f.name for f in fields(Image) if f.name not in ("tags", "user_properties"))
_image_values = attrgetter(*_IMAGE_FIELDS)
_properties = attrgetter("user_properties")
_POLICY_FIELDS = tuple(f.name for f in fields(TargetPolicy) if f.name != "password")  # no secret, even hashed


def region_inputs(engine: GlanceSync, ref: RegionRef, listing: list[Image], master: bytes) -> str:
    """A 128-bit hash of everything the region's snapshot is computed from (`master`: `master_inputs`); ""
    when some value cannot be hashed by value (the region is then always computed)."""
    if not master:
        return ""
    try:
        return _inputs_hash(engine, ref, master, b"listing", _images(listing))
    except ValueError:  # marshal: a property value of a type it does not write
        return ""


def fingerprint_inputs(engine: GlanceSync, ref: RegionRef, master: bytes) -> str:
    """`region_inputs` with the driver's fingerprint of the region's listing (`listing_fingerprint`, taken
    before listing it, so a change meanwhile only makes the next refresh compute it again) instead of the
    listing; "" when the driver gives none: the region is listed, and its listing hashed."""
    fingerprint = getattr(engine.session(ref.target), "listing_fingerprint", None)
    try:
        value = fingerprint(ref.name) if fingerprint is not None and master else None
        return _inputs_hash(engine, ref, master, b"fingerprint", value) if value else ""
    except Exception:  # noqa: BLE001 (listing the region reports what is wrong, in its turn)
        return ""


def _inputs_hash(engine: GlanceSync, ref: RegionRef, master: bytes, kind: bytes, region: bytes) -> str:
    """The hash of everything but the region's listing, then `region` (its listing's `kind` of hash)."""
    config = engine.config
    head = marshal.dumps(
        (SNAPSHOT_FORMAT, code_version(), RegionSnapshot.OTHER_IMAGES_KEPT, ref.fullname, ref.target,
         config.master_region, _policy(config.targets[ref.target]), engine.tenant_id(ref.target)),
        0,
    )  # fmt: skip
    return hashlib.blake2b(head + master + kind + b"\0" + region, digest_size=16).hexdigest()


def master_inputs(engine: GlanceSync) -> bytes:
    """The master images the statuses are computed from, as `region_inputs` hashes them (once per refresh)."""
    try:
        return hashlib.blake2b(_images(list(engine.master.values())), digest_size=16).digest()
    except ValueError:
        return b""  # no hash: every region is computed


def _images(images: list[Image]) -> bytes:
    """Every field of every image, in the listing's order (which the engine's matching may depend on), by
    value: marshal's version 0 gives equal bytes for equal values in any process (frozensets aside: sorted)."""
    tags = [(index, sorted(image.tags)) for index, image in enumerate(images) if image.tags]
    properties = [p if type(p) is dict else dict(p) for p in map(_properties, images)]  # a Glance's: plain
    return marshal.dumps((list(map(_image_values, images)), properties, tags), 0)


def _policy(policy: TargetPolicy) -> tuple:
    values = (getattr(policy, name) for name in _POLICY_FIELDS)
    return tuple(sorted(value) if isinstance(value, frozenset) else value for value in values)


@functools.cache
def code_version() -> str:
    """A hash of the source of the engine and of this module (and the package's version): a new version of
    the code computes every region again once."""
    digest = hashlib.blake2b(sync.__version__.encode(), digest_size=16)
    root = Path(sync.__file__).parent
    paths = [root / name for name in _CODE if name.endswith(".py")]
    paths += [path for name in _CODE if not name.endswith(".py") for path in (root / name).rglob("*.py")]
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _fresh_unlisted(engine: GlanceSync, region: str, inputs: str) -> bool:
    """Whether the region's fingerprint inputs (`fingerprint_inputs`; "": none) are those it was stored with."""
    return bool(inputs) and _still_fresh(engine, parse_region(region, engine.config), inputs)


def _still_fresh(engine: GlanceSync, ref: RegionRef, inputs: str) -> bool:
    """The region's stored snapshot was computed from these very inputs: only its time is stored (and the
    transfer way, when it has uploads to plan: the region's Glance may offer another method now)."""
    if not inputs:
        return False
    found = RegionSnapshot.objects.filter(region=ref.fullname, inputs=inputs, error="")
    stored = found.values_list("status_counts", "transfer").first()
    if stored is None:
        return False
    counts, transfer = stored
    if any(counts.get(status) for status in UPLOAD_STATUSES):
        transfer = engine.planned_transfer(ref)
    # conditional on the hash: a refresh that stored other inputs meanwhile makes this one compute the region
    return bool(found.update(computed_at=timezone.now(), transfer=transfer))


def _unreadable(ref: RegionRef, message: str) -> None:
    """Store why the region cannot be read and count the failures in a row; alert at the second."""
    now = timezone.now()
    snapshot, created = RegionSnapshot.objects.get_or_create(
        region=ref.fullname,
        defaults={"target": ref.target, "computed_at": now, "error": message, "read_failures": 1,
                  "unreadable_since": now},
    )  # fmt: skip
    if created:
        return
    RegionSnapshot.objects.filter(pk=snapshot.pk).update(
        target=ref.target, computed_at=now, error=message, read_failures=F("read_failures") + 1,
        unreadable_since=Coalesce(F("unreadable_since"), now), inputs="",
    )  # fmt: skip
    failures, since = RegionSnapshot.objects.values_list("read_failures", "unreadable_since").get(pk=snapshot.pk)
    if failures == UNREADABLE_ALERT_AFTER:  # exactly: concurrent refreshes cannot both see it
        alerts.region_unreadable(ref.fullname, since, message)


REPLACING = ("error_checksum", "pending_replace", "pending_rename")


def status_reasons(statuses: list[ImageStatus], region_map: dict[str, Image]) -> dict[str, str]:
    """Why an image is stuck, a decision cannot work or a rotation is planned, per image name, for the pages
    and the API."""
    reasons = {}
    # An ok copy has no reason to give, and a renamed copy is never ok (its name differs): the few others
    # are looked at, not the fleet's millions of pairs.
    notable = [entry for entry in statuses if entry.status != "ok"]
    renamed = {e.region_image.name: e.master.name for e in notable if is_renamed(e)}  # old name -> new name
    for entry in notable:
        name = entry.master.name
        if is_renamed(entry):
            reasons[name] = "rotation: the master renamed this image; the copy, found by its checksum, follows"
        elif entry.status == "pending_upload" and name in renamed:
            reasons[name] = f"rotation: the region's {name} is the old build, renamed {renamed[name]} first"
        elif entry.status == "pending_metadata" and entry.master.retired:
            how = "hidden" if entry.master.hidden else entry.master.visibility
            reasons[name] = f"retired in the master ({how}): the copy follows it; no new copy is made"
        elif entry.status == "error_ami":
            missing = ", ".join(missing_ami_references(entry.master, region_map))
            reasons[entry.master.name] = f"not synchronised to this target: {missing}"
        elif entry.status in REPLACING and entry.region_image and entry.region_image.protected:
            reasons[entry.master.name] = PROTECTED_COPY
    return reasons


def other_images(listing: list[Image], statuses: list[ImageStatus], tenant_id: str) -> tuple[list[dict], int]:
    """The region's images that are no synchronised master image's copy, by name, and why each is not: the
    first RegionSnapshot.OTHER_IMAGES_KEPT (all a snapshot keeps: a fleet's region has thousands, described
    and sent from a forked process for nothing), and how many there are."""
    matched = {entry.region_image.id for entry in statuses if entry.region_image is not None}
    others = sorted((image for image in listing if image.id not in matched), key=lambda i: (i.name or "", i.id))
    kept = [
        {"name": image.name or "", "status": image.status, "public": image.is_public,
         "visibility": image.visibility, "hidden": image.hidden, "tags": sorted(image.tags), "size": image.size or 0,
         "why": _not_synchronised_because(image, tenant_id)}
        for image in others[: RegionSnapshot.OTHER_IMAGES_KEPT]
    ]  # fmt: skip
    return kept, len(others)


def _not_synchronised_because(image: Image, tenant_id: str) -> str:
    if is_foreign(image, tenant_id):
        return "owned by another project"
    if image.status != "active":
        return f"not active ({image.status})"
    return "not one of the master images this target synchronises"


def metadata_changes(
    engine: GlanceSync, ref: RegionRef, statuses: list[ImageStatus], region_map: dict[str, Image]
) -> dict[str, list[list]]:
    """For each image pending_metadata: the [field, before, after] a sync would write (the engine's update)."""
    target = engine.config.targets[ref.target]
    changes = {}
    for entry in statuses:
        if entry.status != "pending_metadata" or entry.region_image is None:
            continue
        before = entry.region_image
        after = updated_metadata(before, entry.master, target, region_map, ref.fullname, RecordingReporter())
        diff = [
            [field, old, new]
            for field, old, new in (
                ("name", before.name, after.name),
                ("visibility", before.visibility, after.visibility),
                ("hidden", _yes_no(before.hidden), _yes_no(after.hidden)),
                ("tags", _joined(before.tags), _joined(after.tags)),
            )
            if old != new
        ]
        for key in sorted(set(before.user_properties) | set(after.user_properties)):
            old, new = before.user_properties.get(key), after.user_properties.get(key)
            if old != new:
                diff.append([key, _shown(old), _shown(new)])
        changes[entry.master.name] = diff
    return changes


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _joined(tags: frozenset[str]) -> str | None:
    return ", ".join(sorted(tags)) or None


def _shown(value) -> str | None:
    return None if value is None else str(value)


@dataclass
class Stored:
    """What one region's store wrote: ImageState rows inserted, changed (all fields, or the position only) and
    deleted, and the problems that were not there before (see `_new_problems`)."""

    new_problems: list[dict] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.moved + self.deleted


def store_statuses(
    region: str,
    target: str,
    statuses: list[ImageStatus],
    changes: dict[str, list[list]] | None = None,
    warnings: list[str] | None = None,
    reasons: dict[str, str] | None = None,
    others: list[dict] | None = None,
    inputs: str = "",
    savepoint: bool = True,
) -> Stored:
    """Bring the region's rows to these statuses, writing only the rows that changed.

    One transaction per region: readers see the region as it was or as it is now, never half-written. The old
    rows are read once, for the diff and for the new problems alike. `inputs`: what they were computed from
    (`region_inputs`), so that the next refresh can tell whether it needs to compute them at all. Called in
    a transaction, it joins it without a savepoint (`savepoint=False`) or in one."""
    rows = [_row(entry, changes or {}, reasons or {}) for entry in statuses]
    return store_rows(region, target, rows, warnings, others, inputs, savepoint)


def store_rows(
    region: str,
    target: str,
    rows: list[_Row],
    warnings: list[str] | None = None,
    others: list[dict] | None = None,
    inputs: str = "",
    savepoint: bool = True,
    others_total: int | None = None,
) -> Stored:
    """`store_statuses` of the statuses' rows (`_row`), as a refresh computes them. `others_total`: how many
    other images the region has, when `others` are only the first ones (default: all of them)."""
    now = timezone.now()
    others = others or []
    others_total = len(others) if others_total is None else others_total
    with transaction.atomic(savepoint=savepoint):
        lock_regions([region])
        old = _stored_rows(region)
        stored = Stored(new_problems=_new_problems(region, rows, old))
        _apply(region, _diff(rows, old), now, stored)
        RegionSnapshot.objects.update_or_create(
            region=region,
            defaults={
                "target": target, "computed_at": now, "error": "", "warnings": warnings or [],
                "other_images": others[: RegionSnapshot.OTHER_IMAGES_KEPT], "other_images_total": others_total,
                "read_failures": 0, "unreadable_since": None,
                "status_counts": status_counts(rows),
                "plan_totals": _plan_totals(rows), "inputs": inputs,
            },
        )  # fmt: skip
    logger.debug("%s: %d snapshot rows written (%d new, %d changed, %d moved, %d removed)", region, stored.written,
                 stored.inserted, stored.updated, stored.moved, stored.deleted)  # fmt: skip
    return stored


# ImageState's fields besides the key (region, image_name), status, position, computed_at and digest, in the order
# of _row's content: their hash is the row's digest.
CONTENT_FIELDS = (
    "master_id", "master_checksum", "region_image_id", "region_checksum", "size", "region_size", "region_image_name",
    "visibility", "hidden", "tags", "region_visibility", "region_hidden", "region_tags", "changes", "reason",
)  # fmt: skip
SIZE, REASON = CONTENT_FIELDS.index("size"), CONTENT_FIELDS.index("reason")
NO_COPY = ("", "", None, "", "", False, [])  # region_image_id ... region_tags of a pair without a region copy


class _Row(NamedTuple):  # named tuples: a refresh makes one per pair, over a million at a time
    """A pair's row as the refresh computes it: status, content (CONTENT_FIELDS' values) and its digest."""

    name: str
    status: str
    content: tuple
    digest: str


class _Old(NamedTuple):
    """A stored row, as much of it as the diff needs."""

    id: int
    status: str
    position: int
    digest: str


def _row(entry: ImageStatus, changes: dict[str, list[list]], reasons: dict[str, str]) -> _Row:
    """A first refresh makes 1.5 M of these in its forked processes (0.1 s a region): empty tags are not sorted
    (most images have none), and the row and its digest (`_digest`, inlined) are made without a Python call."""
    copy, master = entry.region_image, entry.master
    name = master.name
    if copy is None:
        region_id, region_checksum, region_size, region_name, region_visibility, region_hidden, region_tags = NO_COPY
    else:
        region_id, region_checksum, region_size = copy.id, copy.checksum or "", copy.size
        region_name, region_visibility, region_hidden = copy.name, copy.visibility, copy.hidden
        region_tags = sorted(copy.tags) if copy.tags else []
    content = (
        master.id, master.checksum or "", region_id, region_checksum, master.size or 0, region_size, region_name,
        master.visibility, master.hidden, sorted(master.tags) if master.tags else [], region_visibility,
        region_hidden, region_tags, changes.get(name, []), reasons.get(name, "")[:500],
    )  # fmt: skip
    return _new_row((name, entry.status, content, _blake2b(_marshal(content, 0), digest_size=8).hexdigest()))


_new_row = functools.partial(tuple.__new__, _Row)  # _Row(...) without its Python-level __new__
_blake2b, _marshal = hashlib.blake2b, marshal.dumps


def _digest(content: tuple) -> str:
    """64 bits of blake2b over the content in marshal's version 0, which writes str, int, bool, None and lists by
    value only (no references, no interning marks: equal contents give equal bytes) and costs less than repr.
    Two contents of the same pair hashing alike by chance (2^-64 per change) would leave one change unwritten.
    `_row` inlines it."""
    return hashlib.blake2b(marshal.dumps(content, 0), digest_size=8).hexdigest()


def lock_regions(regions: list[str]) -> None:
    """Make another store of these regions wait until this transaction ends, then read what it wrote: a
    refresh's and a sync's `refresh_region` may store one region at once, and two stores that both found it
    without rows would both insert them (PostgreSQL: one fails on the unique pair, the other's batch with it).
    PostgreSQL: transaction advisory locks, taken in sorted order (two batches cannot wait for each other), and
    again by a store inside a batch's transaction at no cost. SQLite: its IMMEDIATE transactions already hold
    the database's write lock from their start."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for region in sorted(set(regions)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(region)])


def _lock_key(region: str) -> int:
    """A region's advisory lock key: 64 bits of its name's hash, in a space of its own (the prefix)."""
    digest = hashlib.blake2b(f"glancesync region snapshot\0{region}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _stored_rows(region: str) -> dict[str, _Old]:
    """The region's rows, locked until the transaction ends (PostgreSQL; SQLite's IMMEDIATE transaction already
    holds the write lock), so a checksum decision changing a row in place waits instead of being overwritten."""
    columns = ", ".join(_columns(("image_name", "id", "status", "position", "digest")))
    table, region_column = connection.ops.quote_name(ImageState._meta.db_table), _columns(["region"])[0]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:  # raw: the ORM's per-row cost is most of an unchanged refresh's
        cursor.execute(f"SELECT {columns} FROM {table} WHERE {region_column} = %s{lock}", [region])
        return {name: _Old(pk, status, position, digest) for name, pk, status, position, digest in cursor.fetchall()}


@dataclass
class _Diff:
    inserts: list[tuple[int, _Row]] = field(default_factory=list)  # (position, row)
    updates: list[tuple[int, int, _Row]] = field(default_factory=list)  # (id, position, row)
    moves: list[tuple[int, int]] = field(default_factory=list)  # (id, position): only the order changed
    deletes: list[int] = field(default_factory=list)  # ids


def _diff(rows: list[_Row], old: dict[str, _Old]) -> _Diff:
    diff = _Diff()
    for row, position in zip(rows, positions([row.name for row in rows], old), strict=True):
        before = old.get(row.name)
        if before is None:
            diff.inserts.append((position, row))
        elif before.status != row.status or before.digest != row.digest:
            diff.updates.append((before.id, position, row))
        elif before.position != position:
            diff.moves.append((before.id, position))
    names = {row.name for row in rows}
    diff.deletes = [before.id for name, before in old.items() if name not in names]
    return diff


POSITION_GAP = 1 << 16  # room between neighbours for new images, so that one new master image moves no other row
MAX_POSITION = 2**31 - 1  # PositiveIntegerField is a 32-bit integer on PostgreSQL


def positions(names: list[str], old: dict[str, _Old]) -> list[int]:
    """Positions in the engine's order: the stored ones where they still sort right and new rows fit between
    them, else all numbered again, POSITION_GAP apart (fewer apart for a region too big for that)."""
    kept = [old[name].position if name in old else None for name in names]
    known = [position for position in kept if position is not None]
    if all(a < b for a, b in zip(known, known[1:], strict=False)):
        filled = _fill_gaps(kept)
        if filled is not None:
            return filled
    gap = max(1, min(POSITION_GAP, MAX_POSITION // (len(names) + 1)))
    return [index * gap for index in range(len(names))]


def _fill_gaps(kept: list[int | None]) -> list[int] | None:
    """Give each new row (None) a position between its stored neighbours; None when one does not fit."""
    result: list[int] = []
    index = 0
    while index < len(kept):
        if kept[index] is not None:
            result.append(kept[index])
            index += 1
            continue
        end = index
        while end < len(kept) and kept[end] is None:
            end += 1
        low = result[-1] if result else -1
        high = kept[end] if end < len(kept) else low + (end - index + 1) * POSITION_GAP
        count = end - index
        if high - low <= count or high > MAX_POSITION:
            return None
        result.extend(low + (high - low) * (k + 1) // (count + 1) for k in range(count))
        index = end
    return result


def _apply(region: str, diff: _Diff, now, stored: Stored) -> None:
    with connection.cursor() as cursor:
        writer = _Writer(cursor, region, now)
        writer.delete(diff.deletes)
        writer.insert(diff.inserts)
        writer.update(diff.updates)
        writer.move(diff.moves)
    stored.inserted, stored.updated = len(diff.inserts), len(diff.updates)
    stored.moved, stored.deleted = len(diff.moves), len(diff.deletes)


class _Writer:
    """ImageState rows written with one executemany per kind of change (raw SQL, the same on SQLite and
    PostgreSQL): at a million rows, Django model instances and bulk_create would cost most of a first refresh."""

    KEY = ("region", "image_name")
    HEAD = ("status", "position", "digest", "computed_at")

    def __init__(self, cursor, region: str, now) -> None:
        self.cursor, self.region = cursor, region
        self.at = connection.ops.adapt_datetimefield_value(now)
        self.table = connection.ops.quote_name(ImageState._meta.db_table)
        self.fields = [ImageState._meta.get_field(name) for name in CONTENT_FIELDS]
        self.json_at = [index for index, f in enumerate(self.fields) if f.get_internal_type() == "JSONField"]
        self.empty = {index: self.fields[index].get_db_prep_save([], connection) for index in self.json_at}

    def delete(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):  # well under SQLite's limit of parameters per statement
            chunk = ids[start : start + 500]
            self.cursor.execute(f"DELETE FROM {self.table} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)

    def insert(self, rows: list[tuple[int, _Row]]) -> None:
        """In name order: three of the indexes begin with the name (after the region or the status), so each
        insert lands next to the last one instead of anywhere in them (half the time of the engine's order)."""
        if rows:
            columns = _columns(self.KEY + self.HEAD + CONTENT_FIELDS)
            sql = f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            rows = sorted(rows, key=_by_name)
            if connection.vendor == "postgresql":
                self._copy(columns, rows)
                return
            region, at, content = self.region, self.at, self._content  # a first refresh: 1.5 M rows
            self.cursor.executemany(sql, [(region, r.name, r.status, p, r.digest, at, *content(r)) for p, r in rows])

    def _copy(self, columns: list[str], rows: list[tuple[int, _Row]]) -> None:
        """PostgreSQL: the rows through COPY (psycopg formats each in C), in the region's transaction like any
        insert. executemany's INSERTs cost most of the refreshing process's CPU in a first refresh (130 s of it
        at 20,000 x 100, 29 s with COPY and the indexes built after). The JSON fields go as their text, which
        the server parses as any jsonb input."""
        sql = f"COPY {self.table} ({', '.join(columns)}) FROM STDIN"
        region, at, empty = self.region, self.at, json.dumps([])
        json_at = [len(self.KEY + self.HEAD) + index for index in self.json_at]  # in the COPY's columns
        start = time.perf_counter()
        with self.cursor.cursor.copy(sql) as copy:
            write = copy.write_row
            for position, row in rows:
                values = [region, row.name, row.status, position, row.digest, at, *row.content]
                for index in json_at:  # mostly empty lists (no tags, no changes)
                    value = values[index]
                    values[index] = json.dumps(value) if value else empty
                write(values)
        if connection.queries_logged:  # as Django logs an executemany, which this replaces
            duration = time.perf_counter() - start
            connection.queries_log.append({"sql": f"{len(rows)} times: {sql}", "time": f"{duration:.3f}"})

    def update(self, rows: list[tuple[int, int, _Row]]) -> None:
        if rows:
            columns = _columns(self.HEAD + CONTENT_FIELDS)
            sql = f"UPDATE {self.table} SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s"
            self.cursor.executemany(sql, [(*self._head(r, p), *self._content(r), pk) for pk, p, r in rows])

    def move(self, rows: list[tuple[int, int]]) -> None:
        if rows:
            sql = f"UPDATE {self.table} SET {_columns(['position'])[0]} = %s WHERE id = %s"
            self.cursor.executemany(sql, [(position, pk) for pk, position in rows])

    def _head(self, row: _Row, position: int) -> tuple:
        return row.status, position, row.digest, self.at

    def _content(self, row: _Row) -> list:
        """The JSON fields as the backend stores them (text on SQLite, jsonb on PostgreSQL); the other values
        are plain str, int, bool and None, which both drivers take as they are."""
        values = list(row.content)
        for index in self.json_at:  # mostly empty lists (no tags, no changes): those are prepared once
            value = values[index]
            values[index] = self.fields[index].get_db_prep_save(value, connection) if value else self.empty[index]
        return values


def _by_name(row: tuple[int, _Row]) -> str:
    return row[1].name


def _columns(names) -> list[str]:
    return [connection.ops.quote_name(ImageState._meta.get_field(name).column) for name in names]


def _new_problems(region: str, rows: list[_Row], old: dict[str, _Old]) -> list[dict]:
    """The pairs now in error_checksum or error_ami that were not in that status at the region's previous
    refresh; a region's first snapshot is the baseline (nothing is new in it)."""
    problems = [row for row in rows if row.status in alerts.PROBLEM_STATUSES]
    if not problems:
        return []
    if not old and not RegionSnapshot.objects.filter(region=region, error="").exists():
        return []
    return [
        {"region": region, "image": row.name, "status": row.status}
        for row in problems
        if row.name not in old or old[row.name].status != row.status
    ]


def _plan_totals(rows: list[_Row]) -> dict[str, list[int]]:
    """plan_totals of the rows grouped by (status, blocked) first: a few groups instead of 15,000 rows."""
    groups: dict[tuple[str, bool], list[int]] = {}
    for row in rows:
        content = row.content
        group = groups.setdefault((row.status, content[REASON] == PROTECTED_COPY), [0, 0])
        group[0] += 1
        group[1] += content[SIZE]
    return plan_totals((status, blocked, count, size) for (status, blocked), (count, size) in groups.items())


def status_counts(statuses: list[ImageStatus] | list[_Row]) -> dict[str, int]:
    """{status: images}, stored with the rows: /metrics reads these instead of counting the rows."""
    return dict(sorted(Counter(entry.status for entry in statuses).items()))
