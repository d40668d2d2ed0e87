"""glance-download against the real stack (issue #18): the region's Glance imports the image from the master's.

tests/realstack offers glance-download on every Glance but the source's RegionTwo: RegionThree (the master's
Keystone) gets its copies imported, RegionTwo streamed, target:RegionOne streamed too (it offers the method, but
behind another Keystone, whose token could not read the master). An import fails for real when the master region
is RegionFaultyMaster, a fault proxy on a port the importing Glance's filtering does not allow.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sync.clouds.base import UPLOAD_MARKER
from sync.clouds.openstack import OpenStackCloud
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.reporter import Cancelled, RecordingReporter
from tests.integration.regions import region_behind_proxy
from tests.integration.test_openstack_sync import create, download, glancesync, images_named, status_rows
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
# What a copy's Glance record says that must be the same whichever way the bytes came.
COMPARED = ("name", "checksum", "os_hash_algo", "os_hash_value", "size", "visibility", "os_hidden", "protected",
            "disk_format", "container_format", "min_ram", "min_disk", "status")  # fmt: skip


@pytest.fixture
def prefix():
    return f"gd{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def master(realstack):
    return realstack.connect("source", "RegionOne")


@pytest.fixture(autouse=True)
def stack_offers_it(realstack):
    assert realstack.glance("RegionThree").glance_download and not realstack.glance("RegionTwo").glance_download


def raw(conn, image_id: str) -> dict:
    return conn.image.get(f"/images/{image_id}").json()


def end_state(conn, image_id: str) -> dict:
    """What a sync is responsible for: the compared attributes, tags and user properties (not Glance's own
    os_glance_* bookkeeping, which an import leaves as empty strings, nor the store it landed in)."""
    item = raw(conn, image_id)
    ignored = {"id", "created_at", "updated_at", "self", "file", "schema", "owner", "stores", "virtual_size", "tags"}
    properties = {
        k: v for k, v in item.items() if k not in ignored and k not in COMPARED and not k.startswith("os_glance")
    }
    return {"attributes": {k: item.get(k) for k in COMPARED}, "tags": sorted(item["tags"]), "properties": properties}


def import_tasks(conn, image_id: str) -> list[dict]:
    """The image's import tasks (GET /v2/images/{id}/tasks): an imported copy has one, a streamed one none."""
    return conn.image.get(f"/images/{image_id}/tasks").json().get("tasks", [])


def engine_for(stack, prefix: str, *overrides, reporter=None) -> GlanceSync:
    condition = ("metadata_condition", f"image.is_public and image.name.startswith('{prefix}')")
    config = load_config(str(stack.glancesync_conf), [condition, *overrides])
    return GlanceSync(config, OpenStackCloud(), reporter or RecordingReporter())


def test_it_imports_where_offered_and_gives_the_same_copy_as_a_stream(realstack, master, prefix):
    data = image_bytes(6 * MB + 123)
    image = create(
        master, prefix + "img", data, visibility="community", min_ram=64, min_disk=1,
        hw_disk_bus="scsi", os_distro="debian", os_type="linux", nid="42", description="a test image",
    )  # fmt: skip
    master.image.add_tag(image, "amphora")
    master.image.add_tag(image, "gold")
    # metadata_set: the copies get nid, hw_disk_bus and description; glance-download would also bring os_distro
    # and os_type (its extra_properties prefixes): the sync takes them away again, as a streamed copy lacks them.
    only = ("--config", "metadata_set=nid,hw_disk_bus,description", "--config", "forcesyncs=" + image.id)
    out = glancesync(realstack, prefix, "RegionTwo", "RegionThree", "target:RegionOne", *only)
    assert f"RegionThree: {prefix}img: the region's Glance imports it from RegionOne (glance-download)" in out
    assert "RegionTwo: " + prefix + "img: the region's Glance" not in out
    assert "target:RegionOne: " + prefix + "img: the region's Glance" not in out
    assert "Streaming" not in out, out

    two, three = realstack.connect("source", "RegionTwo"), realstack.connect("source", "RegionThree")
    target = realstack.connect("target", "RegionOne")
    streamed, imported = images_named(two, prefix)[prefix + "img"], images_named(three, prefix)[prefix + "img"]
    other_keystone = images_named(target, prefix)[prefix + "img"]
    assert import_tasks(three, imported.id) and import_tasks(two, streamed.id) == []
    assert import_tasks(target, other_keystone.id) == []
    state = end_state(three, imported.id)
    assert state == end_state(two, streamed.id)
    assert state["tags"] == ["amphora", "gold"]
    assert state["properties"] == {"nid": "42", "hw_disk_bus": "scsi", "description": "a test image"}
    assert state["attributes"]["visibility"] == "community" and state["attributes"]["min_ram"] == 64
    assert (
        state["attributes"]["checksum"] == image.checksum and state["attributes"]["os_hash_value"] == image.hash_value
    )
    assert download(three, imported.id) == download(master, image.id)
    assert status_rows(realstack, prefix, "RegionTwo", "RegionThree", *only) == [
        f"ok,RegionTwo,{prefix}img",
        f"ok,RegionThree,{prefix}img",
    ]


def test_a_protected_hidden_master_image_is_imported_protected_only_once_verified(realstack, master, prefix):
    image = create(master, prefix + "prot", image_bytes(MB), is_protected=True)
    three = realstack.connect("source", "RegionThree")
    try:
        out = glancesync(realstack, prefix, "RegionThree")
        assert "(glance-download)" in out
        copy = images_named(three, prefix)[prefix + "prot"]
        item = raw(three, copy.id)
        assert item["protected"] is True and UPLOAD_MARKER not in item and item["checksum"] == image.checksum
    finally:
        master.image.update_image(image, is_protected=False)
        for found in images_named(three, prefix).values():
            three.image.update_image(found, is_protected=False)


def test_a_failing_import_is_streamed_instead_and_the_region_converges(realstack, prefix):
    """The master region seen through a fault proxy: RegionThree's Glance refuses to fetch from the proxy's port
    (its import filtering), so the import fails for real; the copy is then streamed through the proxy."""
    source = realstack.connect("source", "RegionOne")
    image = create(source, prefix + "fallback", image_bytes(3 * MB), nid="7")
    three = realstack.connect("source", "RegionThree")
    with region_behind_proxy(source, "RegionFaultyMaster", realstack.glance("RegionOne").port):
        reporter = RecordingReporter()
        engine = engine_for(realstack, prefix, ("main.master_region", "RegionFaultyMaster"), reporter=reporter)
        result = engine.sync_region("RegionThree")
        assert result.ok and result.counters["uploads"] == 1, result.error
        token = engine.session("master")._connect().session.get_token()  # the one the region's Glance was given
        everything = "\n".join(reporter.messages())
        assert token not in everything and realstack.passwords["source"] not in everything
        warnings = "\n".join(reporter.messages(30))
        assert f"RegionThree: Import of {prefix}fallback (glance-download) failed." in warnings
        assert "Task failed" in warnings, warnings  # Glance's own words, from the image's import task
        assert "does not pass filtering" in realstack.glance("RegionThree").log_file.read_text()
        assert f"Streaming {prefix}fallback through GlanceSync instead." in warnings
        copies = images_named(three, prefix)
        assert list(copies) == [prefix + "fallback"]  # the failed import's record was deleted
        copy = copies[prefix + "fallback"]
        assert import_tasks(three, copy.id) == [] and UPLOAD_MARKER not in raw(three, copy.id)
        assert download(three, copy.id) == (image.checksum, image.hash_value)
        again = engine_for(realstack, prefix, ("main.master_region", "RegionFaultyMaster")).sync_region("RegionThree")
        assert again.ok and again.counters["uploads"] == 0


def test_transfer_glance_download_forbids_the_fallback(realstack, prefix):
    source = realstack.connect("source", "RegionOne")
    create(source, prefix + "only", image_bytes(MB))
    three = realstack.connect("source", "RegionThree")
    with region_behind_proxy(source, "RegionFaultyMaster", realstack.glance("RegionOne").port):
        only = ("master.transfer", "glance-download")
        engine = engine_for(realstack, prefix, ("main.master_region", "RegionFaultyMaster"), only)
        result = engine.sync_region("RegionThree")
    assert not result.ok and "(glance-download) failed" in result.error and "Task failed" in result.error, result
    assert images_named(three, prefix) == {}


def test_transfer_glance_download_in_a_region_without_it_fails_clearly(realstack, master, prefix):
    create(master, prefix + "nope", image_bytes(4096))
    result = engine_for(realstack, prefix, ("master.transfer", "glance-download")).sync_region("RegionTwo")
    assert not result.ok and "does not offer glance-download" in result.error, result.error
    assert images_named(realstack.connect("source", "RegionTwo"), prefix) == {}


def test_transfer_stream_is_obeyed(realstack, master, prefix):
    image = create(master, prefix + "streamed", image_bytes(2 * MB))
    out = glancesync(realstack, prefix, "RegionThree", "--config", "master.transfer=stream")
    assert "glance-download" not in out
    three = realstack.connect("source", "RegionThree")
    copy = images_named(three, prefix)[prefix + "streamed"]
    assert import_tasks(three, copy.id) == [] and raw(three, copy.id)["checksum"] == image.checksum


def test_a_cancel_mid_import_deletes_the_record(realstack, master, prefix):
    create(master, prefix + "cancelled", image_bytes(16 * MB))
    stages = []

    class CancellingReporter(RecordingReporter):
        def stage(self, image_name, stage):
            stages.append(stage)
            if stage == "importing":
                raise Cancelled("cancelled by an operator")

    result = engine_for(realstack, prefix, reporter=CancellingReporter()).sync_region("RegionThree")
    assert result.cancelled and stages == ["record created", "importing"]
    three = realstack.connect("source", "RegionThree")
    assert images_named(three, prefix) == {}
    time.sleep(2)  # the import task that was under way when the record went does not bring it back
    assert images_named(three, prefix) == {}
    assert engine_for(realstack, prefix).sync_region("RegionThree").counters["uploads"] == 1


def test_a_sync_killed_mid_import_leaves_a_marked_record_that_the_next_sync_deletes(realstack, master, prefix):
    image = create(master, prefix + "killed", image_bytes(64 * MB))
    three = realstack.connect("source", "RegionThree")
    condition = f"metadata_condition=image.is_public and image.name.startswith('{prefix}')"
    command = [sys.executable, "manage.py", "glancesync", "--config-file", str(realstack.glancesync_conf),
               "--cloud", "openstack", "RegionThree", "--config", condition]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the region's Glance holds the import lock: the import is under way
            found = [raw(three, i.id) for i in images_named(three, prefix).values()]
            if found and found[0].get("os_glance_import_task"):
                break
            assert process.poll() is None and time.monotonic() < deadline, "the import never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    left = [raw(three, i.id) for i in images_named(three, prefix).values()]
    assert len(left) == 1 and UPLOAD_MARKER in left[0], left
    out = glancesync(realstack, prefix, "RegionThree")
    assert f"RegionThree: Removing unfinished upload {prefix}killed ({left[0]['id']})" in out
    copies = images_named(three, prefix)
    assert list(copies) == [prefix + "killed"] and copies[prefix + "killed"].id != left[0]["id"]
    copy = raw(three, copies[prefix + "killed"].id)
    assert UPLOAD_MARKER not in copy and copy["os_hash_value"] == image.hash_value
