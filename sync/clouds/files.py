"""The file cloud: a folder of backup CSVs acting as a cloud (the demo cloud and the scenario-test vehicle).

It behaves like the original's mock facade (spec §6.3), persisted in the folder: every `backup_<key>.csv` is a
region, keyed `Region` for the master target and `target:Region` for the others; an empty file is an existing
empty region. It holds metadata only: uploads ignore the bytes and reading an image's data yields nothing.
Every change rewrites the region's file atomically, so a later run (a new FileCloud) sees it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

from sync.clouds.base import UPLOAD_MARKER, ImageSource, ProgressCallback
from sync.engine.backup import (
    BackupFormatError,
    backup_file_name,
    master_tails,
    owned_tails,
    read_backup,
    read_with_twins,
    write_backup,
)
from sync.engine.model import GlanceSyncError, Image, TargetPolicy, TwinListing

_PREFIX, _SUFFIX = "backup_", ".csv"
_FLAT_VALUES = (str, int, float, bool, type(None))

# A loaded region: image id -> image, in file order (dicts keep insertion order, deletions keep the rest's).
Region = dict[str, Image]


class FileCloud:
    """One instance per run: regions load lazily from the folder and stay cached while it lives."""

    forks_safely = True  # no connection nor thread to share: a status run may fork workers (manage.py glancesync)

    def __init__(self, directory: str | os.PathLike[str], latency: float = 0.0, rate: float | None = None) -> None:
        self.directory = os.fspath(directory)
        if not os.path.isdir(self.directory):
            raise GlanceSyncError(f"{self.directory}: no such folder for the file cloud")
        self.latency = latency  # seconds slept per upload/update/delete, to simulate a remote cloud
        self.rate = rate  # MB/s an upload of the image's size takes (the demo's moving progress bars); None: instant
        self._lock = threading.Lock()  # guards the two dicts below
        self._regions: dict[str, Region | None] | None = None  # key -> loaded region, None until needed
        self._region_locks: dict[str, threading.Lock] = {}  # one per region: regions may sync in parallel
        self._master_tails: dict[str, tuple[dict[str, str], dict[str, Image]]] = {}  # key -> master_tails()
        self._owned_tails: dict[tuple[str, str], tuple[dict[str, str], dict[str, Image]]] = {}  # owned_tails()

    def session(self, target: TargetPolicy) -> FileTargetSession:
        return FileTargetSession(self, target)

    def region_keys(self) -> list[str]:
        """Every region key (`Valladolid`, `other:Madrid`...), sorted."""
        with self._lock:
            return sorted(self._known())

    # --- used by the sessions -------------------------------------------------------------------------

    def region_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._region_locks.setdefault(key, threading.Lock())

    def region(self, key: str, create: bool = False) -> Region | None:
        """The region's images (loaded on first use), None if it does not exist and `create` is false.

        Callers hold region_lock(key) so that loading and changing a region never interleave."""
        with self._lock:
            known = self._known()
            if key not in known:
                if not create:
                    return None
                known[key] = {}
            loaded = known[key]
        if loaded is None:
            loaded = self._load(key)
            with self._lock:
                known[key] = loaded
        return loaded

    def listing(self, key: str) -> list[Image] | None:
        """Copies of the region's images, None if it does not exist (caller holds region_lock(key)).

        A region not loaded yet is read straight from its file: the objects are new, so nothing needs copying,
        and it stays unloaded until a change needs it (a status check of 100 big regions keeps none in memory).
        """
        with self._lock:
            known = self._known()
            if key not in known:
                return None
            loaded = known[key]
        if loaded is None:
            return list(self._load(key).values())
        return [_copy(image) for image in loaded.values()]

    def listing_with_twins(self, key: str, master_key: str, owner: str = "") -> TwinListing | None:
        """The region's listing split into the twins of the master region `master_key`'s rows (also those
        with `owner` in their owner field: the owned twins) and the other rows' images
        (sync.engine.backup.read_with_twins); None when listing() should give it: the region is loaded in
        memory (its changes may not be saved yet), missing, or its file is not one the fast path reads
        (caller holds region_lock(key))."""
        with self._lock:
            known = self._known()
            if known.get(key, True) is not None or known.get(master_key, True) is not None:
                return None
            tails, prototypes = self._master_rows(master_key)
            owned_tails, owned_prototypes = self._owned_rows(master_key, owner)
        read = read_with_twins(self._path(key), tails, owned_tails)
        if read is None:
            return None
        images, positions, names, ids, twins, owned, twin_images = read
        if len(set(ids).union(image.id for image in images)) != len(ids) + len(images):
            return None  # a repeated id: listing() reports it
        return TwinListing(images, positions, names, ids, twins, prototypes, twin_images, owned, owned_prototypes)

    def _master_rows(self, master_key: str) -> tuple[dict[str, str], dict[str, Image]]:
        """master_tails() of the master region's file, read once per run (lock held)."""
        if master_key not in self._master_tails:
            self._master_tails[master_key] = master_tails(self._path(master_key), UPLOAD_MARKER)
        return self._master_tails[master_key]

    def _owned_rows(self, master_key: str, owner: str) -> tuple[dict[str, str], dict[str, Image]]:
        """owned_tails() of the master region's rows for one owner, worked out once per run (lock held)."""
        if (master_key, owner) not in self._owned_tails:
            self._owned_tails[master_key, owner] = owned_tails(*self._master_rows(master_key), owner)
        return self._owned_tails[master_key, owner]

    def prepare_twins(self, master_key: str, owner: str = "") -> None:
        """Read the master region's rows for listing_with_twins now (before worker processes fork)."""
        with self._lock:
            if self._known().get(master_key, True) is None:
                self._owned_rows(master_key, owner)

    def fingerprint(self, key: str) -> bytes | None:
        """A hash of the region's file: its bytes, size, inode and time (the stat tells apart a file changed and
        changed back). None when a listing would not come from the file (this run has loaded the region, so
        its changes may not be saved yet) or the file cannot be read."""
        with self.region_lock(key):
            with self._lock:
                if self._known().get(key, True) is not None:  # unknown, or loaded in memory
                    return None
            try:
                with open(self._path(key), "rb") as stream:
                    stat = os.fstat(stream.fileno())
                    digest = hashlib.blake2b(stream.read(), digest_size=16)
            except OSError:
                return None
        digest.update(f"{stat.st_size} {stat.st_ino} {stat.st_mtime_ns}".encode())
        return digest.digest()

    def save(self, key: str) -> None:
        """Rewrite the region's file atomically (a temp file in the same folder, then os.replace)."""
        region = self.region(key)
        assert region is not None, key
        path = self._path(key)
        tmp = os.path.join(self.directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666: the umask applies
        try:
            with open(fd, "w", newline="", encoding="utf-8") as stream:
                write_backup(region.values(), stream)
            _copy_mode(path, tmp)
            os.replace(tmp, path)
        except BaseException:
            _remove_quietly(tmp)
            raise

    def simulate_latency(self) -> None:
        if self.latency > 0:
            time.sleep(self.latency)

    # --- internals ------------------------------------------------------------------------------------

    def _known(self) -> dict[str, Region | None]:
        """The region table; the folder is scanned once, then only this run's changes apply (lock held)."""
        if self._regions is None:
            self._regions = dict.fromkeys(self._scan())
        return self._regions

    def _scan(self) -> list[str]:
        with os.scandir(self.directory) as entries:
            names = [e.name for e in entries if e.is_file()]
        return [
            n[len(_PREFIX) : -len(_SUFFIX)]
            for n in names
            if n.startswith(_PREFIX) and n.endswith(_SUFFIX) and len(n) > len(_PREFIX) + len(_SUFFIX)
        ]

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, backup_file_name(key))

    def _load(self, key: str) -> Region:
        path = self._path(key)
        images = read_backup(path, path)
        region: Region = {image.id: image for image in images}  # one pass; a repeated id is looked for after
        if len(region) != len(images):
            # The original's mock silently kept the last row; writing back would then lose a row.
            raise BackupFormatError(f"{path}: image id {_first_repeated_id(images)!r} appears more than once")
        return region


class FileTargetSession:
    """A TargetSession on a FileCloud: bare region names in, images carrying region fullnames out."""

    def __init__(self, cloud: FileCloud, target: TargetPolicy) -> None:
        self.cloud = cloud
        self.target = target

    def region_names(self) -> list[str]:
        keys = self.cloud.region_keys()
        if self.target.name == "master":
            return [k for k in keys if ":" not in k]
        prefix = f"{self.target.name}:"
        return [k[len(prefix) :] for k in keys if k.startswith(prefix)]

    def tenant_id(self) -> str:
        # As the mock: the configured tenant_id, else a fake id from the tenant name (tenant1 -> tenant1id).
        return self.target.tenant_id or f"{self.target.tenant or ''}id"

    def list_images(self, region: str) -> list[Image]:
        key = self._fullname(region)
        with self.cloud.region_lock(key):
            images = self.cloud.listing(key)
        if images is None:
            raise GlanceSyncError(
                f"{key}: Error retrieving image list. Cause: no such region in {self.cloud.directory}"
            )
        return _unmarked(images)

    def prepare_twins(self, master_region: str) -> None:
        """Optional (TargetSession): what list_with_twins shares between regions, worked out now."""
        self.cloud.prepare_twins(master_region, self.tenant_id())

    def list_with_twins(self, region: str, master_region: str) -> TwinListing | None:
        """Optional (TargetSession): list_images(region) with the rows that read as the master region's row of
        the same name, or as that row owned by this target's tenant, kept as twins (a status-only run decides
        most of them without their images); None when only list_images can give this listing."""
        key = self._fullname(region)
        with self.cloud.region_lock(key):
            listing = self.cloud.listing_with_twins(key, master_region, self.tenant_id())
        if listing is None:
            return None
        _unmarked(listing.images)
        read_twins = listing.twin_images
        listing.twin_images = lambda indices: _unmarked(read_twins(indices))
        return listing

    def read_image_data(self, region: str, image: Image) -> Iterable[bytes]:
        return iter(())  # metadata only: there are no bytes to stream

    def upload_image(
        self, region: str, image: Image, source: ImageSource, progress: ProgressCallback | None = None
    ) -> str:
        """Store the image's row. With a latency, the row is first written as `saving` with the upload
        marker and finished after the simulated transfer, as the OpenStack driver does: a process killed
        meanwhile leaves an unfinished upload for the next sync to remove."""
        key = self._fullname(region)
        duration = self.cloud.latency + ((image.size or 0) / (self.cloud.rate * 1e6) if self.cloud.rate else 0)
        if duration <= 0:
            new_id = self._store(key, _uploaded(image, "", key, self.tenant_id()))
            if progress is not None:
                progress(image.size, image.size)
            return new_id
        unfinished = _uploaded(image, "", key, self.tenant_id())
        unfinished.status = "saving"
        unfinished.user_properties[UPLOAD_MARKER] = "1"
        new_id = self._store(key, unfinished)
        try:
            self._simulate_transfer(image.size or 0, duration, progress)
            with self.cloud.region_lock(key):
                stored = self._existing(key, "Error uploading image")[new_id]
                stored.status = image.status
                stored.user_properties = _without_marker(stored.user_properties)
                self.cloud.save(key)
        except BaseException:
            self.delete_image(region, new_id)
            raise
        return new_id

    def _store(self, key: str, image: Image) -> str:
        with self.cloud.region_lock(key):
            images = self.cloud.region(key, create=True)
            assert images is not None
            image.id = _new_id(images, image.name)
            images[image.id] = image
            self.cloud.save(key)
        return image.id

    def _simulate_transfer(self, size: int, duration: float, progress: ProgressCallback | None) -> None:
        """Sleep the transfer's duration in steps (at least 10, and 4 a second), reporting progress (which may
        raise to cancel)."""
        steps = max(10, int(duration * 4))
        for step in range(1, steps + 1):
            time.sleep(duration / steps)
            if progress is not None:
                progress(size * step // steps, size)

    def update_image(self, region: str, image: Image) -> None:
        key = self._fullname(region)
        self.cloud.simulate_latency()
        with self.cloud.region_lock(key):
            stored = self._existing(key, "Error updating image").get(image.id)
            if stored is None:
                cause = f"no image with id {image.id}"
                raise GlanceSyncError(f"{key}: Error updating image {image.name}. Cause: {cause}")
            # Only what the engine may change on an existing image; owner, status, size, checksum stay.
            stored.name = image.name
            stored.set_visibility(image.visibility)
            stored.hidden = image.hidden
            stored.tags = stored.tags | image.tags  # tags are added, never removed (as Glance's tag API)
            stored.user_properties = dict(_unshared(image.user_properties))
            self.cloud.save(key)

    def delete_image(self, region: str, image_id: str) -> bool:
        key = self._fullname(region)
        self.cloud.simulate_latency()
        with self.cloud.region_lock(key):
            images = self.cloud.region(key)
            if images is None or images.pop(image_id, None) is None:
                return False
            self.cloud.save(key)
            return True

    def _fullname(self, region: str) -> str:
        return region if self.target.name == "master" else f"{self.target.name}:{region}"

    def _existing(self, key: str, action: str) -> Region:
        images = self.cloud.region(key)
        if images is None:
            raise GlanceSyncError(f"{key}: {action}. Cause: no such region in {self.cloud.directory}")
        return images

    def listing_fingerprint(self, region: str) -> bytes | None:
        """A hash of what list_images would read the region from (FileCloud.fingerprint); None: hash the listing."""
        return self.cloud.fingerprint(self._fullname(region))


def _unmarked(images: list[Image]) -> list[Image]:
    """The images with the upload marker taken out of their properties, an unfinished upload marked in extra."""
    for image in images:  # a membership test first: this runs for every image of every listing
        properties = image.user_properties
        if UPLOAD_MARKER in properties:
            image.user_properties = _without_marker(properties)
            if properties[UPLOAD_MARKER] is not None:
                image.extra["unfinished_upload"] = image.status != "active"
    return images


def _without_marker(properties: dict[str, Any]) -> dict[str, Any]:
    """A new dict: a listing's properties may be shared with other images (SharedProperties, read-only)."""
    return {key: value for key, value in properties.items() if key != UPLOAD_MARKER}


def _first_repeated_id(images: list[Image]) -> str:
    seen: set[str] = set()
    for image in images:
        if image.id in seen:
            return image.id
        seen.add(image.id)
    raise AssertionError("no repeated id")


def _new_id(images: Region, name: str) -> str:
    """`<n>$<name>` with the smallest n >= 1 unused in the region, as the original's mock did."""
    n = 1
    while f"{n}${name}" in images:
        n += 1
    return f"{n}${name}"


def _uploaded(image: Image, image_id: str, region: str, owner: str) -> Image:
    """What an upload stores: the engine's (already filtered) image with the region's id and owner."""
    return Image(
        name=image.name,
        id=image_id,
        region=region,
        owner=owner,
        is_public=image.is_public,
        checksum=image.checksum,
        size=image.size,
        status=image.status,
        user_properties=_unshared(image.user_properties),
        visibility=image.visibility,
        hidden=image.hidden,
        tags=image.tags,
    )


def _copy(image: Image) -> Image:
    """A copy independent from the store; cheaper than deepcopy, which matters for 20,000-image regions."""
    return Image(
        image.name,
        image.id,
        image.region,
        image.owner,
        image.is_public,
        image.checksum,
        image.size,
        image.status,
        _unshared(image.user_properties),
        visibility=image.visibility,
        hidden=image.hidden,
        tags=image.tags,
    )


def _unshared(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties safe to give to Image(), which makes the shallow copy itself.

    Glance properties are scalars; a nested value (hand-written file) must not be shared between copies."""
    for value in properties.values():  # a plain loop: this runs once per image of every listing
        if not isinstance(value, _FLAT_VALUES):
            return copy.deepcopy(properties)
    return properties


def _copy_mode(path: str, tmp: str) -> None:
    """Keep the permissions of the file being replaced (a new file keeps the umask-derived mode)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
