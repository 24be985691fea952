"""The web chat's database work, for a batch of requests at a time.

The functions run synchronously in the database thread, on the requests
that arrived together (see `gateway.group_commit`), and return one outcome
per request: its result, or the ApiError its client must be told.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import IntegrityError
from django.utils import timezone

from adapters.web import lookups, rate_limits
from adapters.web.lookups import BotEntry
from adapters.web.tokens import ChatToken, token_expiry
from botcore.messages import Inbound, Reply
from gateway.errors import ApiError
from gateway.pipeline.inbound import Accepted, Received, accept_many
from storage.models import Conversation, Message

logger = logging.getLogger("gateway.web")
CHANNEL = "web"
HISTORY_LENGTH = 200


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the checks need: never stored."""

    origin: str | None
    own_origin: str | None
    address: str | None

    def allowed_by(self, allowed_origins: tuple[str, ...]) -> bool:
        if self.origin is None:
            return True
        return (
            "*" in allowed_origins
            or self.origin in allowed_origins
            or self.origin == self.own_origin
        )

    def refusal_by(self, bot: BotEntry) -> ApiError | None:
        """The 403 to answer when this bot does not allow the calling page."""
        if self.allowed_by(bot.allowed_origins):
            return None
        logger.info("bot %s: request from a page it does not allow", bot.id)
        return ApiError(403, "origin_not_allowed", "This page may not use this bot.")


@dataclass(frozen=True)
class SessionRequest:
    web_key: str
    caller: Caller


@dataclass(frozen=True)
class ChatRequest:
    """A request that comes with a chat token."""

    token: ChatToken
    caller: Caller


@dataclass(frozen=True)
class MessageRequest:
    """A visitor's message, and the request that brought it."""

    chat: ChatRequest
    inbound: Inbound
    client_id: str | None


# What each request of a batch gets: its result, or the error to answer.
Outcome = TypeVar("Outcome")
Outcomes = list[Outcome | ApiError]


def start_chats(requests: Sequence[SessionRequest]) -> Outcomes[Conversation]:
    """Open a conversation for each request with the bot of its web key."""
    refusals = rate_limits.check_many(
        [rate_limits.Request("session", request.caller.address) for request in requests]
    )
    outcomes: Outcomes[BotEntry] = [
        refusal or _bot_for_session(request)
        for request, refusal in zip(requests, refusals, strict=True)
    ]
    bots = [bot for bot in outcomes if isinstance(bot, BotEntry)]
    try:
        started = iter(
            lookups.insert_conversations(
                [bot.id for bot in bots], token_expiry(timezone.now())
            )
        )
    except IntegrityError:
        # A bot was deleted since it was looked up. Alone, that request is
        # told; in a batch, the group commit runs each request again alone.
        lookups.forget_all()
        if len(bots) > 1:
            raise
        return [
            _unknown_bot() if isinstance(bot, BotEntry) else bot for bot in outcomes
        ]
    return [
        next(started) if isinstance(bot, BotEntry) else bot for bot in outcomes
    ]


def _bot_for_session(request: SessionRequest) -> BotEntry | ApiError:
    bot = lookups.bot_with_key(request.web_key)
    if bot is None:
        return _unknown_bot()
    return request.caller.refusal_by(bot) or bot


def _unknown_bot() -> ApiError:
    return ApiError(404, "unknown_bot", "No bot has this web key.")


def open_chats(
    requests: Sequence[ChatRequest], action: str
) -> Outcomes[Conversation]:
    """Return each token's conversation once its caller may act on it."""
    refusals = rate_limits.check_many(
        [
            rate_limits.Request(
                action, request.caller.address, str(request.token.conversation_id)
            )
            for request in requests
        ]
    )
    return [
        refusal or _open_chat(request)
        for request, refusal in zip(requests, refusals, strict=True)
    ]


def _open_chat(request: ChatRequest) -> Conversation | ApiError:
    token = request.token
    found = lookups.web_conversation(token.conversation_id)
    if found is None or found.bot.id != token.bot_id:
        logger.info("chat token for a conversation that is gone or not its bot's")
        return _invalid_token()
    refusal = request.caller.refusal_by(found.bot)
    if refusal is not None:
        return refusal
    return Conversation(pk=found.id, bot_id=found.bot.id, channel=CHANNEL)


def _invalid_token() -> ApiError:
    return ApiError(401, "invalid_token", "The chat token is not valid.")


def open_chat(token: ChatToken, caller: Caller, action: str) -> Conversation:
    """Return the token's conversation once the caller may act on it."""
    outcome = open_chats([ChatRequest(token, caller)], action)[0]
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


def authorize_chats(requests: Sequence[ChatRequest]) -> Outcomes[None]:
    """Check that each chat may subscribe to its own channel."""
    return [
        outcome if isinstance(outcome, ApiError) else None
        for outcome in open_chats(requests, "auth")
    ]


def accept_visitor_messages(
    requests: Sequence[MessageRequest],
) -> Outcomes[Accepted]:
    """Store what visitors sent, all in one transaction."""
    opened = open_chats([request.chat for request in requests], "message")
    stored = [
        Received(conversation, request.inbound, client_id=request.client_id)
        for request, conversation in zip(requests, opened, strict=True)
        if isinstance(conversation, Conversation)
    ]
    try:
        accepted = iter(accept_many(stored))
    except IntegrityError:
        # A conversation was erased since it was looked up: alone, that
        # request is told; in a batch, each request runs again alone.
        lookups.forget_all()
        if len(stored) > 1:
            raise
        return [
            _invalid_token() if isinstance(each, Conversation) else each
            for each in opened
        ]
    return [
        next(accepted) if isinstance(each, Conversation) else each for each in opened
    ]


def chat_history(token: ChatToken, caller: Caller) -> list[dict[str, Any]]:
    """Return a chat's latest messages, oldest first, as the API shows them."""
    conversation = open_chat(token, caller, "history")
    messages = list(
        Message.objects.filter(conversation=conversation).order_by("-id")[
            :HISTORY_LENGTH
        ]
    )
    return history_payload(reversed(messages))


def history_payload(messages: Any) -> list[dict[str, Any]]:
    """Render messages as the API shows them; a tap shows the title tapped."""
    titles: dict[str, str] = {}
    shown = []
    for message in messages:
        if message.direction == Message.Direction.OUTBOUND:
            payload = bot_message_payload(message)
            titles.update(_payload_titles(payload))
            shown.append(payload)
        elif message.content.get("kind") in {"text", "postback"}:
            shown.append(visitor_message_payload(message, titles))
    return shown


def bot_message_payload(message: Message) -> dict[str, Any]:
    """Render one message from the bot, as published and listed."""
    reply = Reply.from_dict(message.content).as_dict()
    return {
        "id": message.pk,
        "sender": "bot",
        **reply,
        "created_at": message.created_at.isoformat(),
    }


def visitor_message_payload(
    message: Message, titles: dict[str, str]
) -> dict[str, Any]:
    content = message.content
    text = content.get("text") or ""
    if content.get("kind") == "postback":
        payload = content.get("payload") or ""
        text = titles.get(payload, payload)
    return {
        "id": message.pk,
        "sender": "user",
        "text": text,
        "buttons": [],
        "quick_replies": [],
        "image": None,
        "created_at": message.created_at.isoformat(),
    }


def _payload_titles(payload: dict[str, Any]) -> dict[str, str]:
    choices = [*payload["buttons"], *payload["quick_replies"]]
    return {
        choice["payload"]: choice["title"] for choice in choices if "payload" in choice
    }
