"""What the Messenger benchmarks share: processes, the database, payloads.

Also the baseline: `raw_application`, an ASGI app that only reads the body
and answers 200, served by the same Daphne as the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gateway_bench_facebook"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
APP_SECRET = "bench-app-secret"  # noqa: S105 - a bench-only secret
PAGE_ID = "104383829374651"
PAGE_TOKEN = "EAAGbenchPageAccessToken0123456789abcdef"  # noqa: S105 - bench only
LAYER_PREFIX = "benchfb"
BENCH_SECRET_KEY = "bench-secret-key-not-for-production-0123"  # noqa: S105 - bench
# Where the processes a bench starts write their output.
LOGS = Path(tempfile.mkdtemp(prefix="bench-facebook-logs-"))
BOT_FILE = {
    "slug": "bench-shop",
    "name": "Bench shop",
    "language": "en",
    "greeting": [{"text": "Hi!"}],
    "fallback": [{"text": "Sorry, I did not get that."}],
    "dialogues": [
        {"id": "hours", "samples": ["when are you open", "opening hours"],
         "replies": [{"text": "Monday to Friday, 9 to 17.",
                      "buttons": [{"title": "Where are you?", "goto": "address"}]}]},
        {"id": "address", "samples": ["where are you"],
         "replies": [{"text": "Main street 1."}]},
    ],
    "web": {"allowed_origins": []},
}


# A path both servers answer 404: the request that ends a wrk run, told
# apart from the deliveries by its status.
END_OF_RUN_PATH = "/bench-end"


async def raw_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the whole body, answer 200: the server's own limit."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 404 if scope["path"] == END_OF_RUN_PATH else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status": "ok"}'})


def gateway_env(**overrides: str) -> dict[str, str]:
    """The production profile: PostgreSQL, Redis, DEBUG off."""
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "DEBUG"}
    }
    env.update(
        SECRET_KEY=BENCH_SECRET_KEY,
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        CHANNEL_LAYER_PREFIX=LAYER_PREFIX,
        FACEBOOK_APP_SECRET=APP_SECRET,
        SECURE_SSL_REDIRECT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def setup_django() -> None:
    """Use the bench database from this process too."""
    os.environ.update(gateway_env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "gateway.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def prepare_database() -> None:
    """Create and migrate the bench database, then connect the bench page."""
    import psycopg2

    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = psycopg2.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=REPO, env=gateway_env(), check=True)
    setup_django()
    from adapters.facebook.pages import connect_page
    from storage.bots import import_bot
    from storage.models import Message

    bot = import_bot(BOT_FILE)[0]
    Message.objects.filter(conversation__bot=bot).delete()
    connect_page(bot, PAGE_ID, PAGE_TOKEN, move=True)
    vacuum()


def vacuum() -> None:
    """Start from tidy tables, not from what earlier runs left dead."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) storage_message, storage_conversation, "
                       "storage_contact")


def clear_doorbell() -> None:
    """Forget rings nobody listened to, between runs without a worker."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{LAYER_PREFIX}*"):
        client.delete(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A process the bench starts and always stops."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = LOGS / f"{name}.log"
        handle = self.log.open("wb")
        self.popen = subprocess.Popen(args, cwd=REPO, env=env, stdout=handle,
                                      stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_daphne(
    name: str, application: str, env: dict[str, str]
) -> tuple[Process, str]:
    port = free_port()
    process = Process(name, [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p",
                             str(port), application], env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(base + "/healthz"), 30)
    return process, base


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_for(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting")


def psid(number: int) -> str:
    return str(7300000000000000 + number)


# What people write, some of it beyond ASCII, which Meta sends escaped.
TEXTS = (
    "when are you open",
    "Hei på deg 😀 når åpner dere?",
    "opening hours ☕",
    "Grüße — 漢字? opening hours",
)


def text_for(number: int) -> str:
    return TEXTS[number % len(TEXTS)]


def mark(met: bool) -> str:
    return "met" if met else "MISSED"


def delivery(events: list[tuple[str, str, str]], per_entry: int) -> bytes:
    """A delivery in Meta's shape; events are (psid, mid, text)."""
    now = int(time.time() * 1000)
    entries = []
    for start in range(0, len(events), per_entry):
        messaging = [
            {"sender": {"id": sender}, "recipient": {"id": PAGE_ID},
             "timestamp": now, "message": {"mid": mid, "text": text}}
            for sender, mid, text in events[start:start + per_entry]
        ]
        entries.append({"id": PAGE_ID, "time": now, "messaging": messaging})
    body = {"object": "page", "entry": entries}
    # As Meta: non-ASCII as \uXXXX escapes (an emoji as a surrogate pair),
    # and slashes escaped.
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    return text.replace("/", "\\/").encode()


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                     strict=False)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


async def read_answer(reader: Any) -> int:
    status = int((await reader.readline()).split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding":
            chunked = "chunked" in value.lower()
    if not chunked:
        await reader.readexactly(length)
        return status
    while size := int((await reader.readline()).strip(), 16):
        await reader.readexactly(size + 2)
    await reader.readline()
    return status


async def post_open_loop(
    base: str, payloads: list[bytes], rate: float, connections: int = 64
) -> list[tuple[float, float, int]]:
    """Post payloads at a fixed rate, whatever the answers take.

    At most `connections` are open at once, as a webhook sender keeps a
    pool; a delivery waits for a free one. Return (scheduled wall time,
    seconds to the answer, status) for each: latency counts from the
    scheduled moment, so a queue in front of the server shows in it.
    """
    import asyncio

    host, port = base.removeprefix("http://").split(":")
    idle: list[tuple[Any, Any]] = []
    slots = asyncio.Semaphore(connections)
    results: list[tuple[float, float, int]] = []
    start = time.perf_counter() + 0.2
    start_wall = time.time() + 0.2

    async def exchange(body: bytes) -> int:
        for _ in range(3):
            reader, writer = idle.pop() if idle else await asyncio.open_connection(
                host, int(port))
            try:
                writer.write(request_bytes(body))
                status = await read_answer(reader)
            except (ConnectionError, IndexError, asyncio.IncompleteReadError):
                writer.close()
                continue
            idle.append((reader, writer))
            return status
        return 0

    async def post(index: int, body: bytes) -> None:
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        async with slots:
            status = await exchange(body)
        results.append((start_wall + index / rate,
                        time.perf_counter() - scheduled, status))

    await asyncio.gather(*(post(i, body) for i, body in enumerate(payloads)))
    for _, writer in idle:
        writer.close()
    return results


def request_bytes(body: bytes) -> bytes:
    return (
        b"POST /webhooks/facebook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"X-Hub-Signature-256: {signature(body)}\r\n"
          f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
