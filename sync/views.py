"""Pages of the console, rendered from the status snapshot (ImageState) and the run history.

They never call a cloud: the status refresh task and every run keep the snapshot up to date. Every page needs a
login and the `view_console` permission (the viewer role); every change is a POST that needs `operate_console`
(the operator role) and is audited.
"""

from __future__ import annotations

import csv
import io
import secrets
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, Subquery
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sync import runs
from sync.engine.model import STATUSES
from sync.engine.status import checksum_status
from sync.forms import ApiTokenForm
from sync.models import (
    FINISHED_STATES,
    Alert,
    AlertChannel,
    ApiToken,
    AuditEntry,
    Backup,
    ChecksumDecision,
    ImageState,
    MasterSettings,
    RefreshRequest,
    RegionRun,
    RegionSnapshot,
    StatusRefresh,
    SyncRun,
    SyncSchedule,
    Target,
)
from sync.models.snapshot import PLAN_KINDS, PROTECTED_COPY

T = TypeVar("T")

# What a sync does with an image in each status (the region page's "planned action" column).
PLANNED_ACTIONS = {
    "ok": "nothing",
    "ok_stalled_checksum": "nothing (kept on purpose)",
    "pending_metadata": "update name / visibility / hidden / tags / properties",
    "pending_upload": "upload",
    "pending_replace": "upload, then delete the old copy",
    "pending_rename": "upload, then rename the old copy to <name>.old",
    "pending_ami": "point at the kernel / ramdisk copies",
    "error_checksum": "nothing until a decision is made (see Conflicts)",
    "error_ami": "nothing: its kernel or ramdisk is not synchronised",
}
UPLOAD_STATUSES = ("pending_upload", "pending_replace", "pending_rename")
NO_WORK = ("ok", "ok_stalled_checksum")
CONFLICT_STATUSES = ("error_checksum", "ok_stalled_checksum", "pending_rename", "pending_replace")
POLL_STOP = 286  # htmx stops polling on this status

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
    "pending_metadata": "same content; name, visibility, hidden flag, tags or properties to update",
    "pending_upload": "not in the region (or only an inactive or other project's copy)",
    "pending_replace": "different content (checksum in replace): upload, then delete the old copy",
    "pending_rename": "different content (checksum in rename): upload, keep the old copy as <name>.old",
    "pending_ami": "waits for its kernel or ramdisk image to be uploaded",
    "error_checksum": "different content and no rule for its checksum (dontupdate, replace or rename)",
    "error_ami": "its kernel or ramdisk image is not synchronised to this target",
}


# The overview heads its count columns with each status's last word, under its group (ok / pending / error), so
# that nine of them fit a laptop's width; the full name stays in the header for screen readers and in its tooltip.
STATUS_SHORT = {
    "ok": "ok",
    "ok_stalled_checksum": "stalled",
    "pending_metadata": "metadata",
    "pending_upload": "upload",
    "pending_replace": "replace",
    "pending_rename": "rename",
    "pending_ami": "ami",
    "error_checksum": "checksum",
    "error_ami": "ami",
}


def _status_columns() -> dict:
    """The overview's two header rows: the status groups with their widths, then one column per status."""
    groups = [(group, len(list(members))) for group, members in groupby(STATUSES, key=lambda s: s.split("_")[0])]
    columns = [(status, STATUS_SHORT[status], STATUS_STYLES[status], STATUS_HELP[status]) for status in STATUSES]
    return {"status_groups": groups, "status_columns": columns}


def _cells(counts: Counter) -> list[tuple[str, int, str]]:
    return [(status, counts[status], STATUS_STYLES[status]) for status in STATUSES]


def _count_cells(counts: Counter) -> list[tuple[str, str, str]]:
    """The overview's count cells as (status, count, extra classes), numbers already text: the table is polled
    by every open overview, and formatting in the template (localize, filters per cell) was most of its cost."""
    return [(status, str(counts[status]), _count_class(status, counts[status])) for status in STATUSES]


def _count_class(status: str, count: int) -> str:
    if not count:
        return " text-body-tertiary"
    return " fw-bold text-danger-emphasis" if status.startswith("error_") else ""


def _share_bar(counts: Counter, total: int) -> list[tuple[str, str, str, str]]:
    """(status, count, style, width %) of each status present, for the stacked bar."""
    return [
        (status, str(n), STATUS_STYLES[status], f"{100 * n / total:.2f}")
        for status in STATUSES
        if (n := counts[status])
    ]


def _legend(statuses) -> list[tuple[str, str, str]]:
    return [(status, STATUS_STYLES[status], STATUS_HELP[status]) for status in statuses]


def _last_runs(regions: list[str]) -> dict[str, RegionRun]:
    last_ids = RegionRun.objects.filter(region__in=regions).values("region").annotate(last=Max("id")).values("last")
    runs = RegionRun.objects.filter(pk__in=last_ids).select_related("run")  # one query: the ids are a subquery
    return {run.region: run for run in runs}


def _polled_partial(request, template: str, context: dict, still_live: bool) -> HttpResponse:
    """The part of a page htmx polls; once nothing is left to watch, status 286 tells htmx to stop polling."""
    response = render(request, template, context)
    if not still_live:
        response.status_code = POLL_STOP
    return response


def _require_viewer(request) -> None:
    if not request.user.has_perm("sync.view_console"):
        raise PermissionDenied("You need the viewer or operator role to see the console.")


def _require_operator(request) -> None:
    if not request.user.has_perm("sync.operate_console"):
        raise PermissionDenied("You need the operator role for this.")


def _latest_refresh() -> tuple[StatusRefresh | None, bool]:
    """The last status refresh, and whether the demo configuration is in use, read in the same query."""
    demo = MasterSettings.objects.filter(pk=1).values("demo")[:1]
    refresh = StatusRefresh.objects.annotate(demo_in_use=Subquery(demo)).first()
    if refresh is None:
        return None, MasterSettings.demo_in_use()
    return refresh, bool(refresh.demo_in_use)


def _overview_context() -> dict:
    """The polled part: per request, the refreshes under way and whether anything is live; the regions table,
    shared by every viewer for a moment while anything is (see `_overview_regions`)."""
    refreshing = list(RefreshRequest.objects.active().order_by("requested_at"))  # of any region: all are shown
    live = bool(refreshing) or RegionRun.objects.filter(state__in=runs.ACTIVE_STATES).exists()
    return {"regions": _overview_regions(shared=live), "refreshing": refreshing, "live": live}


def _overview_regions(shared: bool) -> dict:
    """The regions table as HTML, with what the full page also needs from the same reads.

    While anything is live, every open overview polls it every 2 s: with a hundred of them, rendering it was the
    console's main cost. It holds nothing that depends on the viewer (no form, no permission), so then the HTML is
    kept for GLANCESYNC_PAGE_CACHE_SECONDS and shared: at worst that much older than the database, within one
    poll. Once nothing is live it is rendered afresh: that answer ends the polling and stays on the screen."""
    regions = _shared("glancesync:overview-regions", shared, _render_overview_regions)
    return {**regions, "table": mark_safe(regions["table"])}  # rendered by our own template, escaped there


def _shared(key: str, shared: bool, make: Callable[[], T]) -> T:
    """`make()`, kept under `key` for GLANCESYNC_PAGE_CACHE_SECONDS and shared by every viewer while `shared` (a
    live page that all of them poll); made afresh otherwise."""
    seconds = settings.GLANCESYNC_PAGE_CACHE_SECONDS if shared else 0
    value = cache.get(key) if seconds else None
    if value is None:
        value = make()
        if seconds:
            cache.set(key, value, seconds)
    return value


def _render_overview_regions() -> dict:
    refresh, demo = _latest_refresh()
    master_region = refresh.master_region if refresh else ""
    snapshots = sorted(
        RegionSnapshot.objects.summaries(),
        key=lambda s: (s.region != master_region, s.target != "master", s.target, s.region),
    )
    last_runs = _last_runs([s.region for s in snapshots])
    rows, totals = [], Counter()
    for snapshot in snapshots:
        region_counts = Counter(snapshot.status_counts)  # stored with the rows: no request counts the snapshot
        if snapshot.region != master_region:
            totals.update(region_counts)
        rows.append(_overview_row(snapshot, region_counts, master_region, last_runs.get(snapshot.region)))
    context = {
        "refresh": refresh,
        "rows": rows,
        "legend": STATUSES,
        **_status_columns(),
        "totals": _count_cells(totals),
        "grand_total": sum(totals.values()),
    }
    return {
        "table": str(render_to_string("sync/_overview_regions.html", context)),
        "refreshed": refresh is not None,
        "demo": demo,
        "master_region": master_region,
        "unreadable": [
            {"region": s.region, "unreadable_since": s.unreadable_since, "error": s.error} for s in snapshots if s.error
        ],
    }


def _overview_row(snapshot: RegionSnapshot, counts: Counter, master_region: str, last_run: RegionRun | None) -> dict:
    total = sum(counts.values())
    bar = _share_bar(counts, total)
    return {
        "snapshot": snapshot,
        "master": snapshot.region == master_region,
        "cells": _count_cells(counts),
        "bar": bar,
        "bar_label": ", ".join(f"{status} {n}" for status, n, _, _ in bar),
        "total": total,
        "last_run": last_run,
    }


def _failing_channels() -> list[AlertChannel]:
    """Shown first on the overview, with the regions the last refresh could not read."""
    return list(AlertChannel.objects.filter(failing_since__isnull=False).only("name", "failing_since", "last_error"))


@login_required
@require_GET
def overview(request):
    """One row per region of every target: counts per status, a colour bar, the last run. While a run or a
    status refresh is active the table refreshes itself (htmx polling, stopped with 286 once nothing is)."""
    _require_viewer(request)
    context = _overview_context()
    if request.htmx:
        return _polled_partial(request, "sync/_overview_table.html", context, still_live=context["live"])
    regions = context["regions"]
    context.update(
        demo=regions["demo"],
        master_region=regions["master_region"],
        problems={"unreadable": regions["unreadable"], "failing_channels": _failing_channels()},
        legend=_legend(STATUSES),
    )
    return render(request, "sync/overview.html", context)


@login_required
@require_GET
def matrix(request):
    """Images x regions with each cell's status; filters on target, region, status and image name; paged by name.

    A fleet has 20,000 names in 2,000,000 rows: the pages are keyset pages (the names after the last one shown,
    or before the first), which an index on the name reads in order, where counting or skipping the distinct
    names would read every row."""
    _require_viewer(request)
    filters = {key: request.GET.get(key, "").strip() for key in ("target", "region", "status", "q")}
    snapshots = RegionSnapshot.objects.summaries().order_by("target", "region")
    if filters["target"]:
        snapshots = snapshots.filter(target=filters["target"])
    if filters["region"]:
        snapshots = snapshots.filter(region=filters["region"])
    regions = [s.region for s in snapshots]
    states = ImageState.objects.all()
    if filters["target"] or filters["region"]:  # all regions: no condition, so the name index serves the order
        states = states.filter(region__in=regions)
    if filters["status"]:
        states = states.filter(status=filters["status"])
    if filters["q"]:
        states = states.filter(image_name__icontains=filters["q"])
    size = max(MATRIX_MIN_NAMES, min(MATRIX_PAGE_SIZE, MATRIX_CELLS // max(1, len(regions))))
    page = _name_page(states, size, request.GET.get("after", ""), request.GET.get("before", ""))
    cells = {
        (state.image_name, state.region): state
        # unordered: the model's (region, position) order would make SQLite read every row of each region
        for state in ImageState.objects.filter(region__in=regions, image_name__in=page["names"])
        .only("image_name", "region", "status", "changes", "visibility", "hidden", "tags", "region_tags")
        .order_by()
    }
    rows = [(name, [_matrix_cell(cells.get((name, region))) for region in regions]) for name in page["names"]]
    context = {
        "filters": filters,
        "regions": regions,
        "rows": rows,
        "page": page,
        "query": urlencode({key: value for key, value in filters.items() if value}),
        "targets": sorted(set(RegionSnapshot.objects.values_list("target", flat=True))),
        "all_regions": list(RegionSnapshot.objects.order_by("region").values_list("region", flat=True)),
        "statuses": STATUSES,
        "legend": _legend(STATUSES),
    }
    return render(request, "sync/matrix.html", context)


MATRIX_PAGE_SIZE = 50  # names per page, fewer when there are many regions:
MATRIX_CELLS = 2500  # cells per page at most (25 names of 100 regions), but
MATRIX_MIN_NAMES = 10  # at least this many names


def _name_page(states, size: int, after: str, before: str) -> dict:
    """`size` distinct image names of these rows, in name order, after `after` or before `before`, and whether
    there are more on either side (one name more is read to know)."""
    names = states.values_list("image_name", flat=True).distinct()
    if before:
        found = list(names.filter(image_name__lt=before).order_by("-image_name")[: size + 1])
        return {"names": found[:size][::-1], "previous": len(found) > size, "next": True}
    if after:
        names = names.filter(image_name__gt=after)
    found = list(names.order_by("image_name")[: size + 1])
    return {"names": found[:size], "previous": bool(after), "next": len(found) > size}


STATUS_SYMBOLS = {"ok": "✓", "ok_stalled_checksum": "=", "error_checksum": "✗", "error_ami": "✗"}


def _matrix_cell(state: ImageState | None) -> str:
    """One cell's HTML. A page of a fleet's matrix has thousands: made here, a cell costs a few microseconds,
    where the template's tags and lookups cost a hundred."""
    if state is None:
        return NO_CELL
    details = [state.status, state.planned_change(), _lifecycle_words(state)]
    return format_html(
        '<td><span class="badge {}" title="{}"><span aria-hidden="true">{}</span> {}</span></td>',
        STATUS_STYLES[state.status], " · ".join(d for d in details if d), STATUS_SYMBOLS.get(state.status, "…"),
        state.status,
    )  # fmt: skip


NO_CELL = mark_safe('<td class="text-body-tertiary" title="not synchronised to this region\'s target">—</td>')


def _lifecycle_words(state: ImageState) -> str:
    """The master image's visibility, hidden flag and tags, as a cell's tooltip says them."""
    words = [word for word in (state.visibility, "hidden" if state.hidden else "") if word]
    return ", ".join(words) + (f"; tags: {', '.join(state.tags)}" if state.tags else "")


REGION_PAGE_SIZE = 100


@login_required
@require_GET
def region_detail(request, region: str):
    """The synchronisable master images with their latest known status in one region, filtered by status and
    name and paged, and the region's runs. While a status refresh of the region is active its statuses refresh
    themselves (htmx polling, as above)."""
    _require_viewer(request)
    context = _region_context(region, request.GET)
    if request.htmx:
        return _polled_partial(request, "sync/_region_status.html", context, still_live=context["live"])
    context["runs"] = RegionRun.objects.filter(region=region).select_related("run").order_by("-id")[:20]
    return render(request, "sync/region.html", context)


def _region_context(region: str, params) -> dict:
    """What the region page's polled part shows: a page of the region's statuses and the refreshes under way.
    `params` has the filters and the page: the page's query string, or the fields of its Refresh now form."""
    snapshot = RegionSnapshot.objects.filter(region=region).first()
    if snapshot is None:
        raise Http404(f"unknown region {region}")
    filters = {key: params.get(key, "").strip() for key in ("status", "q")}
    states = ImageState.objects.filter(region=region).order_by("position")
    if filters["status"]:
        states = states.filter(status=filters["status"])
    if filters["q"]:
        states = states.filter(image_name__icontains=filters["q"])
    found = Counter(snapshot.status_counts)  # the whole region's, stored by the refresh
    paginator = Paginator(states, REGION_PAGE_SIZE)
    if not filters["q"]:  # known: counting a status's rows of a region can read the status's rows of every region
        paginator.count = found[filters["status"]] if filters["status"] else sum(found.values())
    page = paginator.get_page(params.get("page"))
    images = [
        {
            "state": s,
            "style": STATUS_STYLES[s.status],
            "help": STATUS_HELP[s.status],
            "action": (s.status == "pending_metadata" and s.planned_change()) or PLANNED_ACTIONS[s.status],
        }
        for s in page.object_list
    ]
    refreshing = [r for r in RefreshRequest.objects.active().order_by("requested_at") if r.covers(region)]
    return {
        "snapshot": snapshot,
        "region": region,
        "images": images,
        "page": page,
        "filters": filters,
        "filtered": any(filters.values()),
        "query": urlencode({key: value for key, value in filters.items() if value}),
        "total": sum(found.values()),
        "statuses": STATUSES,
        "summary": [cell for cell in _cells(found) if cell[1]],
        "legend": _legend([status for status in STATUSES if found[status]]),
        "refreshing": refreshing,
        "live": bool(refreshing),
    }


def _query_without_page(request) -> str:
    """The request's query string without `page`, for the pager's links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@login_required
@require_POST
def refresh_now(request):
    """Queue a status refresh of every region, or of the posted `region`. A click while a refresh of those
    regions still waits for a worker is that refresh. htmx gets the page's polled part back, saying
    "Refreshing…"; without JavaScript the page it came from shows the same after the redirect."""
    _require_operator(request)
    region = request.POST.get("region", "")
    if region and not RegionSnapshot.objects.filter(region=region).exists():
        raise Http404(f"unknown region {region}")
    refresh, created = RefreshRequest.queue([region] if region else [], request.user.get_username())
    if created:
        AuditEntry.record(request.user, refresh, "create", ["regions"])
    if request.htmx:
        if region:
            context = _region_context(region, request.POST)  # the form carries the page's filters
            return _polled_partial(request, "sync/_region_status.html", context, still_live=context["live"])
        context = _overview_context()
        return _polled_partial(request, "sync/_overview_table.html", context, still_live=context["live"])
    said = "was queued" if created else "was already waiting for a task worker"
    messages.success(request, f"A status refresh of {refresh.scope_label} {said}.")
    return redirect("sync:region_detail", region=region) if region else redirect("sync:overview")


# -- runs --------------------------------------------------------------------------------------------------


@login_required
@require_POST
def start_run(request):
    """Start a sync or dry run of the regions posted (`region`, repeated), then show it."""
    _require_operator(request)
    regions = [r for r in request.POST.getlist("region") if RegionSnapshot.objects.filter(region=r).exists()]
    if not regions:
        messages.error(request, "Choose at least one known region.")
        return redirect(request.POST.get("next") or "sync:overview")
    dry_run = request.POST.get("dry_run") == "1"
    try:
        run = runs.start_run(
            regions, dry_run=dry_run, trigger=SyncRun.Trigger.CONSOLE, started_by=request.user.username
        )
    except runs.RegionBusy as busy:
        messages.error(request, str(busy))
        return redirect(request.POST.get("next") or "sync:overview")
    AuditEntry.record(request.user, run, "create", ["regions", "dry_run"])
    return redirect("sync:run_detail", run_id=run.pk)


@login_required
@require_GET
def run_list(request):
    _require_viewer(request)
    queryset = SyncRun.objects.all()
    state, trigger = request.GET.get("state", ""), request.GET.get("trigger", "")
    if state:
        queryset = queryset.filter(state=state)
    if trigger:
        queryset = queryset.filter(trigger=trigger)
    context = {
        "runs": queryset[:100],
        "state": state,
        "trigger": trigger,
        "states": SyncRun._meta.get_field("state").choices,
        "triggers": SyncRun.Trigger.choices,
    }
    return render(request, "sync/run_list.html", context)


@login_required
@require_GET
def run_detail(request, run_id: int):
    """A run's regions with progress bars and log tails; htmx polls the partial until the run ends."""
    _require_viewer(request)
    run = get_object_or_404(SyncRun, pk=run_id)
    context = {"run": run, "cards": _run_cards(run)}
    if request.htmx:
        return _polled_partial(request, "sync/_run_regions.html", context, still_live=not run.finished)
    return render(request, "sync/run_detail.html", context)


def _run_cards(run: SyncRun, fresh: bool = False) -> str:
    """The run's state and region cards, without the viewer's cancel button: shared while the run is live, as
    the overview's table is (every open run page polls them every second); `fresh` after a change."""
    html = _shared(
        f"glancesync:run-cards:{run.pk}",
        not run.finished and not fresh,
        lambda: str(render_to_string("sync/_run_cards.html", {"run": run, "region_runs": run.region_runs.all()})),
    )
    return mark_safe(html)  # rendered by our own template, escaped there


@login_required
@require_POST
def cancel_run(request, run_id: int):
    _require_operator(request)
    run = get_object_or_404(SyncRun, pk=run_id)
    if run.state in FINISHED_STATES:
        messages.info(request, f"Run #{run.pk} had already ended ({run.state}).")
    else:
        runs.cancel_run(run)
        AuditEntry.record(request.user, run, "change", ["cancel_requested"])
        messages.success(request, f"Run #{run.pk}: cancel requested; a running region stops at its next image.")
    if request.htmx:  # the polled part of the page, re-rendered in place
        return render(request, "sync/_run_regions.html", {"run": run, "cards": _run_cards(run, fresh=True)})
    return redirect("sync:run_detail", run_id=run.pk)


# -- conflicts ---------------------------------------------------------------------------------------------


CONFLICT_PAGE_SIZE = 10  # checksums per page: each can be in error in every target, a group per target


def _conflict_page(after: str) -> tuple[list[dict], dict]:
    """One page of conflicts: images whose region copy differs from the master, grouped by (target, region
    checksum), for the checksums that are in error or have a decision, after the checksum `after`.

    Keyset pages, like the matrix's: a fleet has 100,000s of conflict rows, which counting would read."""
    decided = ChecksumDecision.objects.select_related("target", "created_by")  # the page shows who decided
    decisions = {(d.target.name, d.checksum): d for d in decided}
    rows = ImageState.objects.filter(status__in=CONFLICT_STATUSES)
    later = rows.filter(region_checksum__gt=after) if after else rows
    in_error = later.filter(status="error_checksum").values_list("region_checksum", flat=True).distinct()
    checksums = set(in_error.order_by("region_checksum")[: CONFLICT_PAGE_SIZE + 1])
    decided_later = {checksum for _, checksum in decisions if not after or checksum > after}
    if decided_later:
        checksums |= set(later.filter(region_checksum__in=decided_later).values_list("region_checksum", flat=True))
    ordered = sorted(checksums)
    shown = ordered[:CONFLICT_PAGE_SIZE]
    page = {"after": after, "next": shown[-1] if len(ordered) > CONFLICT_PAGE_SIZE else None}
    targets = dict(RegionSnapshot.objects.values_list("region", "target"))
    groups: dict[tuple[str, str], dict] = {}
    for state in rows.filter(region_checksum__in=shown).order_by("region_checksum", "region"):
        target = targets.get(state.region, "master")
        key = (target, state.region_checksum)
        group = groups.setdefault(key, {"target": target, "checksum": state.region_checksum, "states": []})
        group["states"].append({"state": state, "style": STATUS_STYLES[state.status]})
        group["decision"] = decisions.get(key)
    groups_shown = [
        g for g in groups.values() if g["decision"] or any(s["state"].status == "error_checksum" for s in g["states"])
    ]
    for group in groups_shown:  # one old build can be in every region: a group shows its first rows only
        group["regions"] = sorted({s["state"].region for s in group["states"]})
        group["more"] = max(0, len(group["states"]) - CONFLICT_ROWS_SHOWN)
        group["states"] = group["states"][:CONFLICT_ROWS_SHOWN]
    return groups_shown, page


CONFLICT_ROWS_SHOWN = 5  # per group; the decision covers them all


def _conflicts_context(request, error: str = "") -> dict:
    groups, page = _conflict_page(request.GET.get("after") or request.POST.get("after") or "")
    return {
        "groups": groups,
        "page": page,
        # by name: the (status, image_name) index gives the first 200 without sorting a fleet's rows
        "ami_errors": ImageState.objects.filter(status="error_ami").order_by("image_name", "region")[:200],
        "actions": ChecksumDecision.Action.choices,
        "configured": Target.objects.exists(),
        "error": error,
    }


@login_required
@require_GET
def conflicts(request):
    """Every checksum conflict, grouped by region checksum per target, with the three decisions and undo."""
    _require_viewer(request)
    template = "sync/_conflicts.html" if request.htmx else "sync/conflicts.html"
    return render(request, template, _conflicts_context(request))


def _apply_decisions(target: Target, checksum: str) -> int:
    """Move the target's conflict rows with this checksum to the status the engine now gives them."""
    policy = target.to_policy()
    regions = RegionSnapshot.objects.filter(target=target.name).values_list("region", flat=True)
    rows = ImageState.objects.filter(region__in=list(regions), status__in=CONFLICT_STATUSES)
    if checksum != "any":
        rows = rows.filter(region_checksum=checksum)
    changed = 0
    regions_changed: set[str] = set()
    with transaction.atomic():  # the rows and their regions' status counts change together
        for row in rows:
            status = checksum_status(row.region_checksum, policy)
            if status != row.status:
                ImageState.objects.filter(pk=row.pk).update(status=status)
                changed += 1
                regions_changed.add(row.region)
        RegionSnapshot.recount(sorted(regions_changed))
    return changed


@login_required
@require_POST
def decide_conflict(request):
    """Record a checksum decision for a target (the same row the admin edits), or undo it."""
    _require_operator(request)
    target = get_object_or_404(Target, name=request.POST.get("target", ""))
    checksum, action = request.POST.get("checksum", "").strip(), request.POST.get("action", "")
    if action == "undo":
        decision = ChecksumDecision.objects.filter(target=target, checksum=checksum).first()
        if decision is not None:
            AuditEntry.record(request.user, decision, "delete")
            decision.delete()
    else:
        error = _record_decision(request.user, target, checksum, action)
        if error:
            return _conflicts_response(request, error)
    _apply_decisions(target, checksum)
    # The conflict rows moved at once; a refresh of the target's regions then recomputes what that cannot:
    # the reasons shown, and rotations (a decided checksum is no longer claimed as a renamed copy).
    RefreshRequest.queue([f"{target.name}:"], request.user.get_username())
    return _conflicts_response(request, "")


def _record_decision(user, target: Target, checksum: str, action: str) -> str:
    """Create the decision; an error message instead when the input is refused."""
    if action not in ChecksumDecision.Action.values:
        return f"unknown action '{action}'"
    decision = ChecksumDecision(target=target, checksum=checksum, action=action, created_by=user)
    try:
        decision.full_clean()
        with transaction.atomic():
            decision.save()
    except ValidationError as error:
        return "; ".join(error.messages)
    except IntegrityError:
        return f"target {target.name} already has a decision for checksum {checksum}"
    AuditEntry.record(user, decision, "create", ["checksum", "action"])
    return ""


def _conflicts_response(request, error: str) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(reverse("sync:conflicts"))
    return render(
        request, "sync/_conflicts.html", _conflicts_context(request, error)
    )  # 200: htmx swaps it, the error shows by the buttons


# -- schedules ---------------------------------------------------------------------------------------------


@login_required
@require_GET
def schedules(request):
    """The sync schedules with their next run and the result of their last firing; edited in the admin."""
    _require_viewer(request)
    from django_q.models import Task

    rows = list(SyncSchedule.objects.order_by("next_run"))
    last_tasks = Task.objects.filter(id__in=[s.task for s in rows if s.task]).only("id", "result", "success", "stopped")
    by_id = {task.id: task for task in last_tasks}
    context = {"rows": [{"schedule": s, "options": s.options(), "last": by_id.get(s.task)} for s in rows]}
    return render(request, "sync/schedules.html", context)


# -- backups -----------------------------------------------------------------------------------------------


def _backups_context() -> dict:
    backups = list(Backup.objects.all()[:50])
    return {
        "backups": [(backup, backup.files()) for backup in backups],  # one folder listing per backup
        "active": any(not backup_is_finished(b) for b in backups),
        "regions": list(RegionSnapshot.objects.values_list("region", flat=True)),
    }


def backup_is_finished(backup: Backup) -> bool:
    return backup.state in FINISHED_STATES


@login_required
@require_GET
def backups(request):
    """Backups with their files; the list polls while one is being written."""
    _require_viewer(request)
    context = _backups_context()
    if request.htmx:
        return _polled_partial(request, "sync/_backups.html", context, still_live=context["active"])
    return render(request, "sync/backups.html", context)


@login_required
@require_POST
def make_backup(request):
    """Queue a backup of the chosen regions (none chosen: every region), the master region included."""
    _require_operator(request)
    from django.utils import timezone
    from django_q.tasks import async_task

    known = set(RegionSnapshot.objects.values_list("region", flat=True))
    regions = [r for r in request.POST.getlist("region") if r in known] or sorted(known)
    folder = timezone.now().strftime("backup_glance_%Y%m%dT%H%M%S_") + secrets.token_hex(3)
    backup = Backup.objects.create(created_by=request.user.get_username(), regions=regions, folder=folder)
    AuditEntry.record(request.user, backup, "create", ["regions"])
    transaction.on_commit(lambda: async_task("sync.tasks.make_backup", backup.pk, task_name=f"backup {folder}"))
    messages.success(request, f"Backup of {len(regions)} region(s) queued.")
    return redirect("sync:backups")


def _backup_file(backup: Backup, name: str) -> Path:
    """One of the backup's own files; any other name (../, another folder) is not found."""
    for path in backup.files():
        if path.name == name:
            return path
    raise Http404("no such file in this backup")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(data: bytes) -> bytes:
    """The CSV with every cell that a spreadsheet would run as a formula (=cmd, +, -, @) prefixed with `'`.

    Image names come from the clouds. Rows without such a cell are written back exactly as they were."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, dialect="excel")
    for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
        writer.writerow(["'" + cell if cell.startswith(FORMULA_STARTS) else cell for cell in row])
    return out.getvalue().encode("utf-8")


def _csv_bytes(path: Path, original: bool) -> bytes:
    data = path.read_bytes()
    return data if original else spreadsheet_safe(data)


@login_required
@require_GET
def backup_file(request, backup_id: int, name: str):
    """One CSV; `?format=original` gives the stored bytes unchanged, for the original GlanceSync's tools."""
    _require_viewer(request)
    path = _backup_file(get_object_or_404(Backup, pk=backup_id), name)
    data = _csv_bytes(path, request.GET.get("format") == "original")
    return FileResponse(io.BytesIO(data), as_attachment=True, filename=path.name, content_type="text/csv")


@login_required
@require_GET
def backup_zip(request, backup_id: int):
    """The whole backup as one zip of its CSV files, in a folder named like the original's backups
    (spreadsheet-safe unless `?format=original`)."""
    _require_viewer(request)
    backup = get_object_or_404(Backup, pk=backup_id)
    files = backup.files()
    if not files:
        raise Http404("this backup has no file")
    archive = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 (FileResponse closes it)
    original = request.GET.get("format") == "original"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in files:
            zipped.writestr(f"{backup.folder}/{path.name}", _csv_bytes(path, original))
    archive.seek(0)
    return FileResponse(archive, as_attachment=True, filename=f"{backup.folder}.zip", content_type="application/zip")


@login_required
@require_POST
def delete_backup(request, backup_id: int):
    _require_operator(request)
    backup = get_object_or_404(Backup, pk=backup_id)
    if not backup_is_finished(backup):
        messages.error(request, "This backup is still being written; delete it once it has ended.")
        return redirect("sync:backups")
    AuditEntry.record(request.user, backup, "delete")
    shutil.rmtree(backup.path, ignore_errors=True)
    backup.delete()
    if request.htmx:  # the list, re-rendered in place
        return render(request, "sync/_backups.html", _backups_context())
    messages.success(request, f"Backup {backup.folder} deleted.")
    return redirect("sync:backups")


# -- dry-run preview ---------------------------------------------------------------------------------------


PREVIEW_PAGE_SIZE = 50  # a region's items listed per kind and page


def _preview_rows(region: str, kind: str):
    """The region's ImageState rows of one PLAN_KINDS kind, in the order a sync takes them."""
    blocked = Q(status="pending_replace", reason=PROTECTED_COPY)  # refused: the sync reports it and skips it
    of_kind = Q(status__in=PLAN_KINDS[kind])
    rows = ImageState.objects.filter(region=region).order_by("position")
    if kind == "upload":
        return rows.filter(of_kind & ~blocked)
    return rows.filter(of_kind | blocked) if kind == "problem" else rows.filter(of_kind)


def _plan_summary(snapshot: RegionSnapshot) -> dict:
    """What a sync of the region would do, in numbers: stored with the snapshot, no row is read."""
    totals = snapshot.plan_totals
    uploads, upload_bytes = totals.get("upload", (0, 0))
    metadata = totals.get("metadata", (0, 0))[0]
    return {
        "snapshot": snapshot,
        "upload_count": uploads,
        "upload_bytes": upload_bytes,
        "metadata_count": metadata,
        "problem_count": totals.get("problem", (0, 0))[0],
        "warning_count": len(snapshot.warnings),
        "changes": uploads + metadata,
    }


@login_required
@require_GET
def preview(request):
    """What a sync of the chosen regions (default: all) would do, from the snapshot: nothing is changed. One row
    per region with its numbers; a region's items load on demand (`preview_region`), or show here for a single
    chosen region."""
    _require_viewer(request)
    snapshots = RegionSnapshot.objects.summaries().order_by("target", "region")
    chosen = request.GET.getlist("region")
    if chosen:
        snapshots = snapshots.filter(region__in=chosen)
    plans = [_plan_summary(snapshot) for snapshot in snapshots]
    context = {
        "plans": plans,
        "total_bytes": sum(p["upload_bytes"] for p in plans),
        "total_uploads": sum(p["upload_count"] for p in plans),
        "to_sync": [p["snapshot"].region for p in plans if p["changes"]],
        "details": _plan_details(plans[0]["snapshot"], request.GET) if len(plans) == 1 else None,
    }
    return render(request, "sync/preview.html", context)


@login_required
@require_GET
def preview_region(request, region: str):
    """One region's planned items, a page per kind: the preview loads it with htmx under the region's row."""
    _require_viewer(request)
    snapshot = get_object_or_404(RegionSnapshot.objects.summaries(), region=region)
    return render(request, "sync/_preview_region.html", {"details": _plan_details(snapshot, request.GET)})


def _plan_details(snapshot: RegionSnapshot, params) -> dict:
    """A page of each kind of the region's planned items (`upload_page`, `metadata_page`, `problem_page`)."""
    summary = _plan_summary(snapshot)
    kinds = {}
    for kind in PLAN_KINDS:
        rows = _preview_rows(snapshot.region, kind).only(
            "region", "image_name", "status", "size", "changes", "position", "reason", "tags", "region_tags"
        )  # tags too: planned_change() reads them, and a deferred field would cost a query per row
        paginator = Paginator(rows, PREVIEW_PAGE_SIZE)
        paginator.count = snapshot.plan_totals.get(kind, (0, 0))[0]  # stored with the rows: no count query
        page = paginator.get_page(params.get(f"{kind}_page"))
        query = {key: value for key, value in params.items() if key.endswith("_page") and key != f"{kind}_page"}
        kinds[kind] = {"page": page, "param": f"{kind}_page", "query": urlencode({"region": snapshot.region, **query})}
    return {**summary, "kinds": kinds, "target": f"#plan-details-{snapshot.pk}"}


# -- API tokens ------------------------------------------------------------------------------------------------


def _tokens_page(request, form: ApiTokenForm, new_token: str = "", status: int = 200) -> HttpResponse:
    tokens = request.user.api_tokens.order_by("revoked", "-created_at")
    context = {"form": form, "tokens": tokens, "new_token": new_token}
    response = render(request, "sync/api_tokens.html", context, status=status)
    response["Cache-Control"] = "no-store"  # a new token is on this page once: no cache may keep it
    return response


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """The user's own API tokens; a new one is shown once, on the answer to the form that made it.

    A token acts with its owner's role, so viewers may make tokens too (read-only ones, in effect)."""
    _require_viewer(request)
    if request.method == "GET":
        return _tokens_page(request, ApiTokenForm())
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, form, status=400)
    token, secret = ApiToken.issue(request.user, form.cleaned_data["name"])
    AuditEntry.record(request.user, token, "create", ["name"])
    return _tokens_page(request, ApiTokenForm(), new_token=secret)


@login_required
@require_POST
def revoke_api_token(request, token_id: int):
    _require_viewer(request)
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)  # never someone else's
    if not token.revoked:
        token.revoked = True
        token.save(update_fields=["revoked"])
        AuditEntry.record(request.user, token, "change", ["revoked"])
    messages.success(request, f"Token {token} revoked: the API refuses it from now on.")
    return redirect("sync:api_tokens")


# -- alerts ------------------------------------------------------------------------------------------------

ALERTS_PAGE_SIZE = 25


@login_required
@require_GET
def alerts(request):
    """The recent alerts with the delivery state of each channel, and the channels' own state."""
    _require_viewer(request)
    page = Paginator(Alert.objects.prefetch_related("deliveries__channel"), ALERTS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "channels": AlertChannel.objects.prefetch_related("targets")}
    return render(request, "sync/alerts.html", context)
