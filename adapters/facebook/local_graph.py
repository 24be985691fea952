"""A local stand-in for the Graph API, for tests, benchmarks and demos.

A real HTTP server (point FACEBOOK_GRAPH_URL at it) that checks the access
token and the appsecret_proof the way Graph does, records every call, and
answers with ids and errors shaped like Graph's. Faults queued with
`add_fault` (or POST /__local/faults) answer the next sends: rate limits
with usage headers, an expired token, a person who is unavailable, server
errors, slow answers. Profiles come back with more fields than asked for,
holding PROFILE_MARKER, so a test can prove they were not kept.

Run alone: python -m adapters.facebook.local_graph --port 8090 \
    --app-secret SECRET --page PAGE_ID=TOKEN
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PROFILE_MARKER = "LOCAL-GRAPH-MARKER"
VERSION_PREFIX = "/v25.0"

# Each fault: the HTTP status, the Graph error (None: a bare server error)
# and extra headers.
FAULTS: dict[str, tuple[int, dict[str, Any] | None]] = {
    "server_error": (500, None),
    "unavailable": (503, {"code": 2, "message": "Service temporarily unavailable",
                          "is_transient": True}),
    "temporary": (500, {"code": 1200, "message": "Temporary send message failure",
                        "is_transient": True}),
    "rate_limit": (400, {"code": 613, "message": "Calls to this api have exceeded"
                         " the rate limit.", "error_subcode": 2018022}),
    "app_rate_limit": (403, {"code": 4, "message": "Application request limit"
                             " reached"}),
    "token_expired": (400, {"code": 190, "error_subcode": 463,
                            "message": "Error validating access token: Session "
                            "has expired", "type": "OAuthException"}),
    "user_unavailable": (400, {"code": 551, "error_subcode": 1545041,
                               "message": "This person isn't available right now."}),
    "permission": (403, {"code": 200, "message": "Requires pages_messaging "
                         "permission to manage the object"}),
    "bad_parameter": (400, {"code": 100, "message": "Invalid parameter"}),
    "profile_unavailable": (400, {"code": 2018218, "message": "Cannot get the "
                                  "profile of this user"}),
}


@dataclass
class Fault:
    kind: str
    delay: float = 0.0
    # Minutes in the usage headers' estimated_time_to_regain_access.
    regain_minutes: int = 0
    # "message" (sends with a message), "action" (typing), "profile".
    applies_to: str = "message"


@dataclass
class Call:
    """One call the server received, as a test inspects it."""

    method: str
    path: str
    page_id: str
    body: dict[str, Any]
    received_at: float
    answered_status: int


@dataclass
class GraphState:
    app_secret: str
    tokens: dict[str, str] = field(default_factory=dict)  # token -> page id
    expired: set[str] = field(default_factory=set)
    faults: deque[Fault] = field(default_factory=deque)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, applies_to: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.applies_to == applies_to:
                    self.faults.remove(fault)
                    return fault
        return None


class LocalGraph:
    """The server, run on a thread of the current process."""

    def __init__(self, app_secret: str, port: int = 0, host: str = "127.0.0.1") -> None:
        self.state = GraphState(app_secret)
        handler = type("BoundHandler", (GraphHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}{VERSION_PREFIX}"

    def start(self) -> LocalGraph:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_page(self, page_id: str, token: str) -> None:
        self.state.tokens[token] = page_id

    def expire_token(self, token: str) -> None:
        self.state.expired.add(token)

    def add_fault(self, kind: str, **options: Any) -> None:
        if kind not in FAULTS and kind != "slow":
            raise ValueError(f"unknown fault {kind!r}")
        with self.state.lock:
            self.state.faults.append(Fault(kind, **options))

    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self.state.calls)

    def sent_messages(self) -> list[Call]:
        """Sends that carried a message and were accepted."""
        return [
            call for call in self.calls()
            if "message" in call.body and call.answered_status == 200
        ]


class GraphHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: GraphState

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request line carries ids."""

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        body = self.read_body()
        if url.path.startswith("/__local/"):
            self.control(method, url.path, body)
            return
        path = url.path.removeprefix(VERSION_PREFIX).strip("/")
        page_id = self.authenticate(query, body)
        if page_id is None:
            return
        if method == "POST" and path == "me/messages":
            self.messages(page_id, body)
        elif method == "GET" and path == "me":
            self.record(method, path, page_id, query, 200)
            self.answer(200, {"id": page_id, "name": "Local test page"})
        elif method == "POST" and path == f"{page_id}/subscribed_apps":
            self.record(method, path, page_id, query, 200)
            self.answer(200, {"success": True})
        elif method == "GET" and path.isdigit():
            self.profile(page_id, path, query)
        else:
            self.graph_error(400, {"code": 100, "message": "Unsupported request"})

    def read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def authenticate(self, query: dict[str, str], body: dict[str, Any]) -> str | None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else (
            query.get("access_token") or body.get("access_token") or ""
        )
        page_id = self.state.tokens.get(token)
        if page_id is None:
            self.graph_error(400, {"code": 190, "type": "OAuthException",
                                   "message": "Invalid OAuth access token"})
            return None
        if token in self.state.expired:
            self.graph_error(400, FAULTS["token_expired"][1])
            return None
        expected = hmac.new(self.state.app_secret.encode(), token.encode(),
                            hashlib.sha256).hexdigest()
        proof = query.get("appsecret_proof") or body.get("appsecret_proof") or ""
        if not hmac.compare_digest(str(proof), expected):
            self.graph_error(400, {"code": 100, "type": "GraphMethodException",
                                   "message": "Invalid appsecret_proof provided "
                                   "in the API argument"})
            return None
        return page_id

    def messages(self, page_id: str, body: dict[str, Any]) -> None:
        applies_to = "message" if "message" in body else "action"
        status = self.apply_fault(applies_to)
        self.record("POST", "me/messages", page_id, body, status or 200)
        if status:
            return
        recipient = body.get("recipient", {}).get("id", "")
        answer = {"recipient_id": recipient}
        if "message" in body:
            answer["message_id"] = "m_" + secrets.token_urlsafe(64)
        self.answer(200, answer)

    def profile(self, page_id: str, psid: str, query: dict[str, str]) -> None:
        status = self.apply_fault("profile")
        self.record("GET", psid, page_id, {"fields": query.get("fields", "")},
                    status or 200)
        if status:
            return
        self.answer(200, {
            "id": psid,
            "name": f"Person {psid[-4:]}",
            "first_name": "Person",
            "last_name": psid[-4:],
            "profile_pic": f"https://platform-lookaside.example/{psid}.jpg",
            "locale": f"{PROFILE_MARKER}-locale",
            "timezone": f"{PROFILE_MARKER}-timezone",
            "gender": f"{PROFILE_MARKER}-gender",
            "email": f"{PROFILE_MARKER}-email@example.com",
        })

    def apply_fault(self, applies_to: str) -> int:
        """Answer with the next queued fault, if any; return its status."""
        fault = self.state.take_fault(applies_to)
        if fault is None:
            return 0
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == "slow":
            return 0
        status, error = FAULTS[fault.kind]
        if error is None:
            self.answer_raw(status, b"<html>Internal Server Error</html>", "text/html")
        else:
            self.graph_error(status, error, usage_headers(fault))
        return status

    def record(self, method: str, path: str, page_id: str, body: dict[str, Any],
               status: int) -> None:
        call = Call(method, path, page_id, body, time.time(), status)
        with self.state.lock:
            self.state.calls.append(call)

    def control(self, method: str, path: str, body: dict[str, Any]) -> None:
        if path == "/__local/calls":
            with self.state.lock:
                calls = [vars(call) for call in self.state.calls]
            self.answer(200, {"calls": calls})
        elif path == "/__local/faults" and method == "POST":
            with self.state.lock:
                self.state.faults.append(Fault(**body))
            self.answer(200, {"queued": True})
        elif path == "/__local/reset" and method == "POST":
            with self.state.lock:
                self.state.calls.clear()
                self.state.faults.clear()
            self.answer(200, {"reset": True})
        else:
            self.answer(404, {"error": "unknown control path"})

    def graph_error(self, status: int, error: dict[str, Any] | None,
                    headers: dict[str, str] | None = None) -> None:
        full = {"type": "OAuthException", **(error or {}),
                "fbtrace_id": secrets.token_urlsafe(8)}
        self.answer(status, {"error": full}, headers)

    def answer(self, status: int, data: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        self.answer_raw(status, json.dumps(data).encode(), "application/json",
                        headers)

    def answer_raw(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def usage_headers(fault: Fault) -> dict[str, str]:
    if fault.kind not in ("rate_limit", "app_rate_limit"):
        return {}
    usage = {"call_count": 100, "total_cputime": 40, "total_time": 60,
             "estimated_time_to_regain_access": fault.regain_minutes}
    return {
        "X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 40,
                                   "total_time": 60}),
        "X-Business-Use-Case-Usage": json.dumps(
            {"1234567890": [{"type": "messenger", **usage}]}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--page", action="append", default=[],
                        help="PAGE_ID=TOKEN, repeatable")
    options = parser.parse_args()
    graph = LocalGraph(options.app_secret, options.port, options.host)
    for page in options.page:
        page_id, _, token = page.partition("=")
        graph.add_page(page_id, token)
    print(f"local Graph API at {graph.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        graph.server.serve_forever()


if __name__ == "__main__":
    main()
