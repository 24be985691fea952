"""A local stand-in for the Graph API, for tests, benchmarks and demos.

A real HTTP server (point FACEBOOK_GRAPH_URL at it) that checks the access
token and the appsecret_proof the way Graph does, refuses sends beyond the
Send API's limits with Graph's error 100, records every call, and answers
with ids and errors shaped like Graph's. Faults queued with `add_fault` (or
POST /__local/faults) answer the next calls: rate limits with usage
headers, an expired token, a person who is unavailable, server errors,
slow answers, answers whose usage headers say the budget is nearly spent,
or any HTTP status with any Graph error object (`graph_error`).
Profiles come back with more fields than asked for, holding PROFILE_MARKER,
so a test can prove they were not kept.

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
    "messenger_rate_limit": (400, {"code": 80006, "message": "There have been "
                                   "too many messenger api calls to this Page "
                                   "account. Wait a while and try again."}),
}
# Faults that answer as usual, only late ("slow") or with usage headers
# that say the budget is nearly spent ("high_usage").
SUCCESS_FAULTS = ("slow", "high_usage")
# A fault of any shape: its `status` and `error` (Graph's error object, or
# None for a body that is not JSON) are given with it.
GRAPH_ERROR = "graph_error"
FAULT_TARGETS = ("message", "action", "profile")
MAX_FAULT_DELAY = 60.0
# The Send API's limits, which it answers with error 100 when exceeded.
MAX_TEXT = 2000
MAX_TEMPLATE_TEXT = 640
MAX_BUTTONS = 3
MAX_QUICK_REPLIES = 13
MAX_TITLE = 20
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")


@dataclass
class Fault:
    kind: str
    delay: float = 0.0
    # Minutes in the usage headers' estimated_time_to_regain_access.
    regain_minutes: int = 0
    # "message" (sends with a message), "action" (typing), "profile".
    applies_to: str = "message"
    # Of a graph_error: the HTTP status, and the error object or None.
    status: int = 0
    error: dict[str, Any] | None = None

    def answer(self) -> tuple[int, dict[str, Any] | None]:
        """The HTTP status and Graph error this fault answers with."""
        if self.kind == GRAPH_ERROR:
            return self.status, self.error
        return FAULTS[self.kind]


def read_fault(data: Any) -> Fault:
    """Validate a fault as a test or POST /__local/faults describes it.

    Raise ValueError with the reason.
    """
    if not isinstance(data, dict):
        raise ValueError("a fault is a JSON object")
    options = {"kind", "delay", "regain_minutes", "applies_to"}
    kind = data.get("kind")
    if kind == GRAPH_ERROR:
        options |= {"status", "error"}
    unknown = set(data) - options
    if unknown:
        raise ValueError(f"unknown fault options: {', '.join(sorted(unknown))}")
    if kind not in FAULTS and kind not in SUCCESS_FAULTS and kind != GRAPH_ERROR:
        known = ", ".join([*FAULTS, *SUCCESS_FAULTS, GRAPH_ERROR])
        raise ValueError(f"unknown fault kind {kind!r}; known: {known}")
    delay = data.get("delay", 0.0)
    if not isinstance(delay, int | float) or not 0 <= delay <= MAX_FAULT_DELAY:
        raise ValueError(f"delay must be 0 to {MAX_FAULT_DELAY:.0f} seconds")
    regain = data.get("regain_minutes", 0)
    if isinstance(regain, bool) or not isinstance(regain, int) or regain < 0:
        raise ValueError("regain_minutes must be a whole number of minutes")
    applies_to = data.get("applies_to", "message")
    if applies_to not in FAULT_TARGETS:
        raise ValueError(f"applies_to must be one of {', '.join(FAULT_TARGETS)}")
    fault = Fault(kind, float(delay), regain, applies_to)
    if kind == GRAPH_ERROR:
        fault.status, fault.error = read_graph_error(data)
    return fault


def read_graph_error(data: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """Validate the status and error object of a graph_error fault."""
    status = data.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not (
        400 <= status <= 599
    ):
        raise ValueError("a graph_error needs a status from 400 to 599")
    error = data.get("error")
    if error is not None and not isinstance(error, dict):
        raise ValueError("error must be Graph's error object, or null")
    return status, error


def send_problem(body: dict[str, Any]) -> str | None:
    """Return why the Send API would refuse this body, or None."""
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        return "(#100) The parameter recipient is required"
    message = body.get("message")
    if message is None:
        if body.get("sender_action") in ("typing_on", "typing_off", "mark_seen"):
            return None
        return "(#100) Either message or sender_action must be provided"
    messaging_type = body.get("messaging_type")
    if messaging_type not in MESSAGING_TYPES:
        return ("(#100) Param messaging_type must be one of "
                f"{{{', '.join(MESSAGING_TYPES)}}}")
    if messaging_type == "MESSAGE_TAG" and not body.get("tag"):
        return "(#100) Param tag is required for messaging_type MESSAGE_TAG"
    if not isinstance(message, dict):
        return "(#100) Param message must be an object"
    return message_problem(message)


def message_problem(message: dict[str, Any]) -> str | None:
    text = message.get("text")
    if isinstance(text, str) and utf16_length(text) > MAX_TEXT:
        return (f"(#100) Length of param message[text] must be less than or "
                f"equal to {MAX_TEXT}")
    attachment = message.get("attachment")
    payload = attachment.get("payload") if isinstance(attachment, dict) else None
    if isinstance(payload, dict) and payload.get("template_type") == "button":
        problem = template_problem(payload)
        if problem:
            return problem
    chips = message.get("quick_replies") or []
    if not isinstance(chips, list) or len(chips) > MAX_QUICK_REPLIES:
        return (f"(#100) param message[quick_replies] must have at most "
                f"{MAX_QUICK_REPLIES} elements")
    for index, chip in enumerate(chips):
        if not isinstance(chip, dict) or chip.get("content_type") != "text":
            continue
        if not 1 <= len(str(chip.get("title") or "")) <= MAX_TITLE:
            return (f"(#100) Param message[quick_replies][{index}][title] must "
                    f"be 1 to {MAX_TITLE} characters long")
    return None


def template_problem(payload: dict[str, Any]) -> str | None:
    where = "message[attachment][payload]"
    if utf16_length(str(payload.get("text", ""))) > MAX_TEMPLATE_TEXT:
        return (f"(#100) Length of param {where}[text] must be less than or "
                f"equal to {MAX_TEMPLATE_TEXT}")
    buttons = payload.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        return (f"(#100) param {where}[buttons] must have 1 to {MAX_BUTTONS} "
                "elements")
    for index, button in enumerate(buttons):
        title = button.get("title") if isinstance(button, dict) else None
        if not 1 <= len(str(title or "")) <= MAX_TITLE:
            return (f"(#100) Param {where}[buttons][{index}][title] must be 1 "
                    f"to {MAX_TITLE} characters long")
    return None


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


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
        fault = read_fault({"kind": kind, **options})
        with self.state.lock:
            self.state.faults.append(fault)

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
        problem = send_problem(body)
        if problem:
            self.record("POST", "me/messages", page_id, body, 400)
            self.graph_error(400, {"code": 100, "message": problem})
            return
        applies_to = "message" if "message" in body else "action"
        fault = self.take_fault(applies_to)
        # Recorded before answering: the caller may look once answered.
        self.record("POST", "me/messages", page_id, body, fault_status(fault))
        if fault is not None and fault_status(fault) != 200:
            self.answer_fault(fault)
            return
        headers = usage_headers(fault) if fault else {}
        answer = {"recipient_id": body["recipient"]["id"]}
        if "message" in body:
            answer["message_id"] = "m_" + secrets.token_urlsafe(64)
        self.answer(200, answer, headers)

    def profile(self, page_id: str, psid: str, query: dict[str, str]) -> None:
        fault = self.take_fault("profile")
        self.record("GET", psid, page_id, {"fields": query.get("fields", "")},
                    fault_status(fault))
        if fault is not None and fault_status(fault) != 200:
            self.answer_fault(fault)
            return
        headers = usage_headers(fault) if fault else {}
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
        }, headers)

    def take_fault(self, applies_to: str) -> Fault | None:
        """Take the next queued fault for this call, after its delay."""
        fault = self.state.take_fault(applies_to)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        return fault

    def answer_fault(self, fault: Fault) -> None:
        """Answer with the failure a fault stands for."""
        status, error = fault.answer()
        if error is None:
            self.answer_raw(status, b"<html>Internal Server Error</html>", "text/html")
        else:
            self.graph_error(status, error, usage_headers(fault))

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
            try:
                fault = read_fault(body)
            except ValueError as error:
                self.answer(400, {"error": {"message": str(error)}})
                return
            with self.state.lock:
                self.state.faults.append(fault)
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


def fault_status(fault: Fault | None) -> int:
    """The status a call answers with under this fault (200: as usual)."""
    if fault is None or fault.kind in SUCCESS_FAULTS:
        return 200
    return fault.answer()[0]


def usage_headers(fault: Fault) -> dict[str, str]:
    """The usage headers Graph adds when a budget is (nearly) spent."""
    limited = fault.kind in ("rate_limit", "app_rate_limit") or (
        fault.kind == GRAPH_ERROR and fault.regain_minutes > 0
    )
    if fault.kind == "high_usage":
        spent = 96
    elif limited:
        spent = 100
    else:
        return {}
    usage = {"call_count": spent, "total_cputime": 40, "total_time": 60,
             "estimated_time_to_regain_access": fault.regain_minutes}
    return {
        "X-App-Usage": json.dumps({"call_count": 20, "total_cputime": 5,
                                   "total_time": 8}),
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
