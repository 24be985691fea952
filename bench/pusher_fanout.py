"""Latency from a signed HTTP trigger to receipt on a websocket, under load.

Run from the repository root: .venv/bin/python bench/pusher_fanout.py

500 websockets, one channel each (or --channels K shared ones), every one
receiving one event per second for --seconds (20 by default), triggered
over HTTP with keep-alive connections, the triggers spread evenly over each
second. The latency of a message runs from the moment its trigger is built
to the moment its websocket has it; both ends live in this process, on one
clock, and the server is a separate Daphne process.

Measured in the same run, one server after the other:

- baseline: a raw ASGI app on the same Daphne (bench.pusher_connections:
  broadcast_app) that sends the POSTed body to the channel's websockets
  as it is: no signature, no JSON, no channel layer. It shows what Daphne
  itself costs, so the difference is what the Pusher protocol adds.
- pusher: the gateway (`gateway.asgi:application`): the trigger is built
  and signed by the real `pusher` library (verified by the server: HMAC,
  body MD5, timestamp), published through the in-memory channel layer,
  fanned out by the hub and framed as Pusher protocol 7 events.
- pusher+redis: the same with REDIS_URL set, as production runs: events
  on the Redis pub/sub layer (skipped when Redis does not answer on
  127.0.0.1:6379).

--scenarios runs some of them only, by name.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pusher.pusher_client import PusherClient
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pusher_connections import (
    APP_ID,
    KEY,
    SECRET,
    Server,
    raise_file_limit,
    server_env,
)

HTTP_CONNECTIONS = 16
WARM_UP_SECONDS = 2
DRAIN_SECONDS = 2
TARGET_P99_MS = 50.0


class Trigger:
    """One way to publish: a path and body for a channel, and how to read it."""

    def __init__(self, pusher: bool, port: int) -> None:
        self.pusher = pusher
        self.client = PusherClient(
            app_id=APP_ID,
            key=KEY,
            secret=SECRET,
            ssl=False,
            host="127.0.0.1",
            port=port,
        )

    def request(self, channel: str, stamp: int) -> bytes:
        if self.pusher:
            signed = self.client.trigger.make_request([channel], "tick", {"t": stamp})
            path, body = signed.signed_path, signed.body
        else:
            path, body = f"/publish/{channel}", json.dumps({"t": stamp}).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def stamp_of(self, text: str | bytes) -> int:
        frame = json.loads(text)
        data = json.loads(frame["data"]) if self.pusher else frame
        return int(data["t"])


class HttpPool:
    """Keep-alive HTTP connections that send queued requests in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.statuses: dict[int, int] = {}
        self.workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for _ in range(HTTP_CONNECTIONS):
            streams = await asyncio.open_connection("127.0.0.1", self.port)
            self.workers.append(asyncio.create_task(self.work(*streams)))

    async def work(self, reader: asyncio.StreamReader, writer: Any) -> None:
        while True:
            request = await self.queue.get()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            await self.skip_body(reader, head.lower())

    @staticmethod
    async def skip_body(reader: asyncio.StreamReader, head: bytes) -> None:
        if b"transfer-encoding: chunked" in head:
            while size := int(await reader.readuntil(b"\r\n"), 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
            return
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))

    def stop(self) -> None:
        for worker in self.workers:
            worker.cancel()


class Receivers:
    """The websockets, and the latency of every message they get."""

    def __init__(self, trigger: Trigger, port: int) -> None:
        self.trigger = trigger
        self.port = port
        self.latencies: list[float] = []
        self.counting = False
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, channels: list[str]) -> None:
        limit = asyncio.Semaphore(32)
        self.sockets = list(
            await asyncio.gather(*(self.open_one(name, limit) for name in channels))
        )
        self.tasks = [asyncio.create_task(self.listen(ws)) for ws in self.sockets]

    async def open_one(
        self, channel: str, limit: asyncio.Semaphore
    ) -> ClientConnection:
        async with limit:
            if not self.trigger.pusher:
                return await connect(f"ws://127.0.0.1:{self.port}/ws/{channel}")
            url = f"ws://127.0.0.1:{self.port}/app/{KEY}?protocol=7&client=bench"
            websocket = await connect(url)
            established = json.loads(await websocket.recv())
            socket_id = json.loads(established["data"])["socket_id"]
            signature = hmac.new(
                SECRET.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256
            ).hexdigest()
            data = {"channel": channel, "auth": f"{KEY}:{signature}"}
            await websocket.send(
                json.dumps({"event": "pusher:subscribe", "data": data})
            )
            answer = json.loads(await websocket.recv())
            assert answer["event"] == "pusher_internal:subscription_succeeded"
            return websocket

    async def listen(self, websocket: ClientConnection) -> None:
        async for message in websocket:
            received = time.monotonic_ns()
            if self.counting:
                sent = self.trigger.stamp_of(message)
                self.latencies.append((received - sent) / 1e6)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(
            *(ws.close() for ws in self.sockets), return_exceptions=True
        )


def server_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    pool: HttpPool, trigger: Trigger, channels: list[str], seconds: float
) -> int:
    """Queue a trigger per channel per second, evenly spread; return the count."""
    interval = 1 / len(channels)
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed / interval) + 1
        while sent < due:
            channel = channels[sent % len(channels)]
            pool.queue.put_nowait(trigger.request(channel, time.monotonic_ns()))
            sent += 1
        await asyncio.sleep(interval)
    return sent


async def scenario(
    name: str, app: str, env: dict[str, str], options: argparse.Namespace
) -> dict[str, Any]:
    server = Server(name, app, server_env(env))
    try:
        server.wait_until_listening()
        pusher = app.startswith("gateway")
        prefix = "private-fanout-" if pusher else "fanout-"
        channels = [f"{prefix}{n}" for n in range(options.channels)]
        trigger = Trigger(pusher, server.port)
        receivers = Receivers(trigger, server.port)
        await receivers.open(
            [channels[n % len(channels)] for n in range(options.sockets)]
        )
        pool = HttpPool(server.port)
        await pool.start()
        await drive(pool, trigger, channels, WARM_UP_SECONDS)
        await asyncio.sleep(DRAIN_SECONDS)
        receivers.counting = True
        cpu = server_cpu_seconds(server.process.pid)
        sent = await drive(pool, trigger, channels, options.seconds)
        await asyncio.sleep(DRAIN_SECONDS)
        cpu = server_cpu_seconds(server.process.pid) - cpu
        receivers.counting = False
        expected = sent * options.sockets // len(channels)
        pool.stop()
        await receivers.close()
        print(
            f"  {name}: {len(receivers.latencies)}/{expected} received, {pool.statuses}"
        )
        return {
            "latencies": receivers.latencies,
            "expected": expected,
            "cpu": cpu / (options.seconds + DRAIN_SECONDS),
        }
    finally:
        server.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_table(
    results: dict[str, dict[str, Any]], options: argparse.Namespace
) -> None:
    names = list(results)
    print(
        f"\n{options.sockets} websockets on {options.channels} channels, one event "
        f"per socket per second for {options.seconds} s; trigger to receipt, ms"
    )
    print(f"{'':>14} | " + " | ".join(f"{name:>13}" for name in names))
    rows: list[tuple[str, Any]] = [
        ("p50", lambda r: percentile(r["latencies"], 0.50)),
        ("p90", lambda r: percentile(r["latencies"], 0.90)),
        ("p99", lambda r: percentile(r["latencies"], 0.99)),
        ("p99.9", lambda r: percentile(r["latencies"], 0.999)),
        ("max", lambda r: max(r["latencies"])),
        ("mean", lambda r: statistics.fmean(r["latencies"])),
    ]
    for label, value in rows:
        cells = [f"{value(results[name]):>13.1f}" for name in names]
        print(f"{label:>14} | " + " | ".join(cells))
    cells = [
        f"{len(results[name]['latencies']):>6}/{results[name]['expected']:<6}"
        for name in names
    ]
    print(f"{'received':>14} | " + " | ".join(cells))
    cells = [f"{100 * results[name]['cpu']:>12.0f}%" for name in names]
    print(f"{'server CPU':>14} | " + " | ".join(cells))
    print(f"\ntarget: p99 under {TARGET_P99_MS:.0f} ms, every event received")
    for name in [name for name in names if name != "baseline"]:
        result = results[name]
        p99 = percentile(result["latencies"], 0.99)
        complete = len(result["latencies"]) == result["expected"]
        verdict = "met" if p99 < TARGET_P99_MS and complete else "NOT met"
        print(f"  {name:>14}: p99 {p99:.1f} ms; {verdict}")


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def run(options: argparse.Namespace) -> None:
    scenarios: list[tuple[str, str, dict[str, str]]] = [
        ("baseline", "bench.pusher_connections:broadcast_app", {}),
        ("pusher", "gateway.asgi:application", {}),
    ]
    if redis_answers():
        redis = {
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "CHANNEL_LAYER_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        }
        scenarios.append(("pusher+redis", "gateway.asgi:application", redis))
    else:
        print("Redis does not answer on 127.0.0.1:6379: pusher+redis skipped")
    chosen = options.scenarios.split(",") if options.scenarios else None
    results = {}
    for name, app, env in scenarios:
        if chosen is None or name in chosen:
            results[name] = await scenario(name, app, env, options)
    print_table(results, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated names to run (baseline, pusher, pusher+redis)",
    )
    options = parser.parse_args()
    raise_file_limit(4096)
    asyncio.run(run(options))


if __name__ == "__main__":
    main()
