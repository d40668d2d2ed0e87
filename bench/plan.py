"""Benchmark of the engine's planning step: the status of every (region, image) pair of a big file cloud.

What is measured, and why
-------------------------
A `glancesync` status run (or the plan before a sync) reads the master region and every region, then
decides a status for each (region, synchronisable master image) pair. On a file cloud the unavoidable part
of that work is parsing the backup CSVs; everything the engine adds on top of it is overhead we control.
So two things are timed, each on a fresh `FileCloud` and with the properties-parse cache cleared, so that
nothing carries over between runs:

* floor   - `read_backup` on every CSV of the folder (the rows become `Image`s, then are dropped);
* product - `GlanceSync(config, FileCloud(folder), quiet)` and `region_status()` of every region
            (master and `other` targets), i.e. reading the files *and* computing every pair's status.

For reference, a third workload only tokenises the CSVs with csv.reader (no Images): no CSV-based design
can go below it. The goals are an absolute one (product < 2 s) and a relative one (product <= 3x floor):
the ratio says how much the engine costs beyond reading its input, independently of the machine.

The cloud is generated deterministically (seeded) and cached in --workdir, keyed by the parameters, so
reruns skip generation; generation is never timed. Each region mixes identical copies, missing images,
metadata and checksum differences, foreign and inactive copies, duplicates, AMI images and local images,
so that every status of the spec appears (the census at the end shows it). The engine's warnings go to a
reporter that drops them, so logging does not dominate. Files are read from the page cache (warm). Times are
wall-clock (time.perf_counter); CPU times are shown too, since they are less sensitive to a busy machine.

Issue #17 adds two measures (`--only pairs,cli`):

* pairs - the engine alone: `statuses()` of each region with its listing already in memory (read untimed),
          in microseconds per (region, image) pair; goal <= 3 us. A second figure, the twin path: the engine's
          part of `export_status` (what --show-status runs) with each region's listing with twins in memory
          (`list_with_twins`, and the twins a rule needs read into images, both untimed), `statuses()` for
          the regions it does not apply to (the master region, a rotation to follow); timed with the cyclic
          collector off, as --show-status's workers run it;
* cli   - the real `manage.py glancesync --show-status master: other:` of the whole fleet in a child process,
          with a glancesync.conf written next to the folder (`<folder>.conf`, the file cloud needs no
          credentials): wall time, CPU time and max RSS (from /usr/bin/time), and every output row compared
          with the truth; goals <= 10 s and <= 512 MiB, >= 15x faster than the original (151-159 s, 4.0 GiB).
          On a file cloud it lists with twins (rows that read as the master's row of their name, decided
          without their images: GlanceSync.export_status), so it no longer runs `pairs`' path for them.

A last, optional part (`--only original --original DIR`, after `bench/original/setup.sh`) runs the original
GlanceSync (Python 2.7) on the same fleet, through the in-memory mock its own tests use, for a ratio measured in
the same run rather than against the issue's figures (151-159 s, 4.0 GiB, taken on another machine): wall time,
max RSS, and its rows compared with the truth by (region, image), since it prints regions in Python 2 dict
order (it differs where its known AMI upload-order bug applies, spec 9.1-7, CLAUDIA-5324).

The truth (`status_truth.csv` in the folder) is every pair's status derived from the generated images by the
spec's rules, in the most direct way and independently of the engine's code (see `region_truth`).

Usage: .venv/bin/python bench/plan.py [--images 20000] [--regions 100] [--runs 5] [--workdir DIR]
                                      [--only product,pairs,cli,original] [--cli-runs 3] [--profile N]
                                      [--original DIR] [--original-runs 1]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import hashlib
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sized
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from sync.clouds.files import FileCloud  # noqa: E402
from sync.engine import backup  # noqa: E402
from sync.engine.glancesync import GlanceSync  # noqa: E402
from sync.engine.memory import collector_paused  # noqa: E402
from sync.engine.model import STATUSES, Image, SyncConfig, TargetPolicy, TwinListing  # noqa: E402
from sync.engine.regions import RegionRef, parse_region  # noqa: E402
from sync.engine.reporter import Reporter  # noqa: E402

GENERATOR_VERSION = 1  # bump when the generated data changes, so cached folders are not reused
MASTER_REGION = "Master"
OTHER = "other"
OTHER_CONDITION = "image.is_public and image.user_properties.get('type') in ('baseimage', 'machine')"
GOAL_SECONDS = 2.0
GOAL_RATIO = 3.0
GOAL_PAIR_US = 3.0  # issue #17: the engine's cost per (region, image) pair, listings in memory
GOAL_CLI_SECONDS = 10.0  # issue #17: the whole --show-status of the 20,000 x 100 fleet...
GOAL_CLI_MIB = 512  # ...in at most this max RSS
ORIGINAL_CLI = (151.0, 159.0, 4.0 * 1024)  # the original GlanceSync on the same fleet: seconds (range), MiB


def md5(text: str) -> str:
    """An md5-like hex digest, deterministic from `text` (used for checksums and tenant ids)."""
    return hashlib.md5(text.encode()).hexdigest()


MASTER_TENANT = md5("tenant-master")
OTHER_TENANT = md5("tenant-other")
FOREIGN_TENANT = md5("tenant-foreign")
# Old checksums found in regions, and what the master target's config says to do with them.
STALE = [md5(f"stale-{k}") for k in range(12)]
DONTUPDATE, REPLACE, RENAME = frozenset(STALE[0:4]), frozenset(STALE[4:8]), frozenset(STALE[8:12])


class QuietReporter(Reporter):
    """Drops every message: the benchmark measures the engine, not the logging."""

    def log(self, level: int, message: str) -> None:
        pass


@dataclass(frozen=True)
class Params:
    images: int
    regions: int
    seed: int

    @property
    def other_regions(self) -> int:
        """A few regions (one in twenty, at least one) belong to the `other` target."""
        return max(1, self.regions // 20) if self.regions > 1 else 0

    def region_keys(self) -> list[str]:
        """`Region001`... for the master target, then `other:Region0NN` for the last few."""
        first_other = self.regions - self.other_regions
        return [f"{OTHER}:Region{i:03d}" if i > first_other else f"Region{i:03d}" for i in range(1, self.regions + 1)]

    def folder_name(self) -> str:
        return f"plan-i{self.images}-r{self.regions}-s{self.seed}-g{GENERATOR_VERSION}"


# --- generation (not timed) ------------------------------------------------------------------------------


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def master_kind(rng: random.Random) -> str:
    """kernel/ramdisk/machine for AMI images, `plain` for images outside the metadata_set, else `base`."""
    roll = rng.random()
    kinds = (("kernel", 0.02), ("ramdisk", 0.04), ("machine", 0.08), ("plain", 0.18))
    return next((kind for kind, limit in kinds if roll < limit), "base")


def master_image(rng: random.Random, index: int, kind: str) -> Image:
    name = f"{kind}-{rng.choice(('ubuntu', 'centos', 'debian', 'fedora', 'cirros'))}-{index:05d}"
    if kind == "plain":
        properties: dict[str, object] = {"os_distro": name.split("-")[1]}
    else:
        image_type = kind if kind != "base" else rng.choice(("baseimage", "baseimage", "testimage", "app"))
        properties = {"type": image_type, "nid": 1000 + index}
    public = rng.random() < (0.95 if kind == "kernel" else 0.85)
    size = min(int(rng.lognormvariate(20.5, 1.2)), 40 * 2**30)
    return Image(name, new_id(rng), MASTER_REGION, MASTER_TENANT, public, md5(name), size, "active", properties)


def link_amis(rng: random.Random, images: list[Image]) -> None:
    """Machine images point at master kernels/ramdisks by id (some of them private: error_ami)."""
    kernels = [i.id for i in images if i.user_properties.get("type") == "kernel"]
    ramdisks = [i.id for i in images if i.user_properties.get("type") == "ramdisk"]
    for image in images:
        if image.user_properties.get("type") == "machine" and kernels and ramdisks:
            image.user_properties["kernel_id"] = rng.choice(kernels)
            image.user_properties["ramdisk_id"] = rng.choice(ramdisks)


def spoil_master(rng: random.Random, images: list[Image]) -> None:
    """A few master rows the engine filters out: inactive, foreign, duplicated names, `_obsolete`."""
    for image in rng.sample(images, max(1, len(images) // 400)):
        choice = rng.randrange(4)
        if choice == 0:
            image.status = "queued"
        elif choice == 1:
            image.owner = FOREIGN_TENANT
        elif choice == 2:
            image.owner = None  # ownerless: still a master image
        else:
            image.name += "_obsolete"
    for image in rng.sample(images, max(1, len(images) // 2000)):
        images.append(replace(image, id=new_id(rng), checksum=md5(image.name + "-dup"), user_properties={}))


def make_master(params: Params) -> list[Image]:
    rng = random.Random(f"{params.seed}-master")
    images = [master_image(rng, i, master_kind(rng)) for i in range(params.images)]
    link_amis(rng, images)
    spoil_master(rng, images)
    return images


def region_fate(rng: random.Random) -> str:
    """What a region did with a master image; most copies are identical."""
    roll = rng.random()
    fates = (
        ("missing", 0.05),
        ("metadata", 0.09),
        ("checksum", 0.12),
        ("foreign", 0.13),
        ("inactive", 0.14),
        ("duplicate", 0.145),
        ("stale_ami", 0.15),
    )
    return next((fate for fate, limit in fates if roll < limit), "same")


def changed_metadata(rng: random.Random, props: dict[str, object], public: bool) -> tuple[dict[str, object], bool]:
    choice = rng.randrange(3)
    if choice == 0:
        return {**props, "nid": -1}, public
    if choice == 1:
        return {k: v for k, v in props.items() if k != "type"}, public
    return props, not public


def region_copy(rng: random.Random, master: Image, key: str, owner: str, fate: str, ids: dict[str, str]) -> Image:
    props = dict(master.user_properties)
    for prop in ("kernel_id", "ramdisk_id"):
        if prop in props:  # a copy points at the region's copy of the kernel/ramdisk (a stale id if absent)
            props[prop] = ids.get(str(props[prop]), md5(f"{key}-gone-{props[prop]}"))
    public, checksum, status, image_owner = master.is_public, master.checksum, "active", owner
    if fate == "metadata":
        props, public = changed_metadata(rng, props, public)
    elif fate == "checksum":
        checksum = rng.choice((*STALE, md5(f"{key}-{master.name}-patched")))
    elif fate == "foreign":
        image_owner = FOREIGN_TENANT
    elif fate == "inactive":
        status = rng.choice(("queued", "saving", "killed"))
    elif fate == "stale_ami" and "kernel_id" in props:
        props["kernel_id"] = new_id(rng)
    return Image(master.name, ids[master.id], key, image_owner, public, checksum, master.size, status, props)


def make_region(params: Params, key: str, master: list[Image]) -> list[Image]:
    """The region's listing: copies of master images (per their fate) plus local images, shuffled."""
    rng = random.Random(f"{params.seed}-{key}")
    owner = OTHER_TENANT if key.startswith(f"{OTHER}:") else MASTER_TENANT
    fates = {image.id: region_fate(rng) for image in master}
    ids = {image.id: new_id(rng) for image in master if fates[image.id] != "missing"}
    images = [region_copy(rng, m, key, owner, fates[m.id], ids) for m in master if fates[m.id] != "missing"]
    for m in master:
        if fates[m.id] == "duplicate":
            dup = region_copy(rng, m, key, owner, "checksum", {m.id: new_id(rng)})
            images.append(dup)
    for n in range(len(master) // 30):
        name = f"local-{key.replace(':', '-')}-{n:04d}"
        images.append(Image(name, new_id(rng), key, owner, False, md5(name), 10**8, "active", {"type": "local"}))
    rng.shuffle(images)
    return images


def write_region(folder: Path, key: str, images: list[Image]) -> None:
    with open(folder / backup.backup_file_name(key), "w", newline="", encoding="utf-8") as stream:
        backup.write_backup(images, stream)


def generate(params: Params, workdir: Path) -> Path:
    """The cloud folder for `params`, generated once (atomically) and reused afterwards, with its truth."""
    folder = workdir / params.folder_name()
    if (folder / "COMPLETE").exists():
        if not (folder / TRUTH).exists():  # a folder generated before the truth was written: derive it now
            master = make_master(params)
            write_truth(folder, params, master, {key: make_region(params, key, master) for key in params.region_keys()})
        return folder
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{params.folder_name()}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    master = make_master(params)
    write_region(tmp, MASTER_REGION, master)
    regions = {key: make_region(params, key, master) for key in params.region_keys()}
    for key, images in regions.items():
        write_region(tmp, key, images)
    write_truth(tmp, params, master, regions)
    (tmp / "COMPLETE").write_text(f"{params}\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    print(f"(generated {folder} in {time.perf_counter() - start:.1f} s)")
    return folder


# --- the truth: every pair's status, derived from the generated images by the spec's rules -------------
#
# An oracle independent of the engine's code: it applies the rules of the spec (§2.3 matching, §3 selection,
# §4 status) to this generator's data in the most direct way, with no optimisation. The data has none of
# the cases it leaves out (hidden or community images, tags, rotations: it checks that no region image has
# the checksum of another master image), so it knows every pair's status; `--show-status` must print it.

TRUTH = "status_truth.csv"
AMI = ("kernel_id", "ramdisk_id")


def master_dict(images: list[Image]) -> dict[str, Image]:
    """Active, named, own or ownerless images whose name is unique; AMI references as names (spec §2.3)."""
    kept = [i for i in images if i.status == "active" and i.name and i.owner in (None, MASTER_TENANT)]
    counts = Counter(i.name for i in kept)
    master = {i.name: replace(i, user_properties=dict(i.user_properties)) for i in kept if counts[i.name] == 1}
    names = {i.id: i.name for i in master.values()}
    for image in master.values():
        for prop in AMI:
            if prop in image.user_properties:
                image.user_properties[prop] = names.get(image.user_properties[prop], image.user_properties[prop])
    return master


def truth_selected(target: TargetPolicy, master: dict[str, Image]) -> list[Image]:
    """The target's synchronisable images in (size, name) order: make_config's two selection rules."""

    def selectable(image: Image) -> bool:
        if image.name.endswith("_obsolete") or not image.is_public:
            return False
        if target.name == OTHER:  # OTHER_CONDITION
            return image.user_properties.get("type") in ("baseimage", "machine")
        return any(key in image.user_properties for key in target.metadata_set)

    return sorted(filter(selectable, master.values()), key=lambda i: (i.size, i.name))


def truth_checksum(checksum: str | None, target: TargetPolicy) -> str:
    for status, checksums in (
        ("ok_stalled_checksum", target.dontupdate),
        ("pending_rename", target.rename),
        ("pending_replace", target.replace),
    ):
        if checksum in checksums:
            return status
    return "pending_replace" if "any" in target.replace else "error_checksum"


def region_truth(key: str, target: TargetPolicy, master: dict[str, Image], region: list[Image]) -> list[str]:
    """`status,region,image` rows of one region, in the order --show-status prints them."""
    selected = truth_selected(target, master)
    wanted = {image.name for image in selected}
    found: dict[str, Image] = {}
    for image in region:  # the tenant's own active copy of each name; the master's content wins a duplicate
        if image.name in wanted and image.owner == target.tenant_id and image.status == "active":
            kept = found.get(image.name)
            if kept is None or (image.checksum == master[image.name].checksum != kept.checksum):
                found[image.name] = image
    checksums = {m.checksum: m.name for m in master.values()}
    for image in region:
        if checksums.get(image.checksum, image.name) != image.name:
            raise AssertionError(f"{key}: {image.name} has another master image's checksum: not modelled")
    status: dict[str, str] = {}
    for m in selected:
        copy = found.get(m.name)
        status[m.name] = (
            "pending_upload"
            if copy is None
            else ""
            if copy.checksum == m.checksum
            else truth_checksum(copy.checksum, target)
        )
    pending = {name for name, s in status.items() if s in ("pending_upload", "pending_replace", "pending_rename")}
    region_map = {
        name: image for name, image in found.items() if status[name] not in ("pending_replace", "pending_rename")
    }
    for m in selected:
        if status[m.name]:
            continue
        copy, states = found[m.name], set()
        for prop in AMI:
            if prop not in m.user_properties:
                states.add("update" if prop in copy.user_properties else "ready")
            elif m.user_properties[prop] not in region_map:
                states.add("pending" if m.user_properties[prop] in pending else "missing")
            else:
                states.add(
                    "ready" if copy.user_properties.get(prop) == region_map[m.user_properties[prop]].id else "update"
                )
        compared = sorted(target.metadata_set - set(AMI))
        differs = copy.is_public != m.is_public or any(
            copy.user_properties.get(p) != m.user_properties.get(p) for p in compared
        )
        differs = differs or any((p in copy.user_properties) != (p in m.user_properties) for p in AMI)
        status[m.name] = (
            "error_ami" if "missing" in states else "pending_ami" if "pending" in states
            else "pending_metadata" if "update" in states or differs else "ok"
        )  # fmt: skip
    return [f"{status[m.name]},{key},{m.name}" for m in selected]


def write_truth(folder: Path, params: Params, images: list[Image], regions: dict[str, list[Image]]) -> None:
    """The truth of every region, in the order of the CLI's `--show-status master: other:`."""
    config, master = make_config(), master_dict(images)
    with open(folder / TRUTH, "w", newline="", encoding="utf-8") as stream:
        for key in sorted(regions, key=lambda k: (":" in k, k)):
            target = config.targets[key.split(":")[0] if ":" in key else "master"]
            stream.writelines(f"{row}\r\n" for row in region_truth(key, target, master, regions[key]))


def read_truth(folder: Path) -> list[str]:
    with open(folder / TRUTH, newline="", encoding="utf-8") as stream:
        return stream.read().split("\r\n")[:-1]


# --- configuration -----------------------------------------------------------------------------------


def make_config() -> SyncConfig:
    master = TargetPolicy(
        name="master",
        tenant_id=MASTER_TENANT,
        metadata_set=frozenset({"type", "nid"}),
        dontupdate=DONTUPDATE,
        replace=REPLACE,
        rename=RENAME,
    )
    other = TargetPolicy(
        name=OTHER,
        tenant_id=OTHER_TENANT,
        metadata_condition=OTHER_CONDITION,
        metadata_set=frozenset({"type"}),
        replace=frozenset({"any"}),
    )
    return SyncConfig(master_region=MASTER_REGION, targets={"master": master, OTHER: other})


# --- the measured workloads ------------------------------------------------------------------------


def csv_rows(folder: Path) -> int:
    """Reference only: tokenise every CSV with csv.reader, no Images (what any CSV-based design pays)."""
    rows = 0
    for path in sorted(folder.glob("backup_*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows += sum(1 for _ in csv.reader(stream))
    return rows


def floor(folder: Path) -> int:
    """Read every CSV of the folder into Images (dropped right away); returns the number of rows."""
    rows = 0
    for path in sorted(folder.glob("backup_*.csv")):
        rows += len(backup.read_backup(path, path.name))
    return rows


def all_regions(engine: GlanceSync) -> list[str]:
    return [region for target in engine.config.targets for region in engine.get_regions(target)]


def product(folder: Path, config: SyncConfig) -> int:
    """GlanceSync on a fresh FileCloud, then the status of every region; returns the number of pairs."""
    engine = GlanceSync(config, FileCloud(folder), QuietReporter())
    return sum(len(engine.region_status(region)) for region in all_regions(engine))


def census(folder: Path, config: SyncConfig) -> Counter[str]:
    """How many pairs have each status (untimed; shows that the data exercises every status)."""
    engine = GlanceSync(config, FileCloud(folder), QuietReporter())
    return Counter(s.status for region in all_regions(engine) for s in engine.region_status(region))


@dataclass
class Series:
    """The timed runs of one workload: wall-clock seconds (what the goals use) and CPU seconds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    count: int = 0

    def run(self, work: Callable[[], int]) -> None:
        """One cold run: no cached property parses, no garbage left by the previous run."""
        backup.clear_caches()
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        self.count = work()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)


def measure(folder: Path, config: SyncConfig, runs: int) -> dict[str, Series]:
    """Alternate the workloads run after run, so that machine noise affects them alike."""
    workloads: dict[str, Callable[[], int]] = {
        "csv": lambda: csv_rows(folder),
        "floor": lambda: floor(folder),
        "product": lambda: product(folder, config),
    }
    results = {name: Series() for name in workloads}
    for _ in range(runs):
        for name, work in workloads.items():
            results[name].run(work)
    return results


def pairs(folder: Path, config: SyncConfig, runs: int) -> tuple[Series, int]:
    """The engine alone: `statuses()` of each region with its listing already in memory (read untimed).

    Each region is read once and its statuses computed `runs` times; run k's time is the sum over the regions
    of their k-th computation. The engine (master listing, selections) is built once, untimed, as in a run."""
    engine = GlanceSync(config, FileCloud(folder), QuietReporter())
    series, count = Series(), 0
    walls, cpus = [0.0] * runs, [0.0] * runs
    for region in all_regions(engine):
        ref = parse_region(region, config)
        listing = engine.session(ref.target).list_images(ref.name)
        gc.collect()
        for k in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            statuses = engine.statuses(ref, listing, engine.reporter)[0]
            walls[k] += time.perf_counter() - wall
            cpus[k] += time.process_time() - cpu
        count += len(statuses)
        del listing, statuses
    series.wall, series.cpu, series.count = walls, cpus, count
    return series, count


def twin_pairs(folder: Path, config: SyncConfig, runs: int) -> tuple[Series, int]:
    """The engine's part of `export_status` with twins, listings in memory, as `pairs` measures statuses(), and
    (since the sixth pass) the text of its rows, which the twin path builds in runs rather than row by row:
    each region's TwinListing is read once (untimed), the twins a rule needs read into images by a first,
    untimed computation (which also learns the twins' verdicts, once per name, as a run's first region does),
    then its statuses computed `runs` times. Regions without a twin listing take statuses(), as
    export_status does; returns the series and how many regions did."""
    engine = GlanceSync(config, FileCloud(folder), QuietReporter())
    engine.prepare(list(config.targets))  # the master's tails and prototypes, as the CLI before its workers
    series, count, general = Series(), 0, 0
    walls, cpus = [0.0] * runs, [0.0] * runs
    for region in all_regions(engine):
        ref = parse_region(region, config)
        session = engine.session(ref.target)
        listing = None if engine.is_master_region(ref) else session.list_with_twins(ref.name, config.master_region)
        work: Callable[[], Sized | None] | None = None
        if listing is not None:
            listing.twin_images = _read_once(listing.twin_images)
            work = partial(_twin_rows, engine, ref, listing)
            if work() is None:  # a rotation to follow: export_status lists the region
                work = None
        if work is None:
            general += 1
            images = session.list_images(ref.name)
            work = partial(_general_rows, engine, ref, images)
        gc.collect()
        gc.disable()  # as in --show-status's workers (manage.py glancesync): the collector never runs there
        try:
            for k in range(runs):
                wall, cpu = time.perf_counter(), time.process_time()
                rows = work()
                walls[k] += time.perf_counter() - wall
                cpus[k] += time.process_time() - cpu
        finally:
            gc.enable()
        count += len(rows)
        del listing, work, rows
    series.wall, series.cpu, series.count = walls, cpus, count
    return series, general


def _general_rows(engine: GlanceSync, ref: RegionRef, images: list[Image]) -> list:
    return engine.statuses(ref, images, engine.reporter)[0]


def _twin_rows(engine: GlanceSync, ref: RegionRef, listing: TwinListing) -> _Rows | None:
    """The region's status rows as export_status writes them, or None (a rotation to follow)."""
    with collector_paused():  # as GlanceSync._twin_statuses
        ordered = engine._statuses_with_twins(ref, listing, engine.reporter)
        return None if ordered is None else _Rows(ordered.rows(ref.fullname), len(ordered))


@dataclass
class _Rows:
    """A region's rows text, and how many rows (pairs) it has."""

    text: str
    count: int

    def __len__(self) -> int:
        return self.count


def _read_once(read: Callable[[list[int]], list[Image]]) -> Callable[[list[int]], list[Image]]:
    """twin_images that reads each set of twins once: the timed runs reuse the images (nothing changes them
    in a status computation), so reading stays out of the figure."""
    done: dict[tuple[int, ...], list[Image]] = {}

    def images(indices: list[int]) -> list[Image]:
        key = tuple(indices)
        if key not in done:
            done[key] = read(indices)
        return done[key]

    return images


def write_conf(folder: Path) -> Path:
    """The legacy glancesync.conf of make_config(), for the CLI (the file cloud needs no credentials)."""
    config = make_config()
    master, other = config.targets["master"], config.targets[OTHER]

    def listed(values: frozenset[str]) -> str:
        return ", ".join(sorted(values))

    text = f"""[main]
master_region = {config.master_region}

[master]
tenant_id = {master.tenant_id}
metadata_set = {listed(master.metadata_set)}
dontupdate = {listed(master.dontupdate)}
replace = {listed(master.replace)}
rename = {listed(master.rename)}

[{OTHER}]
tenant_id = {other.tenant_id}
metadata_condition = {other.metadata_condition}
metadata_set = {listed(other.metadata_set)}
replace = {listed(other.replace)}
"""
    path = folder.parent / f"{folder.name}.conf"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class CliRuns:
    """Runs of the real `manage.py glancesync --show-status master: other:` in a child process."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    max_rss: list[int] = field(default_factory=list)  # bytes, of the biggest process (/usr/bin/time)
    peak_pss: list[int] = field(default_factory=list)  # bytes, of all its processes together (sampled)
    mismatches: list[int] = field(default_factory=list)  # output rows that differ from the truth


def cli(folder: Path, runs: int, truth: list[str]) -> CliRuns:
    """Wall time, CPU time (user + system) and max RSS measured by /usr/bin/time (not os.wait4 here: a child
    forked from this big process would report this process's RSS as its own high-water mark), and the
    output checked row by row against the generated truth. Django's data dir is a scratch folder (with
    --config-file the command reads no database)."""
    conf = write_conf(folder)
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    command = [sys.executable, str(manage), "glancesync", "--config-file", str(conf), "--cloud", f"files:{folder}"]
    command += ["--show-status", "master:", f"{OTHER}:"]
    env = {**os.environ, "GLANCESYNC_DATA_DIR": str(folder.parent / "django-data")}
    results = CliRuns()
    for _ in range(runs):
        gc.collect()
        with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as out, tempfile.NamedTemporaryFile() as usage:
            timed = ["/usr/bin/time", "-f", "%U %S %M", "-o", usage.name, *command]
            start = time.perf_counter()
            child = subprocess.Popen(timed, stdout=out, stderr=subprocess.DEVNULL, env=env)
            results.peak_pss.append(peak_pss(child))
            results.wall.append(time.perf_counter() - start)
            if child.returncode:
                raise SystemExit(f"--show-status failed with exit status {child.returncode}: {' '.join(command)}")
            user, system, max_rss_kb = Path(usage.name).read_text().split()[-3:]
            results.cpu.append(float(user) + float(system))
            results.max_rss.append(int(max_rss_kb) * 1024)
            out.seek(0)
            rows = out.read().split("\r\n")[:-1]
        results.mismatches.append(sum(a != b for a, b in zip(rows, truth, strict=False)) + abs(len(rows) - len(truth)))
    return results


@dataclass
class OriginalRuns:
    """Runs of the original's --show-status (bench/original) on the fleet."""

    wall: list[float] = field(default_factory=list)
    max_rss: list[int] = field(default_factory=list)  # bytes (/usr/bin/time; one process)
    rows: int = 0
    changed: int = 0  # (region, image) pairs whose status is not the truth's, or that it does not print


def original(folder: Path, runs: int, prepared: Path, truth: list[str]) -> OriginalRuns:
    """The original GlanceSync (as bench/original/setup.sh prepared it in `prepared`) on the fleet. Its mock
    reads every CSV of a folder, so it gets one with links to the regions' files only; its configuration is
    ours plus a placeholder credential for the `other` target, which its parser requires (the mock never
    authenticates; the master's comes from OS_* variables)."""
    csvs = folder.parent / f"{folder.name}-original-csvs"
    csvs.mkdir(exist_ok=True)
    for path in folder.glob("backup_*.csv"):
        if not (csvs / path.name).exists():
            (csvs / path.name).symlink_to(path)
    conf = folder.parent / f"{folder.name}.original.conf"
    conf.write_text(
        write_conf(folder)
        .read_text()
        .replace(f"[{OTHER}]\n", f"[{OTHER}]\ncredential = user,cGFzcw==,http://localhost:5000/v2.0,tenant\n"),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{prepared / 'py2lib'}:{prepared / 'src'}",
        "GLANCESYNC_ORIGINAL_SRC": str(prepared / "src"),
        "GLANCESYNC_SETTINGS_FILE": str(prepared / "fiware-glancesync.cfg"),
        "GLANCESYNC_LOGGING_SETTINGS_FILE": str(prepared / "fiware-glancesync-logging.cfg"),
        "GLANCESYNC_CONFIG": str(conf),
        "OS_USERNAME": "user",
        "OS_PASSWORD": "placeholder",
        "OS_AUTH_URL": "http://localhost:5000/v2.0",
        "OS_TENANT_NAME": "tenant",
    }
    python2 = (prepared / "python2").read_text().strip()
    command = [python2, str(prepared / "run_status.py"), str(csvs), "--show-status", "master:", f"{OTHER}:"]
    expected = {(region, name): status for status, region, name in (row.split(",") for row in truth)}
    results = OriginalRuns()
    for _ in range(runs):
        with tempfile.TemporaryFile("w+", encoding="utf-8") as out, tempfile.NamedTemporaryFile() as usage:
            start = time.perf_counter()
            done = subprocess.run(
                ["/usr/bin/time", "-f", "%M", "-o", usage.name, *command],
                stdout=out,
                stderr=subprocess.PIPE,
                env=env,
                cwd=prepared,  # it writes its log file (glancesync-api.log) in its working directory
                text=True,
            )
            results.wall.append(time.perf_counter() - start)
            if done.returncode:
                last = (done.stderr.strip().splitlines() or [""])[-1]
                raise SystemExit(f"the original failed ({done.returncode}: {last}): {' '.join(command)}")
            results.max_rss.append(int(Path(usage.name).read_text().split()[-1]) * 1024)
            out.seek(0)
            printed = [line.split(",") for line in out.read().splitlines()]  # its log lines share the stdout
        statuses = {(row[1], row[2]): row[0] for row in printed if len(row) == 3 and row[0] in STATUSES}
        results.rows = len(statuses)
        results.changed = sum(statuses.get(pair) != status for pair, status in expected.items())
    return results


def peak_pss(child: subprocess.Popen) -> int:
    """The highest sum of PSS over the child's process tree, sampled every 100 ms until it ends: with worker
    processes, /usr/bin/time's max RSS is the biggest one's, and a sum of RSS counts shared pages twice."""
    peak = 0
    while child.poll() is None:
        peak = max(peak, sum(map(_pss, _tree(child.pid))))
        time.sleep(0.1)
    return peak


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc, Linux)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
        except OSError:
            children = []
        pids += map(int, children)
        i += 1
    return pids


def _pss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0  # ended meanwhile
    return next((int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("Pss:")), 0)


def speed_check() -> float:
    """Seconds for a 5,000,000-iteration loop (best of 3): compares machines, as the numbers scale with it."""

    def loop() -> float:
        start, total = time.perf_counter(), 0
        for i in range(5_000_000):
            total += i
        return time.perf_counter() - start

    return min(loop() for _ in range(3))


def profile(folder: Path, config: SyncConfig, lines: int) -> None:
    """cProfile of one product run: top functions by cumulative, then by own time (cProfile slows it ~2x)."""
    backup.clear_caches()
    gc.collect()
    profiler = cProfile.Profile()
    profiler.runcall(product, folder, config)
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)


# --- report ------------------------------------------------------------------------------------------


def print_header(params: Params, folder: Path, runs: int) -> None:
    size = sum(p.stat().st_size for p in folder.glob("backup_*.csv"))
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print("GlanceSync plan benchmark (bench/plan.py)")
    print(f"Python {python}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}")
    print(f"Speed check: a 5,000,000-iteration Python loop takes {speed_check():.3f} s on this machine")
    others = params.other_regions
    print(
        f"Cloud: {params.images:,} master images x {params.regions} regions "
        f"({params.regions - others} master target + {others} '{OTHER}' target), seed {params.seed}"
    )
    print(f"Folder: {folder} ({size / 2**20:.0f} MB of CSV)")
    print(f"Runs: {runs}, median reported, each on a fresh FileCloud with cold caches")


def print_series(title: str, series: Series) -> None:
    print(title)
    print(f"        median {series.median:.3f} s (cpu {statistics.median(series.cpu):.3f} s)")
    print(f"        runs:  {' '.join(f'{s:.3f}' for s in series.wall)}")


def print_results(results: dict[str, Series]) -> None:
    floor_s, product_s, pairs = results["floor"].median, results["product"].median, results["product"].count
    ratio = product_s / floor_s
    print()
    print_series(f"floor   (read_backup of every CSV into Images, {results['floor'].count:,} rows)", results["floor"])
    print_series("product (GlanceSync + region_status of every region)", results["product"])
    print_series("for reference, csv.reader alone over every CSV (no Images)", results["csv"])
    print()
    print(f"ratio product/floor: {ratio:.2f}x")
    print(f"pairs computed: {pairs:,}   pairs/s: {pairs / product_s:,.0f}")
    print(f"goal product < {GOAL_SECONDS:g} s: {'PASS' if product_s < GOAL_SECONDS else 'FAIL'} ({product_s:.3f} s)")
    print(f"goal ratio <= {GOAL_RATIO:g}x:  {'PASS' if ratio <= GOAL_RATIO else 'FAIL'} ({ratio:.2f}x)")


def print_census(counts: Counter[str]) -> None:
    print()
    print("statuses: " + ", ".join(f"{status} {counts[status]:,}" for status in STATUSES))
    missing = [status for status in STATUSES if not counts[status]]
    if missing:
        print(f"WARNING: statuses never produced: {', '.join(missing)}")


def print_pairs(series: Series) -> None:
    per_pair = [wall / series.count * 1e6 for wall in series.wall]
    cpu = statistics.median(series.cpu) / series.count * 1e6
    median = statistics.median(per_pair)
    print()
    print(f"engine per pair (statuses() of {series.count:,} pairs, listings in memory)")
    print(f"        median {median:.2f} us/pair (cpu {cpu:.2f} us/pair)")
    print(f"        runs:  {' '.join(f'{us:.2f}' for us in per_pair)}")
    print(f"goal <= {GOAL_PAIR_US:g} us/pair: {'PASS' if median <= GOAL_PAIR_US else 'FAIL'} ({median:.2f} us)")


def print_twin_pairs(series: Series, general: int) -> None:
    per_pair = [wall / series.count * 1e6 for wall in series.wall]
    cpu = statistics.median(series.cpu) / series.count * 1e6
    print()
    print(
        f"engine per pair, twin path (export_status's engine part of {series.count:,} pairs, listings with "
        f"twins in memory; {general} regions by statuses())"
    )
    print(f"        median {statistics.median(per_pair):.2f} us/pair (cpu {cpu:.2f} us/pair)")
    print(f"        runs:  {' '.join(f'{us:.2f}' for us in per_pair)}")


def print_original(results: OriginalRuns, pairs: int) -> None:
    print()
    print(f"the original GlanceSync's --show-status master: {OTHER}: (bench/original, Python 2.7, its mock)")
    wall, rss = statistics.median(results.wall), statistics.median(results.max_rss) / 2**30
    print(f"        median {wall:.1f} s, max RSS {rss:.2f} GiB")
    print(f"        runs:  {' '.join(f'{w:.1f}' for w in results.wall)} s")
    print(f"        pairs printed {results.rows:,} of {pairs:,}; status other than the truth's: {results.changed:,}")


def print_cli(results: CliRuns, pairs: int, issue_fleet: bool, measured: OriginalRuns | None = None) -> None:
    """`issue_fleet`: the 20,000 x 100 fleet the original was measured on (only then are ratios to it shown);
    `measured`: the original's runs in this run, which the ratios then use instead of the issue's figures."""
    wall, cpu = statistics.median(results.wall), statistics.median(results.cpu)
    rss = statistics.median(results.max_rss) / 2**20
    low, high, original_mib = ORIGINAL_CLI
    if measured is not None:
        low, high = min(measured.wall), max(measured.wall)
        original_mib = statistics.median(measured.max_rss) / 2**20
    print()
    print(f"manage.py glancesync --show-status master: {OTHER}: ({pairs:,} rows checked against the truth)")
    print(f"        median {wall:.2f} s (cpu {cpu:.2f} s), max RSS {rss:.0f} MiB")
    print(f"        runs:  {' '.join(f'{w:.2f}' for w in results.wall)} s")
    print(f"        cpu:   {' '.join(f'{c:.2f}' for c in results.cpu)} s")
    print(f"        max RSS: {' '.join(f'{r / 2**20:.0f}' for r in results.max_rss)} MiB (the biggest process)")
    pss = statistics.median(results.peak_pss) / 2**20
    print(f"        peak PSS of all processes: {' '.join(f'{r / 2**20:.0f}' for r in results.peak_pss)} MiB")
    print(f"        rows differing from the truth: {' '.join(map(str, results.mismatches))}")
    if issue_fleet or measured is not None:
        where = "measured in this run" if measured is not None else "the issue's figures"
        print(f"vs the original ({where}: {low:.1f}-{high:.1f} s, {original_mib / 1024:.2f} GiB):")
        memory = max(rss, pss)  # every process's, as the original's one
        print(f"        {low / wall:.1f}-{high / wall:.1f}x faster, {original_mib / memory:.1f}x less memory")
    same = not any(results.mismatches)
    print(f"goal every row unchanged:     {'PASS' if same else 'FAIL'}")
    print(
        f"goal <= {GOAL_CLI_SECONDS:g} s:              {'PASS' if wall <= GOAL_CLI_SECONDS else 'FAIL'} ({wall:.2f} s)"
    )
    memory = max(rss, pss)
    print(f"goal <= {GOAL_CLI_MIB} MiB:            {'PASS' if memory <= GOAL_CLI_MIB else 'FAIL'} ({memory:.0f} MiB)")
    if issue_fleet:
        print(f"goal >= 15x the original:     {'PASS' if low / wall >= 15 else 'FAIL'} ({low / wall:.1f}x)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000, help="master images (default 20000)")
    parser.add_argument("--regions", type=int, default=100, help="regions besides the master (default 100)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each workload (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/glancesync-bench-plan"), help="cache folder")
    parser.add_argument("--profile", type=int, metavar="N", default=0, help="also cProfile one run, top N lines")
    parser.add_argument(
        "--only",
        default="product,pairs,cli",
        help="comma-separated parts to run: product (csv, floor and product), pairs, cli, original (default: all "
        "but original, which needs --original)",
    )
    parser.add_argument("--cli-runs", type=int, default=3, help="runs of the real --show-status (default 3)")
    parser.add_argument("--original", type=Path, metavar="DIR", help="the original, as bench/original/setup.sh made it")
    parser.add_argument("--original-runs", type=int, default=1, help="runs of the original (default 1; ~3 min each)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only.split(","))
    if "original" in parts and args.original is None:
        raise SystemExit("--only original needs --original DIR (see bench/original/setup.sh)")
    if "original" in parts and not (args.original / "python2").is_file():
        raise SystemExit(f"--original {args.original}: not a folder bench/original/setup.sh prepared")
    params = Params(args.images, args.regions, args.seed)
    folder = generate(params, args.workdir)
    config = make_config()
    print_header(params, folder, args.runs)
    if "product" in parts:
        print_results(measure(folder, config, args.runs))
        print_census(census(folder, config))
    if "pairs" in parts:
        series, count = pairs(folder, config, args.runs)
        print_pairs(series)
        print_twin_pairs(*twin_pairs(folder, config, args.runs))
    if "cli" in parts or "original" in parts:
        truth = read_truth(folder)  # 1.5 M rows at fleet size: read once
        ours = cli(folder, args.cli_runs, truth) if "cli" in parts else None
        measured = original(folder, args.original_runs, args.original, truth) if "original" in parts else None
        if measured is not None:
            print_original(measured, len(truth))
        if ours is not None:
            print_cli(ours, len(truth), (params.images, params.regions) == (20000, 100), measured)
    if args.profile:
        print()
        profile(folder, config, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
