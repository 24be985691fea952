"""Fixtures shared by the whole suite: databases, live processes, logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The URL of the test database, for processes the tests start."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


class GatewayProcess:
    """A process of the gateway (web or worker) started for a test."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.args, cwd=REPO, env=self.env, stdout=handle, stderr=handle
        )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def process_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DEBUG="1",
        SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url(),
        SECURE_SSL_REDIRECT="0",
        PYTHONUNBUFFERED="1",
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env["CHANNEL_LAYER_PREFIX"] = os.environ["CHANNEL_LAYER_PREFIX"]
    env.update(overrides or {})
    return env


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session", autouse=True)
def close_async_test_connections(django_db_setup: Any) -> Iterator[None]:
    """Close the connection async tests opened in asgiref's own thread.

    Database work of async tests runs in one thread that outlives them; its
    connection would otherwise keep the test database from being dropped.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def start_web(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., tuple[GatewayProcess, str]]]:
    """Start Daphne serving the gateway; return the process and base URL."""
    started: list[GatewayProcess] = []

    def start(
        env: dict[str, str] | None = None, bind: str = "127.0.0.1"
    ) -> tuple[GatewayProcess, str]:
        port = free_port()
        log = tmp_path / f"web-{port}.log"
        args = [PYTHON, "-m", "daphne", "-b", bind, "-p", str(port),
                "gateway.asgi:application"]
        gateway = GatewayProcess(args, process_env(env), log).start()
        started.append(gateway)
        base = f"http://{bind}:{port}"
        wait_for_http(f"{base}/healthz")
        return gateway, base

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def start_worker(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `manage.py worker` processes against the test database."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None) -> GatewayProcess:
        log = tmp_path / f"worker-{uuid.uuid4().hex[:8]}.log"
        args = [PYTHON, "manage.py", "worker"]
        worker = GatewayProcess(args, process_env(env), log).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until(
    condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll until `condition()` is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
