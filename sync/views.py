"""Read-only pages of the console: the status of every region, and of every image of one region."""

from __future__ import annotations

import logging
from collections import Counter

from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from sync.clouds import FILES_SCHEME, cloud_from_url
from sync.dbconfig import database_configured, load_db_config_with
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import STATUSES, GlanceSyncError, Image, SyncConfig
from sync.engine.regions import parse_region
from sync.engine.reporter import RecordingReporter
from sync.engine.selection import is_foreign
from sync.models import MasterSettings

logger = logging.getLogger(__name__)

# Bootstrap colour of each status badge; the badge always shows the status name too.
STATUS_STYLES = {
    "ok": "text-bg-success",
    "ok_stalled_checksum": "text-bg-secondary",
    "pending_metadata": "text-bg-info",
    "pending_upload": "text-bg-warning",
    "pending_replace": "text-bg-warning",
    "pending_rename": "text-bg-warning",
    "pending_ami": "text-bg-info",
    "error_checksum": "text-bg-danger",
    "error_ami": "text-bg-danger",
}
STATUS_HELP = {
    "ok": "the region's copy is identical",
    "ok_stalled_checksum": "different content, kept on purpose (checksum in dontupdate)",
    "pending_metadata": "same content; visibility or properties to update",
    "pending_upload": "not in the region (or only an inactive or other project's copy)",
    "pending_replace": "different content (checksum in replace): upload, then delete the old copy",
    "pending_rename": "different content (checksum in rename): upload, keep the old copy as <name>.old",
    "pending_ami": "waits for its kernel or ramdisk image to be uploaded",
    "error_checksum": "different content and no rule for its checksum (dontupdate, replace or rename)",
    "error_ami": "its kernel or ramdisk image is not synchronised to this target",
}


class ConsoleError(Exception):
    """The configuration or the cloud cannot be read; the message is safe to show."""


def build_engine(reporter: RecordingReporter | None = None) -> GlanceSync:
    """The engine, built per request: from the database configuration once it has a master region (its cloud
    from the master settings), else from settings.GLANCESYNC_CONFIG_FILE and settings.GLANCESYNC_CLOUD."""
    config: SyncConfig | None = None
    try:
        if database_configured():
            cloud_url = MasterSettings.load().cloud or settings.GLANCESYNC_CLOUD
            config = load_db_config_with([], require_credentials=not cloud_url.startswith(FILES_SCHEME))
        else:
            cloud_url = settings.GLANCESYNC_CLOUD
            files = cloud_url.startswith(FILES_SCHEME)
            config = load_config(settings.GLANCESYNC_CONFIG_FILE, require_credentials=not files)
        cloud = cloud_from_url(cloud_url, images_dir=config.images_dir)
        return GlanceSync(config, cloud, reporter or RecordingReporter())
    except Exception as error:
        raise ConsoleError(_safe_message(error, config)) from error


def _safe_message(error: Exception, config: SyncConfig | None) -> str:
    """One line for the page: engine errors as they are, others with their type; never a password."""
    message = str(error) if isinstance(error, GlanceSyncError) else f"{type(error).__name__}: {error}"
    for target in config.targets.values() if config else ():
        if target.password:
            message = message.replace(target.password, "********")
    if not isinstance(error, GlanceSyncError):  # unexpected: the traceback (which may quote secrets) only in DEBUG
        logger.error("Console cannot read the cloud: %s", message, exc_info=logger.isEnabledFor(logging.DEBUG))
    return message


def _unavailable(request, message: str):
    context = {"error": message, "cloud": settings.GLANCESYNC_CLOUD, "config_file": settings.GLANCESYNC_CONFIG_FILE}
    return render(request, "sync/unavailable.html", context, status=503)


def _cells(counts: Counter) -> list[tuple[str, int, str]]:
    return [(status, counts[status], STATUS_STYLES[status]) for status in STATUSES]


def _legend(statuses) -> list[tuple[str, str, str]]:
    return [(status, STATUS_STYLES[status], STATUS_HELP[status]) for status in statuses]


def overview(request):
    """One row per region of every target, with the number of master images in each status."""
    try:
        engine = build_engine()
    except ConsoleError as error:
        return _unavailable(request, str(error))
    try:
        targets = ["master"] + [t for t in engine.config.targets if t != "master"]
        regions = [(target, region) for target in targets for region in engine.get_regions(target)]
    except Exception as error:
        return _unavailable(request, _safe_message(error, engine.config))
    rows, totals = [], Counter()
    for target, region in regions:
        row = {"target": target, "region": region, "error": None}
        try:
            counts = Counter(entry.status for entry in engine.region_status(region))
        except Exception as error:  # one unreadable region does not hide the others
            row["error"] = _safe_message(error, engine.config)
        else:
            totals.update(counts)
            row.update(cells=_cells(counts), total=sum(counts.values()))
        rows.append(row)
    context = {
        "master_region": engine.config.master_region,
        "master_images": len(engine.master),
        "rows": rows,
        "legend": _legend(STATUSES),
        "totals": _cells(totals),
        "grand_total": sum(totals.values()),
    }
    return render(request, "sync/overview.html", context)


def region_detail(request, region: str):
    """Every synchronisable master image with its status in one region, then the region's other images."""
    reporter = RecordingReporter()
    try:
        engine = build_engine(reporter)
    except ConsoleError as error:
        return _unavailable(request, str(error))
    try:
        ref = parse_region(region, engine.config)
        names = engine.region_names(ref.target)
    except GlanceSyncError as error:
        raise Http404(str(error)) from None
    except Exception as error:
        return _unavailable(request, _safe_message(error, engine.config))
    if ref.name not in names:
        raise Http404(f"unknown region {region}")
    seen = len(reporter.records)
    try:
        statuses = engine.region_status(ref)
        listing = engine.session(ref.target).list_images(ref.name)
        tenant_id = engine.tenant_id(ref.target)
    except Exception as error:
        return _unavailable(request, _safe_message(error, engine.config))
    matched = {entry.region_image.id for entry in statuses if entry.region_image is not None}
    context = {
        "region": ref.fullname,
        "target": ref.target,
        "images": [
            {"entry": entry, "style": STATUS_STYLES[entry.status], "help": STATUS_HELP[entry.status]}
            for entry in statuses
        ],
        "summary": [cell for cell in _cells(Counter(e.status for e in statuses)) if cell[1]],
        "legend": _legend([s for s in STATUSES if any(e.status == s for e in statuses)]),
        "others": [_other_image(image, tenant_id) for image in listing if image.id not in matched],
        "warnings": [message for _, message in reporter.records[seen:]],
    }
    return render(request, "sync/region.html", context)


def _other_image(image: Image, tenant_id: str) -> dict:
    if is_foreign(image, tenant_id):
        why = "owned by another project"
    elif image.status != "active":
        why = f"not active ({image.status})"
    else:
        why = "not one of the master images this target synchronises"
    return {"image": image, "why": why}
