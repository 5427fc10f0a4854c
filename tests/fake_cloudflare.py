"""A fake Cloudflare Access v4 API on 127.0.0.1 (random port, own thread) for docs-access
tests. It checks the Bearer token, the path and the PUT body's shape like the real API
would, keeps the group in memory, and can be told to fail."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "cf-test-token"
ACCOUNT = "acc123"
GROUP = "grp456"


class FakeCloudflare:
    def __init__(self):
        self.group = {
            "id": GROUP,
            "name": "Protected docs readers",
            "include": [{"email": {"email": "first@reader.test"}}, {"email_domain": {"domain": "axon.test"}}],
            "exclude": [],
            "require": [],
        }
        self.requests: list[tuple[str, str, dict | None]] = []
        self.fail_next: tuple[int, str] | None = None  # (HTTP status, message) for the next request
        self.fail_puts: tuple[int, str] | None = None  # fail every PUT
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_PUT(self):
                fake._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/client/v4"

    @property
    def emails(self) -> list[str]:
        return [r["email"]["email"] for r in self.group["include"] if "email" in r]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        self.requests.append((method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(request, 403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]})
        if request.path != f"/client/v4/accounts/{ACCOUNT}/access/groups/{GROUP}":
            return self._reply(request, 404, {"success": False, "errors": [{"code": 7003, "message": "Could not route to path"}]})
        failure = self.fail_next or (self.fail_puts if method == "PUT" else None)
        if failure:
            self.fail_next = None
            status, message = failure
            return self._reply(request, status, {"success": False, "errors": [{"code": 12000, "message": message}], "result": None})
        if method == "PUT":
            problem = _check_group_body(body)
            if problem:
                return self._reply(request, 400, {"success": False, "errors": [{"code": 12130, "message": problem}]})
            self.group = {"id": GROUP, **body}
        self._reply(request, 200, {"success": True, "errors": [], "messages": [], "result": self.group})

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        request.wfile.write(raw)


def _check_group_body(body) -> str:
    """What the Access groups API requires of an update: a name and a list of include rules."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        return "name is required"
    include = body.get("include")
    if not isinstance(include, list):
        return "include must be a list of rules"
    for rule in include:
        if not isinstance(rule, dict) or len(rule) != 1:
            return "each include rule must be an object with one selector"
        if "email" in rule and not (isinstance(rule["email"], dict) and isinstance(rule["email"].get("email"), str)):
            return "email rules look like {\"email\": {\"email\": ...}}"
    return ""
