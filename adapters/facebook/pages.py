"""Connect Facebook pages to bots and keep their access tokens sealed."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from adapters.facebook.graph import GraphClient, GraphError
from gateway.secrets_at_rest import (
    SecretDecryptionError,
    decrypt,
    encrypt,
    needs_reencryption,
    secret_hint,
)
from storage.models import Bot, FacebookPage

logger = logging.getLogger("gateway.facebook")
UNREADABLE_TOKEN = (
    "no key of FIELD_ENCRYPTION_KEYS decrypts the page's access token; "  # noqa: S105
    "reconnect the page"
)
# How long a page waits after a rate limit when Meta names no time, and
# the longest hold that repeated limits escalate to.
DEFAULT_THROTTLE_SECONDS = 5.0
MAX_THROTTLE_SECONDS = 900.0
# Events the page sends to the webhook once connected.
SUBSCRIBED_FIELDS = (
    "messages", "messaging_postbacks", "message_deliveries", "message_reads",
    "message_echoes", "message_reactions",
)


class PageMovedError(Exception):
    """The page is connected to another bot."""


class PageTokenError(Exception):
    """The Graph API does not accept the token for the page."""


def token_context(page_id: str) -> str:
    """Return the associated data that binds a sealed token to its page."""
    return f"facebook-page:{page_id}"


def sealed_token_fields(page_id: str, access_token: str) -> dict[str, Any]:
    """Return the fields that store a new token for a page, sealed.

    They also clear the marks a bad token or a rate limit left.
    """
    return {
        "access_token_encrypted": encrypt(
            access_token, associated_data=token_context(page_id)
        ),
        "token_hint": secret_hint(access_token),
        "token_invalid_since": None,
        "token_error": "",
        "throttled_until": None,
        "throttle_seconds": 0.0,
    }


def connect_page(
    bot: Bot, page_id: str, access_token: str, *, move: bool = False
) -> tuple[FacebookPage, bool]:
    """Store a page's token (sealed) for a bot; return the page and `created`.

    Raise PageMovedError if another bot has the page, unless `move` is set.
    """
    fields = {"bot": bot, **sealed_token_fields(page_id, access_token)}
    with transaction.atomic():
        page = FacebookPage.objects.select_for_update().filter(page_id=page_id).first()
        if page is None:
            return FacebookPage.objects.create(page_id=page_id, **fields), True
        if page.bot_id != bot.pk and not move:
            raise PageMovedError(f"page {page_id} is connected to another bot")
        for name, value in fields.items():
            setattr(page, name, value)
        page.save()
    logger.info("page %s connected to bot %s", page_id, bot.pk)
    return page, False


def check_page_token(access_token: str, page_id: str) -> None:
    """Check with Graph that the token is the page's, and subscribe the page.

    Raise PageTokenError with the reason when Graph does not agree.
    """
    if not settings.FACEBOOK_APP_SECRET:
        raise PageTokenError("FACEBOOK_APP_SECRET is not set")
    graph = GraphClient(settings.FACEBOOK_GRAPH_URL, settings.FACEBOOK_APP_SECRET)
    try:
        owner = graph.page_of_token(access_token).get("id")
        if owner != page_id:
            raise PageTokenError("the access token belongs to another page")
        graph.subscribe_page(access_token, page_id, SUBSCRIBED_FIELDS)
    except GraphError as error:
        reason = f"the Graph API refused the token: {error.reason}"
        raise PageTokenError(reason) from None


@lru_cache(maxsize=1024)
def page_access_token(page_id: str, sealed: str) -> str:
    """Return the page's token; cached by its sealed form, which changes."""
    return decrypt(sealed, associated_data=token_context(page_id))


def open_page_token(page_pk: int, page_id: str, sealed: str) -> str:
    """Return the page's token, marking the page if no key decrypts it.

    Raise SecretDecryptionError then.
    """
    try:
        return page_access_token(page_id, sealed)
    except SecretDecryptionError:
        FacebookPage.objects.filter(pk=page_pk).update(
            token_invalid_since=timezone.now(), token_error=UNREADABLE_TOKEN
        )
        logger.error("page %s: %s", page_pk, UNREADABLE_TOKEN)
        raise


def mark_token_invalid(page_pk: int, reason: str) -> None:
    """Mark the page's token refused by Graph; the owner must reconnect."""
    FacebookPage.objects.filter(pk=page_pk, token_invalid_since__isnull=True).update(
        token_invalid_since=timezone.now(), token_error=reason[:200]
    )
    logger.warning("page %s: access token refused (%s); reconnect the page",
                   page_pk, reason)


def throttle_page(page_pk: int, regain_seconds: float | None) -> float:
    """Hold every send to a page after a rate limit; return for how long.

    Meta's time to regain access is honoured when it gives one. Without
    it, a limit that comes soon after the last hold ended holds twice as
    long as that one did, up to MAX_THROTTLE_SECONDS.
    """
    now = timezone.now()
    with transaction.atomic():
        last = (
            FacebookPage.objects.select_for_update()
            .filter(pk=page_pk)
            .values_list("throttled_until", "throttle_seconds")
            .first()
        )
        seconds = regain_seconds or next_hold(last, now)
        until = now + timedelta(seconds=seconds)
        FacebookPage.objects.filter(pk=page_pk).filter(
            Q(throttled_until__isnull=True) | Q(throttled_until__lt=until)
        ).update(throttled_until=until, throttle_seconds=seconds)
    logger.warning("page %s rate limited; holding sends for %.0f s", page_pk, seconds)
    return seconds


def next_hold(last: tuple[datetime | None, float] | None, now: datetime) -> float:
    """Return the hold after a limit that named no time to wait."""
    until, seconds = last or (None, 0.0)
    if until is None or not seconds:
        return DEFAULT_THROTTLE_SECONDS
    if until > now:
        # Another worker met the same limit: the hold is already on.
        return max(seconds, DEFAULT_THROTTLE_SECONDS)
    if now - until <= timedelta(seconds=seconds):
        return min(seconds * 2, MAX_THROTTLE_SECONDS)
    return DEFAULT_THROTTLE_SECONDS


def hold_page_for_usage(page_pk: int, seconds: float) -> None:
    """Hold a page whose usage headers say its budget is nearly spent."""
    until = timezone.now() + timedelta(seconds=seconds)
    held = FacebookPage.objects.filter(pk=page_pk).filter(
        Q(throttled_until__isnull=True) | Q(throttled_until__lt=until)
    ).update(throttled_until=until)
    if held:
        logger.warning("page %s near its Graph API limit; holding sends for %.0f s",
                       page_pk, seconds)


def reseal_page_tokens() -> dict[str, int]:
    """Seal every page's token again with the first configured key.

    Return how many were resealed, already sealed with that key, and
    unreadable (no configured key decrypts them); and of the readable
    ones, how many had been marked unreadable, a mark this clears.
    """
    counts = {"resealed": 0, "current": 0, "unreadable": 0, "restored": 0}
    rows = FacebookPage.objects.values_list(
        "pk", "page_id", "access_token_encrypted", "token_error"
    )
    for pk, page_id, sealed, error in rows.iterator():
        outcome = reseal_page_token(pk, page_id, sealed)
        counts[outcome] += 1
        if outcome != "unreadable" and error == UNREADABLE_TOKEN:
            counts["restored"] += FacebookPage.objects.filter(
                pk=pk, token_error=UNREADABLE_TOKEN
            ).update(token_invalid_since=None, token_error="")
    return counts


def reseal_page_token(pk: int, page_id: str, sealed: str) -> str:
    """Reseal a page's token; return "resealed", "current" or "unreadable"."""
    context = token_context(page_id)
    try:
        token = decrypt(sealed, associated_data=context)
    except SecretDecryptionError:
        return "unreadable"
    if not needs_reencryption(sealed):
        return "current"
    resealed = encrypt(token, associated_data=context)
    # Compare and set: a page reconnected meanwhile keeps its new token,
    # which the first key sealed.
    changed = FacebookPage.objects.filter(
        pk=pk, access_token_encrypted=sealed
    ).update(access_token_encrypted=resealed)
    return "resealed" if changed else "current"
