"""Idle websockets one Daphne process holds, and the memory each one costs.

This file also holds the baseline servers and the helpers that
bench/pusher_fanout.py uses.

Run from the repository root: .venv/bin/python bench/pusher_connections.py

Two servers, measured one after the other in the same run:

- bare: a raw ASGI app on Daphne that accepts a websocket and waits, the
  floor that Daphne, Twisted and autobahn set;
- pusher: the gateway's own application (`gateway.asgi:application`, the
  in-memory channel layer), each client connected with protocol 7 and
  subscribed to a private channel of its own, as a chat bubble is.

This process is the client. It opens the connections in steps, spread over
several loopback source addresses, and reads the server's resident memory
(VmRSS) after each step. The memory per connection is the RSS growth over
the baseline RSS taken after a small warm-up, and the slope between the last
two steps.

One process can hold no more sockets than its open files limit. Where the
hard limit is below 50,000 and cannot be raised (it takes
CAP_SYS_RESOURCE), the last step is as close to the limit as the server and
this client can go, and 50,000 connections are extrapolated from the
slope; the table says which.

Options: --steps 5000,10000,19000 (cumulative; by default up to the open
files limit), --redis to add a third server, the gateway on the
channels-redis layer (needs Redis on 6379).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import resource
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DAPHNE = str(REPO / ".venv" / "bin" / "daphne")
APP_ID, KEY, SECRET = "424242", "benchkey0000000000", "benchsecret"
SOURCES = [f"127.0.0.{n}" for n in range(2, 12)]
IN_FLIGHT = 64
BATCH = 1000
OPEN_BUDGET_SECONDS = 70
WARM_UP = 200
TARGET_FOR_ESTIMATE = 50_000
TARGET_MB = 1536
# Files a process needs besides its sockets: libraries, logs, the database.
SPARE_FILES = 500
# What a browser adds to its handshake; the server keeps the headers.
BROWSER_HEADERS = [
    "Origin: https://shop.example",
    "Pragma: no-cache",
    "Cache-Control: no-cache",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"
    " (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Accept-Language: en-GB,en;q=0.9,nb;q=0.8",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
]


async def bare_websocket_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a websocket and hold it until the client leaves."""
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.disconnect":
            return


_broadcast_members: dict[str, set[Any]] = {}


async def broadcast_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fan-out floor for bench/pusher_fanout.py, on the same Daphne.

    Websockets at /ws/NAME; POST /publish/NAME sends its body, as it is, to
    every websocket of NAME. No signature, no JSON, no channel layer.
    """
    name = scope["path"].rsplit("/", 1)[-1]
    if scope["type"] == "websocket":
        members = _broadcast_members.setdefault(name, set())
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                members.add(send)
            elif message["type"] == "websocket.disconnect":
                members.discard(send)
                return
    elif scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        frame = {"type": "websocket.send", "text": body.decode()}
        for member in list(_broadcast_members.get(name, ())):
            await member(frame)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def raise_file_limit(wanted: int) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, name: str, app: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        # The log lives as long as the server.
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-")  # noqa: SIM115
        args = [DAPHNE, "-v", "0", "-b", "127.0.0.1", "-p", str(self.port), app]
        self.process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self.log, stderr=self.log
        )

    def wait_until_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} server did not listen")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="gateway.settings",
        DEBUG="1",
        SECRET_KEY="bench-only-secret",  # noqa: S106 - a throwaway server
        DATABASE_URL=f"sqlite:///{tempfile.gettempdir()}/pusher-bench.sqlite3",
        PUSHER_APP_ID=APP_ID,
        PUSHER_KEY=KEY,
        PUSHER_SECRET=SECRET,
        # The worker is not part of this measurement and needs a database.
        EMBEDDED_WORKER="0",
        PYTHONPATH=str(REPO),
    )
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """Frame a client message; clients must mask what they send."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + body


class IdleSocket(asyncio.Protocol):
    """A minimal websocket client: handshake, subscribe, answer pings, idle.

    Much lighter than a full client library, so that one process can open
    tens of thousands of connections quickly.
    """

    def __init__(self, request: bytes, channel: str | None) -> None:
        self.request = request
        self.channel = channel
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during set-up"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(head[:40].decode()))
                return
            self.upgraded, self.buffer = True, rest
            if self.channel is None:
                self.ready.set_result(None)
        while (frame := self.next_frame()) is not None:
            self.handle(*frame)

    def next_frame(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(self.buffer[2:10], "big"), 10
        if len(self.buffer) < start + length:
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    def handle(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x9:
            self.transport.write(masked_frame(0xA, payload))
        elif opcode == 0x1 and not self.ready.done():
            self.pusher_step(json.loads(payload))

    def pusher_step(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None and self.channel is not None
        if frame["event"] == "pusher:connection_established":
            socket_id = json.loads(frame["data"])["socket_id"]
            signature = hmac.new(
                SECRET.encode(), f"{socket_id}:{self.channel}".encode(), hashlib.sha256
            ).hexdigest()
            data = {"channel": self.channel, "auth": f"{KEY}:{signature}"}
            subscribe = {"event": "pusher:subscribe", "data": data}
            self.transport.write(masked_frame(0x1, json.dumps(subscribe).encode()))
        elif frame["event"] == "pusher_internal:subscription_succeeded":
            self.ready.set_result(None)
        else:
            self.ready.set_exception(ConnectionError(frame["event"]))


class Clients:
    """The client side: many idle websockets, opened a few dozen at a time."""

    def __init__(self, server: Server, pusher: bool) -> None:
        self.server = server
        self.pusher = pusher
        self.sockets: list[IdleSocket] = []
        self.failures = 0

    def request(self) -> bytes:
        path = f"/app/{KEY}?protocol=7&client=bench" if self.pusher else "/"
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *BROWSER_HEADERS,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def open_one(self, number: int, limit: asyncio.Semaphore) -> None:
        source = SOURCES[number % len(SOURCES)]
        channel = f"private-bench-{number}" if self.pusher else None
        async with limit:
            try:
                _, websocket = await asyncio.get_running_loop().create_connection(
                    lambda: IdleSocket(self.request(), channel),
                    "127.0.0.1",
                    self.server.port,
                    local_addr=(source, 0),
                )
                await asyncio.wait_for(websocket.ready, 30)
            except Exception as error:  # noqa: BLE001 - count it, go on
                self.failures += 1
                if self.failures <= 3:
                    print(f"  connection failed: {type(error).__name__}: {error}")
                return
        self.sockets.append(websocket)

    async def open_until(self, total: int, deadline: float) -> None:
        """Open connections up to a total, or until the deadline passes."""
        limit = asyncio.Semaphore(IN_FLIGHT)
        start = len(self.sockets) + self.failures
        for first in range(start, total, BATCH):
            if time.monotonic() > deadline:
                return
            numbers = range(first, min(first + BATCH, total))
            await asyncio.gather(*(self.open_one(number, limit) for number in numbers))

    def close(self) -> None:
        for websocket in self.sockets:
            if websocket.transport is not None:
                websocket.transport.close()
        self.sockets = []


async def measure(server: Server, pusher: bool, steps: list[int]) -> dict[str, Any]:
    clients = Clients(server, pusher)
    deadline = time.monotonic() + OPEN_BUDGET_SECONDS
    await clients.open_until(WARM_UP, deadline)
    await asyncio.sleep(2)
    base = rss_mb(server.process.pid)
    rows = []
    for step in steps:
        started = time.monotonic()
        await clients.open_until(step + WARM_UP, deadline)
        opened = time.monotonic() - started
        await asyncio.sleep(3)
        rss = rss_mb(server.process.pid)
        held = len(clients.sockets) - WARM_UP
        rows.append({"held": held, "rss": rss})
        print(f"  {server.name}: {held} connections, RSS {rss:.0f} MB ({opened:.0f} s)")
        if held < step:
            print(f"  {server.name}: stopped at {held}, the time budget ran out")
            break
    failures = clients.failures
    clients.close()
    return {"base": base, "rows": rows, "failures": failures}


def kb_per_connection(result: dict[str, Any], row: dict[str, Any]) -> float:
    return float((row["rss"] - result["base"]) * 1024 / row["held"])


def slope_kb(result: dict[str, Any]) -> float:
    """KB per connection between the last two steps (or since the base)."""
    rows = [{"held": 0, "rss": result["base"]}, *result["rows"]]
    first, last = rows[-2], rows[-1]
    return float((last["rss"] - first["rss"]) * 1024 / (last["held"] - first["held"]))


def estimate_mb(result: dict[str, Any], connections: int) -> float:
    last = result["rows"][-1]
    return float(last["rss"] + (connections - last["held"]) * slope_kb(result) / 1024)


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    width = 28
    print("\nOne Daphne process: RSS and memory per idle connection")
    print(f"{'':>8} | " + " | ".join(f"{name:^{width}}" for name in names))
    print(
        f"{'':>8} | "
        + " | ".join(
            f"{'held':>8} {'RSS MB':>8} {'KB/conn':>9}" + " " * (width - 27)
            for _ in names
        )
    )
    cells = [f"{'base':>8} {results[name]['base']:>8.0f} {'':>9}" for name in names]
    print(f"{'warm-up':>8} | " + " | ".join(cell.ljust(width) for cell in cells))
    for index in range(max(len(result["rows"]) for result in results.values())):
        cells = []
        for name in names:
            rows = results[name]["rows"]
            if index < len(rows):
                row = rows[index]
                per = kb_per_connection(results[name], row)
                cells.append(f"{row['held']:>8} {row['rss']:>8.0f} {per:>9.1f}")
            else:
                cells.append("")
        print(
            f"{'step ' + str(index + 1):>8} | "
            + " | ".join(cell.ljust(width) for cell in cells)
        )
    cells = [f"{'':>8} {'':>8} {slope_kb(results[name]):>9.1f}" for name in names]
    print(f"{'slope':>8} | " + " | ".join(cell.ljust(width) for cell in cells))
    print_estimates(results)
    if len(names) > 1:
        extra = slope_kb(results[names[1]]) - slope_kb(results[names[0]])
        print(f"  {names[1]} costs {extra:.1f} KB per connection over {names[0]}")
    for name in names:
        if results[name]["failures"]:
            print(f"  {name}: {results[name]['failures']} connections failed")


def print_estimates(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{TARGET_FOR_ESTIMATE:,} idle connections in one process"
        f" (target: under {TARGET_MB:,} MB):"
    )
    for name, result in results.items():
        held = result["rows"][-1]["held"]
        how = "measured" if held >= TARGET_FOR_ESTIMATE else (
            f"extrapolated from {held:,} held (last step + slope)"
        )
        estimate = estimate_mb(result, TARGET_FOR_ESTIMATE)
        verdict = "met" if estimate < TARGET_MB else "NOT met"
        print(f"  {name:>14}: {estimate:,.0f} MB, {how}; {verdict}")


def default_steps(file_limit: int) -> list[int]:
    """Steps up to what the open files limit lets one process hold."""
    most = min(TARGET_FOR_ESTIMATE, file_limit - SPARE_FILES - WARM_UP)
    return sorted({min(5000, most), min(10_000, most), most})


async def run(steps: list[int], with_redis: bool) -> None:
    servers: list[tuple[str, str, dict[str, str], bool]] = [
        ("bare", "bench.pusher_connections:bare_websocket_app", {}, False),
        ("pusher", "gateway.asgi:application", {}, True),
    ]
    if with_redis:
        redis = {
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "CHANNEL_LAYER_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        }
        servers.append(("pusher+redis", "gateway.asgi:application", redis, True))
    results = {}
    for name, app, extra, pusher in servers:
        server = Server(name, app, server_env(extra))
        try:
            server.wait_until_listening()
            results[name] = await measure(server, pusher, steps)
        finally:
            server.stop()
    print_tables(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="", help="default: up to the limit")
    parser.add_argument("--redis", action="store_true")
    options = parser.parse_args()
    limit = raise_file_limit(TARGET_FOR_ESTIMATE + WARM_UP + SPARE_FILES)
    if options.steps:
        steps = [int(step) for step in options.steps.split(",")]
    else:
        steps = default_steps(limit)
    print(f"open files limit per process: {limit}; steps: {steps}")
    asyncio.run(run(steps, options.redis))


if __name__ == "__main__":
    main()
