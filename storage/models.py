"""Bots, who may see them, and the conversations they hold."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

# Messenger lets a human answer for 7 days (the HUMAN_AGENT tag); holding
# the bot back for longer than that has no use.
MAX_HUMAN_HOLD_SECONDS = 7 * 24 * 3600


def new_web_key() -> str:
    return secrets.token_urlsafe(18)


class Bot(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    language = models.CharField(max_length=10, default="en")
    web_key = models.CharField(max_length=40, unique=True, default=new_web_key)
    allowed_origins = models.JSONField(default=list, blank=True)
    greeting = models.JSONField(default=list)
    fallback = models.JSONField(default=list)
    dialogues = models.JSONField(default=list)
    human_agent_tag = models.BooleanField(
        default=False,
        help_text="Let human replies outside Messenger's 24-hour window go out "
        "with the HUMAN_AGENT tag.",
    )
    human_hold_seconds = models.PositiveIntegerField(
        default=1800,
        validators=[MaxValueValidator(MAX_HUMAN_HOLD_SECONDS)],
        help_text="How long the bot stays quiet in a conversation after a "
        "human answered in it, in seconds (at most 7 days).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def bot_file(self) -> dict[str, Any]:
        """Return this bot as a bot file (the import format)."""
        return {
            "slug": self.slug,
            "name": self.name,
            "language": self.language,
            "greeting": self.greeting,
            "fallback": self.fallback,
            "dialogues": self.dialogues,
            "web": {"allowed_origins": self.allowed_origins},
        }


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        COLLABORATOR = "collaborator", "Collaborator"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="bot_memberships",
    )
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.OWNER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "bot"], name="one_membership")
        ]

    def __str__(self) -> str:
        return f"{self.role} of {self.bot}"


class FacebookPage(models.Model):
    """A Facebook page connected to a bot; its access token is encrypted."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="pages")
    page_id = models.CharField(max_length=64, unique=True)
    access_token_encrypted = models.TextField()
    token_hint = models.CharField(max_length=8, blank=True)
    token_invalid_since = models.DateTimeField(null=True, blank=True)
    token_error = models.CharField(max_length=200, blank=True)
    throttled_until = models.DateTimeField(null=True, blank=True)
    throttle_seconds = models.FloatField(
        default=0,
        help_text="How long the last rate limit held the page; a limit soon "
        "after it ends holds twice as long.",
    )
    connected_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"page {self.page_id}"


class Contact(models.Model):
    """A person on a channel that needs one: only what the channel requires."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="contacts")
    page = models.ForeignKey(
        FacebookPage, null=True, blank=True, on_delete=models.CASCADE
    )
    channel = models.CharField(max_length=20)
    external_id = models.CharField(max_length=64)
    full_name = models.CharField(max_length=200, blank=True)
    avatar_url = models.URLField(max_length=1000, blank=True)
    profile_fetched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "page", "external_id"], name="one_contact"
            )
        ]

    def __str__(self) -> str:
        return self.full_name or f"contact {self.pk}"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(max_length=20)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    bot_paused_until = models.DateTimeField(null=True, blank=True)
    # A worker claims a conversation for a while, so that one conversation is
    # handled by one worker at a time, in order, across transactions.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    # When the chat token handed out with a web conversation expires. The
    # token, and so the chat's Pusher channel, is sealed with it: replies
    # find the channel from it even after CHAT_TOKEN_TTL changed.
    chat_token_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "channel", "contact"],
                condition=Q(contact__isnull=False),
                name="one_conversation_per_contact",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} conversation {self.pk}"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", "From the person"
        OUTBOUND = "out", "From the bot"

    class State(models.TextChoices):
        PENDING = "pending", "Awaiting the bot"
        HANDLED = "handled", "Answered"
        HELD = "held", "Not answered: a human is handling the conversation"
        IGNORED = "ignored", "Not for the bot"
        QUEUED = "queued", "Awaiting delivery"
        SENDING = "sending", "Being delivered"
        SENT = "sent", "Delivered to the platform"
        FAILED = "failed", "Could not be delivered"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    channel = models.CharField(max_length=20)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    author = models.CharField(
        max_length=10, default="user", help_text="user, bot or human (page staff)"
    )
    content = models.JSONField()
    # NULL, not "", where there is no id: the unique constraints skip NULLs.
    platform_message_id = models.CharField(  # noqa: DJ001
        max_length=200, null=True, blank=True
    )
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    state = models.CharField(max_length=10, choices=State.choices)
    attempts = models.PositiveIntegerField(default=0)
    parts_delivered = models.PositiveSmallIntegerField(
        default=0,
        help_text="Of a reply the platform takes in several messages, how "
        "many went out already.",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "platform_message_id"],
                condition=Q(platform_message_id__isnull=False),
                name="one_message_per_platform_id",
            ),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="one_message_per_client_id",
            ),
        ]
        indexes = [
            models.Index(
                fields=["conversation", "id"],
                condition=Q(state__in=["pending", "queued", "sending"]),
                name="message_awaiting_work",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} message {self.pk}"
