"""The status of every (region, master image) pair (spec §2.3 matching step, §4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sync.engine.model import AMI_PROPERTIES, Image, TargetPolicy
from sync.engine.reporter import Reporter
from sync.engine.selection import padded

ANY = "any"


@dataclass(slots=True)  # millions are made in a status run of a big fleet
class ImageStatus:
    status: str
    master: Image
    region_image: Image | None  # the region's copy (for replace/rename: the old one); None when absent


class Masters:
    """Master images by name (a later namesake wins), with each name's position among them, worked out once
    per target: the matching files a region's image at its master's position, so that the status step reads
    each (master, copy) pair by position instead of looking the name up (two dict probes a pair fewer)."""

    __slots__ = ("by_name", "checksums", "checksum_at", "images", "plain", "positions", "in_selection_order")

    def __init__(self, selected: list[Image], retired: list[Image] | None = None) -> None:
        managed = selected + retired if retired else selected
        self.by_name = {image.name: image for image in managed}
        self.images = list(self.by_name.values())
        self.positions = {name: position for position, name in enumerate(self.by_name)}
        # No two of one name: position i holds selected[i], so the matched copies line up with the selection.
        self.in_selection_order = len(self.images) == len(managed)
        self.checksum_at = [image.checksum for image in self.images]  # read in the matching without the image
        self.checksums = frozenset(self.checksum_at) - {None}
        self.plain = [is_plain(image) for image in self.images]  # the status step then leaves their dicts unread


def match_region_images(
    fullname: str,
    images: Iterable[Image],
    selected: dict[str, Image],
    tenant_id: str,
    only_tenant_images: bool,
    reporter: Reporter,
    unmatched: list[Image] | None = None,
) -> dict[str, Image]:
    """Map each selected master name to the region image that stands for it (spec §2.3): match_copies for
    masters given by name (each under its own name)."""
    masters = Masters(list(selected.values()))
    return match_copies(fullname, images, masters, tenant_id, only_tenant_images, reporter, unmatched)[0]


def match_copies(
    fullname: str,
    images: Iterable[Image],
    masters: Masters,
    tenant_id: str,
    only_tenant_images: bool,
    reporter: Reporter,
    unmatched: list[Image] | None = None,
) -> tuple[dict[str, Image], list[Image | None]]:
    """Map each master name to the region image that stands for it (spec §2.3), and list the same images by
    their masters' positions (None where the region has none), for compute_statuses.

    `unmatched`, when given, receives the only images a rotation may rename to a master's name: those with the
    content of one of the masters but not the copy of their namesake among them by content (collected here,
    since this loop sees every image anyway, while it is in the cache: the thousands of copies of masters the
    target does not manage, and the region's own images, are left out)."""
    checksums, checksum_at = masters.checksums, masters.checksum_at
    found: dict[str, Image] = {}
    copies: list[Image | None] = [None] * len(masters.images)
    positions, by_position = masters.positions, masters.images
    own = padded(tenant_id)
    for image in images:  # the hottest loop of a status run: every image of every region
        name = image.name
        position = positions.get(name)
        if position is None:
            if unmatched is not None and image.checksum in checksums:
                unmatched.append(image)
            continue
        if unmatched is not None and checksum_at[position] != image.checksum and image.checksum in checksums:
            unmatched.append(image)
        owner = image.owner
        if owner and owner != tenant_id and padded(owner) != own:  # is_foreign(), inlined
            reporter.warning(f"{fullname}: image {name} (UUID {image.id}) is owned by other tenant: {owner}")
            if only_tenant_images:
                continue
        if image.status != "active":
            reporter.warning(f"{fullname}: state of image {name} with UUID {image.id}  is not active: {image.status}")
            continue
        kept = copies[position]
        if kept is None:
            found[name] = copies[position] = image
            continue
        if image.hidden == kept.hidden:  # a hidden namesake of a visible image is an old build kept for servers
            reporter.warning(f"{fullname}: image name {name} is duplicated. UUIDs: {image.id} {kept.id}")
        master = by_position[position]
        if _preference(image, master) > _preference(kept, master):
            found[name] = copies[position] = image
    return found, copies


def takes_its_name(image: Image, tenant_id: str) -> bool:
    """match_region_images keeps the image, without a warning, when no other image has its name: active, and
    the tenant's own or ownerless (its owner test, with the tenant padded by the caller in a loop)."""
    owner = image.owner
    return image.status == "active" and not (owner and owner != tenant_id and padded(owner) != padded(tenant_id))


def is_identical_copy(region: Image, master: Image) -> bool:
    """compute_statuses' first test, which makes a copy `ok` (the same rule, inlined there): the same content,
    properties, visibility, hidden flag and name, no master tags, and no kernel/ramdisk reference."""
    rprops, mprops = region.user_properties, master.user_properties
    return (
        region.checksum == master.checksum
        and is_plain(master)
        and (rprops is mprops or rprops == mprops)
        and region.visibility == master.visibility
        and region.hidden == master.hidden
        and region.name == master.name
    )


def is_plain(master: Image) -> bool:
    """No tags and no kernel/ramdisk reference: a copy with the same fields is `ok` as it is."""
    return not master.tags and "kernel_id" not in master.user_properties and "ramdisk_id" not in master.user_properties


def _preference(image: Image, master: Image) -> tuple[bool, bool]:
    """Among region images of one name: the master's content first (the original's rule), then a visible one."""
    return image.checksum == master.checksum, not image.hidden


def checksum_status(checksum: str | None, target: TargetPolicy) -> str:
    """What to do with a region image whose content differs from the master's (spec §4.2 C).

    An explicit checksum in both `rename` and `replace` renames (the safer choice the original's own
    acceptance test expected, CLAUDIA-5301); otherwise explicit checksums beat `any`, and rename-any
    beats replace-any, as in the original.
    """
    if checksum in target.dontupdate:
        return "ok_stalled_checksum"
    if checksum in target.rename:
        return "pending_rename"
    if checksum in target.replace:
        return "pending_replace"
    if ANY in target.rename:
        return "pending_rename"
    if ANY in target.replace:
        return "pending_replace"
    return "error_checksum"


def metadata_differs(region: Image, master: Image, metadata_set: frozenset[str]) -> bool:
    """Name, visibility, hidden flag, a master tag or a synchronised property differs (spec §4.2 B.2-3, extended
    to Glance v2; kernel/ramdisk values excluded). The name differs only for a copy found by its checksum."""
    return _metadata_differs(region, master, _compared(metadata_set), bool(metadata_set))


@lru_cache(maxsize=64)
def _compared(metadata_set: frozenset[str]) -> tuple[str, ...]:
    """The properties of a metadata_set whose values are compared: all but kernel/ramdisk (region UUIDs)."""
    return tuple(sorted(metadata_set.difference(AMI_PROPERTIES)))


def _metadata_differs(region: Image, master: Image, compared: tuple[str, ...], has_set: bool) -> bool:
    """metadata_differs with the compared properties worked out once per region (`has_set`: the metadata_set
    is not empty). Plain loops rather than any(generator): this runs for every (region, image) pair."""
    if region.visibility != master.visibility or region.hidden != master.hidden or region.name != master.name:
        return True
    if master.tags and not master.tags <= region.tags:  # region-local tags are kept: only missing ones count
        return True
    rprops, mprops = region.user_properties, master.user_properties
    if has_set:
        for prop in compared:
            if rprops.get(prop) != mprops.get(prop):
                return True
        # kernel/ramdisk values are region UUIDs (the AMI check compares them); only their presence counts here
        return ("kernel_id" in rprops) != ("kernel_id" in mprops) or ("ramdisk_id" in rprops) != (
            "ramdisk_id" in mprops
        )
    if len(rprops) != len(mprops):
        return True
    return any(prop not in AMI_PROPERTIES and mprops.get(prop) != value for prop, value in rprops.items())


def _has_ami_reference(props: dict) -> bool:
    return "kernel_id" in props or "ramdisk_id" in props


def ami_state(region: Image, master: Image, found: dict[str, Image], pending: set[str]) -> str:
    """`ready`, `update`, `pending` or `missing` for the kernel/ramdisk references (spec §4.3): per property,
    `missing` when the master's reference names an image the region lacks and will not receive, `pending` when
    it will receive it, `update` when the region's reference is not that image's id (or the master has none
    and the region has one); the worst of both wins, in that order. One loop, no call a property: this runs
    for every AMI pair of every region."""
    rprops, mprops = region.user_properties, master.user_properties
    if not _has_ami_reference(rprops) and not _has_ami_reference(mprops):
        return "ready"  # the common case, checked first: this runs for every (region, image) pair
    worst = "ready"
    for prop in AMI_PROPERTIES:
        if prop not in mprops:
            state = "ready" if prop not in rprops else "update"
        else:
            aux_name = mprops[prop]
            aux = found.get(aux_name)
            if aux is None:
                if aux_name not in pending:
                    return "missing"
                state = "pending"
            else:
                state = "ready" if rprops.get(prop) == aux.id else "update"
        if state == "pending" or worst == "ready":
            worst = state
    return worst


def missing_ami_references(master: Image, found: dict[str, Image]) -> list[str]:
    """Why an image is error_ami: its `kernel_id` / `ramdisk_id` names that the region's map lacks."""
    return [
        f"{prop} {master.user_properties[prop]}"
        for prop in AMI_PROPERTIES
        if prop in master.user_properties and master.user_properties[prop] not in found
    ]


def compute_statuses(
    selected: list[Image],
    found: dict[str, Image],
    target: TargetPolicy,
    retired: list[Image] | None = None,
    copies: list[Image | None] | None = None,
    plain: list[bool] | None = None,
) -> tuple[list[ImageStatus], dict[str, Image]]:
    """Status of each selected master image (in the given order) against the region's matched images, and
    of each retired master image (hidden, community) whose copy the region has: that copy follows it.
    `copies` and `plain`, when given, are `found.get(master.name)` and `is_plain(master)` of each selected
    master, by position (from match_copies and Masters, when no two managed masters share a name): the
    pairs are then read without a lookup, and the master's properties only when they differ from the copy's.

    Returns the statuses and the region map without the images about to be replaced or renamed.
    Unlike the original, every upload is known before the AMI check runs, so an AMI image waits for its
    kernel/ramdisk (`pending_ami`) whatever their sizes (the original's CLAUDIA-5324 bug).
    """
    region_map = dict(found)
    images = selected
    if retired:
        followed = [m for m in retired if m.name in found and found[m.name].checksum == m.checksum]
        for master in retired:  # another image under a retired name is not its copy, nor an AMI reference
            if master.name in found and found[master.name].checksum != master.checksum:
                del region_map[master.name]
        if followed:
            images = sorted(selected + followed, key=lambda i: (i.size, i.name))
            copies = None  # no longer in the selection's order
    # One pass decides every status but those of same-content copies with kernel/ramdisk references: they
    # wait for the second, since their AMI state depends on every upload of the region.
    first_pass: list[ImageStatus] = []
    deferred: list[ImageStatus] = []
    pending: set[str] = set()
    compared, has_set = _compared(target.metadata_set), bool(target.metadata_set)
    get, append = region_map.get, first_pass.append  # locals: this loop runs for every (region, image) pair
    # The retired masters' copies and flags follow the selection's (not strict). Without them, each is looked
    # up as the loop goes: a master that shares a name with one before it sees that one's copy gone if replaced.
    if copies is not None and plain is not None:
        triples: Iterable[tuple[Image, Image | None, bool]] = zip(images, copies, plain, strict=False)
    else:
        triples = ((m, get(m.name), is_plain(m)) for m in images)
    for master, region, is_plain_master in triples:
        if region is None:
            append(ImageStatus("pending_upload", master, None))
            pending.add(master.name)
        elif region.checksum != master.checksum:
            status = checksum_status(region.checksum, target)
            if status == "pending_replace" or status == "pending_rename":
                del region_map[master.name]
                pending.add(master.name)
            append(ImageStatus(status, master, region))
        elif (  # is_identical_copy, inlined (this runs for every pair): keep the two alike, the twins rely on it
            is_plain_master
            and (  # most copies: identical, mostly one shared dict (SharedProperties)
                region.user_properties is master.user_properties or region.user_properties == master.user_properties
            )
            and region.visibility == master.visibility
            and region.hidden == master.hidden
            and region.name == master.name
        ):
            append(ImageStatus("ok", master, region))
        else:
            status = _copy_status(region, master, compared, has_set)
            entry = ImageStatus(status, master, region)
            append(entry)
            if not status:
                deferred.append(entry)
    for entry in deferred:
        assert entry.region_image is not None
        entry.status = _ami_status(entry.region_image, entry.master, region_map, pending, compared, has_set)
    return first_pass, region_map


def _copy_status(region: Image, master: Image, compared: tuple[str, ...], has_set: bool) -> str:
    """ok or pending_metadata for a copy with the master's content; "" when kernel/ramdisk references make
    it wait for _ami_status. Equal property dicts (most copies) spare the property-by-property comparison."""
    rprops, mprops = region.user_properties, master.user_properties
    if rprops is mprops or rprops == mprops:
        if "kernel_id" in mprops or "ramdisk_id" in mprops:
            return ""
        if (
            region.visibility == master.visibility
            and region.hidden == master.hidden
            and region.name == master.name
            and (not master.tags or master.tags <= region.tags)
        ):
            return "ok"
        return "pending_metadata"
    if "kernel_id" in rprops or "ramdisk_id" in rprops or "kernel_id" in mprops or "ramdisk_id" in mprops:
        return ""
    return "pending_metadata" if _metadata_differs(region, master, compared, has_set) else "ok"


def _ami_status(
    region: Image,
    master: Image,
    region_map: dict[str, Image],
    pending: set[str],
    compared: tuple[str, ...],
    has_set: bool,
) -> str:
    """The status of a same-content copy when either image has kernel/ramdisk references (spec §4.3)."""
    ami = ami_state(region, master, region_map, pending)
    if ami == "pending":
        return "pending_ami"
    if ami == "missing":
        return "error_ami"
    if ami == "update":
        return "pending_metadata"
    return "pending_metadata" if _metadata_differs(region, master, compared, has_set) else "ok"
