"""No visitor address in any log line, whatever Daphne's verbosity."""

from __future__ import annotations

import http.client
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.web.privacy import PrivacyFilter, redact_addresses
from storage.models import Bot
from tests.conftest import PYTHON, GatewayProcess, free_port, process_env, wait_for_http

VISITOR = "127.0.0.3"


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.2:5000 - - GET /", "[address]:5000 - - GET /"),
    ("host='10.1.2.3', port=1", "host='[address]', port=1"),
    ("peer [2001:db8::7]:443", "peer [[address]]:443"),
    ("fe80::1%eth0 up", "[address] up"),
    ("at 19:55:21, version 1.2.3, socket 123.456", "at 19:55:21, version 1.2.3, "
     "socket 123.456"),
])
def test_addresses_are_redacted(text: str, expected: str) -> None:
    assert redact_addresses(text) == expected


def test_twisteds_access_lines_are_dropped() -> None:
    line = ('"[address]" - - [03/Dec/2026:20:00:51 +0000] "GET / HTTP/1.1" 200 5 '
            '"https://referrer.example/" "Mozilla/5.0"')
    record = logging.LogRecord("daphne.server", logging.INFO, __file__, 1, line,
                               None, None)
    assert not PrivacyFilter().filter(record)


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    try:
        raise ConnectionError("reset by 192.0.2.9")
    except ConnectionError:
        record = logging.LogRecord(
            "daphne.server", logging.INFO, __file__, 1, "client %s:%d",
            ("192.0.2.9", 80), exc_info=sys.exc_info(),
        )
    PrivacyFilter().filter(record)
    assert record.getMessage() == "client [address]:80"
    assert "192.0.2.9" not in (record.exc_text or "")


@pytest.fixture
def verbose_daphne(
    transactional_db: None, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, int]]:
    port = free_port()
    args = [PYTHON, "-m", "daphne", "-v", "2", "-b", "127.0.0.1", "-p", str(port),
            "gateway.asgi:application"]
    daphne = GatewayProcess(args, process_env(), tmp_path / "daphne.log").start()
    wait_for_http(f"http://127.0.0.1:{port}/healthz")
    yield daphne, port
    daphne.stop()


def request_from_visitor(port: int, method: str, path: str, body: bytes = b"") -> int:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(VISITOR, 0)
    )
    connection.request(method, path, body, {"Content-Type": "application/json",
                                            "User-Agent": "probe-agent-77"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_daphne_at_high_verbosity_logs_no_visitor_address(
    verbose_daphne: tuple[GatewayProcess, int],
) -> None:
    daphne, port = verbose_daphne
    bot = Bot.objects.create(slug="p", name="P", allowed_origins=["*"])
    body = json.dumps({"bot": bot.web_key}).encode()
    assert request_from_visitor(port, "POST", "/api/web/v1/sessions", body) == 201
    assert request_from_visitor(port, "GET", "/api/web/v1/messages") == 401
    assert request_from_visitor(port, "GET", "/admin/login/") == 200
    daphne.stop()
    output = daphne.output()
    assert "/api/web/v1/sessions" in output
    assert VISITOR not in output and "probe-agent-77" not in output
