"""A fault-injecting HTTP proxy in front of a real Glance, for the fault tests.

Requests are forwarded as they come (bodies streamed both ways) unless a rule matches: answer a status
without forwarding, cut the connection after N bytes of the request or response body, flip a byte of the
request body on its way (data corruption the receiving Glance then hashes), carry the request out and cut
the connection before the answer (a lost answer), or wait `value` seconds before forwarding it (a slow Glance).
Each rule fires `times` times.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression searched in the request path
    action: str  # "status", "drop_request", "drop_response", "corrupt_request", "lose_answer" or "delay"
    value: float = 0  # the status, the byte count after which to drop / at which to corrupt, or the seconds
    times: int = 1
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.fired < self.times and method == self.method and re.search(self.path, path) is not None


class FaultProxy:
    """`tls`: serve HTTPS with this server context (the upstream stays plain HTTP)."""

    def __init__(self, upstream_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def take(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                rule = proxy.take(self.command, self.path)
                if rule is not None and rule.action == "status":
                    self._answer(int(rule.value))
                    return
                if rule is not None and rule.action == "delay":
                    time.sleep(rule.value)
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                length = int(self.headers.get("Content-Length") or 0)
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in headers.items():
                    upstream.putheader(key, value)
                upstream.endheaders()
                if not self._send_body(upstream, length, rule):
                    return
                response = upstream.getresponse()
                if rule is not None and rule.action == "lose_answer":  # the request was carried out
                    response.read()
                    upstream.close()
                    self._drop(None)
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.end_headers()
                self._relay_body(response, rule)
                upstream.close()

            def _send_body(self, upstream, length: int, rule: Rule | None) -> bool:
                sent = 0
                while sent < length:
                    chunk = self.rfile.read(min(CHUNK, length - sent))
                    if not chunk:
                        break
                    if rule is not None and rule.action == "drop_request" and sent + len(chunk) >= rule.value:
                        self._drop(upstream)
                        return False
                    if rule is not None and rule.action == "corrupt_request" and sent <= rule.value < sent + len(chunk):
                        at = rule.value - sent
                        chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                    upstream.send(chunk)
                    sent += len(chunk)
                return True

            def _relay_body(self, response, rule: Rule | None) -> None:
                relayed = 0
                while chunk := response.read(CHUNK):
                    if rule is not None and rule.action == "drop_response" and relayed + len(chunk) >= rule.value:
                        self._drop(None)
                        return
                    self.wfile.write(chunk)
                    relayed += len(chunk)

            def _drop(self, upstream) -> None:
                """Cut both sides without a goodbye, as a dying server or a broken network would."""
                if upstream is not None:
                    upstream.sock.shutdown(socket.SHUT_RDWR)
                    upstream.close()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _answer(self, status: int) -> None:
                body = b'{"message": "injected fault"}'
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        return Handler
