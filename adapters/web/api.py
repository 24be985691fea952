"""The bubble's HTTP API, as Channels consumers ahead of Django's stack.

Requests reach the database and the cache through one hop to a thread,
shared with the requests that arrive at the same time (see
`adapters.web.chats`); token checks, CORS and JSON stay on the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from channels.exceptions import StopConsumer

from adapters.web import chats, inputs
from adapters.web.addresses import client_address
from adapters.web.channel import client_options
from adapters.web.cors import (
    Headers,
    cors_headers,
    header,
    origin_index,
    own_origin,
    preflight_headers,
    request_origin,
)
from adapters.web.database import in_database_thread
from adapters.web.pusher.signing import channel_auth
from adapters.web.tokens import (
    ChatToken,
    InvalidChatToken,
    chat_channel,
    issue_chat_token,
    read_chat_token,
)
from gateway.consumers import PlainHttpConsumer
from gateway.errors import ApiError
from gateway.group_commit import GroupCommit
from gateway.pipeline.doorbell import shared_ring
from gateway.pipeline.inbound import Accepted
from gateway.pipeline.worker import where_raised
from storage.models import Conversation

logger = logging.getLogger("gateway.web")
Answer = tuple[int, dict[str, Any]]
JSON_HEADERS: Headers = [
    (b"Content-Type", b"application/json"),
    (b"Cache-Control", b"no-store"),
]


class WebApiConsumer(PlainHttpConsumer):
    """Size limit, CORS, bearer tokens and JSON errors for every endpoint."""

    endpoint = ""
    methods: frozenset[str] = frozenset({"POST"})
    max_body = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0
        self.origin: str | None = None
        self.caller = chats.Caller(None, None, None)

    async def http_request(self, message: dict[str, Any]) -> None:
        if not self.received:
            # Before the size check: a refusal reads the caller's origin too.
            self.identify_caller()
        self.received += len(message.get("body", b""))
        if self.received > self.max_body or self.declared_length() > self.max_body:
            await self.send_error(
                ApiError(413, "too_large", "The request body is too large.")
            )
            raise StopConsumer()
        await super().http_request(message)

    def identify_caller(self) -> None:
        self.origin = request_origin(self.scope)
        self.caller = chats.Caller(
            self.origin, own_origin(self.scope), client_address(self.scope)
        )

    def declared_length(self) -> int:
        length = header(self.scope, b"content-length") or "0"
        return int(length) if length.isdigit() else 0

    async def handle(self, body: bytes) -> None:
        method = self.scope["method"]
        if method == "OPTIONS":
            await self.preflight()
            return
        try:
            status, payload = await self.answer(method, body)
        except ApiError as error:
            await self.send_error(error)
            return
        await self.send_json(status, payload, cors_headers(self.origin))

    async def answer(self, method: str, body: bytes) -> Answer:
        """Respond; an unexpected failure becomes a 500 in the API's shape."""
        if method not in self.methods:
            raise ApiError(405, "method_not_allowed", "Method not allowed.")
        try:
            return await self.respond(method, body)
        except ApiError:
            raise
        except Exception as error:  # noqa: BLE001 - answered, and logged
            # Not logger.exception: a traceback may quote personal data.
            logger.error(
                "%s %s failed: %s", method, self.endpoint, where_raised(error)
            )
            raise ApiError(
                500, "internal_error", "Something went wrong; try again later."
            ) from None

    async def respond(self, method: str, body: bytes) -> Answer:
        raise NotImplementedError

    async def preflight(self) -> None:
        if self.origin is not None and await self.any_bot_allows_origin():
            await self.send_response(204, b"", headers=preflight_headers(self.origin))
        else:
            await self.send_response(204, b"", headers=[])

    async def any_bot_allows_origin(self) -> bool:
        """Whether some bot lets the calling page use the API at all."""
        if self.origin is None or self.origin == self.caller.own_origin:
            return True
        if origin_index.stale():
            try:
                await in_database_thread(origin_index.reload)()
            except Exception as error:  # noqa: BLE001 - the last index serves
                logger.warning(
                    "origin index not reloaded: %s", where_raised(error)
                )
        return origin_index.allows(self.origin)

    async def send_error(self, error: ApiError) -> None:
        # The page may read why it failed (a 401 means "start again"),
        # unless it is a page that may not use the API at all.
        allowed = (
            error.code != "origin_not_allowed" and await self.any_bot_allows_origin()
        )
        headers = [*error.headers(), (b"Cache-Control", b"no-store")]
        if allowed:
            headers += cors_headers(self.origin)
        await self.send_response(error.status, error.body(), headers=headers)

    async def send_json(
        self, status: int, payload: dict[str, Any], headers: Headers
    ) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        await self.send_response(status, body, headers=JSON_HEADERS + headers)

    def bearer_token(self) -> tuple[str, ChatToken]:
        """Return the chat token as sent and as opened, or raise a 401."""
        authorization = header(self.scope, b"authorization") or ""
        scheme, _, text = authorization.partition(" ")
        text = text.strip()
        if scheme.lower() != "bearer" or not text:
            raise ApiError(401, "missing_token", "A chat token is required.")
        try:
            return text, read_chat_token(text)
        except InvalidChatToken as reason:
            logger.info("chat token refused: %s", reason)
            raise ApiError(
                401, "invalid_token", "The chat token is not valid."
            ) from None


async def ring_for_new_messages(outcomes: Sequence[object]) -> None:
    """Wake a worker once for a batch that stored something new."""
    if any(isinstance(each, Accepted) and each.created for each in outcomes):
        await shared_ring.ring()


# Concurrent requests share one hop to the database thread, one round trip
# to the cache for their rate limits and one transaction (see
# gateway.group_commit). A session batch is one INSERT: it stays well
# under SQLite's limit of query parameters.
session_batches: GroupCommit[chats.SessionRequest, Conversation] = GroupCommit(
    chats.start_chats, max_batch=50, hop=in_database_thread
)
auth_batches: GroupCommit[chats.ChatRequest, None] = GroupCommit(
    chats.authorize_chats, hop=in_database_thread
)
message_batches: GroupCommit[chats.MessageRequest, Accepted] = GroupCommit(
    chats.accept_visitor_messages,
    max_batch=100,
    hop=in_database_thread,
    after_batch=ring_for_new_messages,
)


class SessionsConsumer(WebApiConsumer):
    """POST sessions: start a conversation and hand out its token."""

    endpoint = "sessions"
    max_body = 1024

    async def respond(self, method: str, body: bytes) -> Answer:
        web_key = inputs.session_request(body)
        conversation = await session_batches.submit(
            chats.SessionRequest(web_key, self.caller)
        )
        expires_at = conversation.chat_token_expires_at
        assert expires_at is not None
        token = issue_chat_token(conversation.pk, conversation.bot_id, expires_at)
        return 201, {
            "token": token,
            "channel": chat_channel(token),
            "expires_at": expires_at.isoformat(),
            "pusher": client_options(self.scope),
        }


class PusherAuthConsumer(WebApiConsumer):
    """POST pusher/auth: sign a subscription to the token's own channel."""

    endpoint = "pusher/auth"
    max_body = 1024

    async def respond(self, method: str, body: bytes) -> Answer:
        text, token = self.bearer_token()
        request = inputs.channel_auth_request(body)
        await auth_batches.submit(chats.ChatRequest(token, self.caller))
        # The channel of the token as presented: while keys rotate, a chat
        # may hold a token sealed by an older key.
        if request.channel_name != chat_channel(text):
            logger.info("chat %s asked for another channel", token.conversation_id)
            raise ApiError(403, "forbidden_channel", "Not this chat's channel.")
        return 200, {"auth": channel_auth(request.socket_id, request.channel_name)}


class MessagesConsumer(WebApiConsumer):
    """POST messages: accept what the visitor sent; GET: the history."""

    endpoint = "messages"
    methods = frozenset({"GET", "POST"})

    async def respond(self, method: str, body: bytes) -> Answer:
        _, token = self.bearer_token()
        if method == "GET":
            messages = await in_database_thread(chats.chat_history)(
                token, self.caller
            )
            return 200, {"messages": messages}
        sent = inputs.visitor_message(body)
        accepted = await message_batches.submit(
            chats.MessageRequest(
                chats.ChatRequest(token, self.caller), sent.inbound, sent.client_id
            )
        )
        return 202, {"id": accepted.message.pk}


class NotFoundConsumer(WebApiConsumer):
    """Any other path under the API: a 404 in the API's own shape."""

    endpoint = "unknown"
    methods = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
    max_body = 1024

    async def respond(self, method: str, body: bytes) -> Answer:
        raise ApiError(404, "not_found", "No such endpoint.")
