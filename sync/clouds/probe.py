"""Testing a target's connection before it is saved (the console's Connect a cloud page): the Keystone login,
the image endpoints of its catalog, then whether each region's Glance answers, every failure in plain words.

The words never quote an exception: keystoneauth's and requests' messages may carry the request, and a URL may
carry credentials. Only the host and port of the Keystone URL typed, the catalog's endpoint URLs and HTTP
statuses appear. An exception's text is only looked at, to tell a DNS failure from a refused connection or an
untrusted certificate from another TLS failure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from keystoneauth1 import exceptions as ks
from openstack.connection import Connection

from sync.clouds.openstack import _connect
from sync.engine.model import GlanceSyncError, TargetPolicy

PROBE_TIMEOUT = 5.0  # seconds per request; a login makes two (version discovery, then the token)
LOGIN, CATALOG = "Keystone login", "Glance in the catalog"
OK, FAILED, WARNING = "ok", "failed", "warning"


@dataclass
class Check:
    what: str  # LOGIN, CATALOG, or "Glance of <region>"
    state: str  # OK, FAILED (the target cannot be used) or WARNING (one region's Glance does not answer)
    detail: str  # plain words, without any secret


@dataclass
class Probe:
    checks: list[Check]
    regions: list[str]  # the regions with a public image endpoint in the catalog

    @property
    def ok(self) -> bool:
        return bool(self.regions) and all(check.state != FAILED for check in self.checks)


def probe(policy: TargetPolicy, timeout: float | None = None) -> Probe:
    """Log in as the target would, read the image endpoints of the catalog, and ask each region's Glance for
    one image. Nothing is changed anywhere."""
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    url = policy.keystone_url or ""
    if policy.cacert and not policy.insecure and not os.path.isfile(policy.cacert):
        problem = f"TLS: the CA certificate file {policy.cacert} does not exist on the GlanceSync server"
        return Probe([Check(LOGIN, FAILED, problem)], [])
    try:
        connection = _connect(policy, timeout)
        access = connection.session.auth.get_access(connection.session)
    except Exception as error:  # its text is never shown: see the module's docstring
        return Probe([Check(LOGIN, FAILED, login_problem(error, url, timeout))], [])
    checks = [Check(LOGIN, OK, f"logged in to {_host(url)} as {policy.user}, project {policy.tenant}")]
    endpoints: dict[str, str] = {}
    for endpoint in access.service_catalog.get_endpoints(service_type="image", interface="public").get("image", []):
        region = endpoint.get("region_id") or endpoint.get("region")
        if region:
            endpoints.setdefault(region, endpoint.get("url") or "")
    if not endpoints:
        problem = "no Glance (image service) in the catalog: the project sees no public image endpoint"
        return Probe([*checks, Check(CATALOG, FAILED, problem)], [])
    regions = sorted(endpoints)
    checks.append(Check(CATALOG, OK, f"image endpoints in {len(regions)} region(s): {', '.join(regions)}"))
    checks += [_glance_check(connection, region, endpoints[region], timeout) for region in regions]
    return Probe(checks, regions)


def _glance_check(connection: Connection, region: str, endpoint: str, timeout: float) -> Check:
    """One image listed from the endpoint itself (an endpoint URL may end in its version, /v2)."""
    what = f"Glance of {region}"
    base = re.sub(r"/v2(\.\d+)?$", "", endpoint.rstrip("/"))
    try:
        response = connection.session.get(
            f"{base}/v2/images", params={"limit": 1}, raise_exc=False, timeout=timeout, connect_retries=0
        )
    except Exception as error:
        return Check(what, WARNING, connection_problem(error, endpoint, timeout))
    if response.status_code >= 400:
        return Check(what, WARNING, f"{endpoint} answered HTTP {response.status_code}")
    return Check(what, OK, f"{endpoint} answers")


def login_problem(error: Exception, url: str, timeout: float) -> str:
    """What went wrong with a login, in plain words."""
    if isinstance(error, GlanceSyncError):  # our own words ("user, password, keystone_url and tenant ...")
        return str(error)
    if isinstance(error, ks.Unauthorized):
        return "Keystone refused the login (HTTP 401): wrong user name, password or project (or their domains)"
    if isinstance(error, ks.DiscoveryFailure):
        return f"no Keystone answers at {url}: check the URL (it usually ends in :5000/v3 or /identity/v3)"
    if isinstance(error, ks.HttpError):
        return f"Keystone answered HTTP {error.http_status} to the login: check the URL and the API version"
    return connection_problem(error, url, timeout)


def connection_problem(error: Exception, url: str, timeout: float) -> str:
    host = _host(url)
    text = str(error)
    if isinstance(error, ks.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text.lower():
            return (
                f"TLS: the certificate of {host} is not trusted. Give the CA certificate file that signed it, "
                "or skip TLS verification (test clouds only)"
            )
        return f"TLS: the secure connection to {host} failed (does it speak https?)"
    if isinstance(error, ks.ConnectTimeout):
        return f"unreachable: {host} did not answer within {timeout:g} s (timeout)"
    if isinstance(error, ks.ConnectFailure):
        if any(sign in text for sign in ("NameResolution", "Name or service not known", "name resolution")):
            return f"unreachable: the host name {urlsplit(url).hostname} cannot be resolved (DNS)"
        if "refused" in text.lower():
            return f"unreachable: {host} refused the connection (nothing listens on that port?)"
        return f"unreachable: cannot connect to {host}"
    if isinstance(error, ks.HttpError):
        return f"HTTP {error.http_status}"
    return f"failed ({type(error).__name__})"


def _host(url: str) -> str:
    """host:port of a URL, without any user:password@ it may hold."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or url
    return f"{host}:{port}" if port else host
