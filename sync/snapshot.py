"""The ImageState snapshot: the latest status of every (region, master image) pair, which the pages read."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from sync import alerts
from sync.connect import safe_message
from sync.engine.glancesync import GlanceSync, is_renamed
from sync.engine.model import UPLOAD_STATUSES, Image
from sync.engine.regions import RegionRef, parse_region
from sync.engine.reporter import RecordingReporter
from sync.engine.selection import is_foreign
from sync.engine.status import ImageStatus, missing_ami_references
from sync.engine.updates import updated_metadata
from sync.models import ImageState, RegionSnapshot
from sync.models.snapshot import PROTECTED_COPY, plan_totals


def all_regions(engine: GlanceSync) -> list[str]:
    """Full names of every region of every target (the master region first), as the overview lists them."""
    targets = ["master"] + [t for t in engine.config.targets if t != "master"]
    regions = [engine.config.master_region]
    return regions + [region for target in targets for region in engine.get_regions(target)]


def refresh_regions(engine: GlanceSync, regions: list[str]) -> dict[str, str]:
    """Recompute and store the statuses of these regions; return {region: error} for those that failed.

    The new conflicts found in all of them go out as one alert."""
    failed, found = {}, []
    for region in regions:
        error = refresh_region(engine, region, found)
        if error:
            failed[region] = error
    alerts.new_problems(found)
    return failed


def refresh_region(engine: GlanceSync, region: str, new_problems: list[dict] | None = None) -> str:
    """Store one region's statuses (one listing of the region); on failure keep the old rows, store why.

    The problems that were not there before are added to `new_problems`, or alerted at once without it."""
    ref = parse_region(region, engine.config)
    reporter = RecordingReporter()
    try:
        listing = engine.session(ref.target).list_images(ref.name)
        statuses, region_map = engine.statuses(ref, listing, reporter)
        changes = metadata_changes(engine, ref, statuses, region_map)
        reasons = status_reasons(statuses, region_map)
        others = other_images(listing, statuses, engine.tenant_id(ref.target))
        uploads = any(entry.status in UPLOAD_STATUSES for entry in statuses)
        transfer = engine.planned_transfer(ref) if uploads else ""  # asks the region's Glance once
    except Exception as error:  # the region is unreadable now: say so, keep its last known statuses
        message = safe_message(error, engine.config)
        _unreadable(ref, message)
        return message
    previous = RegionSnapshot.objects.filter(region=ref.fullname).values_list("read_failures", "unreadable_since")
    failures, since = previous.first() or (0, None)
    found = store_statuses(ref.fullname, ref.target, statuses, changes, reporter.messages(), reasons, others)
    if transfer:  # the preview says how the uploads would go (issue #18)
        RegionSnapshot.objects.filter(region=ref.fullname).update(transfer=transfer)
    if failures >= UNREADABLE_ALERT_AFTER and since is not None:
        alerts.region_recovered(ref.fullname, since, failures)
    if new_problems is None:
        alerts.new_problems(found)
    else:
        new_problems.extend(found)
    return ""


UNREADABLE_ALERT_AFTER = 2  # refreshes in a row: a blip pages nobody


def _unreadable(ref: RegionRef, message: str) -> None:
    """Store why the region cannot be read and count the failures in a row; alert at the second."""
    now = timezone.now()
    snapshot, created = RegionSnapshot.objects.get_or_create(
        region=ref.fullname,
        defaults={"target": ref.target, "computed_at": now, "error": message, "read_failures": 1,
                  "unreadable_since": now},
    )  # fmt: skip
    if created:
        return
    RegionSnapshot.objects.filter(pk=snapshot.pk).update(
        target=ref.target, computed_at=now, error=message, read_failures=F("read_failures") + 1,
        unreadable_since=Coalesce(F("unreadable_since"), now),
    )  # fmt: skip
    failures, since = RegionSnapshot.objects.values_list("read_failures", "unreadable_since").get(pk=snapshot.pk)
    if failures == UNREADABLE_ALERT_AFTER:  # exactly: concurrent refreshes cannot both see it
        alerts.region_unreadable(ref.fullname, since, message)


REPLACING = ("error_checksum", "pending_replace", "pending_rename")


def status_reasons(statuses: list[ImageStatus], region_map: dict[str, Image]) -> dict[str, str]:
    """Why an image is stuck, a decision cannot work or a rotation is planned, per image name, for the pages
    and the API."""
    reasons = {}
    renamed = {e.region_image.name: e.master.name for e in statuses if is_renamed(e)}  # old name -> new name
    for entry in statuses:
        name = entry.master.name
        if is_renamed(entry):
            reasons[name] = "rotation: the master renamed this image; the copy, found by its checksum, follows"
        elif entry.status == "pending_upload" and name in renamed:
            reasons[name] = f"rotation: the region's {name} is the old build, renamed {renamed[name]} first"
        elif entry.status == "pending_metadata" and entry.master.retired:
            how = "hidden" if entry.master.hidden else entry.master.visibility
            reasons[name] = f"retired in the master ({how}): the copy follows it; no new copy is made"
        elif entry.status == "error_ami":
            missing = ", ".join(missing_ami_references(entry.master, region_map))
            reasons[entry.master.name] = f"not synchronised to this target: {missing}"
        elif entry.status in REPLACING and entry.region_image and entry.region_image.protected:
            reasons[entry.master.name] = PROTECTED_COPY
    return reasons


def other_images(listing: list[Image], statuses: list[ImageStatus], tenant_id: str) -> list[dict]:
    """The region's images that are no synchronised master image's copy, by name, and why each is not."""
    matched = {entry.region_image.id for entry in statuses if entry.region_image is not None}
    others = sorted((image for image in listing if image.id not in matched), key=lambda i: (i.name or "", i.id))
    return [
        {"name": image.name or "", "status": image.status, "public": image.is_public,
         "visibility": image.visibility, "hidden": image.hidden, "tags": sorted(image.tags), "size": image.size or 0,
         "why": _not_synchronised_because(image, tenant_id)}
        for image in others
    ]  # fmt: skip


def _not_synchronised_because(image: Image, tenant_id: str) -> str:
    if is_foreign(image, tenant_id):
        return "owned by another project"
    if image.status != "active":
        return f"not active ({image.status})"
    return "not one of the master images this target synchronises"


def metadata_changes(
    engine: GlanceSync, ref: RegionRef, statuses: list[ImageStatus], region_map: dict[str, Image]
) -> dict[str, list[list]]:
    """For each image pending_metadata: the [field, before, after] a sync would write (the engine's update)."""
    target = engine.config.targets[ref.target]
    changes = {}
    for entry in statuses:
        if entry.status != "pending_metadata" or entry.region_image is None:
            continue
        before = entry.region_image
        after = updated_metadata(before, entry.master, target, region_map, ref.fullname, RecordingReporter())
        diff = [
            [field, old, new]
            for field, old, new in (
                ("name", before.name, after.name),
                ("visibility", before.visibility, after.visibility),
                ("hidden", _yes_no(before.hidden), _yes_no(after.hidden)),
                ("tags", _joined(before.tags), _joined(after.tags)),
            )
            if old != new
        ]
        for key in sorted(set(before.user_properties) | set(after.user_properties)):
            old, new = before.user_properties.get(key), after.user_properties.get(key)
            if old != new:
                diff.append([key, _shown(old), _shown(new)])
        changes[entry.master.name] = diff
    return changes


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _joined(tags: frozenset[str]) -> str | None:
    return ", ".join(sorted(tags)) or None


def _shown(value) -> str | None:
    return None if value is None else str(value)


def store_statuses(
    region: str,
    target: str,
    statuses: list[ImageStatus],
    changes: dict[str, list[list]] | None = None,
    warnings: list[str] | None = None,
    reasons: dict[str, str] | None = None,
    others: list[dict] | None = None,
) -> list[dict]:
    """Replace the region's rows; return the new problems (see `_new_problems`)."""
    now = timezone.now()
    rows = [_state(region, position, entry, now) for position, entry in enumerate(statuses)]
    for row in rows:
        row.changes = (changes or {}).get(row.image_name, [])
        row.reason = (reasons or {}).get(row.image_name, "")[:500]
    with transaction.atomic():
        new_problems = _new_problems(region, rows)
        # Replaced whole inside one transaction: readers see the old rows or the new ones, never a mix.
        ImageState.objects.filter(region=region).delete()
        ImageState.objects.bulk_create(rows, batch_size=500)
        others = others or []
        RegionSnapshot.objects.update_or_create(
            region=region,
            defaults={
                "target": target, "computed_at": now, "error": "", "warnings": warnings or [],
                "other_images": others[: RegionSnapshot.OTHER_IMAGES_KEPT], "other_images_total": len(others),
                "read_failures": 0, "unreadable_since": None,
                "status_counts": status_counts(statuses),
                "plan_totals": plan_totals((r.status, r.reason == PROTECTED_COPY, 1, r.size) for r in rows),
            },
        )  # fmt: skip
    return new_problems


def _new_problems(region: str, rows: list[ImageState]) -> list[dict]:
    """The pairs now in error_checksum or error_ami that were not in that status at the region's previous
    refresh; a region's first snapshot is the baseline (nothing is new in it)."""
    problems = [row for row in rows if row.status in alerts.PROBLEM_STATUSES]
    if not problems:
        return []
    seen = ImageState.objects.filter(region=region)
    if not seen.exists() and not RegionSnapshot.objects.filter(region=region, error="").exists():
        return []
    before = set(seen.filter(status__in=alerts.PROBLEM_STATUSES).values_list("image_name", "status"))
    return [
        {"region": region, "image": row.image_name, "status": row.status}
        for row in problems
        if (row.image_name, row.status) not in before
    ]


def status_counts(statuses: list[ImageStatus]) -> dict[str, int]:
    """{status: images}, stored with the rows: /metrics reads these instead of counting the rows."""
    return dict(sorted(Counter(entry.status for entry in statuses).items()))


def _state(region: str, position: int, entry: ImageStatus, now) -> ImageState:
    copy, master = entry.region_image, entry.master
    return ImageState(
        region=region,
        image_name=master.name,
        status=entry.status,
        master_id=master.id,
        master_checksum=master.checksum or "",
        region_image_id=copy.id if copy else "",
        region_checksum=(copy.checksum or "") if copy else "",
        size=master.size or 0,
        region_size=copy.size if copy else None,
        region_image_name=copy.name if copy else "",
        visibility=master.visibility,
        hidden=master.hidden,
        tags=sorted(master.tags),
        region_visibility=copy.visibility if copy else "",
        region_hidden=copy.hidden if copy else False,
        region_tags=sorted(copy.tags) if copy else [],
        position=position,
        computed_at=now,
    )
