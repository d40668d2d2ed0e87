"""Which master images exist for the engine, and which of them each target synchronises (spec §2.3, §3)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sync.engine.condition import compile_condition
from sync.engine.model import AMI_PROPERTIES, OBSOLETE_SUFFIX, Image, TargetPolicy
from sync.engine.reporter import Reporter


def padded(owner: str) -> str:
    """Tenant ids are compared left-padded with zeros to 32 characters, as the original did."""
    return owner.rjust(32, "0")


def is_foreign(image: Image, tenant_id: str) -> bool:
    """True when the image has an owner and it is not the target's tenant."""
    return bool(image.owner) and padded(image.owner) != padded(tenant_id)


def filter_master_images(images: Iterable[Image], tenant_id: str, reporter: Reporter) -> dict[str, Image]:
    """The master dict: active, named, own (or ownerless) images; every name seen twice is dropped.

    A hidden image that shares its name with a visible one is an old build kept for running servers (a
    rotation that hid it without renaming it): the visible image stands for the name, without a warning."""
    candidates = [i for i in images if i.status == "active" and i.name and not is_foreign(i, tenant_id)]
    visible_names = {i.name for i in candidates if not i.hidden}
    candidates = [i for i in candidates if not i.hidden or i.name not in visible_names]
    counts = Counter(i.name for i in candidates)
    for name, count in counts.items():
        if count > 1:
            reporter.warning(f"Duplicated images with name {name} will be ignored")
    return {i.name: i for i in candidates if counts[i.name] == 1}


def replace_ami_ids_by_names(master: dict[str, Image], reporter: Reporter) -> None:
    """kernel_id/ramdisk_id of master images hold UUIDs; from here on they hold the referenced names.

    A reference to an image outside the master dict (foreign, inactive, duplicated, deleted) crashed the
    original; here it is kept as it is, so the AMI check reports `error_ami` for that image.
    """
    names_by_id = {image.id: name for name, image in master.items()}
    for image in master.values():
        for prop in AMI_PROPERTIES:
            if prop not in image.user_properties:
                continue
            value = image.user_properties[prop]
            # A new dict for the image: a listing's properties may be shared with other images (read-only).
            if not value:
                image.user_properties = {k: v for k, v in image.user_properties.items() if k != prop}
            elif value in names_by_id:
                image.user_properties = image.user_properties | {prop: names_by_id[value]}
            else:
                reporter.warning(
                    f"Image {image.name} has {prop} {value}, which is not a usable master image; "
                    "it will be error_ami in every region"
                )


class Selector:
    """Decides, for one target, whether a master image is synchronisable (spec §3.2, first rule wins)."""

    def __init__(self, target: TargetPolicy) -> None:
        self.target = target
        self.condition = (
            compile_condition(target.metadata_condition, target.name) if target.metadata_condition else None
        )

    def is_synchronisable(self, image: Image) -> bool:
        """A hidden image only when forcesyncs lists it or the condition reads `image.hidden`: hidden is how
        Glance retires an old build, and conditions written before GlanceSync saw hidden images ignore it."""
        target = self.target
        if image.name.endswith(OBSOLETE_SUFFIX):
            return False
        if image.id in target.forcesyncs:
            return True
        if image.hidden and not (self.condition is not None and self.condition.reads_hidden):
            return False
        if self.condition is not None:
            return self.condition(image, target.metadata_set)
        if not image.is_public:
            return False
        if not target.metadata_set:
            return True
        return any(key in image.user_properties for key in target.metadata_set)

    def is_retired(self, image: Image) -> bool:
        """Not synchronisable only because it was retired (hidden, or public made community): the target
        would synchronise it as a visible public image. Its existing region copies follow it; none is made."""
        if not image.retired or image.name.endswith(OBSOLETE_SUFFIX) or self.is_synchronisable(image):
            return False
        current = image.copy()
        current.hidden = False
        if current.visibility == "community":
            current.set_visibility("public")
        return self.is_synchronisable(current)

    def select(self, master: dict[str, Image]) -> list[Image]:
        """The synchronisable master images, in processing order: (size, name)."""
        chosen = [image for image in master.values() if self.is_synchronisable(image)]
        return sorted(chosen, key=lambda i: (i.size, i.name))

    def retired(self, master: dict[str, Image]) -> list[Image]:
        """The retired master images whose region copies follow them, in (size, name) order."""
        return sorted(filter(self.is_retired, master.values()), key=lambda i: (i.size, i.name))
