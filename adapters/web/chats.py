"""The web chat's work: each function is one request's database work.

They run synchronously, in one hop to a thread, and raise ApiError for
anything the client must be told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from adapters.web import lookups, rate_limits
from adapters.web.lookups import BotEntry
from adapters.web.tokens import ChatToken, token_expiry
from botcore.messages import Inbound, Reply
from gateway.errors import ApiError
from gateway.pipeline.inbound import Accepted, accept_inbound
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

    def require_allowed_by(self, bot: BotEntry) -> None:
        if not self.allowed_by(bot.allowed_origins):
            logger.info("bot %s: request from a page it does not allow", bot.id)
            raise ApiError(403, "origin_not_allowed", "This page may not use this bot.")


def start_chat(web_key: str, caller: Caller) -> Conversation:
    """Open a new conversation with the bot that has this web key."""
    rate_limits.check("session", address=caller.address)
    bot = lookups.bot_with_key(web_key)
    if bot is None:
        raise ApiError(404, "unknown_bot", "No bot has this web key.")
    caller.require_allowed_by(bot)
    try:
        conversation = lookups.insert_conversation(
            bot.id, token_expiry(timezone.now())
        )
    except IntegrityError:
        # The bot was deleted since it was looked up.
        lookups.forget_all()
        raise ApiError(404, "unknown_bot", "No bot has this web key.") from None
    logger.debug("bot %s: web conversation %s started", bot.id, conversation.pk)
    return conversation


def open_chat(token: ChatToken, caller: Caller, action: str) -> Conversation:
    """Return the token's conversation once the caller may act on it."""
    rate_limits.check(
        action, address=caller.address, chat=str(token.conversation_id)
    )
    found = lookups.web_conversation(token.conversation_id)
    if found is None or found.bot.id != token.bot_id:
        logger.info("chat token for a conversation that is gone or not its bot's")
        raise ApiError(401, "invalid_token", "The chat token is not valid.")
    caller.require_allowed_by(found.bot)
    return Conversation(pk=found.id, bot_id=found.bot.id, channel=CHANNEL)


def authorize_chat(token: ChatToken, caller: Caller) -> None:
    """Check that a chat may subscribe to its own channel."""
    open_chat(token, caller, "auth")


def accept_visitor_message(
    token: ChatToken, caller: Caller, inbound: Inbound, client_id: str | None
) -> Accepted:
    conversation = open_chat(token, caller, "message")
    try:
        return accept_inbound(conversation, inbound, client_id=client_id)
    except IntegrityError:
        # The conversation was erased since it was looked up.
        lookups.forget_all()
        raise ApiError(401, "invalid_token", "The chat token is not valid.") from None


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
