"""Read-only pages of the console, rendered from the status snapshot (ImageState) and the run history.

They never call a cloud: the status refresh task and every run keep the snapshot up to date.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db.models import Count, Max
from django.http import Http404
from django.shortcuts import render

from sync.engine.model import STATUSES
from sync.models import ImageState, RegionRun, RegionSnapshot, StatusRefresh

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


def _cells(counts: Counter) -> list[tuple[str, int, str]]:
    return [(status, counts[status], STATUS_STYLES[status]) for status in STATUSES]


def _legend(statuses) -> list[tuple[str, str, str]]:
    return [(status, STATUS_STYLES[status], STATUS_HELP[status]) for status in statuses]


def _last_runs(regions: list[str]) -> dict[str, RegionRun]:
    last_ids = RegionRun.objects.filter(region__in=regions).values("region").annotate(last=Max("id"))
    runs = RegionRun.objects.filter(pk__in=[row["last"] for row in last_ids]).select_related("run")
    return {run.region: run for run in runs}


def overview(request):
    """One row per region of every target, with the number of master images in each status."""
    refresh = StatusRefresh.objects.first()
    master_region = refresh.master_region if refresh else ""
    snapshots = sorted(RegionSnapshot.objects.all(), key=lambda s: (s.region != master_region, s.target != "master"))
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in ImageState.objects.values("region", "status").annotate(n=Count("id")):
        counts[row["region"]][row["status"]] = row["n"]
    last_runs = _last_runs([s.region for s in snapshots])
    rows, totals = [], Counter()
    for snapshot in snapshots:
        region_counts = counts[snapshot.region]
        if snapshot.region != master_region:
            totals.update(region_counts)
        rows.append(
            {
                "snapshot": snapshot,
                "master": snapshot.region == master_region,
                "cells": _cells(region_counts),
                "total": sum(region_counts.values()),
                "last_run": last_runs.get(snapshot.region),
            }
        )
    context = {
        "refresh": refresh,
        "master_region": master_region,
        "rows": rows,
        "legend": _legend(STATUSES),
        "totals": _cells(totals),
        "grand_total": sum(totals.values()),
    }
    return render(request, "sync/overview.html", context)


def region_detail(request, region: str):
    """Every synchronisable master image with its latest known status in one region, and the region's runs."""
    snapshot = RegionSnapshot.objects.filter(region=region).first()
    if snapshot is None:
        raise Http404(f"unknown region {region}")
    states = list(ImageState.objects.filter(region=region).order_by("position"))
    images = [{"state": s, "style": STATUS_STYLES[s.status], "help": STATUS_HELP[s.status]} for s in states]
    found = Counter(state.status for state in states)
    context = {
        "snapshot": snapshot,
        "region": region,
        "images": images,
        "summary": [cell for cell in _cells(found) if cell[1]],
        "legend": _legend([status for status in STATUSES if found[status]]),
        "runs": RegionRun.objects.filter(region=region).select_related("run").order_by("-id")[:20],
    }
    return render(request, "sync/region.html", context)
