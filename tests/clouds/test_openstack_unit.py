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


def test_it_reads_the_compared_strings_as_shared_objects():
    def fresh(text):  # an equal string that is another object, as each decoded JSON document gives
        return "".join(list(text))

    fields = {"name": "cirros", "owner": "p1", "status": "active", "checksum": "abc"}
    items = [{**GLANCE_IMAGE, **{key: fresh(value) for key, value in fields.items()}} for _ in "ab"]
    assert items[0]["owner"] is not items[1]["owner"]
    first, second = (image_from_glance(item, "R") for item in items)
    assert first.name is second.name and first.owner is second.owner and first.status is second.status
    assert first.checksum is second.checksum and first.status is "active"  # noqa: F632 (identity is the point)
    assert image_from_glance({**GLANCE_IMAGE, "owner": None}, "R").owner is None


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


class FakeGlance:
    """The image proxy a region connection offers: answers from a table, records every request."""

    def __init__(self, pages=None, image=None):
        self.pages = pages or {}  # os_hidden value ("" or "true") -> list of pages (lists of image dicts)
        self.image = image or {}
        self.requests = []

    def _answer(self, status=200, body=None):
        from types import SimpleNamespace

        return SimpleNamespace(status_code=status, json=lambda: body or {}, text="")

    def get(self, path, params=None, **_):
        self.requests.append(("GET", path, dict(params or {})))
        if path != "/images":
            return self._answer(body=self.image)
        pages = self.pages.get((params or {}).get("os_hidden", ""), [[]])
        index = (
            0 if "marker" not in params else next(i + 1 for i, p in enumerate(pages) if p[-1]["id"] == params["marker"])
        )
        body = {"images": pages[index]} | ({"next": "more"} if index + 1 < len(pages) else {})
        return self._answer(body=body)

    def post(self, path, json=None, **_):
        self.requests.append(("POST", path, json))
        return self._answer(201, {"id": "new-id"})

    def put(self, path, **_):
        self.requests.append(("PUT", path, None))
        return self._answer(204)

    def patch(self, path, data=None, **_):
        import json as json_module

        self.requests.append(("PATCH", path, json_module.loads(data)))
        return self._answer(200)


def session_on(monkeypatch, glance):
    from types import SimpleNamespace

    from sync.clouds import openstack
    from sync.clouds.openstack import OpenStackTargetSession
    from sync.engine.model import TargetPolicy

    session = OpenStackTargetSession(TargetPolicy(name="master"))
    monkeypatch.setattr(session, "_region", lambda region: SimpleNamespace(image=glance))
    monkeypatch.setattr(openstack, "PAGE_SIZE", 2)
    return session


def glance_item(image_id, name, **attrs):
    return {"id": image_id, "name": name, "status": "active", "visibility": "public", "owner": "p"} | attrs


def test_it_lists_hidden_images_too_page_by_page_and_each_image_once(monkeypatch):
    visible = [[glance_item("1", "a"), glance_item("2", "b")], [glance_item("3", "c")]]
    hidden = [[glance_item("4", "d", os_hidden=True), glance_item("3", "c")], [glance_item("5", "e", os_hidden=True)]]
    glance = FakeGlance(pages={"": visible, "true": hidden})
    images = session_on(monkeypatch, glance).list_images("RegionOne")
    assert [(i.id, i.hidden) for i in images] == [("1", False), ("2", False), ("3", False), ("4", True), ("5", True)]
    listings = [params for method, path, params in glance.requests if path == "/images"]
    assert listings == [
        {"limit": 2}, {"limit": 2, "marker": "2"},
        {"limit": 2, "os_hidden": "true"}, {"limit": 2, "os_hidden": "true", "marker": "3"},
    ]  # fmt: skip


def test_it_creates_a_copy_with_the_masters_visibility_hidden_flag_and_tags(monkeypatch):
    glance = FakeGlance()
    session = session_on(monkeypatch, glance)
    image = Image("amphora", "m1", "RegionOne", visibility="community", tags={"amphora", "lb"})
    assert session._create_record("RegionOne", image) == "new-id"
    body = glance.requests[0][2]
    assert (body["visibility"], body["tags"], body["protected"]) == ("community", ["amphora", "lb"], False)
    assert "os_hidden" not in body, "sent only when true: Glance before API 2.7 refuses it"
    image.hidden = True
    session._create_record("RegionOne", image)
    assert glance.requests[1][2]["os_hidden"] is True


def test_it_adds_missing_tags_with_the_tag_api_and_keeps_the_regions_own(monkeypatch):
    current = glance_item("r1", "amphora", tags=["local"])
    glance = FakeGlance(image=current)
    wanted = image_from_glance(current, "RegionOne")
    wanted.tags = frozenset({"local", "amphora", "x y"})
    session_on(monkeypatch, glance).update_image("RegionOne", wanted)
    assert [(m, p) for m, p, _ in glance.requests if m != "GET"] == [
        ("PUT", "/images/r1/tags/amphora"), ("PUT", "/images/r1/tags/x%20y"),
    ]  # fmt: skip


def test_a_tag_the_tag_api_cannot_name_goes_in_the_patch(monkeypatch):
    current = glance_item("r1", "amphora", tags=["local"])
    glance = FakeGlance(image=current)
    wanted = image_from_glance(current, "RegionOne")
    wanted.tags = frozenset({"a/b"})
    session_on(monkeypatch, glance).update_image("RegionOne", wanted)
    assert [(m, p, body) for m, p, body in glance.requests if m != "GET"] == [
        ("PATCH", "/images/r1", [{"op": "replace", "path": "/tags", "value": ["a/b", "local"]}]),
    ]


class ImportingGlance(FakeGlance):
    """A region Glance that offers glance-download and answers the image's GETs from a script of states."""

    def __init__(self, states, methods=("glance-direct", "glance-download"), tasks=()):
        super().__init__()
        self.states = list(states)
        self.methods = list(methods)
        self.tasks = list(tasks)
        self.deleted = []

    def get(self, path, params=None, **_):
        self.requests.append(("GET", path, dict(params or {})))
        if path == "/info/import":
            return self._answer(body={"import-methods": {"type": "array", "value": self.methods}})
        if path.endswith("/tasks"):
            return self._answer(body={"tasks": self.tasks})
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return self._answer(body=state)

    def delete(self, path, **_):
        self.deleted.append(path)
        return self._answer(204)


def imported_state(**attrs):
    return {"id": "new-id", "name": "img", "status": "queued", "os_glance_import_task": "t1", "visibility": "public",
            UPLOAD_MARKER: "1"} | attrs  # fmt: skip


def imported_master(**extra):
    extra = {"os_hash_algo": "sha512", "os_hash_value": "ab" * 64, "disk_format": "raw", "container_format": "bare"}
    return Image("img", "1d4ab3c6-2b5e-4a8e-9b61-3f0c8e0d1a22", "RegionOne", checksum="c" * 32, size=10, extra=extra)


def test_it_asks_the_regions_import_methods_once(monkeypatch):
    glance = ImportingGlance([{}])
    session = session_on(monkeypatch, glance)
    assert session.offers_glance_download("RegionThree") and session.offers_glance_download("RegionThree")
    assert [path for _, path, _ in glance.requests] == ["/info/import"]
    glance.methods = ["glance-direct"]
    assert session.offers_glance_download("RegionThree"), "cached for the session (once per run)"
    assert not session_on(monkeypatch, ImportingGlance([{}], methods=["web-download"])).offers_glance_download("R")


def test_an_import_is_posted_polled_verified_and_completed(monkeypatch):
    from sync.clouds.base import ImageSource

    monkeypatch.setattr("sync.clouds.openstack.IMPORT_POLL", (0.0, 0.0))
    master = imported_master()
    done = imported_state(status="active", checksum="c" * 32, os_hash_algo="sha512", os_hash_value="ab" * 64,
                          size=10, os_distro="debian")  # fmt: skip
    glance = ImportingGlance([imported_state(), imported_state(status="importing"), done, done, done])
    session = session_on(monkeypatch, glance)
    stages = []
    copy = Image("img", "", "RegionThree", extra=dict(master.extra))
    assert session.import_image("RegionThree", copy, ImageSource(session, "RegionOne", master), stages.append) == (
        "new-id"
    )
    assert stages == ["record created", "importing", "importing", "importing", "verifying", "done"]
    post = next(body for method, path, body in glance.requests if path == "/images/new-id/import")
    assert post == {"method": {"name": "glance-download", "glance_image_id": master.id,
                               "glance_region": "RegionOne", "glance_service_interface": "public"}}  # fmt: skip
    patches = [body for method, path, body in glance.requests if method == "PATCH"]
    assert patches[0] == [{"op": "remove", "path": "/os_distro"}]  # what glance-download copied on its own
    assert patches[-1] == [{"op": "remove", "path": "/" + UPLOAD_MARKER}]
    assert glance.deleted == []


@pytest.mark.parametrize(
    ("states", "cause"),
    [
        ([imported_state(os_glance_import_task="")], "could not import it: Task failed due to Internal Error"),
        ([imported_state(status="killed")], "could not import it"),
        ([imported_state(status="importing", os_glance_failed_import="fs")], "could not import it"),
        ([imported_state(status="importing")], "did not finish importing it in 0 s (the image is importing)"),
        ([imported_state(status="active", size=10)], "the region reports no checksum"),
        ([imported_state(status="active", checksum="d" * 32, size=10)], f"checksum {'d' * 32}, the master has"),
    ],
    ids=["reverted", "killed", "failed-store", "timeout", "no-checksum", "other-checksum"],
)
def test_a_failed_import_deletes_the_record_and_says_why(monkeypatch, states, cause):
    from sync.clouds.base import ImageSource

    monkeypatch.setattr("sync.clouds.openstack.IMPORT_POLL", (0.0, 0.0))
    monkeypatch.setattr("sync.clouds.openstack.IMPORT_TIMEOUT_BASE", 0.0)
    monkeypatch.setattr("sync.clouds.openstack.IMPORT_TIMEOUT_RATE", 1e12)
    glance = ImportingGlance(states, tasks=[{"status": "failure", "message": "Task failed due to Internal Error"}])
    session = session_on(monkeypatch, glance)
    master = imported_master()
    with pytest.raises(GlanceSyncError) as error:
        session.import_image("RegionThree", Image("img", "", "RegionThree"), ImageSource(session, "RegionOne", master))
    assert str(error.value).startswith("RegionThree: Import of img (glance-download) failed. Cause: ")
    assert cause in str(error.value)
    assert glance.deleted == ["/images/new-id"]
