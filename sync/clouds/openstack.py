"""The OpenStack driver: Keystone auth and Glance v2 through openstacksdk.

One keystoneauth session per target (one token), one openstacksdk Connection per region on top of it.
Images stream from the master Glance straight into the target Glance: the bytes are hashed on the way
(md5 and the master's `os_hash_algo`) and checked against the master and against what the target reports;
an image we created is deleted again on any failure, so nothing stays `queued` or `saving`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from sys import intern
from typing import Any
from urllib.parse import quote

import openstack
from keystoneauth1 import exceptions as ks_exceptions
from openstack import exceptions as sdk_exceptions
from openstack.connection import Connection

from sync.clouds.base import UPLOAD_MARKER, ImageSource, ProgressCallback, StageCallback
from sync.engine.model import (
    AMI_PROPERTIES,
    GLANCE_DOWNLOAD,
    IMPORT_STAGES,
    VISIBILITIES,
    GlanceSyncError,
    Image,
    TargetPolicy,
)

CHUNK = 1024 * 1024
PREFETCH = 8  # chunks read ahead of the upload: bounds the memory a transfer uses to ~8 MiB
PAGE_SIZE = 1000
CALL_TIMEOUT = 120  # seconds per HTTP read; uploads have no overall limit (a big image takes long)
RETRIES = {"connect_retries": 3, "status_code_retries": 3, "retriable_status_codes": [500, 502, 503, 504]}
# Creating an image record goes out once: openstacksdk would retry it on 503 (image_status_code_retries =
# 5) and could create two.  A 401 or a redirect created nothing, so keystoneauth may follow those.
CREATE_ONCE = {"connect_retries": 0, "status_code_retries": 0}
# The upload's stream cannot be replayed: no re-send after a 401 (new token) or a redirect either.
SEND_ONCE = CREATE_ONCE | {"allow_reauth": False, "redirect": False}
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# glance-download: how long a region's Glance may take to import an image (it reports no byte progress), and how
# often we look. A stalled import fails after IMPORT_TIMEOUT_BASE + size / IMPORT_TIMEOUT_RATE seconds.
IMPORT_TIMEOUT_BASE = 300.0
IMPORT_TIMEOUT_RATE = 2 * 1024 * 1024  # bytes per second: far below any LAN or WAN between two Glances
IMPORT_POLL = (0.25, 1.0)  # first and longest wait between two looks at the image
IMPORT_LOCK = "os_glance_import_task"  # Glance's lock on an image being imported, dropped when the task ends
RECORD_CREATED, IMPORTING, VERIFYING, DONE = IMPORT_STAGES

# Glance v2 image attributes that are not user properties (everything else in the JSON is one).
SYSTEM_ATTRIBUTES = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
        "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "container_format",
        "disk_format", "created_at", "updated_at", "tags", "direct_url", "locations", "self", "file",
        "schema", "stores",
    }
)  # fmt: skip
# Copied from the master image on upload; never compared.
COPIED_ATTRIBUTES = ("disk_format", "container_format", "min_ram", "min_disk")


class OpenStackCloud:
    """Opens one session per target. `images_dir`: read image bytes from `<dir>/<master id>` when present."""

    def __init__(self, images_dir: str | None = None) -> None:
        self.images_dir = images_dir

    def session(self, target: TargetPolicy) -> OpenStackTargetSession:
        return OpenStackTargetSession(target, self.images_dir)


class OpenStackTargetSession:
    def __init__(self, target: TargetPolicy, images_dir: str | None = None) -> None:
        self.target = target
        self.images_dir = images_dir
        self._base: Connection | None = None
        self._regions: dict[str, Connection] = {}
        self._import_methods: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------------

    def _connect(self) -> Connection:
        """The target's first connection; every region connection shares its keystoneauth session."""
        if self._base is None:
            try:
                connection = _connect(self.target)
                connection.authorize()
                self._base = connection  # only once authenticated: a failure is reported on every call
            except Exception as error:
                raise GlanceSyncError(f"target {self.target.name}: cannot authenticate: {_cause(error)}") from None
        return self._base

    def _region(self, region: str) -> Connection:
        with self._lock:
            if region not in self._regions:
                base = self._connect()
                self._regions[region] = Connection(session=base.session, region_name=region, api_timeout=CALL_TIMEOUT)
            return self._regions[region]

    def _fullname(self, region: str) -> str:
        return region if self.target.name == "master" else f"{self.target.name}:{region}"

    def _fail(self, region: str, action: str, error: Exception) -> RegionError:
        return RegionError(f"{self._fullname(region)}: {action}. Cause: {_cause(error)}")

    # -- the TargetSession interface ------------------------------------------------------------------

    def region_names(self) -> list[str]:
        """Regions with an image endpoint in the token's catalog."""
        conn = self._connect()
        access = conn.session.auth.get_access(conn.session)
        endpoints = access.service_catalog.get_endpoints(service_type="image", interface="public")
        return sorted({e.get("region_id") or e.get("region") for e in endpoints.get("image", [])} - {None})

    def tenant_id(self) -> str:
        conn = self._connect()
        return conn.session.get_project_id()

    def list_images(self, region: str) -> list[Image]:
        """One paginated listing, bounded by the target's list_images_timeout (as the original)."""
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(self._list_raw, region)
        try:
            raw = future.result(timeout=self.target.list_images_timeout)
        except FutureTimeout:
            raise GlanceSyncError(f"{self._fullname(region)}: Timeout while retrieving image list.") from None
        except GlanceSyncError:
            raise
        except Exception as error:
            raise self._fail(region, "Error retrieving image list", error) from None
        finally:
            pool.shutdown(wait=False)  # a listing stuck past its timeout must not hold the region
        return [image_from_glance(item, self._fullname(region)) for item in raw]

    def _list_raw(self, region: str) -> list[dict[str, Any]]:
        """The default listing, then the hidden images, which Glance lists only when asked (os_hidden=true);
        an image seen in both (hidden between two pages) is kept once."""
        items = self._list_pages(region, {})
        seen = {item["id"] for item in items}
        items.extend(item for item in self._list_pages(region, {"os_hidden": "true"}) if item["id"] not in seen)
        return items

    def _list_pages(self, region: str, query: dict[str, str]) -> list[dict[str, Any]]:
        image = self._region(region).image
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE_SIZE, **query}
        while True:
            response = image.get("/images", params=params, **RETRIES)
            _raise_for_status(response)
            page = response.json().get("images", [])
            items.extend(page)
            if len(page) < PAGE_SIZE or "next" not in response.json():
                return items
            params["marker"] = page[-1]["id"]

    def read_image_data(self, region: str, image: Image) -> Iterable[bytes]:
        if self.images_dir:
            path = os.path.join(self.images_dir, image.id)
            if os.path.exists(path):
                return _file_chunks(path)
        response = self._region(region).image.get(f"/images/{image.id}/file", stream=True, **RETRIES)
        try:
            _raise_for_status(response)
        except GlanceSyncError:
            response.close()
            raise
        return _response_chunks(response)

    def upload_image(
        self, region: str, image: Image, source: ImageSource, progress: ProgressCallback | None = None
    ) -> str:
        glance = self._region(region).image
        created = self._create_record(region, image)
        try:
            chunks = source.session.read_image_data(source.region, source.image)
            body = HashingStream(chunks, source.image, progress)
            response = glance.put(
                f"/images/{created}/file", data=body, headers={"Content-Type": "application/octet-stream"}, **SEND_ONCE
            )
            _raise_for_status(response, ok_below=300)  # a redirect was not followed: the data went nowhere
            body.verify()
            self._verify_stored(region, created, source.image)
            self._complete(region, created, image)
        except BaseException as error:
            self._discard(region, created)
            if isinstance(error, Exception) and not isinstance(error, RegionError):  # name region and image
                raise self._fail(region, f"Upload of {image.name} failed", error) from None
            raise
        return created

    # -- glance-download: the region's Glance imports the image from the master region's Glance ------------

    def import_methods(self, region: str) -> frozenset[str]:
        """The region Glance's import methods (`GET /v2/info/import`), asked once per session; none when the
        Glance does not answer it (older than Queens, or an error: the upload then streams)."""
        with self._lock:
            known = self._import_methods.get(region)
        if known is None:
            try:
                response = self._region(region).image.get("/info/import", **RETRIES)
                _raise_for_status(response)
                value = response.json().get("import-methods", {}).get("value") or []
                known = frozenset(str(method) for method in value)
            except Exception:
                known = frozenset()
            with self._lock:
                self._import_methods[region] = known
        return known

    def offers_glance_download(self, region: str) -> bool:
        return GLANCE_DOWNLOAD in self.import_methods(region)

    def import_image(self, region: str, image: Image, source: ImageSource, stage: StageCallback | None = None) -> str:
        """Create the record (with the upload marker), ask the region's Glance to import the master image with
        glance-download (the caller's token, the master region's public Glance endpoint), wait, verify the
        checksums against the master's, give the copy exactly a streamed copy's metadata, then drop the marker."""
        master = source.image
        if getattr(source.session, "target", None) is not self.target and source.session is not self:
            raise GlanceSyncError(f"{self._fullname(region)}: glance-download needs a source of the same Keystone")

        def report(name: str) -> None:
            if stage is not None:
                stage(name)

        created = self._create_record(region, image)
        try:
            report(RECORD_CREATED)
            self._start_import(region, created, source)
            report(IMPORTING)
            self._wait_import(region, created, master, report)
            report(VERIFYING)
            self._verify_stored(region, created, master, imported=True)
            ops = json_patch(self._get(region, created), image)  # glance-download copied some properties itself
            if ops:
                self._patch(region, created, ops)
            self._complete(region, created, image)
            report(DONE)
        except BaseException as error:
            self._discard(region, created)
            if isinstance(error, Exception) and not isinstance(error, RegionError):
                raise self._fail(region, f"Import of {image.name} (glance-download) failed", error) from None
            raise
        return created

    def _start_import(self, region: str, image_id: str, source: ImageSource) -> None:
        body = {
            "method": {
                "name": GLANCE_DOWNLOAD,
                "glance_image_id": source.image.id,
                "glance_region": source.region,
                "glance_service_interface": "public",
            }
        }
        # Sent once: a lost answer retried would be refused (409, the image is locked by the first import).
        response = self._region(region).image.post(f"/images/{image_id}/import", json=body, **CREATE_ONCE)
        _raise_for_status(response, ok_below=300)

    def _wait_import(self, region: str, image_id: str, master: Image, report: StageCallback) -> None:
        """Until the image is active; an import that failed (Glance puts the image back to `queued` and drops its
        lock, or lists a failed store, or kills it) or takes too long raises, with Glance's reason if it has one."""
        timeout = IMPORT_TIMEOUT_BASE + master.size / IMPORT_TIMEOUT_RATE
        deadline = time.monotonic() + timeout
        wait = IMPORT_POLL[0]
        while True:
            stored = self._get(region, image_id)
            status = stored.get("status")
            if status == "active":
                return
            failed = stored.get("os_glance_failed_import")
            if (
                status in ("killed", "deleted", "deactivated")
                or failed
                or (status == "queued" and not stored.get(IMPORT_LOCK))
            ):
                reason = self._import_failure(region, image_id) or f"the image is {status}"
                raise GlanceSyncError(f"the region's Glance could not import it: {reason}")
            if time.monotonic() > deadline:
                raise GlanceSyncError(
                    f"the region's Glance did not finish importing it in {timeout:.0f} s (the image is {status})"
                )
            report(IMPORTING)  # where a cancel is noticed, and the elapsed time shown
            time.sleep(wait)
            wait = min(wait * 2, IMPORT_POLL[1])

    def _import_failure(self, region: str, image_id: str) -> str:
        """The message of the image's failed import task (`GET /v2/images/{id}/tasks`, Glance 2.12+), if any."""
        try:
            response = self._region(region).image.get(f"/images/{image_id}/tasks", **RETRIES)
            _raise_for_status(response)
            tasks = response.json().get("tasks") or []
        except Exception:
            return ""
        messages = [str(t.get("message") or "") for t in tasks if t.get("status") == "failure"]
        return " ".join(" ".join(messages[-1:]).split())[:300]

    def _create_record(self, region: str, image: Image) -> str:
        body = {"name": image.name, "visibility": image.visibility}
        if image.hidden:  # only then: a Glance older than API 2.7 (Rocky) would refuse the unknown attribute
            body["os_hidden"] = True
        body |= {k: image.extra[k] for k in COPIED_ATTRIBUTES if image.extra.get(k) is not None}
        body["protected"] = False  # set by _complete: Glance refuses to delete a protected image, even unfinished
        if image.tags:
            body["tags"] = sorted(image.tags)
        body |= glance_properties(image.user_properties) | {UPLOAD_MARKER: "1"}
        try:
            response = self._region(region).image.post("/images", json=body, **CREATE_ONCE)
            _raise_for_status(response, ok_below=300)
            return response.json()["id"]
        except Exception as error:
            raise self._fail(region, f"Cannot create the image {image.name}", error) from None

    def _complete(self, region: str, image_id: str, image: Image) -> None:
        """The data is verified: drop the upload marker and protect the image if the master is protected."""
        ops = [{"op": "remove", "path": _pointer(UPLOAD_MARKER)}]
        if image.protected:
            ops.append({"op": "replace", "path": "/protected", "value": True})
        try:
            self._patch(region, image_id, ops)
        except Exception as error:  # a lost answer (its retry is refused with 409): look whether the first landed
            try:
                stored = self._get(region, image_id)
            except Exception:
                raise error from None  # the patch's error says what went wrong, not the check's
            if UPLOAD_MARKER in stored or stored.get("protected") != image.protected:
                raise

    def _verify_stored(self, region: str, image_id: str, master: Image, imported: bool = False) -> None:
        """What the region stores matches the master. A streamed upload was hashed on the way already; an
        imported one was not, so then the region must report a checksum (and the os_hash_value when both Glances
        use the same algorithm) and a size, equal to the master's."""
        what = "Import of {} (glance-download)" if imported else "Upload of {}"
        what = what.format(master.name)
        stored = self._get(region, image_id)
        if stored.get("status") != "active":
            raise RegionError(f"{self._fullname(region)}: {what} failed. Cause: the image is {stored.get('status')}")
        expected: dict[str, Any] = {"checksum": master.checksum}
        if stored.get("os_hash_algo") == master.extra.get("os_hash_algo"):  # each Glance chooses its algorithm
            expected["os_hash_value"] = master.extra.get("os_hash_value")
        if imported:
            expected["size"] = master.size
        for key, value in expected.items():
            if imported and value and not stored.get(key):
                raise RegionError(f"{self._fullname(region)}: {what} failed. Cause: the region reports no {key}")
            if value and stored.get(key) and stored[key] != value:
                raise RegionError(
                    f"{self._fullname(region)}: {what} failed. Cause: the region reports "
                    f"{key} {stored[key]}, the master has {value}"
                )

    def _discard(self, region: str, image_id: str) -> None:
        """Remove an image we created and could not complete (never leave it queued/saving)."""
        with contextlib.suppress(Exception):  # the upload's own error is what the operator needs to see
            self._region(region).image.delete(f"/images/{image_id}", **RETRIES)

    def _unprotect_unfinished(self, region: str, image_id: str) -> bool:
        """An unfinished upload of ours that is protected (made by a version that protected at creation) is
        unprotected so it can go; a protected image without our upload marker is never touched."""
        stored = self._get(region, image_id)
        if UPLOAD_MARKER not in stored or not stored.get("protected"):
            return False
        self._patch(region, image_id, [{"op": "replace", "path": "/protected", "value": False}])
        return True

    def _get(self, region: str, image_id: str) -> dict[str, Any]:
        response = self._region(region).image.get(f"/images/{image_id}", **RETRIES)
        _raise_for_status(response)
        return response.json()

    def update_image(self, region: str, image: Image) -> None:
        """Minimal JSON patch: only what differs, removals included; other properties are untouched. Missing
        tags are added one by one with Glance's tag API, so a tag added meanwhile in the region stays."""
        try:
            current = self._get(region, image.id)
            missing = sorted(image.tags - set(current.get("tags") or ()))
            ops = json_patch(current, image)
            if any("/" in tag for tag in missing):  # the tag API cannot name such a tag in its URL
                ops.append(
                    {"op": "replace", "path": "/tags", "value": sorted(set(current.get("tags") or ()) | image.tags)}
                )
                missing = []
            if ops:
                self._patch(region, image.id, ops)
            for tag in missing:
                response = self._region(region).image.put(f"/images/{image.id}/tags/{quote(tag, safe='')}", **RETRIES)
                _raise_for_status(response)
        except Exception as error:
            raise self._fail(region, f"Error updating image {image.name}", error) from None

    def _patch(self, region: str, image_id: str, ops: list[dict[str, Any]]) -> None:
        response = self._region(region).image.patch(
            f"/images/{image_id}", data=json.dumps(ops), headers={"Content-Type": PATCH_TYPE}, **RETRIES
        )
        _raise_for_status(response)

    def delete_image(self, region: str, image_id: str) -> bool:
        try:
            response = self._region(region).image.delete(f"/images/{image_id}", **RETRIES)
            if response.status_code == 403 and self._unprotect_unfinished(region, image_id):
                response = self._region(region).image.delete(f"/images/{image_id}", **RETRIES)
            if response.status_code == 404:
                return False
            _raise_for_status(response)
        except ks_exceptions.NotFound:
            return False
        except Exception as error:
            raise self._fail(region, f"Error deleting image {image_id}", error) from None
        return True


# -- mapping ---------------------------------------------------------------------------------------


def image_from_glance(item: dict[str, Any], region: str) -> Image:
    """A Glance v2 image as the engine's Image. Only `public` counts as public (is_public): shared and
    community images are not offered to every project, which is what the original's is_public meant."""
    properties = _user_properties(item)
    extra = {k: item.get(k) for k in (*COPIED_ATTRIBUTES, "os_hash_algo", "os_hash_value")}
    # Active too: the data arrived but was never verified (the run died, or the delete of bad data failed).
    extra["unfinished_upload"] = UPLOAD_MARKER in item
    return Image(
        name=_interned(item.get("name") or ""),
        id=item["id"],
        region=region,
        owner=_interned(item.get("owner")),
        is_public=item.get("visibility") == "public",
        checksum=_interned(item.get("checksum")),
        size=item.get("size") or 0,
        status=_interned(item.get("status", "")),
        user_properties=properties,
        extra=extra,
        visibility=item.get("visibility") if item.get("visibility") in VISIBILITIES else "private",
        hidden=bool(item.get("os_hidden")),
        tags=frozenset(item.get("tags") or ()),
        protected=bool(item.get("protected")),
    )


def _interned(value: Any) -> Any:
    """A string the status step compares for every image (name, checksum, owner, state) as one shared object,
    as the file cloud reads them: equal ones then compare by identity, without reading either from memory."""
    return intern(value) if type(value) is str else value


def glance_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Glance v2 stores property values as strings; kernel_id/ramdisk_id must be UUIDs or absent."""
    return {k: v if k in AMI_PROPERTIES else _as_text(v) for k, v in properties.items() if v is not None}


def json_patch(current: dict[str, Any], image: Image) -> list[dict[str, Any]]:
    """The JSON-patch operations that turn the region image `current` into `image`."""
    ops: list[dict[str, Any]] = []
    if current.get("name") != image.name:
        ops.append({"op": "replace", "path": "/name", "value": image.name})
    if current.get("visibility") != image.visibility:
        ops.append({"op": "replace", "path": "/visibility", "value": image.visibility})
    if bool(current.get("os_hidden")) != image.hidden:
        ops.append({"op": "replace", "path": "/os_hidden", "value": image.hidden})
    have = _user_properties(current)
    want = glance_properties(image.user_properties)
    for key in sorted(have.keys() - want.keys()):
        ops.append({"op": "remove", "path": _pointer(key)})
    for key in sorted(want):
        if key not in have:
            ops.append({"op": "add", "path": _pointer(key), "value": want[key]})
        elif have[key] != want[key]:
            ops.append({"op": "replace", "path": _pointer(key), "value": want[key]})
    return ops


def _pointer(key: str) -> str:
    """The JSON pointer to a property (RFC 6901: `~` and `/` in a name are escaped)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _user_properties(item: dict[str, Any]) -> dict[str, Any]:
    hidden = SYSTEM_ATTRIBUTES | {UPLOAD_MARKER}
    return {k: v for k, v in item.items() if k not in hidden and not k.startswith("os_glance")}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)


# -- streaming -------------------------------------------------------------------------------------


class HashingStream:
    """An upload body: the master's chunks, hashed and counted on the way.

    It has a length, so requests sends a Content-Length instead of chunked encoding, and it is iterable
    without `read`, so http.client sends our 1 MiB chunks as they come. A reader thread downloads and hashes
    up to PREFETCH chunks ahead while this thread uploads, so the two transfers and the hashing overlap.
    """

    def __init__(self, chunks: Iterable[bytes], master: Image, progress: ProgressCallback | None) -> None:
        self.chunks = chunks
        self.master = master
        self.progress = progress
        self.size = master.size
        self.done = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        algo = master.extra.get("os_hash_algo")
        self.os_hash = hashlib.new(algo) if algo and master.extra.get("os_hash_value") else None

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in read_ahead(self._hashed(), PREFETCH):
            self.done += len(chunk)
            if self.progress is not None:  # called from the uploading thread, never the reader
                self.progress(self.done, self.size)
            yield chunk

    def _hashed(self) -> Iterator[bytes]:
        try:
            for chunk in self.chunks:
                if chunk:
                    self.md5.update(chunk)  # hashlib releases the GIL: this overlaps the upload
                    if self.os_hash is not None:
                        self.os_hash.update(chunk)
                    yield chunk
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:  # a download stopped early releases its connection now
                close()

    def verify(self) -> None:
        """The bytes sent must be the master's: same size, md5 and os_hash as the master declares."""
        problems = []
        if self.done != self.size:
            problems.append(f"{self.done} bytes read, the master image has {self.size}")
        if self.master.checksum and self.md5.hexdigest() != self.master.checksum:
            problems.append(f"md5 {self.md5.hexdigest()} differs from the master's {self.master.checksum}")
        if self.os_hash is not None and self.os_hash.hexdigest() != self.master.extra.get("os_hash_value"):
            problems.append(f"{self.os_hash.name} differs from the master's os_hash_value")
        if problems:
            raise GlanceSyncError(f"the data of {self.master.name} is corrupt: {'; '.join(problems)}")


_END = object()


def read_ahead(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """Iterate `chunks` in a thread, at most `depth` items ahead; its errors are raised here."""
    pending: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    threading.Thread(target=reader, name="glancesync-read-ahead", daemon=True).start()
    try:
        while (item := pending.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()  # the consumer stopped (done, or the upload failed): let the reader end


def _response_chunks(response: Any) -> Iterator[bytes]:
    """The body in CHUNKs; the connection is released however the iteration ends (failure, cancel)."""
    try:
        yield from response.iter_content(chunk_size=CHUNK)
    finally:
        response.close()


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


# -- helpers ---------------------------------------------------------------------------------------


def _connect(target: TargetPolicy, timeout: float = CALL_TIMEOUT) -> Connection:
    """A connection from the target's clouds.yaml entry, or from its user/password/url/tenant."""
    if target.cloud_name:
        return openstack.connect(cloud=target.cloud_name, api_timeout=timeout, **_tls(target))
    if not (target.keystone_url and target.user and target.password is not None and target.tenant):
        raise GlanceSyncError("user, password, keystone_url and tenant are all needed")
    credentials = {"username": target.user, "password": target.password, "project_name": target.tenant}
    if target.use_keystone_v3:
        version = "3"
        scope = {"user_domain_name": target.user_domain, "project_domain_name": target.project_domain}
    else:  # v2.0 has no domains: keystoneauth refuses a v2.0 login that names one
        version, scope = "2.0", {"auth_type": "v2password"}
    return Connection(
        auth_url=_auth_url(target.keystone_url, version),
        identity_api_version=version,
        api_timeout=timeout,
        **credentials,
        **scope,
        **_tls(target),
    )


def _tls(target: TargetPolicy) -> dict[str, Any]:
    """Only what the target sets: a clouds.yaml entry keeps its own `cacert`/`verify` otherwise."""
    if target.insecure:
        return {"verify": False}
    return {"cacert": target.cacert} if target.cacert else {}


def _auth_url(url: str, version: str) -> str:
    """The original rewrote the /v2.0 or /v3 suffix to the API version asked for."""
    base = url.rstrip("/")
    for suffix in ("/v2.0", "/v3"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"{base}/v{version}"


class RegionError(GlanceSyncError):
    """A failure whose message already names the region and what failed (the target, the image)."""


def _raise_for_status(response: Any, ok_below: int = 400) -> None:
    if response.status_code >= ok_below:
        raise GlanceSyncError(f"HTTP {response.status_code} {_short_body(response)}".strip())


def _short_body(response: Any) -> str:
    try:
        text = response.text
    except Exception:
        return ""
    return " ".join(text.split())[:200]


def _cause(error: BaseException) -> str:
    """A one-line cause without secrets: keystoneauth and requests messages name URLs and statuses only."""
    if isinstance(error, ks_exceptions.HttpError):
        return f"HTTP {error.http_status} {error.message}"
    if isinstance(error, GlanceSyncError | sdk_exceptions.SDKException):
        return str(error)  # these already say what failed, with the HTTP status when there is one
    return f"{type(error).__name__}: {error}"
