"""glance-download through a real `qcluster` (issue #18): the run page's stages come from the worker, and a worker
killed with kill -9 mid-import leaves a marked record that the next run deletes before importing again."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from django.urls import reverse

from sync import runs
from sync.clouds.base import UPLOAD_MARKER
from sync.models import Defaults, MasterSettings, Region, Target
from tests.cluster import LEASE_SECONDS, Cluster, wait_for
from tests.integration.test_openstack_sync import create, images_named
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration
MB = 1024 * 1024


@pytest.fixture
def console(transactional_db, realstack, tmp_path, settings):
    """The master target = the stack's source Keystone, region RegionThree, selecting this test's images only."""
    prefix = f"gdq{uuid.uuid4().hex[:8]}-"
    settings.GLANCESYNC_LEASE_SECONDS = LEASE_SECONDS
    MasterSettings.objects.update_or_create(pk=1, defaults={"cloud": "openstack", "master_region": "RegionOne"})
    master = Target.objects.create(
        name="master", auth_url=realstack.source_auth_url, user="admin", password=realstack.passwords["source"],
        project_name="admin",
    )  # fmt: skip
    Region.objects.create(target=master, name="RegionOne", position=0)
    Region.objects.create(target=master, name="RegionThree", position=1)
    Defaults.objects.create(pk=1, metadata_condition=f"image.is_public and image.name.startswith('{prefix}')")
    cluster = Cluster(tmp_path, "openstack")
    cluster.start()
    yield prefix, cluster
    cluster.stop()
    for region in ("RegionOne", "RegionThree"):
        conn = realstack.connect("source", region)
        for image in images_named(conn, prefix).values():
            conn.image.delete_image(image.id, ignore_missing=True)


def test_a_worker_killed_mid_import_leaves_a_marked_record_the_next_run_deletes(console, realstack, client, admin_user):
    prefix, cluster = console
    image = create(realstack.connect("source", "RegionOne"), prefix + "big", image_bytes(64 * MB))
    three = realstack.connect("source", "RegionThree")
    run = runs.start_run(["RegionThree"], dry_run=False, trigger="cli")
    region_run = wait_for(
        lambda: run.region_runs.filter(state="running", current_stage="importing").first(),
        timeout=90, what="the import", cluster=cluster,
    )  # fmt: skip
    client.force_login(admin_user)
    page = client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()
    assert "copied by the region's Glance: glance-download" in page and 'aria-current="step">▸ importing' in page
    os.kill(int(region_run.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    left = [i for i in images_named(three, prefix).values()]
    assert len(left) == 1 and UPLOAD_MARKER in (left[0].properties or {})

    wait_for(lambda: runs.recover_interrupted(), timeout=4 * LEASE_SECONDS, what="the lease to expire")
    again = runs.start_run(["RegionThree"], dry_run=False, trigger="cli")
    second = wait_for(
        lambda: again.region_runs.filter(state__in=["done", "failed"]).first(), timeout=120, what="the second run",
        cluster=cluster,
    )  # fmt: skip
    assert second.state == "done", second.error
    assert f"Removing unfinished upload {prefix}big ({left[0].id})" in second.log
    assert f"{prefix}big: the region's Glance imports it from RegionOne (glance-download)" in second.log
    copies = images_named(three, prefix)
    assert list(copies) == [prefix + "big"] and copies[prefix + "big"].id != left[0].id
    copy = three.image.get(f"/images/{copies[prefix + 'big'].id}").json()
    assert UPLOAD_MARKER not in copy and copy["os_hash_value"] == image.hash_value
