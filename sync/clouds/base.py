"""The small interface every cloud driver implements (OpenStack, the file cloud, test fakes).

A `Cloud` opens one `TargetSession` per target; a session is reused for all regions of that target.
Region names given to a session are bare (`Madrid`); images it returns carry the region *fullname*
(`Madrid` for the master target, `other:Madrid` otherwise) in `Image.region`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sync.engine.model import Image, TargetPolicy, TwinListing

# Set on every image a driver creates and removed once its data is complete: an image that still has it and
# is not active is an upload that was cut short (a crash, a killed server) and the next sync removes it.
UPLOAD_MARKER = "glancesync_upload_in_progress"

# Called with (bytes_done, bytes_total) while an image's data streams.
ProgressCallback = Callable[[int, int], None]
# Called with a stage of sync.engine.model.IMPORT_STAGES while a region's Glance imports an image (glance-download).
StageCallback = Callable[[str], None]


@dataclass
class ImageSource:
    """Where an upload's bytes come from: an image of the master region, read through the master session."""

    session: TargetSession
    region: str
    image: Image


class TargetSession(Protocol):
    target: TargetPolicy

    def region_names(self) -> list[str]:
        """Bare names of every region of this target that has an image service."""
        ...

    def tenant_id(self) -> str:
        """Project (tenant) id the session is scoped to; owner of the images we create."""
        ...

    def list_images(self, region: str) -> list[Image]:
        """Every image of the region the credential can see, unfiltered, in listing order."""
        ...

    def listing_fingerprint(self, region: str) -> bytes | None:
        """Optional: bytes that change whenever list_images(region) could give another listing, cheaper than
        listing (the file cloud hashes the region's file). A refresh takes it before listing and skips the
        listing of a region whose snapshot was computed from the same; None, or a driver without it, makes
        the refresh list the region and hash the listing. The driver's module counts in the snapshot's
        code version (`sync.snapshot.code_version`)."""
        ...

    def list_with_twins(self, region: str, master_region: str) -> TwinListing | None:
        """Optional: list_images(region) for a status-only run, with the rows that read exactly as the master
        region's row of the same name (every field but id and region), or as that row with the target's
        tenant id as owner (owned twins), given as twins, by name and id, and a prototype image of their
        fields (sync.engine.model.TwinListing); None: call list_images. The engine decides most twins
        without their images (GlanceSync.export_status). The file cloud has it."""
        ...

    def prepare_twins(self, master_region: str) -> None:
        """Optional, with list_with_twins: work out what it shares between regions now (before a fork)."""
        ...

    def read_image_data(self, region: str, image: Image) -> Iterable[bytes]:
        """The image's bytes as an iterator of chunks (never the whole image at once)."""
        ...

    def upload_image(
        self, region: str, image: Image, source: ImageSource, progress: ProgressCallback | None = None
    ) -> str:
        """Create `image` (name, visibility, properties, formats) with the bytes of `source`; return its id."""
        ...

    def offers_glance_download(self, region: str) -> bool:
        """Whether the region's Glance offers the glance-download import method (asked once per session).
        Optional: a driver without it always streams."""
        ...

    def import_image(self, region: str, image: Image, source: ImageSource, stage: StageCallback | None = None) -> str:
        """Like upload_image, but the region's Glance fetches the bytes from the source region itself
        (glance-download; the source must be a region of this session's Keystone); return the new image's id.
        On any failure the image created is deleted and a GlanceSyncError raised."""
        ...

    def update_image(self, region: str, image: Image) -> None:
        """Make the region's image `image.id` have `image`'s name, visibility and exactly its properties."""
        ...

    def delete_image(self, region: str, image_id: str) -> bool:
        """Delete an image; False when it does not exist."""
        ...


class Cloud(Protocol):
    def session(self, target: TargetPolicy) -> TargetSession: ...
