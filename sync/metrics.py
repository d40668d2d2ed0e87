"""Prometheus metrics at /metrics (issue #14): the fleet's state, read from the database at each scrape.

Every value comes from the database, never from counters kept in a process, so any web process answers the same
with several task clusters on several machines, and after restarts. A scrape costs a constant number of queries
whatever the fleet: image counts are the per-region `RegionSnapshot.status_counts` stored at refresh time (never
a count of the ImageState rows), and the run counters and duration histograms are SQL aggregates.

Access: an API token whose user has the viewer role, or a client address in GLANCESYNC_METRICS_NETWORKS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import BooleanField, Count, ExpressionWrapper, FloatField, Func, Max, Q, Sum
from django.db.models.lookups import LessThanOrEqual
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sync.engine.model import STATUSES
from sync.models import (
    FINISHED_STATES,
    AlertChannel,
    ApiToken,
    ClusterHeartbeat,
    RegionRun,
    RegionSnapshot,
    RunState,
    SyncRun,
)

# Upper bounds of the duration buckets, in seconds: a dry run takes seconds, a sync of big images hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
ACTIVE_STATES = (RunState.QUEUED, RunState.RUNNING)
DRY_RUN = {False: "false", True: "true"}
REGION_LABELS = ["region", "target"]


class DurationSeconds(Func):
    """`finished_at - started_at` in seconds, computed by the database (NULL while either is missing)."""

    arity = 2
    output_field = FloatField()
    template = "CAST(EXTRACT(EPOCH FROM (%(expressions)s)) AS double precision)"  # PostgreSQL
    arg_joiner = " - "

    def as_sqlite(self, compiler, connection, **extra):
        # Django's own DurationField arithmetic calls a Python function per row on SQLite; julianday() is native.
        template = "((julianday(%(expressions)s)) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, arg_joiner=") - julianday(", **extra)


def _duration_aggregates() -> dict:
    """Cumulative bucket counts, count and sum of the finished durations, as aggregates of one query."""
    seconds = DurationSeconds("finished_at", "started_at")
    buckets = {
        f"le_{i}": Count("id", filter=LessThanOrEqual(seconds, bound)) for i, bound in enumerate(DURATION_BUCKETS)
    }
    timed = Count("id", filter=Q(started_at__isnull=False, finished_at__isnull=False))
    return buckets | {"timed": timed, "seconds": Sum(seconds)}


class FleetCollector(Collector):
    """The metric families of one scrape, from six queries."""

    def collect(self) -> Iterator[Metric]:
        readable = ExpressionWrapper(Q(error=""), output_field=BooleanField())
        snapshots = list(
            RegionSnapshot.objects.annotate(readable=readable)
            .order_by("region")
            .values_list("region", "target", "computed_at", "readable", "status_counts")
        )
        targets = {region: target for region, target, *_ in snapshots}
        yield _images(snapshots)
        yield from _regions(snapshots, targets)
        runs = SyncRun.objects.values("state", "dry_run").annotate(n=Count("id"), **_duration_aggregates())
        yield from _runs(list(runs.order_by()))
        tasks = RegionRun.objects.values("state", "run__dry_run").annotate(
            n=Count("id"), bytes=Sum("bytes_done"), **_duration_aggregates()
        )
        yield from _region_tasks([{**row, "dry_run": row["run__dry_run"]} for row in tasks.order_by()])
        yield _heartbeat()
        yield _alert_channels()


def _images(snapshots: list[tuple]) -> Metric:
    images = GaugeMetricFamily(
        "glancesync_images",
        "Master images per region, target and status, as of the region's last readable status refresh.",
        labels=[*REGION_LABELS, "status"],
    )
    for region, target, _, _, counts in snapshots:
        for status in [*STATUSES, *sorted(set(counts) - set(STATUSES))]:  # every status, so 0 is a value too
            images.add_metric([region, target, status], counts.get(status, 0))
    return images


def _regions(snapshots: list[tuple], targets: dict[str, str]) -> Iterator[Metric]:
    last_sync = GaugeMetricFamily(
        "glancesync_region_last_success_timestamp_seconds",
        "When the region's last successful sync (done, not a dry run) ended, in Unix time.",
        labels=REGION_LABELS,
    )
    successes = RegionRun.objects.filter(state=RunState.DONE, run__dry_run=False, finished_at__isnull=False)
    for region, finished_at in successes.values_list("region").annotate(last=Max("finished_at")).order_by("region"):
        last_sync.add_metric([region, targets.get(region) or _target_of(region)], finished_at.timestamp())
    yield last_sync
    refreshed = GaugeMetricFamily(
        "glancesync_region_last_refresh_timestamp_seconds",
        "When the region's statuses were last refreshed or tried to be (see glancesync_region_readable), Unix time.",
        labels=REGION_LABELS,
    )
    readable = GaugeMetricFamily(
        "glancesync_region_readable",
        "1 if the region's images could be listed at its last status refresh, 0 if not (the console says why).",
        labels=REGION_LABELS,
    )
    for region, target, computed_at, is_readable, _ in snapshots:
        refreshed.add_metric([region, target], computed_at.timestamp())
        readable.add_metric([region, target], 1 if is_readable else 0)
    yield refreshed
    yield readable


def _target_of(region: str) -> str:
    """The target of a full region name (a region synced but never refreshed has no snapshot to say it)."""
    return region.split(":", 1)[0] if ":" in region else "master"


def _finished_counter(name: str, documentation: str, rows: list[dict]) -> Metric:
    counter = CounterMetricFamily(name, documentation, labels=["state", "dry_run"])
    counts = {(row["state"], row["dry_run"]): row["n"] for row in rows}
    for state in FINISHED_STATES:
        for dry_run, label in DRY_RUN.items():  # zeros too: rate() and increase() see the first one
            counter.add_metric([state, label], counts.get((state, dry_run), 0))
    return counter


def _duration_histogram(name: str, documentation: str, rows: list[dict]) -> Metric:
    histogram = HistogramMetricFamily(name, documentation, labels=["dry_run"])
    for dry_run, label in DRY_RUN.items():
        mine = [row for row in rows if row["dry_run"] == dry_run]
        buckets = [(floatToGoString(bound), _total(mine, f"le_{i}")) for i, bound in enumerate(DURATION_BUCKETS)]
        buckets.append(("+Inf", _total(mine, "timed")))
        histogram.add_metric([label], buckets, sum_value=float(sum(row["seconds"] or 0 for row in mine)))
    return histogram


def _total(rows: Iterable[dict], key: str) -> int:
    return sum(row[key] for row in rows)


def _runs(rows: list[dict]) -> Iterator[Metric]:
    yield _finished_counter("glancesync_runs", "Runs (SyncRun) ended, by final state and dry run.", rows)
    yield _duration_histogram(
        "glancesync_run_duration_seconds", "Wall time of the runs that ended, from their start to their end.", rows
    )


def _region_tasks(rows: list[dict]) -> Iterator[Metric]:
    yield _finished_counter(
        "glancesync_region_tasks", "Region tasks (one region of a run) ended, by final state and dry run.", rows
    )
    yield _duration_histogram(
        "glancesync_region_task_duration_seconds", "Wall time of the region tasks that ended.", rows
    )
    active = GaugeMetricFamily(
        "glancesync_region_tasks_active", "Region tasks waiting for a worker (queued) or syncing (running).",
        labels=["state"],
    )  # fmt: skip
    for state in ACTIVE_STATES:
        active.add_metric([state], _total((row for row in rows if row["state"] == state), "n"))
    yield active
    uploaded = CounterMetricFamily(
        "glancesync_uploaded_bytes",
        "Bytes sent to regions by the region tasks that ended (not dry runs), failed uploads' partial bytes included.",
    )
    real = (row for row in rows if row["state"] in FINISHED_STATES and not row["dry_run"])
    uploaded.add_metric([], sum(row["bytes"] or 0 for row in real))
    yield uploaded


def _heartbeat() -> Metric:
    heartbeat = GaugeMetricFamily(
        "glancesync_cluster_heartbeat_age_seconds",
        "Seconds since a task cluster last ran the recovery sweep (every minute); absent when none ever did.",
    )
    age = ClusterHeartbeat.age_seconds()
    if age is not None:
        heartbeat.add_metric([], age)
    return heartbeat


def _alert_channels() -> Metric:
    failing = GaugeMetricFamily(
        "glancesync_alert_channel_failing",
        "1 if an alert could not be delivered to the channel after every retry (until one is), else 0.",
        labels=["channel", "kind"],
    )
    for name, kind, since in AlertChannel.objects.filter(enabled=True).values_list("name", "kind", "failing_since"):
        failing.add_metric([name, kind], 0 if since is None else 1)
    return failing


REGISTRY = CollectorRegistry()  # private: nothing of the process (GC, CPU) is mixed with the fleet's state
REGISTRY.register(FleetCollector())


# -- the view ------------------------------------------------------------------------------------------------


@login_not_required  # a scraper has no session: a token or its address (never the login page)
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refused = _refused(request)
    if refused is not None:
        return refused
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)


def _refused(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read: a viewer's API token, or no token from an allowed network."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user = ApiToken.user_for(token.strip())
        if user is None:  # a token that was sent is checked even from an allowed network
            return _unauthorized("this API token is not valid (unknown or revoked, or its user is inactive)")
        if not user.has_perm("sync.view_console"):
            return _plain(403, "this token's user has no role: the viewer role is enough for /metrics")
        return None
    if _allowed_address(request.META.get("REMOTE_ADDR", "")):
        return None
    if settings.GLANCESYNC_METRICS_NETWORKS:
        return _plain(403, "this address is not in GLANCESYNC_METRICS_NETWORKS: send an API token instead")
    return _unauthorized("send an API token: Authorization: Bearer <token>")


def _allowed_address(address: str) -> bool:
    """REMOTE_ADDR only: behind a proxy that is the proxy's address, so scrapers there send a token."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:  # an IPv4 client of a dual-stack socket
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network, strict=False) for network in settings.GLANCESYNC_METRICS_NETWORKS)


def _unauthorized(message: str) -> HttpResponse:
    response = _plain(401, message)
    response["WWW-Authenticate"] = 'Bearer realm="glancesync"'
    return response


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
