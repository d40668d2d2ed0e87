"""A small Keystone v3 + Glance on loopback for the Connect a cloud tests that need no real stack: version
discovery, a password login (user admin, project admin), a catalog with the image endpoints asked for, and a
Glance per region that lists no image. HTTPS with a server `ssl.SSLContext`. The real Keystone and Glance of
tests/realstack are in the integration and browser tests."""

from __future__ import annotations

import json
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.alert_receivers import free_port


class FakeKeystone:
    def __init__(
        self,
        password: str,
        regions=("RegionOne", "RegionTwo"),
        dead_regions=(),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`regions` get a Glance that answers; `dead_regions` an image endpoint where nothing listens."""
        self.password = password
        self.regions = list(regions)
        self.dead_regions = list(dead_regions)
        self.logins = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-keystone")

    def __enter__(self) -> FakeKeystone:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    def catalog(self) -> list[dict]:
        endpoints = [
            {"id": f"e-{region}", "interface": "public", "region": region, "region_id": region, "url": url}
            for region, url in [(r, f"{self.url}/glance/{r}") for r in self.regions]
            + [(r, f"http://127.0.0.1:{free_port()}") for r in self.dead_regions]
        ]
        services = [{"id": "s-image", "type": "image", "name": "glance", "endpoints": endpoints}]
        return services if endpoints else []

    def _handler(self):
        keystone = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: dict, headers=()) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0].rstrip("/")
                if path == "/v3":
                    link = {"rel": "self", "href": f"{keystone.url}/v3/"}
                    version = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z", "links": [link]}
                    self.answer(200, {"version": version | {"media-types": []}})
                elif path.startswith("/glance/") and path.endswith("/v2/images"):
                    self.answer(200, {"images": [], "schema": "/v2/schemas/images"})
                elif path.startswith("/glance/") and path.count("/") == 2:
                    link = {"rel": "self", "href": f"{keystone.url}{path}/v2/"}
                    self.answer(300, {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [link]}]})
                else:
                    self.answer(404, {"error": {"code": 404, "message": "not found"}})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.rstrip("/") != "/v3/auth/tokens":
                    return self.answer(404, {"error": {"code": 404, "message": "not found"}})
                keystone.logins += 1
                user = body.get("auth", {}).get("identity", {}).get("password", {}).get("user", {})
                project = body.get("auth", {}).get("scope", {}).get("project", {})
                if (user.get("name"), user.get("password"), project.get("name")) != (
                    "admin",
                    keystone.password,
                    "admin",
                ):
                    message = "The request you have made requires authentication."
                    return self.answer(401, {"error": {"code": 401, "message": message, "title": "Unauthorized"}})
                now = datetime.now(UTC)
                domain = {"id": "default", "name": "Default"}
                token = {
                    "methods": ["password"],
                    "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                    "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                    "user": {"id": "u-admin", "name": "admin", "domain": domain},
                    "project": {"id": "p-admin", "name": "admin", "domain": domain},
                    "roles": [{"id": "r-admin", "name": "admin"}],
                    "catalog": keystone.catalog(),
                }
                self.answer(201, {"token": token}, headers=[("X-Subject-Token", "fake-token")])

        return Handler
