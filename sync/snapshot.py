"""The ImageState snapshot: the latest status of every (region, master image) pair, which the pages read."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from sync.connect import safe_message
from sync.engine.glancesync import GlanceSync
from sync.engine.regions import parse_region
from sync.engine.status import ImageStatus
from sync.models import ImageState, RegionSnapshot


def all_regions(engine: GlanceSync) -> list[str]:
    """Full names of every region of every target (the master region first), as the overview lists them."""
    targets = ["master"] + [t for t in engine.config.targets if t != "master"]
    regions = [engine.config.master_region]
    return regions + [region for target in targets for region in engine.get_regions(target)]


def refresh_regions(engine: GlanceSync, regions: list[str]) -> dict[str, str]:
    """Recompute and store the statuses of these regions; return {region: error} for those that failed."""
    failed = {}
    for region in regions:
        error = refresh_region(engine, region)
        if error:
            failed[region] = error
    return failed


def refresh_region(engine: GlanceSync, region: str) -> str:
    """Store one region's statuses (one listing of the region); on failure keep the old rows, store why."""
    ref = parse_region(region, engine.config)
    try:
        statuses = engine.region_status(ref)
    except Exception as error:  # the region is unreadable now: say so, keep its last known statuses
        message = safe_message(error, engine.config)
        RegionSnapshot.objects.update_or_create(
            region=ref.fullname, defaults={"target": ref.target, "computed_at": timezone.now(), "error": message}
        )
        return message
    store_statuses(ref.fullname, ref.target, statuses)
    return ""


def store_statuses(region: str, target: str, statuses: list[ImageStatus]) -> None:
    now = timezone.now()
    rows = [_state(region, position, entry, now) for position, entry in enumerate(statuses)]
    with transaction.atomic():
        # Replaced whole inside one transaction: readers see the old rows or the new ones, never a mix.
        ImageState.objects.filter(region=region).delete()
        ImageState.objects.bulk_create(rows, batch_size=500)
        RegionSnapshot.objects.update_or_create(
            region=region, defaults={"target": target, "computed_at": now, "error": ""}
        )


def _state(region: str, position: int, entry: ImageStatus, now) -> ImageState:
    copy = entry.region_image
    return ImageState(
        region=region,
        image_name=entry.master.name,
        status=entry.status,
        master_id=entry.master.id,
        master_checksum=entry.master.checksum or "",
        region_image_id=copy.id if copy else "",
        region_checksum=(copy.checksum or "") if copy else "",
        size=entry.master.size or 0,
        position=position,
        computed_at=now,
    )
