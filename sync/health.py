"""Health endpoints for load balancers and orchestrators, without login and without secrets in the body.

- `/healthz`: the web process answers (liveness). It touches no database: a database outage must not make an
  orchestrator restart every web process.
- `/readyz`: the console can do its job (readiness): the database answers, every migration is applied, a task
  cluster ran the recovery sweep recently (its heartbeat), and the status snapshot is fresh enough.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sync.models import ClusterHeartbeat, StatusRefresh

OK = "ok"
_migrated = False  # once every migration is applied it stays so for this process (a new release restarts it)


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": OK})


@never_cache
@require_GET
def readyz(request):
    checks = {"database": _database()}
    if checks["database"] == OK:
        checks |= {"migrations": _migrations(), "cluster": _cluster(), "status_refresh": _status_refresh()}
    ready = all(result == OK for result in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:  # the class only: a driver's message may name hosts and users
        return f"unreachable ({type(error).__name__})"
    return OK


def _migrations() -> str:
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            return f"{len(pending)} migration(s) not applied: run manage.py migrate"
        _migrated = True
    return OK


def _cluster() -> str:
    age = ClusterHeartbeat.age_seconds()
    limit = settings.GLANCESYNC_READY_HEARTBEAT_SECONDS
    if age is None:
        return "no task cluster has run yet: start manage.py qcluster"
    if age > limit:
        return f"no task cluster heartbeat for {age:.0f} s (limit {limit} s): is manage.py qcluster running?"
    return OK


def _status_refresh() -> str:
    finished_at = StatusRefresh.objects.values_list("finished_at", flat=True).first()
    limit = settings.GLANCESYNC_READY_REFRESH_SECONDS
    if finished_at is None:
        return "no status refresh yet"
    age = (timezone.now() - finished_at).total_seconds()
    if age > limit:
        return f"the last status refresh finished {age:.0f} s ago (limit {limit} s)"
    return OK
