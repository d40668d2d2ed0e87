"""The JSON API under /api/v1/ (django-ninja): region statuses, syncs and their tasks, checksum decisions.

The original's REST API (spec §7), done right (§9.2): every target's regions are addressable (`target:Region`,
URL-encoded as `target%3ARegion`), a busy region answers 409, errors have one JSON shape, and the OpenAPI
document is generated from the code (/api/v1/openapi.json).

Auth: per-user API tokens (`Authorization: Bearer gs_...`, created in the admin, stored hashed) with the console's
roles: viewers read, operators start runs and change decisions. Keystone tokens are not accepted: the console's
roles are its own, and a Keystone round trip per request would tie the API's availability to a cloud's.
A "task" is a RegionRun: one region of a run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Field, NinjaAPI, Schema
from ninja import Status as NinjaStatus
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer

from sync import __version__, runs
from sync.engine.model import STATUSES
from sync.models import (
    ApiToken,
    AuditEntry,
    ChecksumDecision,
    ImageState,
    RefreshRequest,
    RegionRun,
    RegionSnapshot,
    StatusRefresh,
    SyncRun,
    Target,
)


class BearerToken(HttpBearer):
    """A valid token (else 401) whose user has `permission` (else 403), checked before the input is read."""

    def __init__(self, permission: str) -> None:
        super().__init__()
        self.permission = permission

    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.user_for(token)
        if user is None:
            return None
        if not user.has_perm(self.permission):
            raise PermissionDenied(
                f"this token's user lacks the permission {self.permission} (viewer or operator role)"
            )
        request.user = user
        return user


VIEWER = BearerToken("sync.view_console")
OPERATOR = BearerToken("sync.operate_console")


api = NinjaAPI(
    title="GlanceSync API",
    version="1",
    description=__doc__,
    auth=VIEWER,
    urls_namespace="api",
    docs_url=None,  # Swagger UI would load its assets from a CDN; the JSON document is at openapi.json
)


# -- errors: {"error": {"code", "message", "detail"}} ------------------------------------------------------


class ErrorBody(Schema):
    code: str
    message: str
    detail: dict | list | None = None


class Error(Schema):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: dict | list | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def error_response(request, status: int, code: str, message: str, detail=None) -> HttpResponse:
    return api.create_response(request, {"error": {"code": code, "message": message, "detail": detail}}, status=status)


@api.exception_handler(ApiError)
def _api_error(request, exc: ApiError):
    return error_response(request, exc.status, exc.code, exc.message, exc.detail)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return error_response(request, 401, "unauthorized", "send a valid API token: Authorization: Bearer <token>")


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return error_response(request, 403, "forbidden", str(exc) or "not allowed")


@api.exception_handler(Http404)
def _not_found(request, exc):
    return error_response(request, 404, "not_found", str(exc) or "not found")


@api.exception_handler(NinjaValidationError)
def _bad_input(request, exc: NinjaValidationError):
    detail = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors]
    return error_response(request, 400, "bad_request", "the request is not valid", detail)


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    return error_response(request, 413, "too_large", "the request body is too large")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return error_response(request, exc.status_code, "error", str(exc))


@api.exception_handler(Exception)
def _unexpected(request, exc):
    # Never a traceback or an exception text (it could quote a secret) in a body; the log has it.
    import logging

    logging.getLogger(__name__).exception("API error on %s %s", request.method, request.path)
    return error_response(request, 500, "internal_error", "internal error; the server log has the details")


def _snapshot(region: str) -> RegionSnapshot:
    snapshot = RegionSnapshot.objects.filter(region=region).first()
    if snapshot is None:
        raise Http404(f"unknown region {region!r} (regions of other targets are named target:Region)")
    return snapshot


# -- schemas -----------------------------------------------------------------------------------------------

Status = Literal[
    "ok", "ok_stalled_checksum", "pending_metadata", "pending_upload", "pending_replace", "pending_rename",
    "pending_ami", "error_checksum", "error_ami",
]  # fmt: skip
Action = Literal["dontupdate", "rename", "replace"]


class Health(Schema):
    statuses_computed_at: datetime | None
    last_refresh_error: str
    active_runs: int


class Version(Schema):
    name: str
    version: str
    api: str
    health: Health


class RegionSummary(Schema):
    region: str
    target: str
    computed_at: datetime
    error: str
    counts: dict[str, int]
    url: str


class LifecycleOut(Schema):
    visibility: str = Field(description="public, community, shared or private")
    hidden: bool = Field(description="Glance's os_hidden")
    tags: list[str]


class CopyOut(LifecycleOut):
    id: str
    name: str = Field(description="another name than the image's when a rotation renames the copy")


class ImageStatusOut(Schema):
    name: str
    status: Status
    master_checksum: str
    region_checksum: str
    size: int
    message: str
    master: LifecycleOut
    region_copy: CopyOut | None = Field(description="the region's copy; null when the region has none")
    planned: str = Field(description="what a sync would change on the copy, in words (pending_metadata)")


class OtherImageOut(Schema):
    name: str
    status: str
    public: bool
    visibility: str = ""
    hidden: bool = False
    tags: list[str] = []
    size: int
    why: str


class RegionDetail(Schema):
    region: str
    target: str
    computed_at: datetime
    error: str
    images: list[ImageStatusOut]
    other_images: list[OtherImageOut] = Field(description="images a sync leaves alone (the first 500, by name)")
    other_images_total: int


class SyncIn(Schema):
    dry_run: bool = False


class RunIn(Schema):
    regions: list[str] = Field(min_length=1)
    dry_run: bool = False


class TaskOut(Schema):
    task_id: int
    run_id: int
    region: str
    state: str
    dry_run: bool
    started_at: datetime | None
    finished_at: datetime | None
    current_image: str
    images_done: int
    images_total: int
    bytes_done: int
    bytes_total: int
    counters: dict[str, int]
    error: str
    url: str


class RunOut(Schema):
    run_id: int
    state: str
    trigger: str
    started_by: str
    dry_run: bool
    created_at: datetime
    finished_at: datetime | None
    tasks: list[TaskOut]
    url: str


class DecisionIn(Schema):
    checksum: str
    action: Action
    reason: str = ""


class DecisionOut(Schema):
    checksum: str
    action: Action
    reason: str
    created_by: str
    created_at: datetime


MESSAGES = {
    "ok": "the region's copy is identical",
    "ok_stalled_checksum": "different content, kept on purpose (dontupdate)",
    "pending_metadata": "same content; name, visibility, hidden flag, tags or properties will be updated",
    "pending_upload": "not in the region: will be uploaded",
    "pending_replace": "different content: will be uploaded, then the old copy deleted",
    "pending_rename": "different content: will be uploaded, the old copy renamed <name>.old",
    "pending_ami": "waits for its kernel or ramdisk to be uploaded",
    "error_checksum": "different content and no decision for its checksum",
    "error_ami": "its kernel or ramdisk image is not synchronised to this target",
}


def _task_out(region_run: RegionRun) -> dict:
    return {
        "task_id": region_run.pk,
        "run_id": region_run.run_id,
        "region": region_run.region,
        "state": region_run.state,
        "dry_run": region_run.run.dry_run,
        "started_at": region_run.started_at,
        "finished_at": region_run.finished_at,
        "current_image": region_run.current_image,
        "images_done": region_run.images_done,
        "images_total": region_run.images_total,
        "bytes_done": region_run.bytes_done,
        "bytes_total": region_run.bytes_total,
        "counters": {
            field: getattr(region_run, field)
            for field in (
                "uploads",
                "replaces",
                "renames",
                "metadata_updates",
                "obsolete_updates",
                "warnings",
                "errors",
            )
        },
        "error": region_run.error,
        "url": reverse("api:region_task", args=[region_run.region, region_run.pk]),
    }


def _run_out(run: SyncRun) -> dict:
    return {
        "run_id": run.pk,
        "state": run.state,
        "trigger": run.trigger,
        "started_by": run.started_by,
        "dry_run": run.dry_run,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "tasks": [_task_out(region_run) for region_run in run.region_runs.select_related("run")],
        "url": reverse("api:run", args=[run.pk]),
    }


def _start(request, regions: list[str], dry_run: bool) -> SyncRun:
    for region in regions:
        _snapshot(region)
    try:
        run = runs.start_run(regions, dry_run=dry_run, trigger=SyncRun.Trigger.API, started_by=request.user.username)
    except runs.RegionBusy as busy:
        running = RegionRun.objects.filter(region=busy.region, run_id=busy.run_id).first()
        detail = {"region": busy.region, "run_id": busy.run_id, "task_id": running.pk if running else None}
        raise ApiError(409, "busy", str(busy), detail) from None
    except ValueError as error:
        raise ApiError(400, "bad_request", str(error)) from None
    AuditEntry.record(request.user, run, "create", ["regions", "dry_run"])
    return run


# -- endpoints ---------------------------------------------------------------------------------------------


@api.get("/", response={200: Version, 401: Error, 403: Error}, url_name="root")
def root(request):
    """Version and health: when statuses were last computed, and how many runs are active."""
    refresh = StatusRefresh.objects.first()
    return {
        "name": "GlanceSync",
        "version": __version__,
        "api": "v1",
        "health": {
            "statuses_computed_at": refresh.finished_at if refresh else None,
            "last_refresh_error": refresh.error if refresh else "",
            "active_runs": SyncRun.objects.filter(state__in=runs.ACTIVE_STATES).count(),
        },
    }


@api.get("/regions", response={200: list[RegionSummary], 401: Error, 403: Error}, url_name="regions")
def regions(request):
    """Every region of every target, with its number of images per status."""
    return [
        {
            "region": s.region,
            "target": s.target,
            "computed_at": s.computed_at,
            "error": s.error,
            "counts": {**dict.fromkeys(STATUSES, 0), **s.status_counts},  # stored by the refresh with the rows
            "url": reverse("api:region", args=[s.region]),
        }
        for s in RegionSnapshot.objects.summaries().order_by("target", "region")
    ]


def _copy_of(state: ImageState) -> dict | None:
    if not state.region_image_id:
        return None
    return {
        "id": state.region_image_id, "name": state.region_image_name or state.image_name,
        "visibility": state.region_visibility, "hidden": state.region_hidden, "tags": state.region_tags,
    }  # fmt: skip


@api.get(
    "/regions/{region}", response={200: RegionDetail, 400: Error, 401: Error, 403: Error, 404: Error}, url_name="region"
)
def region(request, region: str, image: str | None = None, status: Status | None = None):
    """The sync status of each master image in the region; `image` and `status` filter."""
    snapshot = _snapshot(region)
    states = ImageState.objects.filter(region=region).order_by("position")
    if image:
        states = states.filter(image_name=image)
    if status:
        states = states.filter(status=status)
    images = [
        {
            "name": s.image_name,
            "status": s.status,
            "master_checksum": s.master_checksum,
            "region_checksum": s.region_checksum,
            "size": s.size,
            "message": f"{MESSAGES[s.status]} ({s.reason})" if s.reason else MESSAGES[s.status],
            "master": {"visibility": s.visibility, "hidden": s.hidden, "tags": s.tags},
            "region_copy": _copy_of(s),
            "planned": s.planned_change() if s.status == "pending_metadata" else "",
        }
        for s in states
    ]
    return {
        "region": region,
        "target": snapshot.target,
        "computed_at": snapshot.computed_at,
        "error": snapshot.error,
        "images": images,
        "other_images": snapshot.other_images,
        "other_images_total": snapshot.other_images_total,
    }


@api.post(
    "/regions/{region}",
    response={202: TaskOut, 400: Error, 401: Error, 403: Error, 404: Error, 409: Error},
    url_name="region_sync",
    auth=OPERATOR,
)
def sync_region(request, region: str, body: SyncIn | None = None):
    """Start a sync (or dry run) of the region; 409 with the running task when the region is busy."""
    run = _start(request, [region], (body or SyncIn()).dry_run)
    task = run.region_runs.select_related("run").get()
    response = api.create_response(request, _task_out(task), status=202)
    response["Location"] = reverse("api:region_task", args=[region, task.pk])
    return response


def _task(region: str, task_id: int) -> RegionRun:
    return get_object_or_404(RegionRun.objects.select_related("run"), pk=task_id, region=region)


@api.get(
    "/regions/{region}/tasks/{task_id}",
    response={200: TaskOut, 400: Error, 401: Error, 403: Error, 404: Error},
    url_name="region_task",
)
def region_task(request, region: str, task_id: int):
    """A task's state, progress and counters."""
    return _task_out(_task(region, task_id))


@api.delete(
    "/regions/{region}/tasks/{task_id}",
    response={204: None, 400: Error, 401: Error, 403: Error, 404: Error, 409: Error},
    url_name="region_task_delete",
    auth=OPERATOR,
)
def delete_region_task(request, region: str, task_id: int):
    """Forget a finished task (and its run once it has no task left); 409 while it is waiting or running."""
    task = _task(region, task_id)
    if not task.finished:
        raise ApiError(409, "busy", f"task {task_id} is {task.state}: cancel its run or wait for it to end")
    AuditEntry.record(request.user, task, "delete")
    run = task.run
    task.delete()
    if not run.region_runs.exists():
        run.delete()
    return NinjaStatus(204, None)


@api.post(
    "/runs",
    response={202: RunOut, 400: Error, 401: Error, 403: Error, 404: Error, 409: Error},
    url_name="runs",
    auth=OPERATOR,
)
def start_run(request, body: RunIn):
    """Start a sync (or dry run) of several regions, at most max_children at once."""
    run = _start(request, body.regions, body.dry_run)
    response = api.create_response(request, _run_out(run), status=202)
    response["Location"] = reverse("api:run", args=[run.pk])
    return response


@api.get("/runs/{run_id}", response={200: RunOut, 400: Error, 401: Error, 403: Error, 404: Error}, url_name="run")
def run(request, run_id: int):
    return _run_out(get_object_or_404(SyncRun, pk=run_id))


def _decision_out(decision: ChecksumDecision) -> dict:
    return {
        "checksum": decision.checksum,
        "action": decision.action,
        "reason": decision.reason,
        "created_by": decision.created_by.get_username() if decision.created_by else "",
        "created_at": decision.created_at,
    }


@api.get(
    "/targets/{target}/checksums",
    response={200: list[DecisionOut], 400: Error, 401: Error, 403: Error, 404: Error},
    url_name="checksums",
)
def checksums(request, target: str):
    """The target's checksum decisions (the original's dontupdate / rename / replace lists)."""
    found = get_object_or_404(Target, name=target)
    return [_decision_out(d) for d in found.decisions.select_related("created_by")]


@api.post(
    "/targets/{target}/checksums",
    response={201: DecisionOut, 400: Error, 401: Error, 403: Error, 404: Error, 409: Error},
    url_name="checksums_add",
    auth=OPERATOR,
)
def add_checksum(request, target: str, body: DecisionIn):
    """Record a decision for a checksum (`any` is allowed for rename and replace)."""
    found = get_object_or_404(Target, name=target)
    decision = ChecksumDecision(
        target=found, checksum=body.checksum.strip(), action=body.action, reason=body.reason, created_by=request.user
    )
    try:
        decision.full_clean()
        with transaction.atomic():
            decision.save()
    except ValidationError as error:
        if "unique" in " ".join(error.messages).lower() or "already exists" in " ".join(error.messages):
            raise ApiError(409, "conflict", f"target {target} already has a decision for this checksum") from None
        raise ApiError(400, "bad_request", "; ".join(error.messages), error.message_dict) from None
    except IntegrityError:
        raise ApiError(409, "conflict", f"target {target} already has a decision for this checksum") from None
    AuditEntry.record(request.user, decision, "create", ["checksum", "action"])
    RefreshRequest.queue([f"{found.name}:"], request.user.get_username())  # the statuses follow the decision
    return NinjaStatus(201, _decision_out(decision))


@api.delete(
    "/targets/{target}/checksums/{checksum}",
    response={204: None, 400: Error, 401: Error, 403: Error, 404: Error},
    url_name="checksums_delete",
    auth=OPERATOR,
)
def delete_checksum(request, target: str, checksum: str):
    """Remove the decision for a checksum: its images are in conflict again."""
    decision = get_object_or_404(ChecksumDecision, target__name=target, checksum=checksum)
    AuditEntry.record(request.user, decision, "delete")
    decision.delete()
    RefreshRequest.queue([f"{target}:"], request.user.get_username())
    return NinjaStatus(204, None)


@api.delete(
    "/targets/{target}/checksums",
    response={204: None, 400: Error, 401: Error, 403: Error, 404: Error},
    url_name="checksums_delete_query",
    auth=OPERATOR,
)
def delete_checksum_by_query(request, target: str, checksum: str):
    """The same, with the checksum as a query parameter (`?checksum=...`)."""
    return delete_checksum(request, target, checksum)
