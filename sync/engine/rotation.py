"""Rotations: the master renamed an image (its new build took the old name), and each region copy follows.

Clouds rotate images: a new build is published as `debian-12` and the previous one is renamed
`debian-12 (20261101)` and hidden. The region's `debian-12` then holds the bytes of the renamed master image,
so matching by name alone sees a checksum conflict in every region after every rotation. A region image is
a master image's copy when it has that image's checksum, whatever its name: it is renamed (and hidden, made
community...) like its master, and the new build under the old name is an ordinary upload.

Only unambiguous cases are followed; anything else is a warning that names the images and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sync.engine.model import Image, TargetPolicy
from sync.engine.reporter import Reporter
from sync.engine.selection import is_foreign
from sync.engine.status import ANY


def checksum_index(master: dict[str, Image]) -> dict[str, list[Image]]:
    """Master images by checksum (computed once per run: every region uses it)."""
    index: dict[str, list[Image]] = {}
    for image in master.values():
        if image.checksum:
            index.setdefault(image.checksum, []).append(image)
    return index


def follow_rotations(
    fullname: str,
    listing: Iterable[Image],
    found: dict[str, Image],
    master: dict[str, Image],
    by_checksum: dict[str, list[Image]],
    managed: dict[str, Image],
    target: TargetPolicy,
    tenant_id: str,
    reporter: Reporter,
) -> dict[str, Image]:
    """`found` (master name -> region image matched by name) with the copies found by checksum moved to their
    master's name. Such a copy keeps its old name here: the status step sees the difference and plans the
    rename as a metadata update."""
    listing = list(listing)
    decided = (target.dontupdate | target.rename | target.replace) - {ANY}
    claims: dict[str, list[Image]] = {}
    for image in listing:
        if not _candidate(image, tenant_id) or image.checksum in decided:
            continue  # an explicit checksum decision is the operator's word for that content
        namesake = master.get(image.name)
        if namesake is not None and namesake.checksum == image.checksum:
            continue  # the copy of the master image of its own name: the common case
        owners = by_checksum.get(image.checksum or "")
        if not owners:
            continue
        if len(owners) > 1:
            if any(owner.name in managed for owner in owners):
                names = ", ".join(sorted(owner.name for owner in owners))
                reporter.warning(
                    f"{fullname}: image {image.name} ({image.id}) has the checksum of several master images "
                    f"({names}): not renamed"
                )
            continue
        if owners[0].name in managed:
            claims.setdefault(owners[0].name, []).append(image)
    if not claims:
        return found
    result = dict(found)
    for name, copies in claims.items():
        copy = _unambiguous_copy(fullname, managed[name], copies, listing, target, tenant_id, reporter)
        if copy is None:
            continue
        if result.get(copy.name) is copy:
            del result[copy.name]
        result[name] = copy
    return result


def _candidate(image: Image, tenant_id: str) -> bool:
    """A region image that may be renamed: the tenant's own, active, complete, with a name and a checksum."""
    return bool(
        image.name and image.checksum and image.status == "active" and not image.extra.get("unfinished_upload")
    ) and not is_foreign(image, tenant_id)


def _unambiguous_copy(
    fullname: str,
    master: Image,
    copies: list[Image],
    listing: list[Image],
    target: TargetPolicy,
    tenant_id: str,
    reporter: Reporter,
) -> Image | None:
    """The one region image to rename to `master.name`, or None (with a warning) when that is not clear."""
    if len(copies) > 1:
        names = ", ".join(f"{image.name} ({image.id})" for image in copies)
        reporter.warning(
            f"{fullname}: images {names} all have the checksum of master image {master.name}: none is renamed"
        )
        return None
    copy = copies[0]
    holders = [
        image
        for image in listing
        if image.name == master.name
        and not image.extra.get("unfinished_upload")  # removed before the sync uses the listing
        and not (target.only_tenant_images and is_foreign(image, tenant_id))
    ]
    if not holders:
        return copy
    holder = holders[0]
    if holder.checksum == master.checksum:
        reporter.warning(
            f"{fullname}: image {copy.name} ({copy.id}) has the checksum of master image {master.name}, which "
            f"the region already has ({holder.id}): not renamed"
        )
    else:
        reporter.warning(
            f"{fullname}: image {copy.name} ({copy.id}) has the checksum of master image {master.name}, but "
            f"{master.name} ({holder.id}) exists in the region with other content: not renamed"
        )
    return None
