"""Cloud drivers behind one interface (sync.clouds.base); `cloud_from_url` picks one for --cloud."""

from __future__ import annotations

import math
import os

from sync.clouds.base import Cloud
from sync.engine.model import GlanceSyncError

FILES_SCHEME = "files:"


def cloud_from_url(url: str, images_dir: str | None = None) -> Cloud:
    """`files:DIR[?latency=S]` (a folder of backup CSVs) or `openstack` (`images_dir`: local copies of images)."""
    if url == "openstack":
        from sync.clouds.openstack import OpenStackCloud

        return OpenStackCloud(images_dir)
    if not url.startswith(FILES_SCHEME):
        raise GlanceSyncError(f"unknown cloud '{url}': use files:DIR or openstack")
    from sync.clouds.files import FileCloud  # imported here so drivers load only when chosen

    directory, _, query = url[len(FILES_SCHEME) :].partition("?")
    if not directory:
        raise GlanceSyncError(f"unknown cloud '{url}': use files:DIR or openstack")
    return FileCloud(os.path.expanduser(directory), **_files_options(query, url))


def _files_options(query: str, url: str) -> dict[str, float]:
    options: dict[str, float] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        if name != "latency":
            raise GlanceSyncError(f"cloud '{url}': unknown option '{name}' (only latency=SECONDS)")
        options["latency"] = _latency(value, url)
    return options


def _latency(text: str, url: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value < math.inf):
        raise GlanceSyncError(f"cloud '{url}': bad latency '{text}': use a number of seconds >= 0")
    return value
