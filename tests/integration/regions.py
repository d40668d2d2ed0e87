"""Test regions registered in the real stack's Keystones, with an image endpoint on a fault proxy."""

from __future__ import annotations

import contextlib

from tests.realstack.faultproxy import FaultProxy

# Every region the integration tests register: (site, region).  A killed test run can leave one behind in the
# long-lived stack, where it would show in every region listing; conftest.py removes them first.
TEST_REGIONS = (("target", "RegionFaulty"), ("source", "RegionFaultyMaster"), ("source", "RegionTLS"))


@contextlib.contextmanager
def region_behind_proxy(conn, region: str, upstream_port: int, tls=None):
    """Register `region` in the connection's Keystone with an image endpoint on a fault proxy (HTTPS: `tls`)."""
    with FaultProxy(upstream_port, tls=tls) as proxy:
        remove_region(conn, region)  # left behind by a test run that was killed (the stack outlives it)
        service = next(conn.identity.services(type="image"))
        conn.identity.create_region(id=region)
        for interface in ("public", "internal"):
            conn.identity.create_endpoint(service_id=service.id, interface=interface, url=proxy.url, region_id=region)
        try:
            yield proxy
        finally:
            remove_region(conn, region)


def remove_region(conn, region: str) -> None:
    for endpoint in list(conn.identity.endpoints(region_id=region)):
        if endpoint.region_id == region:  # never trust a filter with the stack's own endpoints
            conn.identity.delete_endpoint(endpoint)
    conn.identity.delete_region(region, ignore_missing=True)
