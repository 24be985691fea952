"""Helpers for the self-hosted Pusher tests: in-process sockets, API calls."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from channels.routing import URLRouter
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from pusher.http import Request
from pusher.pusher_client import PusherClient

from adapters.web.pusher.signing import channel_auth
from adapters.web.routing import http_urlpatterns, websocket_urlpatterns

websocket_app = URLRouter(websocket_urlpatterns)
http_app = URLRouter(http_urlpatterns)


def socket_path(key: str | None = None, query: str = "protocol=7&client=js") -> str:
    return f"/app/{key or settings.PUSHER_KEY}?{query}"


async def receive_event(socket: WebsocketCommunicator) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await socket.receive_from(timeout=10))
    return frame


async def connect() -> tuple[WebsocketCommunicator, str]:
    """Open a socket; return it with its socket id."""
    socket = WebsocketCommunicator(websocket_app, socket_path())
    connected, _ = await socket.connect()
    assert connected
    established = await receive_event(socket)
    assert established["event"] == "pusher:connection_established"
    return socket, json.loads(established["data"])["socket_id"]


async def subscribe(
    socket: WebsocketCommunicator, channel: str, auth: str | None = None
) -> dict[str, Any]:
    """Send pusher:subscribe; return the first answer."""
    data = {"channel": channel} if auth is None else {"channel": channel, "auth": auth}
    await socket.send_json_to({"event": "pusher:subscribe", "data": data})
    return await receive_event(socket)


async def subscribed(channel: str) -> tuple[WebsocketCommunicator, str]:
    """Open a socket subscribed to a channel, signing private ones."""
    socket, socket_id = await connect()
    answer = await subscribe(socket, channel, channel_auth(socket_id, channel))
    assert answer["event"] == "pusher_internal:subscription_succeeded"
    return socket, socket_id


def api_client(
    host: str = "testserver", port: int = 80, app_id: str | None = None
) -> PusherClient:
    """The pusher library's own client, pointed at the gateway."""
    return PusherClient(
        app_id=app_id or str(settings.PUSHER_APP_ID),
        key=settings.PUSHER_KEY,
        secret=settings.PUSHER_SECRET,
        ssl=False,
        host=host,
        port=port,
    )


async def call_api(request: Request, path: str | None = None) -> tuple[int, bytes]:
    """Send a request built and signed by the pusher library, in-process."""
    communicator = HttpCommunicator(
        http_app, request.method, path or request.signed_path, body=request.body
    )
    response = await communicator.get_response(timeout=3)
    return response["status"], response["body"]


class RedisServer:
    """A Redis server of a test's own, to stop and start again at will."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
