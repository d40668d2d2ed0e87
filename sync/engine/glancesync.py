"""The engine's front door: status reports, region syncs and backups over any cloud driver."""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import itemgetter, not_
from sys import intern
from typing import Any, TextIO

from sync.clouds.base import Cloud, ImageSource, TargetSession
from sync.engine import backup
from sync.engine.memory import collector_paused
from sync.engine.model import (
    AMI_PROPERTIES,
    GLANCE_DOWNLOAD,
    STREAM,
    GlanceSyncError,
    Image,
    SyncConfig,
    TargetPolicy,
    TwinListing,
)
from sync.engine.regions import RegionRef, parse_region, target_regions
from sync.engine.reporter import Cancelled, RecordingReporter, Reporter
from sync.engine.rotation import Rotations, checksum_index
from sync.engine.selection import Selector, filter_master_images, is_foreign, replace_ami_ids_by_names
from sync.engine.status import (
    ImageStatus,
    Masters,
    compute_statuses,
    is_identical_copy,
    match_copies,
    takes_its_name,
)
from sync.engine.updates import obsolete_updates, updated_metadata, upload_copy

ERROR_STATUSES = ("error_checksum", "error_ami")
UPLOAD_STATUSES = ("pending_upload", "pending_replace", "pending_rename")
PLANNED_STATUSES = ("pending_metadata", "pending_ami", *UPLOAD_STATUSES)
MB = 1024 * 1024


@dataclass
class RegionResult:
    """What a region sync did; `error` is set when it stopped early."""

    region: str
    dry_run: bool = False
    error: str | None = None
    cancelled: bool = False
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("obsolete", "metadata", "uploads", "replaces", "renames", "errors"), 0)
    )
    bytes_uploaded: int = 0
    statuses: list[ImageStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def format_mb(size: int) -> str:
    """Megabytes the way the original printed them (Python 2 `str(float)`: 12 significant digits)."""
    text = f"{size / MB:.12g}"
    return text if any(c in text for c in ".en") else text + ".0"


def status_rows(fullname: str, statuses: list[tuple[str, str]]) -> str:
    """The `status,region,image` rows of csv.writer (minimal quoting, `\r\n`) of (status, image name) pairs,
    joined: formatted directly when no field needs quoting (a status never does), five times faster than the
    writer; else the writer's."""
    rows = [f"{status},{fullname},{name}\r\n" for status, name in statuses]
    text = "".join(rows)
    # each row has its 2 commas and its line break; any other comma, quote, line break (or a NUL) needs the writer
    special = '"' in text or "\0" in text or text.count(",") != 2 * len(rows)
    if not special and text.count("\r") == text.count("\n") == len(rows):
        return text
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\r\n").writerows((status, fullname, name) for status, name in statuses)
    return stream.getvalue()


def _row_of(entry: ImageStatus) -> tuple[str, str]:
    return entry.status, entry.master.name


_QUOTED = re.compile('[,"\r\n\0]')  # what makes csv.writer quote a field (or refuse it: a NUL)


@dataclass(slots=True)
class OrderedStatuses:
    """A region's (status, name) pairs as the twin path finds them: `names` in their order, every one `ok`
    but those `exceptions` gives as (index in names, status), in increasing index. `plain_names`: no name
    holds a character csv.writer quotes (worked out once per target, as the names are the selection's)."""

    names: list[str]
    exceptions: list[tuple[int, str]]
    plain_names: bool

    def __len__(self) -> int:
        return len(self.names)

    def pairs(self) -> list[tuple[str, str]]:
        statuses = ["ok"] * len(self.names)
        for index, status in self.exceptions:
            statuses[index] = status
        return list(zip(statuses, self.names, strict=True))

    def rows(self, fullname: str) -> str:
        """status_rows(fullname, self.pairs()), made from runs of `ok` rows each joined in one call: most
        rows of a region are `ok`, and a row apiece cost more than the rest of a twin's status."""
        if not self.plain_names or _QUOTED.search(fullname):
            return status_rows(fullname, self.pairs())
        names, ok_row = self.names, f"ok,{fullname},"
        between = f"\r\n{ok_row}"
        parts, start = [], 0
        for index, status in self.exceptions:
            if index > start:
                parts.append(f"{ok_row}{between.join(names[start:index])}\r\n")
            parts.append(f"{status},{fullname},{names[index]}\r\n")
            start = index + 1
        if start < len(names):
            parts.append(f"{ok_row}{between.join(names[start:])}\r\n")
        return "".join(parts)


def plain_names(names: list[str]) -> bool:
    """No name holds a character csv.writer quotes (a name cannot make one by being joined to another)."""
    return _QUOTED.search("".join(names)) is None


class _TwinVerdicts:
    """What a target makes of the twins of each master row (their prototype), worked out once for every name
    (the engine's master images do not change once listed, nor the driver's prototypes): `alone`, the names
    whose twin is `ok` when no other row has the name (a managed, not retired image; by the matching's
    rules, kept without a warning; by the status step's, an identical copy); `needed`, those whose twin a
    rule looks at (its image is read); the rest, whose twin the matching ignores and the rotations pass by
    (no managed image has the name; the master image of that name has its checksum), change nothing."""

    def __init__(
        self,
        prototypes: dict[str, Image],
        selected: list[Image],
        retired: list[Image],
        managed: dict[str, Image],
        masters: dict[str, Image],
        tenant_id: str,
    ) -> None:
        self.prototypes = prototypes
        self.names = [image.name for image in selected]  # the selection's order
        self.plain_names = plain_names(self.names)
        retired_names = {image.name for image in retired}
        self.alone: set[str] = set()
        self.needed: set[str] = set()
        for name, prototype in prototypes.items():
            master = managed.get(name)
            if master is None:
                namesake = masters.get(name)
                if namesake is None or namesake.checksum != prototype.checksum:
                    self.needed.add(name)
            elif (
                name not in retired_names
                and takes_its_name(prototype, tenant_id)
                and is_identical_copy(prototype, master)
            ):
                self.alone.add(name)
            else:
                self.needed.add(name)


class _TwinCopy:
    """A twin decided `ok`, in the region map the status step looks kernel/ramdisk names up in: its id."""

    __slots__ = ("id",)

    def __init__(self, image_id: str) -> None:
        self.id = image_id


class _ListingNeeded(Exception):
    """A rotation is to be followed: it looks at every image of the region, twins too."""


class _Unlisted:
    """The listing a rotation is given when the twins have no images: it may not look at it."""

    def __iter__(self) -> Iterator[Image]:
        raise _ListingNeeded


class GlanceSync:
    """One sync context: the configuration, the cloud, and the master region's images, listed once."""

    def __init__(self, config: SyncConfig, cloud: Cloud, reporter: Reporter | None = None) -> None:
        self.config = config
        self.cloud = cloud
        self.reporter = reporter or Reporter()
        self._sessions: dict[str, TargetSession] = {}
        self._tenant_ids: dict[str, str] = {}
        self.selectors = {name: Selector(target) for name, target in config.targets.items()}
        self._selected: dict[str, list[Image]] = {}
        self._retired: dict[str, list[Image]] = {}
        self._masters: dict[str, Masters] = {}
        # (target, owned) -> what its twins' prototypes make them (owned: those of its tenant's own rows)
        self._twin_verdicts: dict[tuple[str, bool], _TwinVerdicts] = {}
        self._referred_names: dict[str, set[str]] = {}
        listing = self.session("master").list_images(config.master_region)
        self.master = filter_master_images(listing, self.tenant_id("master"), self.reporter)
        replace_ami_ids_by_names(self.master, self.reporter)
        self.master_by_checksum = checksum_index(self.master)

    # -- targets and regions -------------------------------------------------------------------------

    def session(self, target: str) -> TargetSession:
        if target not in self._sessions:
            self._sessions[target] = self.cloud.session(self.config.targets[target])
        return self._sessions[target]

    def tenant_id(self, target: str) -> str:
        if target not in self._tenant_ids:  # interned: the matching compares it with every image's owner
            tenant_id = self.session(target).tenant_id()
            self._tenant_ids[target] = intern(tenant_id) if type(tenant_id) is str else tenant_id
        return self._tenant_ids[target]

    def selected(self, target: str) -> list[Image]:
        """The target's synchronisable master images in (size, name) order, computed once."""
        if target not in self._selected:
            selector = self.selectors[target]
            self._selected[target] = selector.select(self.master)
            self._retired[target] = selector.retired(self.master)
            self._masters[target] = Masters(self._selected[target], self._retired[target])
        return self._selected[target]

    def managed(self, target: str) -> dict[str, Image]:
        """The master images whose region copies the target looks after, by name: the synchronisable ones
        and the retired ones (hidden or community), whose existing copies follow them."""
        self.selected(target)
        return self._masters[target].by_name

    def region_names(self, target: str) -> list[str]:
        return self.session(target).region_names()

    def get_regions(self, target: str = "master", omit_master_region: bool = True) -> list[str]:
        return target_regions(self.config, target, self.region_names(target), omit_master_region)

    def resolve(self, region: str) -> RegionRef:
        """Parse a region string and check that the region exists in its target."""
        ref = parse_region(region, self.config)
        names = self.region_names(ref.target)
        if ref.name not in names:
            raise GlanceSyncError(f"unknown region '{region}' (regions of {ref.target}: {', '.join(names)})")
        return ref

    # -- status --------------------------------------------------------------------------------------

    def region_status(self, region: str | RegionRef, reporter: Reporter | None = None) -> list[ImageStatus]:
        """Status of each synchronisable master image in the region (spec §4), in (size, name) order."""
        ref = region if isinstance(region, RegionRef) else parse_region(region, self.config)
        listing = self.session(ref.target).list_images(ref.name)
        return self.statuses(ref, listing, reporter or self.reporter)[0]

    def export_status(self, region: str, stream: TextIO, reporter: Reporter | None = None) -> None:
        """Write `status,region,image` CSV rows (the original's --show-status format). A driver that lists
        with twins (`list_with_twins`) spares building the images of most identical copies."""
        ref = parse_region(region, self.config)
        reporter = reporter or self.reporter
        ordered = self._twin_statuses(ref, reporter)
        if ordered is None:
            stream.write(status_rows(ref.fullname, [_row_of(entry) for entry in self.region_status(ref, reporter)]))
        else:
            stream.write(ordered.rows(ref.fullname))

    def _twin_statuses(self, ref: RegionRef, reporter: Reporter) -> OrderedStatuses | None:
        """(status, master name) of region_status() from a listing with twins, or None when it must list (no
        such driver, the master region, a rotation to follow). A twin is `ok` without its image when no other
        row has its name and _TwinVerdicts says so; a twin the matching ignores and the rotations pass by is
        left out. Every other twin is read into an image, in its place in the listing, and every image goes
        through the matching and status steps as it would."""
        list_with_twins = getattr(self.session(ref.target), "list_with_twins", None)
        if list_with_twins is None or self.is_master_region(ref):
            return None
        listing = list_with_twins(ref.name, self.config.master_region)
        if listing is None:
            return None
        with collector_paused():
            return self._statuses_with_twins(ref, listing, reporter)

    def _statuses_with_twins(self, ref: RegionRef, listing: TwinListing, reporter: Reporter) -> OrderedStatuses | None:
        target = self.config.targets[ref.target]
        selected, managed, tenant_id = self.selected(ref.target), self.managed(ref.target), self.tenant_id(ref.target)
        retired = self._retired[ref.target]
        names, owned = listing.names, listing.owned
        present = set(names)
        # Set operations in C, each over the twins at most once: a region has thousands of twins and the
        # rules look at a few of them. `alone`: the twins ok unless another row has the name; `wanted`: the
        # twins a rule looks at, read into images; the other twins change nothing.
        alone: set[str] = set()
        wanted: set[str] = set()
        for is_owned, prototypes, group in (
            (False, listing.prototypes, present - owned if owned else present),
            (True, listing.owned_prototypes, owned),
        ):
            if is_owned and not group:
                continue
            verdicts = self._verdicts(ref.target, is_owned, prototypes)
            alone |= group & verdicts.alone
            wanted |= group & verdicts.needed
        ordered = self._verdicts(ref.target, False, listing.prototypes)  # the selection's order, as every target's
        others = {image.name for image in listing.images}
        if len(present) != len(names):
            others.update(name for name, count in Counter(names).items() if count > 1)
        crowded = alone & others  # another row has the name: the matching decides between them
        copies = alone - crowded if crowded else alone
        wanted |= crowded
        referred = copies.intersection(self._referred(ref.target))
        images = listing.images
        if wanted or referred:  # one pass over the twins' names, in C, for the indices of both
            looked_up = wanted | referred
            hits = list(compress(range(len(names)), map(looked_up.__contains__, names)))
        if wanted:  # each in its place in the listing: the matching's warnings and preferences follow its order
            read = [i for i in hits if names[i] in wanted]
            positions = [listing.twin_positions[i] for i in read]
            placed = chain(
                zip(listing.positions, images, strict=True), zip(positions, listing.twin_images(read), strict=True)
            )
            images = [image for _, image in sorted(placed, key=itemgetter(0))]
        matching = RecordingReporter()
        unmatched: list[Image] | None = [] if target.follow_rotations else None
        masters = self._masters[ref.target]
        found, _ = match_copies(
            ref.fullname, images, masters, tenant_id, target.only_tenant_images, matching, unmatched
        )
        first = RecordingReporter()
        if unmatched is not None:
            rotations = Rotations(ref.fullname, self.master, self.master_by_checksum, managed, target, tenant_id, first)
            try:
                if rotations.follow(_Unlisted(), found, unmatched) is not found:
                    return None
            except _ListingNeeded:
                return None  # a rotation looks at every image of the region: list it
        if referred:  # the status step looks kernels and ramdisks up by name, and reads their ids
            stand_ins: Any = found
            for i in hits:
                if names[i] in referred:
                    stand_ins[names[i]] = _TwinCopy(listing.ids[i])
        undecided = list(map(not_, map(copies.__contains__, ordered.names)))  # in C, in the selection's order
        rest = list(compress(selected, undecided))
        statuses, _ = compute_statuses(rest, found, target, retired)
        for level, message in matching.records + first.records:
            reporter.log(level, message)
        if len(statuses) == len(rest):  # no retired image followed: the selection's order, rest's indices in it
            indices = compress(range(len(undecided)), undecided)
            exceptions = [(index, e.status) for index, e in zip(indices, statuses, strict=True) if e.status != "ok"]
            return OrderedStatuses(ordered.names, exceptions, ordered.plain_names)
        rows = [(e.master.size, e.master.name, e.status) for e in statuses]
        rows += [(m.size, m.name, "ok") for m in selected if m.name in copies]
        pairs = [(status, name) for _, name, status in sorted(rows, key=itemgetter(0, 1))]
        names = [name for _, name in pairs]
        exceptions = [(index, status) for index, (status, _) in enumerate(pairs) if status != "ok"]
        return OrderedStatuses(names, exceptions, plain_names(names))

    def _verdicts(self, target: str, owned: bool, prototypes: dict[str, Image]) -> _TwinVerdicts:
        """The target's verdicts on these prototypes (its tenant's own rows' if `owned`), worked out once."""
        verdicts = self._twin_verdicts.get((target, owned))
        if verdicts is None or verdicts.prototypes is not prototypes:
            selected, retired, managed = self.selected(target), self._retired[target], self.managed(target)
            verdicts = _TwinVerdicts(prototypes, selected, retired, managed, self.master, self.tenant_id(target))
            self._twin_verdicts[target, owned] = verdicts
        return verdicts

    def _referred(self, target: str) -> set[str]:
        """The names the target's managed images refer to as kernel or ramdisk (computed once, as the selection)."""
        if target not in self._referred_names:
            self._referred_names[target] = {
                str(image.user_properties[prop])
                for image in self.managed(target).values()
                for prop in AMI_PROPERTIES
                if prop in image.user_properties
            }
        return self._referred_names[target]

    def prepare(self, targets: list[str]) -> None:
        """Work out now what every region of these targets shares (selections, tenant ids), so that worker
        processes forked afterwards inherit it. A failure is left for each region to report, as it would."""
        for target in targets:
            try:
                self.selected(target)
                self.tenant_id(target)
                prepare_twins = getattr(self.session(target), "prepare_twins", None)
                if prepare_twins is not None:
                    prepare_twins(self.config.master_region)
            except Exception:  # noqa: BLE001, S112 (reported per region, when its status is asked for)
                continue

    def statuses(
        self, ref: RegionRef, listing: list[Image], reporter: Reporter
    ) -> tuple[list[ImageStatus], dict[str, Image]]:
        """Statuses of a region's listing, and its region map without the images about to be replaced."""
        with collector_paused():
            return self._statuses(ref, listing, reporter)

    def _statuses(
        self, ref: RegionRef, listing: list[Image], reporter: Reporter
    ) -> tuple[list[ImageStatus], dict[str, Image]]:
        target = self.config.targets[ref.target]
        selected, masters, tenant_id = self.selected(ref.target), self._masters[ref.target], self.tenant_id(ref.target)
        managed, retired = masters.by_name, self._retired[ref.target]
        rotating = target.follow_rotations and not self.is_master_region(ref)
        unmatched: list[Image] | None = [] if rotating else None
        found, copies = match_copies(
            ref.fullname, listing, masters, tenant_id, target.only_tenant_images, reporter, unmatched
        )
        in_order = copies if masters.in_selection_order else None
        if unmatched is None:
            return compute_statuses(selected, found, target, retired, in_order, masters.plain)
        first = RecordingReporter()  # its warnings count only if no copy has to be held back
        rotations = Rotations(ref.fullname, self.master, self.master_by_checksum, managed, target, tenant_id, first)
        rotated = rotations.follow(listing, found, unmatched)
        in_order = in_order if rotated is found else None  # the copies by position are those of `found`
        statuses, region_map = compute_statuses(selected, rotated, target, retired, in_order, masters.plain)
        # error_ami leaves a copy untouched (spec §5.1): renaming the new build's namesake away is then not
        # done either, and the region keeps the original's status for it until the kernel/ramdisk are there.
        held = [] if rotated is found else [e for e in statuses if e.status == "error_ami" and is_renamed(e)]
        if not held:
            for level, message in first.records:
                reporter.log(level, message)
            return statuses, region_map
        for entry in held:
            assert entry.region_image is not None
            reporter.warning(
                f"{ref.fullname}: image {entry.region_image.name} ({entry.region_image.id}) has the checksum of "
                f"master image {entry.master.name}, whose kernel or ramdisk the region lacks: not renamed"
            )
        rotations.reporter = reporter
        held_ids = frozenset(e.region_image.id for e in held)  # type: ignore[union-attr] (asserted above)
        return compute_statuses(selected, rotations.follow(listing, found, unmatched, held_ids), target, retired)

    def transfer_way(self, ref: RegionRef) -> str:
        """How uploads reach the region: GLANCE_DOWNLOAD (the region's Glance imports from the master region's)
        when the target allows it, the region is the master target's (the master's Keystone, whose token the
        region's Glance uses) and its Glance offers the method (asked once per session); else STREAM."""
        target = self.config.targets[ref.target]
        if target.transfer == STREAM or ref.target != "master" or self.is_master_region(ref):
            return STREAM
        offers = getattr(self.session(ref.target), "offers_glance_download", None)
        return GLANCE_DOWNLOAD if offers is not None and offers(ref.name) else STREAM

    def planned_transfer(self, ref: RegionRef) -> str:
        """What the preview says of the region's uploads: STREAM, GLANCE_DOWNLOAD, or "none" when the target
        allows only glance-download and the region cannot do it (its uploads would fail)."""
        way = self.transfer_way(ref)
        return "none" if way == STREAM and self.config.targets[ref.target].transfer == GLANCE_DOWNLOAD else way

    def is_master_region(self, ref: RegionRef) -> bool:
        # The original renamed master images when syncing the master region onto itself (spec §9.1-19).
        return ref.target == "master" and ref.name == self.config.master_region

    # -- backup --------------------------------------------------------------------------------------

    def backup_region(self, region: str, directory: str) -> str:
        """Write the region's unfiltered listing as `backup_<fullname>.csv` in `directory`; return the path."""
        ref = parse_region(region, self.config)
        try:
            images = self.session(ref.target).list_images(ref.name)
        except Exception as error:
            self.reporter.error(f"{ref.fullname}:Error retrieving images from region. Cause {error}")
            raise
        path = os.path.join(directory, backup.backup_file_name(ref.fullname))
        with open(path, "w", newline="") as stream:
            backup.write_backup(images, stream)
        self.reporter.info(f"Backup of region {ref.fullname}")
        return path

    # -- sync ----------------------------------------------------------------------------------------

    def sync_region(self, region: str, dry_run: bool = False, reporter: Reporter | None = None) -> RegionResult:
        """Synchronise one region (spec §5). An error stops this region only; it is in the result."""
        reporter = reporter or self.reporter
        result = RegionResult(region=region, dry_run=dry_run)
        try:
            ref = parse_region(region, self.config)
            result.region = ref.fullname
            RegionSync(self, ref, dry_run, reporter, result).run()
        except Cancelled as why:
            result.cancelled = True
            result.error = str(why) or "cancelled"
            reporter.warning(f"{result.region}: {result.error}")
        except Exception as error:  # any driver failure ends this region's work, not the run
            result.error = str(error) if isinstance(error, GlanceSyncError) else f"{type(error).__name__}: {error}"
            reporter.error(f"{result.region}: {result.error}")
        return result


class RegionSync:
    """The steps of one region's sync, in the original's order (spec §5.1)."""

    def __init__(
        self, engine: GlanceSync, ref: RegionRef, dry_run: bool, reporter: Reporter, result: RegionResult
    ) -> None:
        self.engine = engine
        self.ref = ref
        self.fullname = ref.fullname
        self.target: TargetPolicy = engine.config.targets[ref.target]
        self.session = engine.session(ref.target)
        self.tenant_id = engine.tenant_id(ref.target)
        self.dry_run = dry_run
        self.reporter = reporter
        self.result = result
        self.region_map: dict[str, Image] = {}

    def run(self) -> None:
        listing = self._remove_unfinished_uploads(self.session.list_images(self.ref.name))
        if self.target.only_tenant_images:
            listing = [i for i in listing if i.name and not is_foreign(i, self.tenant_id)]
        if self.target.support_obsolete_images and not self.engine.is_master_region(self.ref):
            listing = self._obsolete_step(listing)
        statuses, self.region_map = self.engine.statuses(self.ref, listing, self.reporter)
        self.result.statuses = statuses
        self._announce_plan(statuses)
        self._metadata_pass(statuses)
        deferred = self._upload_pass(statuses)
        self._ami_pass([s for s in statuses if s.status == "pending_ami"] + deferred)
        self.result.counters["errors"] += sum(s.status in ERROR_STATUSES for s in statuses)
        self._final_line(statuses)

    def _announce_plan(self, statuses: list[ImageStatus]) -> None:
        changing = [s for s in statuses if s.status in PLANNED_STATUSES and not _protected_replace(s)]
        uploads = sum(s.master.size for s in changing if s.status in UPLOAD_STATUSES)
        self.reporter.planned(len(changing), uploads)

    def _remove_unfinished_uploads(self, listing: list[Image]) -> list[Image]:
        """Delete images whose upload by an earlier run was cut short (a driver marks them)."""
        for image in listing:
            if not image.extra.get("unfinished_upload"):
                continue
            if self.dry_run:
                self.reporter.info(f"{self.fullname}: Unfinished upload to remove: {image.name} ({image.id})")
            else:
                self.reporter.info(f"{self.fullname}: Removing unfinished upload {image.name} ({image.id})")
                self.session.delete_image(self.ref.name, image.id)
        return [image for image in listing if not image.extra.get("unfinished_upload")]

    def _obsolete_step(self, listing: list[Image]) -> list[Image]:
        """Rename/re-sync region copies of obsolete master images; the listing then reflects the changes."""
        selector = self.engine.selectors[self.ref.target]
        updates = obsolete_updates(self.engine.master, selector, listing, self.tenant_id, self.fullname, self.reporter)
        for image in updates:
            if self.dry_run:
                self.reporter.info(f"{self.fullname}: Obsolete image pending to update {image.name}")
            else:
                self.reporter.info(f"{self.fullname}: updating obsolete image {image.name}")
                self.session.update_image(self.ref.name, image)
                self.result.counters["obsolete"] += 1
        changed = {image.id: image for image in updates}
        return [changed.get(image.id, image) for image in listing]

    def _update_metadata(self, entry: ImageStatus, region_image: Image) -> None:
        name = entry.master.name
        renamed = region_image.name != name  # a copy found by its checksum: the master renamed it
        if self.dry_run:
            if renamed:
                self.reporter.info(f"{self.fullname}: Image pending to be renamed {region_image.name} -> {name}")
            else:
                self.reporter.info(f"{self.fullname}: Image pending to update the metadata {name}")
            return
        if renamed:
            self.reporter.info(
                f"{self.fullname}: Renaming image {region_image.name} ({region_image.id}) to {name}, as in the master"
            )
        else:
            self.reporter.info(f"{self.fullname}: Updating the metadata of image {name}")
        image = updated_metadata(region_image, entry.master, self.target, self.region_map, self.fullname, self.reporter)
        self.session.update_image(self.ref.name, image)
        self.region_map[name] = image
        self.result.counters["renames" if renamed else "metadata"] += 1

    def _metadata_pass(self, statuses: list[ImageStatus]) -> None:
        for entry in statuses:
            if entry.status == "pending_metadata":
                assert entry.region_image is not None
                self.reporter.image_started(entry.master.name)
                self._update_metadata(entry, entry.region_image)
                self.reporter.image_done(entry.master.name)
            elif entry.status == "pending_ami" and is_renamed(entry):
                assert entry.region_image is not None  # renamed before its namesake's upload; re-pointed after it
                self._update_metadata(entry, entry.region_image)

    def _upload_pass(self, statuses: list[ImageStatus]) -> list[ImageStatus]:
        """Uploads, replaces and renames, smallest first; returns uploads whose AMI references wait."""
        deferred: list[ImageStatus] = []
        announce = {
            "pending_upload": "Uploading image",
            "pending_replace": "Replacing image",
            "pending_rename": "Renaming and replacing image",
        }
        for entry in statuses:
            name, size = entry.master.name, entry.master.size
            if entry.status == "error_checksum":
                self._warn_checksum(entry)
                continue
            if entry.status not in announce:
                continue
            if _protected_replace(entry):
                self._warn_protected(entry)
                continue
            if not self.dry_run or entry.status != "pending_upload":
                self.reporter.info(f"{self.fullname}: {announce[entry.status]} {name} ({format_mb(size)} MB)")
            self.reporter.image_started(name)
            if self.dry_run:
                self.reporter.info(f"{self.fullname}: Pending: {name} ({format_mb(size)} MB)")
            else:
                if not self._upload(entry):
                    deferred.append(entry)
                self._retire_old_copy(entry)
                self.reporter.info(f"{self.fullname}: Image uploaded.")
            self.result.bytes_uploaded += size
            self.reporter.image_done(name)
        return deferred

    def _warn_checksum(self, entry: ImageStatus) -> None:
        assert entry.region_image is not None
        self.reporter.warning(
            f"Image {entry.master.name} has a different checksum ({entry.region_image.checksum}) in region "
            f"{self.fullname} than in the master region. It was not set what to do. Please, fill either "
            "dontupdate, replace or rename with the checksum."
        )

    def _upload(self, entry: ImageStatus) -> bool:
        master = entry.master
        image, resolved = upload_copy(master, self.target, self.region_map, self.fullname, self.reporter)
        source = ImageSource(self.engine.session("master"), self.engine.config.master_region, master)

        def progress(done: int, total: int) -> None:
            self.reporter.progress(master.name, done, total)

        image.id = self._copy(image, source, progress)
        image.region, image.owner = self.fullname, self.tenant_id
        self.region_map[master.name] = image
        self.result.counters["uploads"] += 1
        return resolved

    def _copy(self, image: Image, source: ImageSource, progress: Callable[[int, int], None]) -> str:
        """Create the region's copy: imported by the region's Glance (glance-download) where possible, else
        streamed. A failed import is streamed once instead, unless the target says `transfer = glance-download`."""
        way = self.engine.transfer_way(self.ref)
        name, master_region = source.image.name, source.region
        if way == STREAM:
            if self.target.transfer == GLANCE_DOWNLOAD:
                raise GlanceSyncError(
                    f"{self.fullname}: Upload of {name} failed. Cause: the target says transfer = glance-download, "
                    "but the region's Glance does not offer glance-download (or the region is not behind the "
                    "master region's Keystone)"
                )
            self.reporter.transfer_started(name, STREAM)
            return self.session.upload_image(self.ref.name, image, source, progress)
        self.reporter.transfer_started(name, GLANCE_DOWNLOAD)
        self.reporter.info(
            f"{self.fullname}: {name}: the region's Glance imports it from {master_region} (glance-download)"
        )

        def stage(stage: str) -> None:
            self.reporter.stage(name, stage)

        try:
            return self.session.import_image(self.ref.name, image, source, stage)
        except GlanceSyncError as error:
            if self.target.transfer == GLANCE_DOWNLOAD:
                raise
            cause = str(error).rstrip()
            self.reporter.warning(
                f"{cause}{'' if cause.endswith('.') else '.'} Streaming {name} through GlanceSync instead."
            )
        self.reporter.transfer_started(name, STREAM)
        return self.session.upload_image(self.ref.name, image, source, progress)

    def _warn_protected(self, entry: ImageStatus) -> None:
        assert entry.region_image is not None
        self.reporter.warning(
            f"{self.fullname}: Image {entry.master.name} ({entry.region_image.id}) is protected: it cannot be "
            "replaced. Unprotect it, or list its checksum in rename instead of replace."
        )
        self.result.counters["errors"] += 1

    def _retire_old_copy(self, entry: ImageStatus) -> None:
        """After a replace the old image is deleted; after a rename it becomes private `<name>.old`."""
        old = entry.region_image
        if entry.status == "pending_replace" and old is not None:
            self.session.delete_image(self.ref.name, old.id)
            self.result.counters["replaces"] += 1
        elif entry.status == "pending_rename" and old is not None:
            renamed = old.copy()
            renamed.name = f"{old.name}.old"
            renamed.set_visibility("private")
            self.session.update_image(self.ref.name, renamed)
            self.result.counters["renames"] += 1

    def _ami_pass(self, entries: list[ImageStatus]) -> None:
        """Point AMI images at kernels/ramdisks uploaded in this run (a dry run changes nothing)."""
        for entry in entries:
            self.reporter.image_started(entry.master.name)
            self._update_metadata(entry, self.region_map.get(entry.master.name) or entry.region_image)
            if entry.status == "pending_ami":  # deferred uploads were counted done when uploaded
                self.reporter.image_done(entry.master.name)

    def _final_line(self, statuses: list[ImageStatus]) -> None:
        pending = [
            s
            for s in statuses
            if s.status in ("pending_metadata", "pending_upload", "pending_replace", "pending_rename")
        ]
        errors = [s for s in statuses if s.status in ERROR_STATUSES]
        if not pending:
            line = f"{self.fullname}: Region is synchronized."
            if errors:
                names = ", ".join(f"{s.master.name} ({s.status})" for s in errors)
                line = f"{self.fullname}: Region is synchronized, except {len(errors)} image(s) in error: {names}"
            self.reporter.info(line)
        elif self.dry_run:
            self.reporter.info(f"{self.fullname}: MBs pending : {self.result.bytes_uploaded // MB}")
        else:
            self.reporter.info(f"{self.fullname}:   Total uploaded to region: {self.result.bytes_uploaded // MB} (MB) ")


def is_renamed(entry: ImageStatus) -> bool:
    """The region's copy has another name: found by its checksum after the master renamed the image."""
    return entry.region_image is not None and entry.region_image.name != entry.master.name


def _protected_replace(entry: ImageStatus) -> bool:
    """A protected region copy cannot be deleted: replacing it would leave two images of one name."""
    return entry.status == "pending_replace" and bool(entry.region_image and entry.region_image.protected)
