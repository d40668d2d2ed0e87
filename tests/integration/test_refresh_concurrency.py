"""A status refresh over the real stack lists its regions concurrently (sync.snapshot.listings): a fault proxy in
front of a real Glance delays one region's listing, and the refresh takes about that delay, not the sum, while
the other regions' rows are stored.

- target:RegionFaulty = Keystone B's Glance behind a fault proxy;
- RegionFaultyMaster = Keystone A's RegionOne Glance behind another one (a second slow region, of the master
  target, so that two delays run at once in two targets' sessions).
"""

from __future__ import annotations

import os
import time

import pytest

from sync.models import ImageState, RegionSnapshot
from sync.snapshot import refresh_regions
from tests.integration.regions import region_behind_proxy
from tests.integration.test_faults import engine_for
from tests.integration.test_openstack_sync import create
from tests.realstack.faultproxy import Rule
from tests.realstack.stack import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
DELAY = 4  # seconds each slow listing waits, well above the other listings' time on the loopback stack
SLOW = ["target:RegionFaulty", "RegionFaultyMaster"]
FAST = ["RegionTwo", "target:RegionOne"]


@pytest.fixture(scope="module")
def slow_regions(realstack):
    """Both proxied regions, each delaying the first page of its next listing when a rule says so."""
    target, source = realstack.connect("target", "RegionOne"), realstack.connect("source", "RegionOne")
    with (
        region_behind_proxy(target, "RegionFaulty", realstack.glance("RegionOne", "target").port) as faulty,
        region_behind_proxy(source, "RegionFaultyMaster", realstack.glance("RegionOne").port) as master_side,
    ):
        yield faulty, master_side


@pytest.fixture
def prefix(realstack):
    prefix = f"refresh{os.urandom(4).hex()}-"
    create(realstack.connect("source", "RegionOne"), prefix + "small", image_bytes(4096))
    return prefix


def delay_next_listing(proxy, seconds: float) -> Rule:
    proxy.clear()
    return proxy.add(Rule("GET", r"^/v2/images\?", "delay", seconds))


def test_two_slow_regions_cost_one_delay_and_the_others_are_stored(realstack, slow_regions, prefix, settings):
    settings.GLANCESYNC_REFRESH_WORKERS = 4
    engine = engine_for(realstack, prefix)
    rules = [delay_next_listing(proxy, DELAY) for proxy in slow_regions]
    start = time.monotonic()
    failed = refresh_regions(engine, SLOW + FAST)
    elapsed = time.monotonic() - start
    assert failed == {}
    assert [rule.fired for rule in rules] == [1, 1]
    assert DELAY <= elapsed < 1.6 * DELAY  # one at a time would take 2 x DELAY at least
    for region in SLOW + FAST:
        assert RegionSnapshot.objects.get(region=region).error == ""
        assert ImageState.objects.get(region=region, image_name=prefix + "small").status in ("pending_upload", "ok")


def test_a_region_past_its_listing_timeout_fails_alone_and_costs_its_timeout(realstack, slow_regions, prefix, settings):
    settings.GLANCESYNC_REFRESH_WORKERS = 4
    faulty, _ = slow_regions
    engine = engine_for(realstack, prefix, ("target.list_images_timeout", "2"))
    delay_next_listing(faulty, 3 * DELAY)
    start = time.monotonic()
    failed = refresh_regions(engine, ["target:RegionFaulty", *FAST])
    elapsed = time.monotonic() - start
    faulty.clear()
    assert list(failed) == ["target:RegionFaulty"] and "Timeout" in failed["target:RegionFaulty"]
    assert elapsed < DELAY  # its timeout (2 s), not the proxy's 12 s delay
    for region in FAST:
        assert ImageState.objects.filter(region=region, image_name=prefix + "small").exists()
