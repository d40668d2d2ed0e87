"""Faults against the real stack: a fault proxy sits in front of a real Glance, registered in Keystone as its own
region, so the driver meets 5xx answers, dropped connections and corrupted bytes as it would in a cloud.

- target:RegionFaulty = Keystone B's Glance seen through the proxy (uploads go through it);
- RegionFaultyMaster = Keystone A's RegionOne Glance seen through another proxy (the master's downloads).
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from sync.clouds.base import UPLOAD_MARKER
from sync.clouds.openstack import OpenStackCloud
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.reporter import RecordingReporter
from tests.integration.regions import region_behind_proxy
from tests.integration.test_openstack_sync import create, images_named
from tests.realstack.faultproxy import Rule
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration
MB = 1024 * 1024


@pytest.fixture(scope="module")
def faulty(realstack):
    """target:RegionFaulty: Keystone B's Glance behind a fault proxy."""
    target = realstack.connect("target", "RegionOne")
    with region_behind_proxy(target, "RegionFaulty", realstack.glance("RegionOne", "target").port) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def no_leftover_rules(faulty):
    faulty.clear()
    yield
    faulty.clear()


@pytest.fixture
def prefix():
    return f"fault{os.urandom(4).hex()}-"


def engine_for(stack, prefix: str, *overrides, cloud=None) -> GlanceSync:
    condition = ("metadata_condition", f"image.is_public and image.name.startswith('{prefix}')")
    config = load_config(str(stack.glancesync_conf), [condition, *overrides])
    return GlanceSync(config, cloud or OpenStackCloud(), RecordingReporter())


def leftovers(stack, prefix):
    """Images of the prefix in the proxied Glance that are not active or not verified (the upload marker)."""
    conn = stack.connect("target", "RegionOne")
    found = images_named(conn, prefix).values()
    return [(i.name, i.status) for i in found if i.status != "active" or UPLOAD_MARKER in (i.properties or {})]


def assert_converges(stack, prefix, faulty):
    faulty.clear()
    again = engine_for(stack, prefix).sync_region("target:RegionFaulty")
    assert again.ok, again.error
    names = [i.name for i in stack.connect("target", "RegionOne").image.images() if i.name.startswith(prefix)]
    assert sorted(names) == sorted(set(names))  # no duplicate
    assert leftovers(stack, prefix) == []


def test_a_listing_that_fails_once_is_retried(realstack, faulty, prefix):
    create(realstack.connect("source", "RegionOne"), prefix + "small", image_bytes(4096))
    rule = faulty.add(Rule("GET", r"^/v2/images\?", "status", 503, times=1))
    result = engine_for(realstack, prefix).sync_region("target:RegionFaulty")
    assert rule.fired == 1
    assert result.ok and result.counters["uploads"] == 1, result.error


@pytest.mark.parametrize(
    ("rule", "cause"),
    [
        (Rule("PUT", r"/file$", "status", 500), "500"),
        (Rule("PUT", r"/file$", "status", 503, times=9), "503"),  # never re-sent (openstacksdk retries 503)
        (Rule("PUT", r"/file$", "status", 401, times=9), "401"),  # nor after a new token
        (Rule("PUT", r"/file$", "status", 307, times=9), "307"),  # nor to where a redirect points
        (Rule("POST", r"^/v2/images$", "status", 503, times=9), "Cannot create"),  # a record is made once
        (Rule("PUT", r"/file$", "drop_request", 3 * MB), "Upload of"),
        (Rule("PUT", r"/file$", "corrupt_request", 1234), "checksum"),
    ],
    ids=[
        "answers-500",
        "answers-503",
        "answers-401",
        "answers-307",
        "create-answers-503",
        "drops-mid-upload",
        "corrupts-a-byte",
    ],  # fmt: skip
)
def test_an_upload_fault_fails_that_region_only_leaves_nothing_and_a_rerun_converges(
    realstack, faulty, prefix, rule, cause
):
    create(realstack.connect("source", "RegionOne"), prefix + "data", image_bytes(8 * MB))
    faulty.add(rule)
    engine = engine_for(realstack, prefix)
    failed = engine.sync_region("target:RegionFaulty")
    other = engine.sync_region("RegionTwo")
    assert rule.fired == 1
    assert not failed.ok and "target:RegionFaulty" in failed.error and prefix + "data" in failed.error
    assert cause in failed.error
    assert "password" not in failed.error.lower() and realstack.passwords["target"] not in failed.error
    assert leftovers(realstack, prefix) == []  # the image we created was deleted
    assert other.ok and other.counters["uploads"] == 1
    assert_converges(realstack, prefix, faulty)


def test_a_lost_answer_to_the_final_patch_keeps_the_verified_image(realstack, faulty, prefix):
    """Glance removed the upload marker but the answer was lost: the retry is refused, the image is kept."""
    create(realstack.connect("source", "RegionOne"), prefix + "kept", image_bytes(MB))
    rule = faulty.add(Rule("PATCH", r"^/v2/images/[0-9a-f-]+$", "lose_answer"))
    result = engine_for(realstack, prefix).sync_region("target:RegionFaulty")
    assert rule.fired == 1
    assert result.ok and result.counters["uploads"] == 1, result.error
    assert leftovers(realstack, prefix) == []
    assert set(images_named(realstack.connect("target", "RegionOne"), prefix)) == {prefix + "kept"}


def test_a_failed_upload_of_a_protected_image_leaves_nothing(realstack, faulty, prefix):
    """Glance refuses to delete a protected image: a copy is protected only once its data is verified."""
    master = realstack.connect("source", "RegionOne")
    image = create(master, prefix + "guarded", image_bytes(2 * MB), is_protected=True)
    try:
        faulty.add(Rule("PUT", r"/file$", "corrupt_request", 1234))
        failed = engine_for(realstack, prefix).sync_region("target:RegionFaulty")
        assert not failed.ok and "checksum" in failed.error
        assert leftovers(realstack, prefix) == []
        assert_converges(realstack, prefix, faulty)
        copy = images_named(realstack.connect("target", "RegionOne"), prefix)[prefix + "guarded"]
        assert copy.is_protected
    finally:
        master.image.update_image(image, is_protected=False)
        target = realstack.connect("target", "RegionOne")
        for found in images_named(target, prefix).values():
            target.image.update_image(found, is_protected=False)


def test_a_master_glance_dying_mid_download_fails_the_region_and_leaves_nothing(realstack, faulty, prefix):
    source = realstack.connect("source", "RegionOne")
    create(source, prefix + "data", image_bytes(8 * MB))
    with region_behind_proxy(source, "RegionFaultyMaster", realstack.glance("RegionOne").port) as master_proxy:
        rule = master_proxy.add(Rule("GET", r"/file$", "drop_response", 2 * MB))
        engine = engine_for(realstack, prefix, ("main.master_region", "RegionFaultyMaster"))
        failed = engine.sync_region("target:RegionFaulty")
    assert rule.fired == 1
    assert not failed.ok and prefix + "data" in failed.error
    assert leftovers(realstack, prefix) == []
    assert_converges(realstack, prefix, faulty)


@pytest.mark.parametrize("file_matches", [True, False], ids=["local-copy", "corrupt-local-copy"])
def test_images_dir_serves_the_bytes_and_they_are_still_verified(realstack, faulty, prefix, tmp_path, file_matches):
    """The original's mode: the master's bytes from <images_dir>/<id>; the master Glance's download is not used."""
    source = realstack.connect("source", "RegionOne")
    data = image_bytes(3 * MB)
    image = create(source, prefix + "local", data)
    (tmp_path / image.id).write_bytes(data if file_matches else data[:-1] + b"?")
    with region_behind_proxy(source, "RegionFaultyMaster", realstack.glance("RegionOne").port) as master_proxy:
        downloads = master_proxy.add(Rule("GET", r"/file$", "status", 500, times=99))  # a download would fail
        local = OpenStackCloud(images_dir=str(tmp_path))
        engine = engine_for(realstack, prefix, ("main.master_region", "RegionFaultyMaster"), cloud=local)
        result = engine.sync_region("target:RegionFaulty")
    assert downloads.fired == 0
    if file_matches:
        assert result.ok and result.counters["uploads"] == 1, result.error
    else:
        assert not result.ok and "corrupt" in result.error and "md5" in result.error
    assert leftovers(realstack, prefix) == []


def test_an_unreachable_keystone_fails_its_target_fast_and_the_others_proceed(realstack, prefix):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    create(realstack.connect("source", "RegionOne"), prefix + "small", image_bytes(4096))
    engine = engine_for(realstack, prefix, ("target.keystone_url", f"http://127.0.0.1:{port}/v3"))
    start = time.monotonic()
    unreachable = engine.sync_region("target:RegionOne")
    elapsed = time.monotonic() - start
    reachable = engine.sync_region("RegionTwo")
    assert not unreachable.ok and "target" in unreachable.error
    assert "cannot" in unreachable.error.lower() or "unreachable" in unreachable.error.lower(), unreachable.error
    assert elapsed < 30
    assert reachable.ok and reachable.counters["uploads"] == 1
