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
from sync.engine.status import ANY, match_region_images


def checksum_index(master: dict[str, Image]) -> dict[str, list[Image]]:
    """Master images by checksum (computed once per run: every region uses it)."""
    index: dict[str, list[Image]] = {}
    for image in master.values():
        if image.checksum:
            index.setdefault(image.checksum, []).append(image)
    return index


class Rotations:
    """The renames one region needs: each accepted claim moves a region image to its master image's name."""

    def __init__(
        self,
        fullname: str,
        master: dict[str, Image],
        by_checksum: dict[str, list[Image]],
        managed: dict[str, Image],
        target: TargetPolicy,
        tenant_id: str,
        reporter: Reporter,
    ) -> None:
        self.fullname = fullname
        self.master = master
        self.by_checksum = by_checksum
        self.managed = managed
        self.target = target
        self.tenant_id = tenant_id
        self.reporter = reporter

    def follow(
        self,
        listing: Iterable[Image],
        found: dict[str, Image],
        unmatched: list[Image],
        held: frozenset[str] = frozenset(),
    ) -> dict[str, Image]:
        """`found` (master name -> region image matched by name) with the copies found by checksum moved to
        their master's name. Such a copy keeps its old name here: the status step sees the difference and
        plans the rename as a metadata update. `unmatched`: the listing's images that are not the copy of a
        managed namesake (from the name matching); `held`: ids of region images not to move (see GlanceSync)."""
        claims = self._claims(unmatched, held)
        if not claims:
            return found
        by_name: dict[str, list[Image]] = {}
        for image in listing:  # a rotation is rare: only then is the whole listing indexed
            if self._holds_its_name(image):
                by_name.setdefault(image.name, []).append(image)
        accepted = self._accepted(claims, by_name)
        if not accepted:
            return found
        result = dict(found)
        moving = {copy.id for copy in accepted.values()}
        for name, copy in accepted.items():
            if result.get(copy.name) is copy:
                del result[copy.name]
                self._rematch(copy.name, by_name, moving, result)
            result[name] = copy
        return result

    def _claims(self, candidates: list[Image], held: frozenset[str]) -> dict[str, list[Image]]:
        """Master name -> the region images that have its checksum under another name."""
        decided = (self.target.dontupdate | self.target.rename | self.target.replace) - {ANY}
        claims: dict[str, list[Image]] = {}
        namesake_of, owners_of = self.master.get, self.by_checksum.get  # locals: this loop sees every image
        for image in candidates:
            namesake = namesake_of(image.name)
            if namesake is not None and namesake.checksum == image.checksum:
                continue  # the copy of the master image of its own name: the common case
            owners = owners_of(image.checksum or "")
            if not owners or not self._movable(image) or image.checksum in decided or image.id in held:
                continue  # an explicit checksum decision is the operator's word for that content
            if len(owners) > 1:
                if any(owner.name in self.managed for owner in owners):
                    names = ", ".join(sorted(owner.name for owner in owners))
                    self._warn(f"image {image.name} ({image.id}) has the checksum of several master images ({names})")
                continue
            if owners[0].name in self.managed:
                claims.setdefault(owners[0].name, []).append(image)
        return claims

    def _accepted(self, claims: dict[str, list[Image]], by_name: dict[str, list[Image]]) -> dict[str, Image]:
        """The claims that hold once every other accepted claim has moved its image (a chain of renames, even
        a swap, works). A claim fails when its name stays taken, or when its image's name is wanted by a
        failed claim: renaming it would free that name for an upload of bytes the region already has."""
        accepted: dict[str, Image] = {}
        for name, copies in claims.items():
            if len(copies) > 1:
                names = ", ".join(f"{image.name} ({image.id})" for image in copies)
                self._warn(f"images {names} all have the checksum of master image {name}", plural=True)
            else:
                accepted[name] = copies[0]
        failed = set(claims) - set(accepted)
        changed = True
        while changed:
            changed = False
            moving = {copy.id for copy in accepted.values()}
            for name, copy in list(accepted.items()):
                holders = [image for image in by_name.get(name, ()) if image.id not in moving]
                if holders or copy.name in failed:
                    self._refuse(copy, self.managed[name], holders)
                    del accepted[name]
                    failed.add(name)
                    changed = True
        return accepted

    def _rematch(self, name: str, by_name: dict[str, list[Image]], moving: set[str], found: dict) -> None:
        """Another region image of the name a copy leaves stands for it now, as the name matching would pick."""
        master = self.master.get(name)
        if master is None or name not in self.managed:
            return
        rest = [image for image in by_name.get(name, ()) if image.id not in moving]
        rematched = match_region_images(
            self.fullname, rest, {name: master}, self.tenant_id, self.target.only_tenant_images, _Silent()
        )
        if name in rematched:
            found[name] = rematched[name]

    def _refuse(self, copy: Image, master: Image, holders: list[Image]) -> None:
        if not holders:
            self._warn(
                f"image {copy.name} ({copy.id}) has the checksum of master image {master.name}, but its own name "
                "is wanted by a copy that cannot be renamed"
            )
        elif holders[0].checksum == master.checksum:
            self._warn(
                f"image {copy.name} ({copy.id}) has the checksum of master image {master.name}, which the region "
                f"already has ({holders[0].id})"
            )
        else:
            self._warn(
                f"image {copy.name} ({copy.id}) has the checksum of master image {master.name}, but "
                f"{master.name} ({holders[0].id}) exists in the region with other content"
            )

    def _warn(self, text: str, plural: bool = False) -> None:
        self.reporter.warning(f"{self.fullname}: {text}: {'none is' if plural else 'not'} renamed")

    def _movable(self, image: Image) -> bool:
        """A region image that may be renamed: the tenant's own, active, complete, with a name and a checksum."""
        return (
            bool(image.name and image.checksum)
            and self._holds_its_name(image)
            and not is_foreign(image, self.tenant_id)
        )

    def _holds_its_name(self, image: Image) -> bool:
        """An image that takes its name in the region, as the name matching sees it (active, complete, and the
        tenant's own unless only_tenant_images is off). An inactive image blocks no rename."""
        return (
            image.status == "active"
            and not image.extra.get("unfinished_upload")  # removed before the sync uses the listing
            and not (self.target.only_tenant_images and is_foreign(image, self.tenant_id))
        )


class _Silent(Reporter):
    """The name matching's warnings were given once already, for the whole listing."""

    def log(self, level: int, message: str) -> None:
        pass
