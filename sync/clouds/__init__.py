"""Cloud drivers behind one interface (sync.clouds.base); `cloud_from_url` picks one for --cloud."""

from __future__ import annotations

import math
import os

from sync.clouds.base import Cloud
from sync.engine.model import GlanceSyncError

FILES_SCHEME = "files:"


def cloud_from_url(url: str, images_dir: str | None = None) -> Cloud:
    """`files:DIR[?latency=S&rate=MB_PER_S]` (a folder of backup CSVs) or `openstack` (`images_dir`: local copies
    of images)."""
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


FILES_OPTIONS = {"latency": "latency=SECONDS", "rate": "rate=MEGABYTES_PER_SECOND"}


def _files_options(query: str, url: str) -> dict[str, float]:
    options: dict[str, float] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        if name not in FILES_OPTIONS:
            raise GlanceSyncError(f"cloud '{url}': unknown option '{name}' (only {', '.join(FILES_OPTIONS.values())})")
        options[name] = _number(name, value, url)
    return options


def _number(name: str, text: str, url: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value < math.inf) or (name == "rate" and value == 0):
        wanted = "a number of megabytes per second > 0" if name == "rate" else "a number of seconds >= 0"
        raise GlanceSyncError(f"cloud '{url}': bad {name} '{text}': use {wanted}")
    return value
