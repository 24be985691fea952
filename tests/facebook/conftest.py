"""Fixtures of the Messenger tests: a bot, its page, the local Graph API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.pages import connect_page
from storage.bots import import_bot
from storage.models import Bot, FacebookPage
from tests.conftest import GatewayProcess

FIXTURES = Path(__file__).parent / "fixtures"
APP_SECRET = "local-app-secret-for-tests"
VERIFY_TOKEN = "local-verify-token"
PAGE_ID = "104383829374651"
PAGE_TOKEN = "EAAGlocalPageAccessTokenForTests0123456789abcdef"
# A key of FIELD_ENCRYPTION_KEYS that sealed none of the tests' tokens.
OTHER_KEY = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
PERSON_A = "7311290341929401"
PERSON_B = "6972831045522190"
# The watermark of the delivery and read fixtures, which tests move to now.
FIXTURE_WATERMARKS = (b"1733300000150", b"1733300000250")
# Every time in the fixtures (ms) starts with these digits; post_fixture
# moves them to the second before now, keeping their order.
FIXTURE_SECONDS = b"1733300000"

BOT_FILE: dict[str, Any] = {
    "slug": "shop",
    "name": "Shop assistant",
    "language": "en",
    "greeting": [{"text": "Hi! Ask me about opening hours.",
                  "quick_replies": [{"title": "Opening hours", "goto": "hours"}]}],
    "fallback": [{"text": "Sorry, I did not get that."}],
    "dialogues": [
        {"id": "hours", "samples": ["when are you open", "opening hours"],
         "replies": [{"text": "Monday to Friday, 9 to 17.",
                      "buttons": [
                          {"title": "Where are you?", "goto": "address"},
                          {"title": "Website", "url": "https://shop.example"},
                      ]}]},
        {"id": "address", "samples": ["where are you"],
         "replies": [{"text": "Main street 1."}]},
    ],
    "web": {"allowed_origins": []},
}
HOURS = "Monday to Friday, 9 to 17."
ADDRESS = "Main street 1."
FALLBACK = "Sorry, I did not get that."


def fixture_bytes(name: str) -> bytes:
    """The raw bytes of a captured-style payload, exactly as Meta sends them."""
    return (FIXTURES / f"{name}.json").read_bytes()


def sign(body: bytes, secret: str = APP_SECRET, algorithm: str = "sha256") -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


def post_fixture(
    base: str,
    name: str,
    *,
    replace: dict[bytes, bytes] | None = None,
    headers: dict[str, str] | None = None,
    sent_at: float | None = None,
) -> requests.Response:
    """Sign a fixture as Meta would and post it to the gateway's webhook.

    `replace` edits the raw bytes first; then the fixture's times move to
    `sent_at` (seconds since 1970, default now). `headers` replaces the
    signature headers (pass {} to send none).
    """
    return post_body(base, shifted_fixture(name, replace, sent_at), headers)


def shifted_fixture(
    name: str,
    replace: dict[bytes, bytes] | None = None,
    sent_at: float | None = None,
) -> bytes:
    """A fixture's bytes, edited, with its times moved to `sent_at`."""
    body = fixture_bytes(name)
    for old, new in (replace or {}).items():
        body = body.replace(old, new)
    moment = time.time() - 1 if sent_at is None else sent_at
    return body.replace(FIXTURE_SECONDS, str(int(moment)).encode())


def post_body(
    base: str, body: bytes, headers: dict[str, str] | None = None
) -> requests.Response:
    """Post raw bytes to the webhook, signed unless `headers` say otherwise."""
    if headers is None:
        headers = {"X-Hub-Signature-256": sign(body)}
    return requests.post(
        f"{base}/webhooks/facebook",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


def sent_text(body: dict[str, Any]) -> str:
    """The text a Send API call carried, whether plain or in a template."""
    message = body.get("message", {})
    if "text" in message:
        return str(message["text"])
    payload = message.get("attachment", {}).get("payload", {})
    return str(payload.get("text", ""))


@pytest.fixture
def local_graph() -> Iterator[LocalGraph]:
    graph = LocalGraph(APP_SECRET).start()
    graph.add_page(PAGE_ID, PAGE_TOKEN)
    yield graph
    graph.stop()


@pytest.fixture
def facebook_settings(settings: Any, local_graph: LocalGraph) -> Any:
    """Settings of this process pointing at the local Graph API."""
    settings.FACEBOOK_APP_SECRET = APP_SECRET
    settings.FACEBOOK_VERIFY_TOKEN = VERIFY_TOKEN
    settings.FACEBOOK_GRAPH_URL = local_graph.base_url
    return settings


@pytest.fixture
def shop_bot(transactional_db: None) -> Bot:
    return import_bot(BOT_FILE)[0]


@pytest.fixture
def connected_page(shop_bot: Bot) -> FacebookPage:
    return connect_page(shop_bot, PAGE_ID, PAGE_TOKEN)[0]


@dataclass
class Gateway:
    base: str
    processes: list[GatewayProcess]

    def output(self) -> str:
        return "\n".join(process.output() for process in self.processes)


def gateway_env(graph: LocalGraph, **overrides: str) -> dict[str, str]:
    return {
        "FACEBOOK_APP_SECRET": APP_SECRET,
        "FACEBOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "FACEBOOK_GRAPH_URL": graph.base_url,
        "DELIVERY_BACKOFF_BASE": "0.3",
        "WORKER_SWEEP_SECONDS": "1",
        **overrides,
    }


@pytest.fixture
def start_gateway(
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    local_graph: LocalGraph,
) -> Callable[..., Gateway]:
    """Start the gateway as in production: Daphne, plus a worker with Redis.

    Without Redis, the web process runs the worker itself (the embedded
    default), on SQLite and the in-memory layer.
    """

    def start(**overrides: str) -> Gateway:
        env = gateway_env(local_graph, **overrides)
        web, base = start_web(env)
        processes = [web]
        if settings.REDIS_URL:
            processes.append(start_worker(env))
        return Gateway(base, processes)

    return start


@pytest.fixture
def gateway(
    start_gateway: Callable[..., Gateway], connected_page: FacebookPage
) -> Gateway:
    return start_gateway()
