"""Two status refreshes at once (the schedule's and a "Refresh now", on any process or cluster): one runs at a time
(sync.refresh_lock); the schedule's skips, a requested one waits; whatever happens the indexes a first refresh
dropped are all built again, and two stores of one region write its rows once (sync.snapshot.lock_regions).

Real threads, each with its own database connection, on committed data (transaction=True)."""

import os
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.utils import timezone

from sync import refresh_lock, snapshot, snapshot_indexes, tasks
from sync.models import ImageState, RefreshRequest, RegionSnapshot, StatusRefresh
from sync.models.snapshot import RefreshLock
from sync.tasks import refresh_status
from tests.test_snapshot_store import secondary_indexes, table_indexes

pytestmark = pytest.mark.django_db(transaction=True)
ALL = "statuses of 8 of 8 regions refreshed"  # the demo cloud's every region, none failed
WAIT = 60  # seconds a test waits for a thread before it fails (never reached when the code works)


class Paused:
    """Patches a refresh to stop once its indexes are dropped and before it stores anything (no transaction
    open, so the other refresh can reach the lock on SQLite too) until `go` is set."""

    def __init__(self, monkeypatch) -> None:
        self.reached, self.go = threading.Event(), threading.Event()
        computed = snapshot._computed_regions

        def paused(*args, **kwargs):
            if not self.reached.is_set():
                self.reached.set()
                assert self.go.wait(WAIT)
            yield from computed(*args, **kwargs)

        monkeypatch.setattr(snapshot, "_computed_regions", paused)


class InThread:
    """`function()` in a thread with its own connection, closed at the end; `result` or `error` once joined."""

    def __init__(self, function) -> None:
        self.result = self.error = None

        def run():
            try:
                self.result = function()
            except BaseException as error:  # noqa: BLE001 (reported by join)
                self.error = error
            finally:
                connection.close()

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self):
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the thread did not end"
        if self.error is not None:
            raise self.error
        return self.result


def refreshed_all(summary: str) -> bool:
    return summary == ALL


def refreshes_logged(monkeypatch) -> list[str]:
    """ "start" and "end" of each refresh's work (tasks._refresh, under the lock), in the order they happen."""
    events, refresh = [], tasks._refresh

    def logged(*args, **kwargs):
        events.append("start")
        try:
            return refresh(*args, **kwargs)
        finally:
            events.append("end")

    monkeypatch.setattr(tasks, "_refresh", logged)
    return events


def whole_regions() -> bool:
    """Every region's rows once: as many as its snapshot counted when it was stored."""
    snapshots = RegionSnapshot.objects.values_list("region", "status_counts")
    stored = {region: sum(counts.values()) for region, counts in snapshots}
    found = {region: ImageState.objects.filter(region=region).count() for region in stored}
    return bool(stored) and found == stored and ImageState.objects.count() == sum(stored.values())


@pytest.fixture
def first_refresh(demo_cloud, monkeypatch):
    """The demo cloud, whose first refresh drops ImageState's secondary indexes as a big fleet's does."""
    monkeypatch.setattr(snapshot_indexes, "INDEXED_PAIRS", 0)
    monkeypatch.setattr(refresh_lock, "POLL_SECONDS", 0.05)
    return demo_cloud


def test_it_skips_the_schedules_refresh_while_another_runs_and_says_why(first_refresh, monkeypatch, caplog):
    indexes, paused = table_indexes(), Paused(monkeypatch)
    monkeypatch.setattr(tasks, "SCHEDULED_REFRESH_WAIT_SECONDS", 0)
    running = InThread(refresh_status)
    assert paused.reached.wait(WAIT)
    assert table_indexes() == indexes - secondary_indexes()  # the first refresh dropped them
    skipped = refresh_status()
    assert skipped.startswith("skipped: another refresh (") and f"pid {os.getpid()}" in skipped
    assert "is running" in skipped and "Status refresh of every region skipped" in caplog.text
    paused.go.set()
    assert refreshed_all(running.join())
    assert table_indexes() == indexes and whole_regions()
    assert StatusRefresh.objects.count() == 1  # the skipped one recorded no refresh
    assert not RefreshLock.objects.exclude(holder="").exists()  # released


def test_the_command_fails_when_its_refresh_was_skipped(first_refresh, monkeypatch):
    monkeypatch.setattr(tasks, "SCHEDULED_REFRESH_WAIT_SECONDS", 0)
    paused = Paused(monkeypatch)
    running = InThread(refresh_status)
    assert paused.reached.wait(WAIT)
    with pytest.raises(CommandError, match=r"^skipped: another refresh \("):
        call_command("refresh_status")
    paused.go.set()
    assert refreshed_all(running.join())


def test_it_makes_a_requested_refresh_wait_for_the_running_one_then_run(first_refresh, monkeypatch):
    indexes, paused, events = table_indexes(), Paused(monkeypatch), refreshes_logged(monkeypatch)
    attempts, take = [], refresh_lock._take
    monkeypatch.setattr(refresh_lock, "_take", lambda holder: attempts.append(holder) or take(holder))
    running = InThread(refresh_status)
    assert paused.reached.wait(WAIT)
    request = RefreshRequest.objects.create(regions=[], scope="all")
    waiting = InThread(lambda: refresh_status(request_id=request.pk))
    while len(attempts) < 4:  # the first refresh's attempt, then the request's, polling
        assert waiting.thread.is_alive()
        threading.Event().wait(0.01)
    assert events == ["start"]  # the request has not started its refresh
    paused.go.set()
    assert refreshed_all(running.join())
    assert refreshed_all(waiting.join())
    assert events == ["start", "end", "start", "end"]  # one after the other
    request.refresh_from_db()
    assert request.finished_at is not None and refreshed_all(request.result)
    assert table_indexes() == indexes and whole_regions()
    assert StatusRefresh.objects.count() == 2


def test_two_first_refreshes_that_wait_for_each_other_leave_every_index_and_whole_regions(first_refresh, monkeypatch):
    indexes = table_indexes()
    requests = [RefreshRequest.objects.create(regions=[], scope=f"s{n}") for n in range(2)]
    threads = [InThread(lambda pk=request.pk: refresh_status(request_id=pk)) for request in requests]
    assert [thread.join() for thread in threads] == [ALL] * 2
    assert table_indexes() == indexes and whole_regions()


def test_a_refresh_that_fails_frees_the_lock_and_builds_the_indexes_again(first_refresh, monkeypatch):
    indexes, store = table_indexes(), snapshot._Batch.store
    monkeypatch.setattr(snapshot._Batch, "store", lambda batch: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        refresh_status()
    assert table_indexes() == indexes
    assert not RefreshLock.objects.exclude(holder="").exists()
    monkeypatch.setattr(snapshot._Batch, "store", store)
    assert refreshed_all(refresh_status())


def test_the_lock_of_a_killed_refresh_is_taken_once_its_lease_has_expired(first_refresh, monkeypatch):
    monkeypatch.setattr(tasks, "SCHEDULED_REFRESH_WAIT_SECONDS", 0)
    now = timezone.now()
    RefreshLock.objects.create(pk=1, holder="gone pid 1 dead", taken_at=now, expires_at=now + timedelta(seconds=30))
    assert (
        refresh_status() == f"skipped: another refresh (gone pid 1 dead, since {now:%Y-%m-%d %H:%M:%S %Z}) is running"
    )
    RefreshLock.objects.filter(pk=1).update(expires_at=now - timedelta(seconds=1))
    assert refreshed_all(refresh_status())


def test_the_lock_is_renewed_while_a_refresh_runs(first_refresh, monkeypatch, settings):
    settings.GLANCESYNC_LEASE_SECONDS = 0.2  # renewed every 0.05 s
    paused = Paused(monkeypatch)
    renewed, renew = threading.Event(), refresh_lock._renew
    monkeypatch.setattr(refresh_lock, "_renew", lambda holder: renewed.set() or renew(holder))
    running = InThread(refresh_status)
    assert paused.reached.wait(WAIT) and renewed.wait(WAIT)
    paused.go.set()
    assert refreshed_all(running.join())


def test_a_sqlite_database_locked_longer_than_its_busy_timeout_is_one_more_attempt(first_refresh, monkeypatch):
    attempts, take = [], refresh_lock._take

    def locked_once(holder):
        attempts.append(holder)
        if len(attempts) == 1:
            raise OperationalError("database is locked")
        return take(holder)

    monkeypatch.setattr(refresh_lock, "_take", locked_once)
    if connection.vendor == "sqlite":
        assert refreshed_all(refresh_status()) and len(attempts) == 2
    else:  # no such thing on PostgreSQL: an error is an error
        with pytest.raises(OperationalError):
            refresh_status()


def test_two_stores_of_a_region_without_rows_at_once_write_its_rows_once(first_refresh, monkeypatch):
    refresh_status()
    read_first, second_started, stored_rows = threading.Event(), threading.Event(), snapshot._stored_rows

    def slow_first(region):  # the first store reads the region (no rows), then lets the second one start
        old = stored_rows(region)
        if not read_first.is_set():
            read_first.set()
            assert second_started.wait(WAIT)
            threading.Event().wait(0.3)  # the second store's time to read and insert, were it not waiting
        return old

    monkeypatch.setattr(snapshot, "_stored_rows", slow_first)
    content = ("id", "", "", "", 1, None, "", "public", False, [], "", False, [], [], "")
    rows = [snapshot._Row(f"image-{n}", "ok", content, "0" * 16) for n in range(50)]
    first = InThread(lambda: snapshot.store_rows("Lleida", "master", rows))
    assert read_first.wait(WAIT)
    second_started.set()
    second = InThread(lambda: snapshot.store_rows("Lleida", "master", rows))
    assert first.join().inserted == 50
    assert second.join().written == 0  # it read the first one's rows
    assert ImageState.objects.filter(region="Lleida").count() == 50


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL builds the indexes in parallel")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: one index at a time")
def test_postgresql_builds_the_indexes_in_parallel_connections(first_refresh, monkeypatch):
    indexes, builders, build = table_indexes(), set(), snapshot_indexes._build_one

    def recorded(name, sql):
        builders.add(threading.current_thread().name)
        return build(name, sql)

    monkeypatch.setattr(snapshot_indexes, "_build_one", recorded)
    refresh_status()
    assert table_indexes() == indexes and whole_regions()
    assert len(builders) >= 2 and all(name.startswith("index-build") for name in builders)
