"""Syncs against real Keystone and Glance servers (tests/realstack): bytes, metadata, conflicts, AMI, faults.

Each test creates its own images in the source cloud's RegionOne under a unique prefix and selects only
those (a metadata_condition override), so tests do not see each other's images.
"""

import hashlib
import io
import threading
import uuid

import pytest
from django.core.management import CommandError, call_command

from sync.clouds.openstack import OpenStackCloud
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.reporter import Cancelled, RecordingReporter
from tests.realstack.stack import image_bytes, kill_glance, start_glance

pytestmark = pytest.mark.integration

MB = 1024 * 1024
REGIONS = ("RegionTwo", "target:RegionOne")


def connect(stack, region):
    """Connection to a region given as the CLI names it."""
    if region.startswith("target:"):
        return stack.connect("target", region.split(":", 1)[1])
    return stack.connect("source", region)


def create(conn, name, data, **attrs):
    attrs.setdefault("disk_format", "raw")
    attrs.setdefault("container_format", "bare")
    attrs.setdefault("visibility", "public")
    image = conn.image.create_image(name=name, data=data, wait=True, **attrs)
    return conn.image.get_image(image.id)


def images_named(conn, prefix):
    return {i.name: i for i in conn.image.images() if i.name and i.name.startswith(prefix)}


def glancesync(stack, prefix, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "glancesync", "--config-file", str(stack.glancesync_conf), "--cloud", "openstack", *args,
        "--config", f"metadata_condition=image.is_public and image.name.startswith('{prefix}')", stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue()


def status_rows(stack, prefix, *regions):
    return glancesync(stack, prefix, "--show-status", *regions).split()


def download(conn, image_id):
    response = conn.image.get(f"/images/{image_id}/file", stream=True)
    md5, sha512 = hashlib.md5(), hashlib.sha512()
    for chunk in response.iter_content(MB):
        md5.update(chunk)
        sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


@pytest.fixture
def prefix():
    return f"it{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def master(realstack):
    return realstack.connect("source", "RegionOne")


def test_it_syncs_bytes_properties_and_ami_references_to_both_targets(realstack, master, prefix):
    kernel = create(master, prefix + "kernel", image_bytes(2048), disk_format="aki", container_format="aki")
    ramdisk = create(master, prefix + "ramdisk", image_bytes(3072), disk_format="ari", container_format="ari")
    # The AMI image is smaller than its kernel: it must still end up pointing at the region's kernel.
    create(
        master, prefix + "ami", image_bytes(1024), disk_format="ami", container_format="ami",
        kernel_id=kernel.id, ramdisk_id=ramdisk.id, type="image",
    )  # fmt: skip
    sizes = {"small": 100 * 1024, "medium": 5 * MB, "large": 100 * MB}
    for name, size in sizes.items():
        create(master, prefix + name, image_bytes(size), type="base", nid="7", min_ram=64, min_disk=1)
    create(master, prefix + "private", image_bytes(4096), visibility="private")

    out = glancesync(realstack, prefix, *REGIONS)
    assert "RegionTwo:   Total uploaded to region: 105 (MB)" in out

    source = images_named(master, prefix)
    for region in REGIONS:
        conn = connect(realstack, region)
        copies = images_named(conn, prefix)
        assert set(copies) == set(source) - {prefix + "private"}, region
        for name, copy in copies.items():
            original = source[name]
            assert copy.status == "active" and copy.visibility == "public"
            assert (copy.checksum, copy.hash_value, copy.size) == (
                original.checksum,
                original.hash_value,
                original.size,
            )
            assert download(conn, copy.id) == (original.checksum, original.hash_value), f"{region} {name}"
            assert (copy.disk_format, copy.container_format) == (original.disk_format, original.container_format)
            assert (copy.min_ram, copy.min_disk) == (original.min_ram, original.min_disk)
        assert copies[prefix + "large"].properties["nid"] == "7"
        assert (copies[prefix + "large"].min_ram, copies[prefix + "large"].min_disk) == (64, 1)
        ami = copies[prefix + "ami"]
        assert (ami.kernel_id, ami.ramdisk_id) == (copies[prefix + "kernel"].id, copies[prefix + "ramdisk"].id)

    rows = status_rows(realstack, prefix, *REGIONS)
    assert len(rows) == 12 and all(row.startswith("ok,") for row in rows), rows


def test_it_renames_or_replaces_conflicting_images(realstack, master, prefix):
    two = realstack.connect("source", "RegionTwo")
    create(master, prefix + "renamed", b"master data" * 100, type="base")
    old = create(two, prefix + "renamed", b"region data" * 100, type="base", local="keep")
    create(master, prefix + "replaced", b"new data" * 100)
    stale = create(two, prefix + "replaced", b"old data" * 100)
    assert sorted(status_rows(realstack, prefix, "RegionTwo")) == [
        f"error_checksum,RegionTwo,{prefix}renamed",
        f"error_checksum,RegionTwo,{prefix}replaced",
    ]
    glancesync(realstack, prefix, "RegionTwo", "--config", f"master.rename={old.checksum}", "master.replace=any")

    copies = images_named(two, prefix)
    assert set(copies) == {prefix + "renamed", prefix + "renamed.old", prefix + "replaced"}
    kept = copies[prefix + "renamed.old"]
    assert (kept.id, kept.visibility, kept.properties.get("local")) == (old.id, "private", "keep")
    assert copies[prefix + "replaced"].id != stale.id
    assert all(row.startswith("ok,") for row in status_rows(realstack, prefix, "RegionTwo"))


def test_it_does_not_replace_a_protected_region_copy(realstack, master, prefix):
    two = realstack.connect("source", "RegionTwo")
    create(master, prefix + "base", b"new data" * 100)
    guarded = create(two, prefix + "base", b"old data" * 100, is_protected=True)
    try:
        out = glancesync(realstack, prefix, "RegionTwo", "--config", "master.replace=any")
        assert f"Image {prefix}base ({guarded.id}) is protected: it cannot be replaced." in out
        assert [i.id for i in two.image.images() if i.name == prefix + "base"] == [guarded.id]  # no second copy
        assert status_rows(realstack, prefix, "RegionTwo", "--config", "master.replace=any") == [
            f"pending_replace,RegionTwo,{prefix}base"
        ]
    finally:
        two.image.update_image(guarded, is_protected=False)


def test_it_propagates_obsolete_images(realstack, master, prefix):
    two = realstack.connect("source", "RegionTwo")
    data = b"retired" * 100
    create(master, prefix + "old_obsolete", data, visibility="private", replacement="new")
    copy = create(two, prefix + "old", data)
    glancesync(realstack, prefix, "RegionTwo", "--config", "master.obsolete_syncprops=replacement")
    renamed = two.image.get_image(copy.id)
    assert (renamed.name, renamed.visibility) == (prefix + "old_obsolete", "private")
    assert renamed.properties.get("replacement") == "new"


def test_a_glance_killed_mid_upload_fails_only_its_region_and_a_rerun_converges(realstack, master, prefix):
    create(master, prefix + "huge", image_bytes(100 * MB))
    config = load_config(str(realstack.glancesync_conf), [("metadata_condition", f"image.name.startswith('{prefix}')")])
    killed = threading.Event()

    class KillingReporter(RecordingReporter):
        def progress(self, image_name, done, total):
            if not killed.is_set() and done > 20 * MB:
                killed.set()
                kill_glance("RegionTwo")

    engine = GlanceSync(config, OpenStackCloud(), KillingReporter())
    try:
        failed = engine.sync_region("RegionTwo")
        other = engine.sync_region("target:RegionOne")
    finally:
        start_glance("RegionTwo")  # the other tests need it, whatever happened here
    assert killed.is_set()
    assert not failed.ok and "RegionTwo" in failed.error and prefix + "huge" in failed.error
    assert other.ok and other.counters["uploads"] == 1

    two = realstack.connect("source", "RegionTwo")
    out = glancesync(realstack, prefix, "RegionTwo")
    leftovers = [i for i in two.image.images() if i.name == prefix + "huge"]
    assert [i.status for i in leftovers] == ["active"], out
    assert status_rows(realstack, prefix, "RegionTwo") == [f"ok,RegionTwo,{prefix}huge"]


def test_a_cancel_mid_upload_deletes_the_image_it_was_filling(realstack, master, prefix):
    create(master, prefix + "big", image_bytes(30 * MB))
    config = load_config(str(realstack.glancesync_conf), [("metadata_condition", f"image.name.startswith('{prefix}')")])

    class CancellingReporter(RecordingReporter):
        def progress(self, image_name, done, total):
            if done > 5 * MB:
                raise Cancelled("cancelled by an operator")

    result = GlanceSync(config, OpenStackCloud(), CancellingReporter()).sync_region("RegionTwo")
    assert result.cancelled and not result.ok
    assert images_named(realstack.connect("source", "RegionTwo"), prefix) == {}  # not even queued/saving


def test_it_updates_changed_and_removed_properties_and_keeps_local_ones(realstack, master, prefix):
    image = create(master, prefix + "meta", image_bytes(2048), a="1", b="2")
    two = realstack.connect("source", "RegionTwo")
    only_a_b = ("--config", "metadata_set=a,b")
    glancesync(realstack, prefix, "RegionTwo", *only_a_b)
    copy = images_named(two, prefix)[prefix + "meta"]
    two.image.update_image_properties(copy, local="mine")  # a region's own property, outside metadata_set
    master.image.update_image_properties(image, a="10")  # merges; removing b takes a JSON patch
    response = master.image.patch(
        f"/images/{image.id}",
        json=[{"op": "remove", "path": "/b"}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert response.status_code == 200, response.text
    assert status_rows(realstack, prefix, "RegionTwo", *only_a_b) == [f"pending_metadata,RegionTwo,{prefix}meta"]

    glancesync(realstack, prefix, "RegionTwo", *only_a_b)
    properties = two.image.get_image(copy.id).properties
    assert (properties.get("a"), "b" in properties, properties.get("local")) == ("10", False, "mine")
    assert status_rows(realstack, prefix, "RegionTwo", *only_a_b) == [f"ok,RegionTwo,{prefix}meta"]


def test_a_protected_image_is_copied_protected(realstack, master, prefix):
    image = create(master, prefix + "guarded", image_bytes(4096), is_protected=True)
    two = realstack.connect("source", "RegionTwo")
    try:
        glancesync(realstack, prefix, "RegionTwo")
        copy = images_named(two, prefix)[prefix + "guarded"]
        assert (copy.is_protected, copy.checksum, copy.status) == (True, image.checksum, "active")
        assert status_rows(realstack, prefix, "RegionTwo") == [f"ok,RegionTwo,{prefix}guarded"]
    finally:
        for conn in (master, two):
            for found in images_named(conn, prefix).values():
                conn.image.update_image(found, is_protected=False)


def test_the_legacy_conf_alone_drives_both_keystones(realstack, master, prefix, tmp_path):
    """The issue's exact use: no --cloud, [master] with use_keystone_v3 = True, a second section without it."""
    create(master, prefix + "both", image_bytes(64 * 1024), type="base")
    only_mine = f"metadata_condition = image.is_public and image.name.startswith('{prefix}')"
    conf = tmp_path / "that.conf"
    conf.write_text(
        "[main]\nmaster_region = RegionOne\n\n"
        f"[master]\nuser = admin\npassword = {realstack.passwords['source']}\n"
        f"keystone_url = {realstack.source_auth_url}\ntenant = admin\nuse_keystone_v3 = True\n{only_mine}\n\n"
        f"[other]\nuser = admin\npassword = {realstack.passwords['target']}\n"
        f"keystone_url = {realstack.target_auth_url}\ntenant = admin\n{only_mine}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("glancesync", "--config-file", str(conf), "RegionTwo", "other:RegionOne", stdout=out, stderr=err)
    assert out.getvalue().count("Image uploaded.") == 2, out.getvalue()
    out = io.StringIO()
    call_command("glancesync", "--config-file", str(conf), "--show-status", "RegionTwo", "other:RegionOne", stdout=out)
    assert out.getvalue().split() == [f"ok,RegionTwo,{prefix}both", f"ok,other:RegionOne,{prefix}both"]


def test_a_protected_unfinished_upload_left_by_an_older_version_is_removed(realstack, master, prefix):
    """Before be5460b copies were created protected at once, so a failed upload of one could not be deleted."""
    two = realstack.connect("source", "RegionTwo")
    create(master, prefix + "base", image_bytes(4096))
    stuck = two.image.create_image(
        name=prefix + "base", disk_format="raw", container_format="bare", is_protected=True,
        glancesync_upload_in_progress="1",
    )  # fmt: skip
    out = glancesync(realstack, prefix, "RegionTwo")
    assert f"Removing unfinished upload {prefix}base ({stuck.id})" in out
    assert [i.id for i in two.image.images() if i.name == prefix + "base"] != [stuck.id]
    assert two.image.find_image(stuck.id) is None
    assert status_rows(realstack, prefix, "RegionTwo") == [f"ok,RegionTwo,{prefix}base"]


def test_a_rerun_is_a_no_op(realstack, master, prefix):
    create(master, prefix + "once", image_bytes(4096), type="base")
    glancesync(realstack, prefix, *REGIONS)
    out = glancesync(realstack, prefix, *REGIONS)
    assert "Uploading" not in out and "Updating" not in out
    assert out.count("Region is synchronized.") == 2


def write_conf(path, master_auth, other_auth):
    path.write_text(f"[main]\nmaster_region = RegionOne\n\n[master]\n{master_auth}\n\n[other]\n{other_auth}\n")
    return str(path)


def password_auth(stack, site, password=None):
    url = stack.source_auth_url if site == "source" else stack.target_auth_url
    password = password or stack.passwords[site]
    return f"user = admin\npassword = {password}\nkeystone_url = {url}\ntenant = admin\nuse_keystone_v3 = True"


def sync_with(conf, prefix, *regions):
    out, err = io.StringIO(), io.StringIO()
    condition = f"metadata_condition=image.is_public and image.name.startswith('{prefix}')"
    args = ["--config-file", conf, "--cloud", "openstack", *regions, "--config", condition]
    call_command("glancesync", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_it_authenticates_from_clouds_yaml_entries(realstack, master, prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(realstack.clouds_yaml))
    conf = write_conf(tmp_path / "glancesync.conf", "cloud = source", "cloud = target")
    create(master, prefix + "via-yaml", image_bytes(1024), type="base")
    sync_with(conf, prefix, "RegionTwo", "other:RegionOne")
    for cloud, region in (("source", "RegionTwo"), ("target", "RegionOne")):
        assert set(images_named(realstack.connect(cloud, region), prefix)) == {prefix + "via-yaml"}


def test_a_wrong_password_fails_that_target_only_and_is_never_shown(realstack, master, prefix, tmp_path):
    secret = "Wr0ng-s3cret-pa55"
    conf = write_conf(
        tmp_path / "glancesync.conf",
        password_auth(realstack, "source"),
        password_auth(realstack, "target", password=secret),
    )
    create(master, prefix + "only-master", image_bytes(1024), type="base")
    with pytest.raises(CommandError) as failure:
        out = sync_with(conf, prefix, "RegionTwo", "other:RegionOne")
    assert str(failure.value) == "failed regions: other:RegionOne"
    assert set(images_named(realstack.connect("source", "RegionTwo"), prefix)) == {prefix + "only-master"}

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "glancesync", "--config-file", conf, "--cloud", "openstack", "other:RegionOne", stdout=out, stderr=err
        )
    log = out.getvalue() + err.getvalue()
    assert "ERROR:other:RegionOne: target other: cannot authenticate: " in log and "(HTTP 401)" in log
    assert secret not in log


def test_a_wrong_master_password_stops_the_run_with_one_line(realstack, tmp_path):
    secret = "Wr0ng-master-pa55"
    conf = write_conf(
        tmp_path / "glancesync.conf",
        password_auth(realstack, "source", password=secret),
        password_auth(realstack, "target"),
    )
    with pytest.raises(CommandError) as failure:
        sync_with(conf, "none-", "RegionTwo")
    assert str(failure.value).startswith("target master: cannot authenticate: ")
    assert "(HTTP 401)" in str(failure.value)
    assert secret not in str(failure.value) and "\n" not in str(failure.value)
