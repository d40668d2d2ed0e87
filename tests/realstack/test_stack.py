"""Smoke test of the real OpenStack stack (tests/realstack/start.sh) through openstacksdk.

Run: .venv/bin/python -m pytest tests/realstack -m integration -q   (starts the stack if it is not up)
"""

import hashlib
import io
import uuid

import pytest
from keystoneauth1 import exceptions as ks_exceptions
from openstack import exceptions as openstack_exceptions

from sync.engine.config import load_config
from tests.realstack.stack import image_bytes, kill_glance, start_glance

pytestmark = [
    pytest.mark.integration,
    # openstacksdk 4.22 announces its own future API changes (RemovedInSDK50/60Warning) on nearly every call
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


def image_endpoints(conn):
    """{region: url} of the public image endpoints in the Keystone catalog behind `conn`."""
    service = conn.identity.find_service("image") or next(conn.identity.services(type="image"))
    return {e.region_id: e.url.rstrip("/") for e in conn.identity.endpoints(service_id=service.id, interface="public")}


def test_both_keystones_authenticate_independently(realstack):
    source = realstack.connect("source", "RegionOne")
    target = realstack.connect("target", "RegionOne")
    assert source.config.auth["auth_url"] == realstack.source_auth_url
    assert target.config.auth["auth_url"] == realstack.target_auth_url
    assert source.auth_token != target.auth_token
    # two separate Keystones: the same names, different ids
    assert source.identity.find_project("admin").id != target.identity.find_project("admin").id


def test_catalog_has_the_image_endpoints(realstack):
    ports = realstack.ports
    assert image_endpoints(realstack.connect("source")) == {
        "RegionOne": f"http://127.0.0.1:{ports['source-glance-RegionOne']}",
        "RegionTwo": f"http://127.0.0.1:{ports['source-glance-RegionTwo']}",
        "RegionThree": f"http://127.0.0.1:{ports['source-glance-RegionThree']}",
    }
    assert image_endpoints(realstack.connect("target")) == {
        "RegionOne": f"http://127.0.0.1:{ports['target-glance-RegionOne']}",
    }
    for cloud, region in (
        ("source", "RegionOne"),
        ("source", "RegionTwo"),
        ("source", "RegionThree"),
        ("target", "RegionOne"),
    ):
        conn = realstack.connect(cloud, region)
        endpoint = conn.session.get_endpoint(service_type="image", region_name=region, interface="public")
        assert endpoint.rstrip("/") == realstack.glance(region, cloud).url.rstrip("/")


def test_every_glance_but_the_source_region_two_offers_glance_download(realstack):
    """GET /v2/info/import: the import methods each Glance offers (RegionTwo: Glance's defaults only)."""
    for cloud, region in (
        ("source", "RegionOne"),
        ("source", "RegionTwo"),
        ("source", "RegionThree"),
        ("target", "RegionOne"),
    ):
        methods = realstack.connect(cloud, region).image.get("/info/import").json()["import-methods"]["value"]
        assert {"glance-direct", "web-download", "copy-image"} <= set(methods)
        assert ("glance-download" in methods) == (region != "RegionTwo" or cloud != "source")
        assert realstack.glance(region, cloud).glance_download == ("glance-download" in methods)


def test_upload_download_delete_an_image(realstack):
    conn = realstack.connect("source", "RegionOne")
    data = image_bytes(1024 * 1024 + 17)
    name = f"realstack-smoke-{uuid.uuid4().hex[:8]}"
    image = conn.image.create_image(
        name=name, data=io.BytesIO(data), disk_format="raw", container_format="bare", allow_duplicates=True
    )
    try:
        image = conn.image.get_image(image.id)
        assert (image.status, image.size, image.checksum) == ("active", len(data), hashlib.md5(data).hexdigest())
        # stream=True: openstacksdk's default reads the whole image into memory (and is much slower)
        downloaded = b"".join(conn.image.download_image(image, stream=True).iter_content(chunk_size=65536))
        assert downloaded == data
        # regions of one site have separate Glances: the image is not in RegionTwo
        assert realstack.connect("source", "RegionTwo").image.find_image(name) is None
    finally:
        conn.image.delete_image(image, ignore_missing=True)
    assert conn.image.find_image(image.id) is None


def test_glancesync_conf_is_readable_by_our_config_loader(realstack):
    config = load_config(str(realstack.glancesync_conf), environ={})
    assert config.master_region == "RegionOne"
    assert set(config.targets) == {"master", "target"}
    master, target = config.targets["master"], config.targets["target"]
    assert (master.user, master.password, master.keystone_url, master.tenant, master.use_keystone_v3) == (
        "admin",
        realstack.passwords["source"],
        realstack.source_auth_url,
        "admin",
        True,
    )
    assert (target.password, target.keystone_url, target.use_keystone_v3) == (
        realstack.passwords["target"],
        realstack.target_auth_url,
        True,
    )


def test_a_killed_glance_can_be_started_again(realstack):
    conn = realstack.connect("source", "RegionTwo")
    list(conn.image.images(limit=1))
    kill_glance("RegionTwo")
    try:
        assert not realstack.glance("RegionTwo").answers()
        # keystoneauth's ConnectFailure, or openstacksdk's NotSupported when the version discovery failed first
        with pytest.raises((ks_exceptions.ClientException, openstack_exceptions.SDKException)):
            list(realstack.connect("source", "RegionTwo").image.images(limit=1))
        # the other Glance of the site is not affected
        list(realstack.connect("source", "RegionOne").image.images(limit=1))
    finally:
        start_glance("RegionTwo")
    assert realstack.glance("RegionTwo").answers()
    list(realstack.connect("source", "RegionTwo").image.images(limit=1))
