"""The OpenStack driver's pure parts: Glance v2 mapping, JSON patches, streaming hashes (no cloud needed)."""

import hashlib
import time

import pytest

from sync.clouds.openstack import UPLOAD_MARKER, HashingStream, _auth_url, image_from_glance, json_patch, read_ahead
from sync.engine.model import GlanceSyncError, Image

GLANCE_IMAGE = {
    "id": "3e6b", "name": "cirros", "status": "active", "visibility": "shared", "protected": False,
    "checksum": "abc", "os_hash_algo": "sha512", "os_hash_value": "def", "owner": "p1", "size": 12,
    "min_ram": 0, "min_disk": 1, "disk_format": "qcow2", "container_format": "bare", "tags": [],
    "os_glance_importing_to_stores": "", "kernel_id": "k-uuid", "type": "base", "nid": "5",
    "self": "/v2/images/3e6b", "file": "/v2/images/3e6b/file", "schema": "/v2/schemas/image", "stores": "fs",
}  # fmt: skip


def test_it_maps_a_glance_image_to_the_engine_model():
    image = image_from_glance(GLANCE_IMAGE, "target:RegionOne")
    assert (image.name, image.id, image.region, image.owner) == ("cirros", "3e6b", "target:RegionOne", "p1")
    assert image.is_public is False, "shared is not public"
    assert (image.checksum, image.size, image.status) == ("abc", 12, "active")
    assert image.user_properties == {"kernel_id": "k-uuid", "type": "base", "nid": "5"}
    assert image.extra["disk_format"] == "qcow2" and image.extra["os_hash_value"] == "def"
    assert (image.visibility, image.hidden, image.tags, image.protected) == ("shared", False, frozenset(), False)


def test_it_maps_the_lifecycle_fields():
    item = {**GLANCE_IMAGE, "visibility": "community", "os_hidden": True, "tags": ["amphora", "x"], "protected": True}
    image = image_from_glance(item, "R")
    assert (image.visibility, image.hidden, image.tags, image.protected) == (
        "community", True, frozenset({"amphora", "x"}), True,
    )  # fmt: skip
    assert "tags" not in image.user_properties and "os_hidden" not in image.user_properties


def test_it_treats_only_public_as_public():
    assert image_from_glance({**GLANCE_IMAGE, "visibility": "public"}, "R").is_public
    assert not image_from_glance({**GLANCE_IMAGE, "visibility": "community"}, "R").is_public


def test_it_patches_only_what_differs():
    wanted = image_from_glance(GLANCE_IMAGE, "R")
    assert json_patch(GLANCE_IMAGE, wanted) == []
    wanted.name = "cirros.old"
    wanted.set_visibility("public")
    wanted.user_properties = {"type": "other", "nid": 5, "new": "x"}
    assert json_patch(GLANCE_IMAGE, wanted) == [
        {"op": "replace", "path": "/name", "value": "cirros.old"},
        {"op": "replace", "path": "/visibility", "value": "public"},
        {"op": "remove", "path": "/kernel_id"},
        {"op": "add", "path": "/new", "value": "x"},
        {"op": "replace", "path": "/type", "value": "other"},
    ]


def test_it_escapes_property_names_in_json_pointers():
    wanted = image_from_glance(GLANCE_IMAGE, "R")
    wanted.user_properties = {**wanted.user_properties, "a/b": "1", "c~d": "2"}
    assert json_patch(GLANCE_IMAGE, wanted) == [
        {"op": "add", "path": "/a~1b", "value": "1"},
        {"op": "add", "path": "/c~0d", "value": "2"},
    ]


def test_it_patches_the_visibility_and_the_hidden_flag_as_the_master_has_them():
    wanted = image_from_glance(GLANCE_IMAGE, "R")
    wanted.set_visibility("community")
    wanted.hidden = True
    assert json_patch(GLANCE_IMAGE, wanted) == [
        {"op": "replace", "path": "/visibility", "value": "community"},
        {"op": "replace", "path": "/os_hidden", "value": True},
    ]
    wanted.tags = frozenset({"amphora"})  # tags go through the tag API, never the patch
    assert len(json_patch(GLANCE_IMAGE, wanted)) == 2


@pytest.mark.parametrize(
    ("url", "version", "expected"),
    [
        ("http://k:5000/v2.0", "3", "http://k:5000/v3"),
        ("http://k:5000/v3/", "2.0", "http://k:5000/v2.0"),
        ("http://k:5000", "3", "http://k:5000/v3"),
    ],
)
def test_it_rewrites_the_keystone_version_suffix(url, version, expected):
    assert _auth_url(url, version) == expected


def master_image(data: bytes) -> Image:
    extra = {"os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest()}
    return Image("m", "1", "R", checksum=hashlib.md5(data).hexdigest(), size=len(data), extra=extra)


def test_it_hashes_the_stream_and_reports_progress():
    data = b"x" * 2500
    seen = []
    stream = HashingStream([data[:1000], data[1000:]], master_image(data), lambda d, t: seen.append((d, t)))
    assert len(stream) == 2500
    assert b"".join(stream) == data
    stream.verify()
    assert seen == [(1000, 2500), (2500, 2500)]


@pytest.mark.parametrize("received", [b"y" * 2500, b"x" * 2000])
def test_it_refuses_corrupt_or_short_data(received):
    stream = HashingStream([received], master_image(b"x" * 2500), None)
    list(stream)
    with pytest.raises(GlanceSyncError, match="corrupt"):
        stream.verify()


def test_it_hides_the_upload_marker_and_flags_unfinished_uploads():
    unfinished = image_from_glance({**GLANCE_IMAGE, "status": "saving", UPLOAD_MARKER: "1"}, "R")
    assert unfinished.extra["unfinished_upload"] is True
    assert UPLOAD_MARKER not in unfinished.user_properties
    unverified = image_from_glance({**GLANCE_IMAGE, UPLOAD_MARKER: "1"}, "R")  # active, never verified
    assert unverified.extra["unfinished_upload"] is True
    assert json_patch({**GLANCE_IMAGE, UPLOAD_MARKER: "1"}, unverified) == []
    assert image_from_glance(GLANCE_IMAGE, "R").extra["unfinished_upload"] is False


def test_read_ahead_yields_everything_in_order():
    assert list(read_ahead(iter([b"a", b"b", b"c"]), 2)) == [b"a", b"b", b"c"]


def test_read_ahead_raises_the_readers_error_to_the_consumer():
    def broken():
        yield b"a"
        raise ConnectionError("master went away")

    with pytest.raises(ConnectionError, match="master went away"):
        list(read_ahead(broken(), 2))


def test_read_ahead_stops_reading_when_the_consumer_gives_up():
    produced = []

    def endless():
        for n in range(1000):
            produced.append(n)
            yield b"x"

    chunks = read_ahead(endless(), 2)
    next(chunks)
    chunks.close()
    time.sleep(0.5)
    assert len(produced) < 10, "the reader must not run on after the upload stopped"


def test_a_listing_slower_than_list_images_timeout_fails_the_region(monkeypatch):
    from sync.clouds.openstack import OpenStackTargetSession
    from sync.engine.model import TargetPolicy

    session = OpenStackTargetSession(TargetPolicy(name="other", list_images_timeout=1))
    monkeypatch.setattr(session, "_list_raw", lambda region: time.sleep(3) or [])
    started = time.monotonic()
    with pytest.raises(GlanceSyncError, match=r"^other:Madrid: Timeout while retrieving image list\.$"):
        session.list_images("Madrid")
    assert time.monotonic() - started < 2.5, "the timeout must not wait for the stuck listing"


def test_a_failed_listing_names_the_region_and_the_cause(monkeypatch):
    from sync.clouds.openstack import OpenStackTargetSession
    from sync.engine.model import TargetPolicy

    def refuse(region):
        raise ConnectionRefusedError("connection refused")

    session = OpenStackTargetSession(TargetPolicy(name="master"))
    monkeypatch.setattr(session, "_list_raw", refuse)
    with pytest.raises(GlanceSyncError, match="^Madrid: Error retrieving image list. Cause: ConnectionRefusedError"):
        session.list_images("Madrid")


@pytest.mark.parametrize("v3", [True, False])
def test_it_logs_in_with_domains_on_v3_only(v3):
    from keystoneauth1.identity import v2 as ks_v2

    from sync.clouds.openstack import _connect
    from sync.engine.model import TargetPolicy

    target = TargetPolicy(
        name="master", user="u", password="p", tenant="t", keystone_url="http://k:5000/v3", use_keystone_v3=v3
    )
    auth = _connect(target).session.auth  # no network: the plugin authenticates on first use
    if v3:
        assert auth.auth_url == "http://k:5000/v3"
        assert (auth._user_domain_name, auth._project_domain_name) == ("Default", "Default")
    else:  # keystoneauth refuses a v2.0 login that names a domain
        assert isinstance(auth, ks_v2.Password) and auth.auth_url == "http://k:5000/v2.0"
        assert (auth.username, auth.tenant_name) == ("u", "t")


def stored_session(monkeypatch, stored):
    from sync.clouds.openstack import OpenStackTargetSession
    from sync.engine.model import TargetPolicy

    session = OpenStackTargetSession(TargetPolicy(name="other"))
    monkeypatch.setattr(session, "_get", lambda region, image_id: stored)
    return session


def test_the_stored_image_must_report_the_masters_hashes(monkeypatch):
    master = master_image(b"data")
    stored = {"status": "active", "checksum": master.checksum, "os_hash_algo": "sha512", "os_hash_value": "bad"}
    with pytest.raises(
        GlanceSyncError, match=r"^other:R2: Upload of m failed\. Cause: the region reports os_hash_value"
    ):
        stored_session(monkeypatch, stored)._verify_stored("R2", "id", master)
    stored_session(monkeypatch, {**stored, "os_hash_value": master.extra["os_hash_value"]})._verify_stored(
        "R2", "id", master
    )


def test_a_region_hashing_with_another_algorithm_is_checked_by_md5_only(monkeypatch):
    master = master_image(b"data")
    stored = {"status": "active", "checksum": master.checksum, "os_hash_algo": "sha256", "os_hash_value": "other"}
    stored_session(monkeypatch, stored)._verify_stored("R2", "id", master)  # no error
    with pytest.raises(GlanceSyncError, match="the region reports checksum"):
        stored_session(monkeypatch, {**stored, "checksum": "0" * 32})._verify_stored("R2", "id", master)


def test_a_download_stopped_early_releases_its_connection():
    from sync.clouds.openstack import _response_chunks

    class Response:
        closed = False

        def iter_content(self, chunk_size):
            yield from (b"x" * 10 for _ in range(100))

        def close(self):
            self.closed = True

    response = Response()
    stream = HashingStream(_response_chunks(response), master_image(b"x" * 1000), None)
    chunks = iter(stream)
    next(chunks)
    chunks.close()  # the upload failed or was cancelled
    deadline = time.monotonic() + 5
    while not response.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert response.closed
