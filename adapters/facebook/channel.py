"""Deliver replies to Messenger through the Send API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from adapters.facebook.graph import Failure, GraphAnswer, GraphClient, GraphError
from adapters.facebook.messenger_format import messenger_messages
from adapters.facebook.pages import (
    UNREADABLE_TOKEN,
    hold_page_for_usage,
    mark_token_invalid,
    open_page_token,
    throttle_page,
)
from adapters.facebook.profiles import ProfileRefresher, profile_max_age
from adapters.facebook.typing import TypingIndicator
from adapters.facebook.webhook import OWN_SEND_METADATA
from botcore.messages import Reply
from gateway.pipeline.adapters import (
    ChannelAdapter,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from gateway.secrets_at_rest import SecretDecryptionError
from storage.models import Contact, Conversation, Message

logger = logging.getLogger("gateway.facebook")
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
# How long a target read for a round of deliveries may be used.
TARGET_FRESH_FOR = 2.0
TARGET_FIELDS = {
    "last_inbound_at": "last_inbound_at",
    "human_agent_tag": "bot__human_agent_tag",
    "contact_pk": "contact__pk",
    "psid": "contact__external_id",
    "page_pk": "contact__page__pk",
    "page_id": "contact__page__page_id",
    "sealed_token": "contact__page__access_token_encrypted",
    "token_invalid_since": "contact__page__token_invalid_since",
    "throttled_until": "contact__page__throttled_until",
}


@dataclass(frozen=True)
class Target:
    """Who a conversation's messages go to, and through which page."""

    last_inbound_at: datetime | None
    human_agent_tag: bool
    contact_pk: int
    psid: str
    page_pk: int
    page_id: str
    sealed_token: str
    token_invalid_since: datetime | None
    throttled_until: datetime | None


def access_token(target: Target) -> str:
    """Return the page's token; a token no key decrypts fails for good."""
    try:
        return open_page_token(target.page_pk, target.page_id, target.sealed_token)
    except SecretDecryptionError:
        raise PermanentDeliveryError(UNREADABLE_TOKEN) from None


def load_target(conversation_id: Any) -> Target:
    """Read, in one query, all a send to this conversation needs."""
    target = load_targets([conversation_id]).get(conversation_id)
    if target is None:
        raise PermanentDeliveryError("the conversation has no Messenger contact")
    return target


def load_targets(conversation_ids: Iterable[Any]) -> dict[Any, Target]:
    """Read the targets of conversations with a Messenger contact."""
    rows = Conversation.objects.filter(pk__in=list(conversation_ids)).values_list(
        "pk", *TARGET_FIELDS.values()
    )
    targets = {}
    for conversation_id, *fields in rows:
        target = Target(*fields)
        if target.psid is not None and target.page_pk is not None:
            targets[conversation_id] = target
    return targets


class PreparedTargets:
    """Targets read for a round of deliveries, each taken once and soon.

    A round's messages are sent at once, right after the worker read
    their targets; a target older than that is read anew.
    """

    def __init__(self) -> None:
        self.targets: dict[Any, tuple[float, Target]] = {}
        self.lock = threading.Lock()

    def put(self, targets: dict[Any, Target]) -> None:
        now = time.monotonic()
        with self.lock:
            for conversation_id, (read_at, _) in list(self.targets.items()):
                if now - read_at > TARGET_FRESH_FOR:
                    del self.targets[conversation_id]
            for conversation_id, target in targets.items():
                self.targets[conversation_id] = (now, target)

    def take(self, conversation_id: Any) -> Target | None:
        with self.lock:
            read_at, target = self.targets.pop(conversation_id, (0.0, None))
        if time.monotonic() - read_at > TARGET_FRESH_FOR:
            return None
        return target


def check_page(target: Target, now: datetime) -> None:
    """Refuse to call Graph for a page whose token failed or that is held."""
    if target.token_invalid_since is not None:
        raise PermanentDeliveryError(
            "the page's access token is invalid; reconnect the page"
        )
    if target.throttled_until is not None and target.throttled_until > now:
        wait = (target.throttled_until - now).total_seconds()
        raise TemporaryDeliveryError(
            "page rate limited", retry_after=wait, throttled=True
        )


def messaging_type(target: Target, author: str, now: datetime) -> dict[str, str]:
    """Choose how a message may go out, from when the person last wrote."""
    since = now - target.last_inbound_at if target.last_inbound_at else None
    if since is not None and since <= STANDARD_WINDOW:
        return {"messaging_type": "RESPONSE"}
    if author != "human":
        raise PermanentDeliveryError(
            "outside Messenger's 24-hour window: only a human may answer"
        )
    if not target.human_agent_tag:
        raise PermanentDeliveryError(
            "outside Messenger's 24-hour window and the bot's HUMAN_AGENT "
            "tag is off"
        )
    if since is None or since > HUMAN_AGENT_WINDOW:
        raise PermanentDeliveryError("outside the 7 days of the HUMAN_AGENT tag")
    return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}


class FacebookAdapter(ChannelAdapter):
    channel = "facebook"

    def __init__(self, graph: GraphClient | None = None) -> None:
        self.graph = graph or GraphClient(
            settings.FACEBOOK_GRAPH_URL, settings.FACEBOOK_APP_SECRET
        )
        self.profiles = ProfileRefresher(self.graph)
        self.typing = TypingIndicator(self.show_typing, idle=self.typing_is_idle)
        self.prepared = PreparedTargets()

    def prepare(self, messages: Sequence[Message]) -> None:
        """Read the targets of a round's messages in one query."""
        self.prepared.put(load_targets({m.conversation_id for m in messages}))

    def deliver(self, message: Message) -> str | None:
        self.typing.cancel(message.conversation_id)
        target = self.prepared.take(message.conversation_id) or load_target(
            message.conversation_id
        )
        now = timezone.now()
        check_page(target, now)
        kind = messaging_type(target, message.author, now)
        token = access_token(target)
        parts = messenger_messages(Reply.from_dict(message.content))
        platform_id = None
        for number in range(message.parts_delivered, len(parts)):
            body = {
                "recipient": {"id": target.psid},
                **kind,
                "message": {**parts[number], "metadata": OWN_SEND_METADATA},
            }
            platform_id = self.send(target, token, body)
            if len(parts) > 1:
                # A retry after a failure goes on from the next part.
                Message.objects.filter(pk=message.pk).update(
                    parts_delivered=number + 1
                )
        return platform_id

    def send(self, target: Target, token: str, body: dict[str, Any]) -> str | None:
        try:
            answer = self.graph.send(token, body)
        except GraphError as error:
            raise self.delivery_error(target, error) from None
        observe_usage(target.page_pk, answer)
        message_id = answer.data.get("message_id")
        return message_id if isinstance(message_id, str) else None

    def delivery_error(
        self, target: Target, error: GraphError
    ) -> TemporaryDeliveryError | PermanentDeliveryError:
        if error.failure is Failure.TOKEN_INVALID:
            mark_token_invalid(target.page_pk, error.reason)
            return PermanentDeliveryError(error.reason)
        if error.failure is Failure.THROTTLED:
            hold = throttle_page(target.page_pk, error.retry_after)
            return TemporaryDeliveryError(error.reason, hold, throttled=True)
        if error.failure is Failure.RETRY:
            return TemporaryDeliveryError(error.reason)
        return PermanentDeliveryError(error.reason)

    def after_work(self, conversations: Sequence[Conversation]) -> None:
        """Refresh the profiles that are missing or old, in one query."""
        contacts = [c.contact_id for c in conversations if c.contact_id is not None]
        if not contacts:
            return
        fetched_before = timezone.now() - profile_max_age()
        stale = Contact.objects.filter(
            Q(profile_fetched_at__isnull=True)
            | Q(profile_fetched_at__lt=fetched_before),
            pk__in=contacts,
            page__isnull=False,
        ).values_list("pk", flat=True)
        for contact_pk in stale:
            self.profiles.refresh_soon(contact_pk)

    def bot_is_working(self, conversation: Conversation) -> None:
        self.typing.start(conversation.pk)

    def show_typing(self, conversation_id: Any) -> None:
        """Send typing_on, unless the conversation cannot be written to."""
        self.send_typing(conversation_id)

    def typing_is_idle(self) -> None:
        """No indicator is due: the typing thread lets its connection go.

        Indicators are for slow bots only, so the thread need not hold a
        connection between them; while they come one after another (a
        worker under load) it keeps the one it has.
        """
        connection.close()

    def send_typing(self, conversation_id: Any) -> None:
        try:
            target = load_target(conversation_id)
            now = timezone.now()
            check_page(target, now)
            messaging_type(target, "bot", now)
            token = access_token(target)
        except (PermanentDeliveryError, TemporaryDeliveryError):
            return
        body = {"recipient": {"id": target.psid}, "sender_action": "typing_on"}
        try:
            observe_usage(target.page_pk, self.graph.send(token, body))
        except GraphError as error:
            # The reply itself will meet the same error and deal with it.
            logger.info("typing indicator not shown: %s", error.reason)


def observe_usage(page_pk: int, answer: GraphAnswer) -> None:
    """Hold the page when a successful answer says its budget is spent."""
    if answer.hold_seconds:
        hold_page_for_usage(page_pk, answer.hold_seconds)
