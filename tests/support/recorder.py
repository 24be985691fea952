"""A local HTTP server that records what the loopback channel delivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NOT_JSON = 0


class Recorder:
    """Records deliveries; answers with the statuses queued in `failures`.

    A failure of NOT_JSON answers 200 with a body that is not JSON. With
    `delay`, every answer takes that many seconds.
    """

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.failures: list[int] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        time.sleep(self.delay)
        with self.lock:
            if self.failures:
                status = self.failures.pop(0)
                if status == NOT_JSON:
                    return 200, None
                return status, {"error": "on demand"}
            self.deliveries.append(body)
            return 200, {"id": f"lb-{len(self.deliveries)}"}

    def reply_to_ids(self) -> list[int]:
        with self.lock:
            return [delivery["reply_to"] for delivery in self.deliveries]


def handler_for(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            status, payload = recorder.answer(body)
            data = b"<html>" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


@contextmanager
def running_recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(recorder))
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/deliver"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
