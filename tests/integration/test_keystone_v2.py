"""A legacy glancesync.conf with Keystone v2.0 (the original's default: no use_keystone_v3) drives a real Glance.

Keystone v2.0 is tests/realstack/keystone_v2.py: v2.0's API over the stack's real Keystone v3, so the tokens
are real and the real Glance servers of the source site accept them.
"""

import io
import uuid

import pytest
from django.core.management import CommandError, call_command

from tests.integration.test_openstack_sync import create, download, images_named
from tests.realstack.keystone_v2 import KeystoneV2
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keystone_v2(realstack):
    with KeystoneV2(realstack.source_auth_url) as keystone:
        yield keystone


@pytest.fixture
def prefix():
    return f"v2{uuid.uuid4().hex[:8]}-"


def v2_conf(tmp_path, keystone, password):
    """The original's configuration for a v2.0 cloud: no use_keystone_v3, no domains."""
    path = tmp_path / "glancesync-v2.conf"
    path.write_text(
        "[main]\nmaster_region = RegionOne\n\n"
        f"[master]\nuser = admin\npassword = {password}\nkeystone_url = {keystone.url}\ntenant = admin\n"
    )
    return path


def glancesync(conf, prefix, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "glancesync", "--config-file", str(conf), "--cloud", "openstack", *args,
        "--config", f"metadata_condition=image.is_public and image.name.startswith('{prefix}')", stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue()


def test_it_syncs_through_keystone_v2(realstack, keystone_v2, prefix, tmp_path):
    master = realstack.connect("source", "RegionOne")
    image = create(master, prefix + "web", image_bytes(300 * 1024), nid="42")
    conf = v2_conf(tmp_path, keystone_v2, realstack.passwords["source"])
    logins_before = len(keystone_v2.logins)

    glancesync(conf, prefix, "RegionTwo")

    assert len(keystone_v2.logins) > logins_before  # the v2.0 API authenticated this run
    assert keystone_v2.logins[-1] == ("admin", "admin")
    copy = images_named(realstack.connect("source", "RegionTwo"), prefix)[prefix + "web"]
    assert copy.properties.get("nid") == "42"
    assert download(realstack.connect("source", "RegionTwo"), copy.id) == (image.checksum, image.hash_value)
    assert glancesync(conf, prefix, "--show-status", "RegionTwo").split() == [f"ok,RegionTwo,{prefix}web"]


def test_it_lists_the_regions_of_a_v2_catalog(realstack, keystone_v2, tmp_path):
    conf = v2_conf(tmp_path, keystone_v2, realstack.passwords["source"])
    out = io.StringIO()
    call_command("glancesync", "--config-file", str(conf), "--cloud", "openstack", "--show-regions", stdout=out)
    assert out.getvalue().split() == ["RegionThree", "RegionTwo"]  # the master region is not a target of itself


def test_a_wrong_v2_password_is_a_clear_error_that_never_shows_it(keystone_v2, tmp_path):
    secret = f"wrong-{uuid.uuid4().hex}"
    conf = v2_conf(tmp_path, keystone_v2, secret)
    with pytest.raises(CommandError) as failure:
        call_command("glancesync", "--config-file", str(conf), "--cloud", "openstack", "--show-regions")
    message = str(failure.value)
    assert message.startswith("target master: cannot authenticate: ") and "(HTTP 401)" in message
    assert secret not in message
