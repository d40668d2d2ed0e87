"""Plain data the engine works on: images, per-target policies and the whole sync configuration."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Properties that hold the UUIDs of other images of the same region (AMI support, spec §5.5).
AMI_PROPERTIES = ("kernel_id", "ramdisk_id")
OBSOLETE_SUFFIX = "_obsolete"

STATUSES = (
    "ok",
    "ok_stalled_checksum",
    "pending_metadata",
    "pending_upload",
    "pending_replace",
    "pending_rename",
    "pending_ami",
    "error_checksum",
    "error_ami",
)
UPLOAD_STATUSES = ("pending_upload", "pending_replace", "pending_rename")
VISIBILITIES = ("public", "community", "shared", "private")
_NO_TAGS: frozenset[str] = frozenset()
# How an upload's bytes reach a region (a target's `transfer` option): `stream` through GlanceSync, or
# `glance-download` (the region's Glance imports the image from the master region's Glance itself, Glance 2023.1+);
# `auto` uses glance-download where the region offers it and is behind the master's Keystone, else streams.
TRANSFERS = ("auto", "stream", "glance-download")
STREAM, GLANCE_DOWNLOAD = "stream", "glance-download"
# The stages of a glance-download copy, as the run page shows them instead of a byte count.
IMPORT_STAGES = ("record created", "importing", "verifying", "done")


class SharedProperties(dict):
    """Properties that several images share, read-only: a backup file's reader gives every image of the same
    property text (flat: scalar values only) one such dict. An identical copy's properties are then its
    master's by identity, the status step's cheapest test, and a region holds one dict per distinct text.
    To change an image's properties, give it a new dict: changing a shared one raises TypeError. Copies
    (`copy()`, `|`, copy.copy, copy.deepcopy, pickle) are plain dicts."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("these image properties are shared with other images: give the image a new dict")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return dict, (dict(self),)


NO_PROPERTIES = SharedProperties()


class GlanceSyncError(Exception):
    """An error with a message meant for the operator (names region/image/cause, never a secret)."""


@dataclass(slots=True)  # millions are read in a status run of a big fleet: slots halve their size and access
class Image:
    """One Glance image as the engine sees it (spec §2.1), with Glance v2's lifecycle fields.

    `visibility` is one of VISIBILITIES; `is_public` is the original's flag, `visibility == "public"`, kept for
    conditions and the backup format: change both with `set_visibility`. `hidden` is Glance's `os_hidden`.
    `tags` are Glance's tags. `extra` carries driver-specific system attributes (disk_format,
    container_format, min_ram, min_disk, os_hash_algo, os_hash_value...) copied on upload but never compared.
    """

    name: str
    id: str
    region: str
    owner: str | None = None
    is_public: bool = True
    checksum: str | None = None
    size: int = 0
    status: str = "active"
    user_properties: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    visibility: str = ""  # empty: derived from is_public (public or private), as the original's images
    hidden: bool = False
    tags: frozenset[str] = frozenset()
    protected: bool = False

    def __post_init__(self) -> None:
        self.size = int(self.size or 0)
        self.user_properties = dict(self.user_properties)
        if self.visibility:
            self.is_public = self.visibility == "public"
        else:
            self.visibility = "public" if self.is_public else "private"
        if type(self.tags) is not frozenset:  # noqa: E721 (exactly a frozenset; runs for every image read)
            self.tags = frozenset(self.tags)

    @classmethod
    def listed(
        cls,
        name: str,
        id: str,  # noqa: A002 (the field's name)
        region: str,
        owner: str | None,
        is_public: bool,
        checksum: str | None,
        size: int,
        status: str,
        user_properties: dict[str, Any],
    ) -> Image:
        """`Image(...)` of these fields for a driver's hot loop (millions of rows): the same image, built
        without __post_init__'s conversions, so the values must already be what it would make of them:
        `size` an int, and `user_properties` a dict that belongs to this image alone or SharedProperties
        (it is not copied)."""
        image = cls.__new__(cls)
        image.name = name
        image.id = id
        image.region = region
        image.owner = owner
        image.is_public = is_public
        image.checksum = checksum
        image.size = size
        image.status = status
        image.user_properties = user_properties
        image.extra = {}
        image.visibility = "public" if is_public else "private"
        image.hidden = False
        image.tags = _NO_TAGS
        image.protected = False
        return image

    def set_visibility(self, visibility: str) -> None:
        self.visibility = visibility
        self.is_public = visibility == "public"

    @property
    def retired(self) -> bool:
        """Hidden or community: how a rotation takes an old build out of new users' sight."""
        return self.hidden or self.visibility == "community"

    def copy(self) -> Image:
        """An independent copy, as copy.deepcopy would make it, at a fraction of its cost (a refresh copies
        tens of thousands of images only to word a change): the scalar fields (str, int, bool, None) and a
        frozenset of tags are shared, the two dicts copied with their mutable values deep-copied, so
        `extra` may hold a driver's objects as before."""
        if type(self) is not Image:  # a subclass may carry state of its own: deepcopy knows it
            return copy.deepcopy(self)
        memo: dict[int, Any] = {}  # one memo for all the fields: a value shared by two stays shared
        clone = Image.listed(
            self.name,
            self.id,
            self.region,
            self.owner,
            self.is_public,
            self.checksum,
            self.size,
            self.status,
            _copied(self.user_properties, memo),
        )
        clone.extra = _copied(self.extra, memo)
        clone.visibility, clone.hidden, clone.protected = self.visibility, self.hidden, self.protected
        clone.tags = _copied(self.tags, memo)
        return clone


# Values deepcopy returns as they are; a frozenset of them is as immutable (the tags).
_ATOMIC = frozenset({str, int, float, bool, bytes, type(None)})


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    """`value` for an independent copy: itself when immutable, else a copy (deep for anything nested)."""
    kind = type(value)
    if kind in _ATOMIC or (kind is frozenset and all(type(item) in _ATOMIC for item in value)):
        return value
    if kind is not dict and kind is not SharedProperties:  # both copied below, into a plain dict
        return copy.deepcopy(value, memo)
    if id(value) in memo:
        return memo[id(value)]
    copied: dict[Any, Any] = {}
    memo[id(value)] = copied
    for key, item in value.items():
        if type(key) not in _ATOMIC:  # a hashable object may still hold mutable state
            key = copy.deepcopy(key, memo)  # noqa: PLW2901
        copied[key] = item if type(item) in _ATOMIC else copy.deepcopy(item, memo)
    return copied


@dataclass
class TwinListing:
    """A region's listing as a driver may give it to a status-only run (`list_with_twins`): the *twins*, rows
    that read exactly as a row of the master region of the same name (every field but the id and region),
    kept as names and ids, and every other row as an image. The engine decides a twin from its prototype
    (what its fields read as) without building its image, or asks for the image when a rule needs it.

    `images` and `positions`: the other rows' images, as list_images gives them, and their indices in the
    listing; `names`, `ids` and `twin_positions`: the twins'; `prototypes`: name -> an image of the twins'
    fields (shared, never changed); `twin_images(indices)`: the images list_images gives for those twins.
    `owned`: the names of the twins whose row differs from the master's only in its owner field, which holds
    the target's tenant id (its own copies, in a target with its own tenant); `owned_prototypes`: what their
    fields read as."""

    images: list[Image]
    positions: list[int]
    names: list[str]
    ids: list[str]
    twin_positions: list[int]
    prototypes: dict[str, Image]
    twin_images: Callable[[list[int]], list[Image]]
    owned: set[str] = field(default_factory=set)
    owned_prototypes: dict[str, Image] = field(default_factory=dict)


@dataclass
class TargetPolicy:
    """A target: regions sharing a Keystone and a credential, and the rules applied to them (spec §1.4)."""

    name: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    keystone_url: str | None = None
    tenant: str | None = None
    tenant_id: str | None = None
    use_keystone_v3: bool = True
    user_domain: str = "Default"
    project_domain: str = "Default"
    cloud_name: str | None = None  # an entry of clouds.yaml used for auth instead of the fields above
    cacert: str | None = None  # CA bundle for the Keystone and Glance TLS certificates
    insecure: bool = False  # skip TLS verification (test clouds only)
    forcesyncs: frozenset[str] = frozenset()
    replace: frozenset[str] = frozenset()
    rename: frozenset[str] = frozenset()
    dontupdate: frozenset[str] = frozenset()
    ignore_regions: frozenset[str] = frozenset()
    metadata_condition: str | None = None
    metadata_set: frozenset[str] = frozenset()
    only_tenant_images: bool = True
    support_obsolete_images: bool = True
    obsolete_syncprops: frozenset[str] = frozenset()
    list_images_timeout: int = 30
    follow_rotations: bool = True  # a region copy renamed in the master follows by checksum (not the original's)
    transfer: str = "auto"  # one of TRANSFERS


@dataclass
class SyncConfig:
    """Everything a run needs to know: the master region and every target (`master` included)."""

    master_region: str
    targets: dict[str, TargetPolicy]
    preferable_order: list[str] = field(default_factory=list)
    max_children: int = 1
    images_dir: str | None = None

    @property
    def master(self) -> TargetPolicy:
        return self.targets["master"]
