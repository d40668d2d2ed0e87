"""How a region image is brought in line with its master image, in memory (spec §5.2, §5.3, §5.5, §5.6)."""

from __future__ import annotations

from sync.engine.model import AMI_PROPERTIES, OBSOLETE_SUFFIX, Image, TargetPolicy
from sync.engine.reporter import Reporter
from sync.engine.selection import Selector, is_foreign


def fix_ami_references(
    image: Image, master: Image, region_map: dict[str, Image], fullname: str, reporter: Reporter
) -> bool:
    """Point kernel_id/ramdisk_id of `image` at the region's copies of the master's kernel/ramdisk.

    Returns False when a referenced image is not (yet) in the region: the property is then left out
    instead of the original's `__<name>` placeholder, which Glance v2 rejects (it wants a UUID).
    """
    resolved = True
    for prop in AMI_PROPERTIES:
        if prop not in master.user_properties:
            image.user_properties.pop(prop, None)
            continue
        aux_name = master.user_properties[prop]
        aux = region_map.get(aux_name)
        if aux is not None:
            image.user_properties[prop] = aux.id
            continue
        reporter.warning(f"{fullname}: Not found {aux_name} on region. It should be {prop} of image {master.name}")
        image.user_properties.pop(prop, None)
        resolved = False
    return resolved


def synchronised_properties(master: Image, target: TargetPolicy) -> dict:
    """The master's properties a region copy must carry (all of them when metadata_set is empty)."""
    props = master.user_properties
    if not target.metadata_set:
        return {k: v for k, v in props.items() if k not in AMI_PROPERTIES}
    return {k: props[k] for k in target.metadata_set if k in props and k not in AMI_PROPERTIES}


def updated_metadata(
    region_image: Image,
    master: Image,
    target: TargetPolicy,
    region_map: dict[str, Image],
    fullname: str,
    reporter: Reporter,
) -> Image:
    """A copy of `region_image` with the master's name, visibility, hidden flag, tags and synchronised
    properties (spec §5.2, extended to Glance v2). The name changes only for a copy found by its checksum
    (the master renamed the image in a rotation).

    With a metadata_set, properties outside it are local and kept. With an empty metadata_set every
    property is synchronised, so the copy gets exactly the master's (the original copied none and left
    such images pending_metadata forever). Region-local tags are kept: the master's are added.
    """
    image = region_image.copy()
    fix_ami_references(image, master, region_map, fullname, reporter)
    if target.metadata_set:
        for prop in target.metadata_set - set(AMI_PROPERTIES):
            if prop in master.user_properties:
                image.user_properties[prop] = master.user_properties[prop]
            else:
                image.user_properties.pop(prop, None)
    else:
        ami = {k: v for k, v in image.user_properties.items() if k in AMI_PROPERTIES}
        image.user_properties = synchronised_properties(master, target) | ami
    _follow(image, master)
    image.name = master.name
    image.tags = image.tags | master.tags
    return image


def _follow(image: Image, master: Image) -> None:
    """The master is the authority for the visibility and the hidden flag of the images it manages."""
    image.set_visibility(master.visibility)
    image.hidden = master.hidden


def upload_copy(
    master: Image, target: TargetPolicy, region_map: dict[str, Image], fullname: str, reporter: Reporter
) -> tuple[Image, bool]:
    """The image to create in a region from a master image, and whether its AMI references resolved."""
    image = master.copy()
    image.user_properties = synchronised_properties(image, target)  # the copy's values: nothing shared
    resolved = fix_ami_references(image, master, region_map, fullname, reporter)
    return image, resolved


def obsolete_updates(
    master: dict[str, Image],
    selector: Selector,
    region_images: list[Image],
    tenant_id: str,
    fullname: str,
    reporter: Reporter,
) -> list[Image]:
    """Region images to rename to `<name>_obsolete` and/or re-sync, as updated copies (spec §5.6)."""
    candidates = _obsolete_master_images(master, selector, reporter)
    updates = []
    for image in region_images:
        if not image.name or is_foreign(image, tenant_id):
            continue
        if image.name in candidates:
            source = candidates[image.name]
            if image.checksum == source.checksum:
                changed = _with_obsolete_properties(image, source, selector.target)
                if changed != image:
                    updates.append(changed)
        elif image.name + OBSOLETE_SUFFIX in candidates:
            source = candidates[image.name + OBSOLETE_SUFFIX]
            if image.checksum == source.checksum:
                changed = _with_obsolete_properties(image, source, selector.target)
                changed.name = source.name
                updates.append(changed)
    return updates


def _obsolete_master_images(master: dict[str, Image], selector: Selector, reporter: Reporter) -> dict[str, Image]:
    """Master `_obsolete` images, except those whose base name is still synchronised (safety check 3)."""
    obsolete = {}
    for name, image in master.items():
        if not name.endswith(OBSOLETE_SUFFIX):
            continue
        base = master.get(name[: -len(OBSOLETE_SUFFIX)])
        if base is not None and selector.is_synchronisable(base):
            reporter.warning(
                f"Ignore obsolete master image {name} because {base.name} exists and it is synchronisable."
            )
            continue
        obsolete[name] = image
    return obsolete


def _with_obsolete_properties(image: Image, source: Image, target: TargetPolicy) -> Image:
    """Copy of `image` with the master's visibility, hidden flag and obsolete_syncprops (never deleting a
    property)."""
    changed = image.copy()
    for prop in target.obsolete_syncprops:
        if prop in source.user_properties:
            changed.user_properties[prop] = source.user_properties[prop]
    _follow(changed, source)
    return changed
