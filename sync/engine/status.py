"""The status of every (region, master image) pair (spec §2.3 matching step, §4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sync.engine.model import AMI_PROPERTIES, Image, TargetPolicy
from sync.engine.reporter import Reporter
from sync.engine.selection import is_foreign

ANY = "any"


@dataclass
class ImageStatus:
    status: str
    master: Image
    region_image: Image | None  # the region's copy (for replace/rename: the old one); None when absent


def match_region_images(
    fullname: str,
    images: Iterable[Image],
    selected: dict[str, Image],
    tenant_id: str,
    only_tenant_images: bool,
    reporter: Reporter,
    unmatched: list[Image] | None = None,
) -> dict[str, Image]:
    """Map each selected master name to the region image that stands for it (spec §2.3).

    `unmatched`, when given, receives the images that are not the copy of a selected namesake by content: the
    only ones a rotation may rename (collected here, since this loop sees every image anyway)."""
    found: dict[str, Image] = {}
    for image in images:
        master = selected.get(image.name)
        if master is None or master.checksum != image.checksum:
            if unmatched is not None:
                unmatched.append(image)
            if master is None:
                continue
        if is_foreign(image, tenant_id):
            reporter.warning(
                f"{fullname}: image {image.name} (UUID {image.id}) is owned by other tenant: {image.owner}"
            )
            if only_tenant_images:
                continue
        if image.status != "active":
            reporter.warning(
                f"{fullname}: state of image {image.name} with UUID {image.id}  is not active: {image.status}"
            )
            continue
        kept = found.get(image.name)
        if kept is None:
            found[image.name] = image
            continue
        if image.hidden == kept.hidden:  # a hidden namesake of a visible image is an old build kept for servers
            reporter.warning(f"{fullname}: image name {image.name} is duplicated. UUIDs: {image.id} {kept.id}")
        if _preference(image, master) > _preference(kept, master):
            found[image.name] = image
    return found


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
    to Glance v2; kernel/ramdisk values excluded). The name differs only for a copy found by its checksum.

    Plain loops rather than any(generator): this runs for every (region, image) pair of every region.
    """
    if region.visibility != master.visibility or region.hidden != master.hidden or region.name != master.name:
        return True
    if master.tags and not master.tags <= region.tags:  # region-local tags are kept: only missing ones count
        return True
    rprops, mprops = region.user_properties, master.user_properties
    if metadata_set:
        for prop in metadata_set:
            if prop not in AMI_PROPERTIES and rprops.get(prop) != mprops.get(prop):
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
    """`ready`, `update`, `pending` or `missing` for the kernel/ramdisk references (spec §4.3)."""
    if not _has_ami_reference(region.user_properties) and not _has_ami_reference(master.user_properties):
        return "ready"  # the common case, checked first: this runs for every (region, image) pair
    states = {_ami_property_state(p, region, master, found, pending) for p in AMI_PROPERTIES}
    for state in ("missing", "pending", "update"):
        if state in states:
            return state
    return "ready"


def _ami_property_state(prop: str, region: Image, master: Image, found: dict[str, Image], pending: set[str]) -> str:
    if prop not in master.user_properties:
        return "ready" if prop not in region.user_properties else "update"
    aux_name = master.user_properties[prop]
    if aux_name not in found:
        return "pending" if aux_name in pending else "missing"
    return "ready" if region.user_properties.get(prop) == found[aux_name].id else "update"


def missing_ami_references(master: Image, found: dict[str, Image]) -> list[str]:
    """Why an image is error_ami: its `kernel_id` / `ramdisk_id` names that the region's map lacks."""
    return [
        f"{prop} {master.user_properties[prop]}"
        for prop in AMI_PROPERTIES
        if prop in master.user_properties and master.user_properties[prop] not in found
    ]


def compute_statuses(
    selected: list[Image], found: dict[str, Image], target: TargetPolicy, retired: list[Image] | None = None
) -> tuple[list[ImageStatus], dict[str, Image]]:
    """Status of each selected master image (in the given order) against the region's matched images, and
    of each retired master image (hidden, community) whose copy the region has: that copy follows it.

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
    first_pass: list[ImageStatus] = []
    for master in images:
        region = region_map.get(master.name)
        if region is None:
            first_pass.append(ImageStatus("pending_upload", master, None))
        elif region.checksum != master.checksum:
            status = checksum_status(region.checksum, target)
            if status in ("pending_replace", "pending_rename"):
                del region_map[master.name]
            first_pass.append(ImageStatus(status, master, region))
        else:
            first_pass.append(ImageStatus("", master, region))  # same content: decided below
    pending = {s.master.name for s in first_pass if s.status in ("pending_upload", "pending_replace", "pending_rename")}
    for entry in first_pass:
        if not entry.status:
            entry.status = _same_content_status(entry, region_map, pending, target)
    return first_pass, region_map


def _same_content_status(
    entry: ImageStatus, region_map: dict[str, Image], pending: set[str], target: TargetPolicy
) -> str:
    assert entry.region_image is not None
    ami = ami_state(entry.region_image, entry.master, region_map, pending)
    if ami == "pending":
        return "pending_ami"
    if ami == "missing":
        return "error_ami"
    if ami == "update" or metadata_differs(entry.region_image, entry.master, target.metadata_set):
        return "pending_metadata"
    return "ok"
