"""One status refresh at a time in a database: the RefreshLock lease, across processes and task clusters.

Two refreshes at once (the 15-minute schedule's and a "Refresh now") would list and store the same regions
twice, and two first refreshes of a big fleet would both drop ImageState's indexes and clash building them
again. `refresh_lock` takes the lease by compare-and-set, as a region's sync takes its RegionLock: a thread
renews it every quarter of GLANCESYNC_LEASE_SECONDS, and a refresh whose process was killed frees it once the
lease has expired. What a refresh that finds it taken does is the caller's choice (`sync.tasks.refresh_status`:
the schedule's waits briefly then skips, a requested one waits for it)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from django.db.models import Q
from django.utils import timezone

from sync.models.snapshot import RefreshLock
from sync.runs import lease  # the same lease as a region's sync

logger = logging.getLogger(__name__)

LOCK_ROW = 1  # the table's one row
POLL_SECONDS = 1.0  # between two attempts of a refresh waiting for the lock


class RefreshBusy(Exception):
    """Another refresh holds the lock; the message says which one and since when."""


@contextmanager
def refresh_lock(wait_seconds: float) -> Iterator[None]:
    """Hold the refresh lock for the block, waiting up to `wait_seconds` for it (0: one attempt); RefreshBusy
    when another refresh still holds it then. Released at the end, also when the block fails."""
    holder = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
    deadline = time.monotonic() + wait_seconds
    while not _attempt(holder):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RefreshBusy(_busy_because())
        time.sleep(min(POLL_SECONDS, left))
    renewal = _Renewal(holder) if not connection.in_atomic_block else None  # see _Renewal
    try:
        yield
    finally:
        if renewal is not None:
            renewal.stop()
        _release(holder)


def _attempt(holder: str) -> bool:
    """`_take`, where SQLite's database locked longer than its busy timeout (a first refresh's index build
    holds it for seconds at a time) is one more failed attempt, not an error."""
    try:
        return _take(holder)
    except OperationalError as error:
        if connection.vendor != "sqlite" or "locked" not in str(error):
            raise
        return False


def _take(holder: str) -> bool:
    """Take the lease if it is free or expired (one UPDATE: compare-and-set)."""
    RefreshLock.objects.get_or_create(pk=LOCK_ROW)  # handles a concurrent creation itself
    now = timezone.now()
    free = Q(holder="") | Q(expires_at__lt=now)
    taken = RefreshLock.objects.filter(free, pk=LOCK_ROW).update(holder=holder, taken_at=now, expires_at=now + lease())
    return taken == 1


def _renew(holder: str) -> bool:
    """Extend the lease; False when it was lost (expired and taken by another refresh)."""
    return RefreshLock.objects.filter(pk=LOCK_ROW, holder=holder).update(expires_at=timezone.now() + lease()) == 1


def _release(holder: str) -> None:
    RefreshLock.objects.filter(pk=LOCK_ROW, holder=holder).update(holder="", taken_at=None, expires_at=None)


def _busy_because() -> str:
    lock = RefreshLock.objects.filter(pk=LOCK_ROW).exclude(holder="").first()
    if lock is None:  # released meanwhile: the next attempt would have taken it
        return "another refresh was just ending"
    return f"another refresh ({lock.holder}, since {lock.taken_at:%Y-%m-%d %H:%M:%S %Z}) is running"


class _Renewal:
    """A thread renewing the lease every quarter of it while the refresh runs. None in a transaction (a test's):
    the lock's row is not committed, and another connection's UPDATE of it would wait for that transaction."""

    def __init__(self, holder: str) -> None:
        self.holder, self.stopped = holder, threading.Event()
        self.thread = threading.Thread(target=self._beat, name="refresh-lock", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(settings.GLANCESYNC_LEASE_SECONDS / 4):
                try:
                    if not _renew(self.holder):
                        logger.warning("Status refresh: its lock expired before it could be renewed (%s)", self.holder)
                except DatabaseError as error:  # a blip: the next beat tries again, within the lease
                    logger.warning("Status refresh: its lock could not be renewed: %s", error)
        finally:
            connection.close()  # this thread's own connection
