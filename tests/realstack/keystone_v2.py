"""A Keystone v2.0 identity API in front of the real Keystone v3 of the stack.

No Keystone on PyPI that runs on this Python serves v2.0 any more (it was removed in Queens), yet clouds that
GlanceSync's users sync with may still offer only v2.0 (the original's default).  This shim answers v2.0's
`GET /v2.0` and `POST /v2.0/tokens` by asking the real Keystone v3 for a token with the same user, password
and project (in the Default domain, as v2.0 had no domains), and rewrites the answer into v2.0's shape: token,
tenant, user and a `serviceCatalog` of `region`/`publicURL` endpoints.  The token is a real Keystone token,
so the real Glance servers accept it.

    with KeystoneV2(stack.source_auth_url) as keystone:
        keystone.url     # http://127.0.0.1:<port>/v2.0
        keystone.logins  # [(username, tenant name or id), ...]: every v2.0 login it answered
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

V2_MEDIA_TYPE = "application/vnd.openstack.identity-v2.0+json"


class KeystoneV2:
    def __init__(self, v3_url: str) -> None:
        self.v3_url = v3_url.rstrip("/")
        self.logins: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2.0"
        self.thread = threading.Thread(target=self.server.serve_forever, name="keystone-v2", daemon=True)

    def __enter__(self) -> KeystoneV2:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- v2.0 -> v3 -> v2.0 ------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return {
            "version": {
                "id": "v2.0",
                "status": "deprecated",
                "updated": "2016-08-04T00:00:00Z",
                "links": [{"rel": "self", "href": self.url + "/"}],
                "media-types": [{"base": "application/json", "type": V2_MEDIA_TYPE}],
            }
        }

    def issue_token(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        auth = request.get("auth") or {}
        credentials = auth.get("passwordCredentials") or {}
        username, password = credentials.get("username"), credentials.get("password")
        if not username or password is None:
            return 400, v2_error(400, "Bad Request", "passwordCredentials with username and password are needed")
        if auth.get("tenantId"):
            project: dict[str, Any] = {"id": auth["tenantId"]}
        elif auth.get("tenantName"):
            project = {"name": auth["tenantName"], "domain": {"name": "Default"}}
        else:
            return 400, v2_error(400, "Bad Request", "this shim issues project-scoped tokens only")
        self.logins.append((username, auth.get("tenantName") or auth.get("tenantId")))
        status, token_id, token = self._v3_token(username, password, project)
        if status != 201:
            return status, v2_error(status, "Unauthorized" if status == 401 else "Error", "v3 refused the login")
        return 200, {"access": self._access(token_id, token)}

    def _v3_token(self, username: str, password: str, project: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        user = {"name": username, "domain": {"name": "Default"}, "password": password}
        identity = {"methods": ["password"], "password": {"user": user}}
        body = {"auth": {"identity": identity, "scope": {"project": project}}}
        request = urllib.request.Request(
            f"{self.v3_url}/auth/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers["X-Subject-Token"], json.load(response)["token"]
        except urllib.error.HTTPError as error:
            return error.code, "", {}

    def _access(self, token_id: str, token: dict[str, Any]) -> dict[str, Any]:
        tenant = {"id": token["project"]["id"], "name": token["project"]["name"], "enabled": True}
        roles = [{"name": role["name"]} for role in token.get("roles", [])]
        times = {"expires": token["expires_at"], "issued_at": token["issued_at"]}
        return {
            "token": {"id": token_id, **times, "tenant": tenant},
            "serviceCatalog": [self._v2_service(service) for service in token.get("catalog", [])],
            "user": {"id": token["user"]["id"], "name": token["user"]["name"], "roles": roles, "roles_links": []},
            "metadata": {"is_admin": 0, "roles": [role["id"] for role in token.get("roles", [])]},
        }

    def _v2_service(self, service: dict[str, Any]) -> dict[str, Any]:
        """v3 has one endpoint per (region, interface); v2.0 one per region with a URL per interface."""
        by_region: dict[str, dict[str, str]] = {}
        for endpoint in service.get("endpoints", []):
            url = self.url if service["type"] == "identity" else endpoint["url"]
            region = endpoint.get("region_id") or endpoint.get("region")
            by_region.setdefault(region, {"region": region, "id": endpoint["id"]})[f"{endpoint['interface']}URL"] = url
        return {"type": service["type"], "name": service.get("name", ""), "endpoints": list(by_region.values())}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("", "/v2.0"):
                    self._answer(200, shim.version())
                else:
                    self._answer(404, v2_error(404, "Not Found", "only / and /v2.0 and /v2.0/tokens"))

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v2.0/tokens":
                    self._answer(404, v2_error(404, "Not Found", "only POST /v2.0/tokens"))
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except ValueError:
                    self._answer(400, v2_error(400, "Bad Request", "the body is not JSON"))
                    return
                self._answer(*shim.issue_token(body))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def v2_error(code: int, title: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "title": title, "message": message}}
