"""The Messenger webhook, served ahead of Django's stack (see DESIGN.md)."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from django.conf import settings

from adapters.facebook.ingest import store_delivery
from adapters.facebook.webhook import (
    MAX_BODY_BYTES,
    SignatureError,
    parse_payload,
    verify_signature,
)
from gateway.consumers import PlainHttpConsumer
from gateway.errors import ApiError
from gateway.pipeline.worker import where_raised

logger = logging.getLogger("gateway.facebook")
MAX_CHALLENGE_LENGTH = 256
ACCEPTED = json.dumps({"status": "ok"}).encode()


class FacebookWebhookConsumer(PlainHttpConsumer):
    """The subscription handshake (GET) and signed event deliveries (POST)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0

    async def http_request(self, message: dict[str, Any]) -> None:
        """Collect the body, refusing a huge one before reading it all."""
        if not self.body and declared_length(self.scope) > MAX_BODY_BYTES:
            await self.refuse(ApiError(413, "too_large", "body too large"))
        chunk = message.get("body", b"")
        self.received += len(chunk)
        if self.received > MAX_BODY_BYTES:
            await self.refuse(ApiError(413, "too_large", "body too large"))
        self.body.append(chunk)
        if not message.get("more_body"):
            await self.handle(b"".join(self.body))
            raise StopConsumer()

    async def refuse(self, error: ApiError) -> None:
        await self.send_error(error)
        raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        try:
            status, content_type, answer = await self.answer(body)
        except ApiError as error:
            await self.send_error(error)
            return
        except Exception as error:  # noqa: BLE001 - answered, and logged
            # Meta delivers again what was not answered 200. Not
            # logger.exception: a traceback may quote what a person wrote.
            logger.error("webhook delivery not stored: %s", where_raised(error))
            await self.send_error(ApiError(
                500, "internal_error", "the delivery was not stored; try again"
            ))
            return
        await self.send_answer(status, answer, [(b"Content-Type", content_type)])

    async def send_answer(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        # With a length the server need not chunk the answer.
        length = (b"Content-Length", str(len(body)).encode())
        await self.send_response(status, body, headers=[*headers, length])

    async def answer(self, body: bytes) -> tuple[int, bytes, bytes]:
        method = self.scope["method"]
        if method == "GET":
            return 200, b"text/plain", subscription_challenge(self.scope)
        if method != "POST":
            raise ApiError(405, "method_not_allowed", "use GET or POST")
        await accept_delivery(body, request_headers(self.scope))
        return 200, b"application/json", ACCEPTED

    async def send_error(self, error: ApiError) -> None:
        await self.send_answer(error.status, error.body(), error.headers())


def subscription_challenge(scope: dict[str, Any]) -> bytes:
    """Answer Meta's subscription handshake with its challenge."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    mode = query.get("hub.mode", [""])[0]
    token = query.get("hub.verify_token", [""])[0]
    challenge = query.get("hub.challenge", [""])[0]
    expected = settings.FACEBOOK_VERIFY_TOKEN
    if not expected or mode != "subscribe" or not hmac.compare_digest(
        token.encode(), expected.encode()
    ):
        logger.warning("webhook subscription handshake refused")
        raise ApiError(403, "forbidden", "verify token does not match")
    if not challenge or len(challenge) > MAX_CHALLENGE_LENGTH:
        # The contract knows only the challenge or a refusal.
        logger.warning("webhook subscription handshake without a usable "
                       "challenge refused")
        raise ApiError(403, "forbidden", "hub.challenge missing or too long")
    logger.info("webhook subscription handshake accepted")
    return challenge.encode()


async def accept_delivery(body: bytes, headers: dict[str, str]) -> None:
    """Check, read and store one delivery; raise ApiError to refuse it."""
    secret = settings.FACEBOOK_APP_SECRET
    if not secret:
        raise ApiError(503, "not_configured", "FACEBOOK_APP_SECRET is not set")
    try:
        verify_signature(body, headers, secret)
    except SignatureError as error:
        logger.warning("webhook delivery refused: %s", error)
        raise ApiError(401, "bad_signature", str(error)) from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        logger.warning("webhook delivery malformed: not JSON")
        raise ApiError(400, "bad_request", "malformed delivery: not JSON") from None
    payload = parse_payload(data)
    if payload.object != "page":
        logger.info("webhook delivery for object %.40r ignored", payload.object)
        return
    if payload.events:
        await store_delivery(payload.events)


def request_headers(scope: dict[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


def declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
