"""Connect Facebook pages to bots and keep their access tokens sealed."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache

from django.db import transaction
from django.utils import timezone

from gateway.secrets_at_rest import decrypt, encrypt, secret_hint
from storage.models import Bot, FacebookPage

logger = logging.getLogger("gateway.facebook")


class PageMovedError(Exception):
    """The page is connected to another bot."""


def token_context(page_id: str) -> str:
    """Return the associated data that binds a sealed token to its page."""
    return f"facebook-page:{page_id}"


def connect_page(
    bot: Bot, page_id: str, access_token: str, *, move: bool = False
) -> tuple[FacebookPage, bool]:
    """Store a page's token (sealed) for a bot; return the page and `created`.

    Reconnecting a page replaces its token and clears the marks a bad token
    or a rate limit left. Raise PageMovedError if another bot has the page,
    unless `move` is set.
    """
    sealed = encrypt(access_token, associated_data=token_context(page_id))
    fields = {
        "bot": bot,
        "access_token_encrypted": sealed,
        "token_hint": secret_hint(access_token),
        "token_invalid_since": None,
        "token_error": "",
        "throttled_until": None,
    }
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


@lru_cache(maxsize=1024)
def page_access_token(page_id: str, sealed: str) -> str:
    """Return the page's token; cached by its sealed form, which changes."""
    return decrypt(sealed, associated_data=token_context(page_id))


def mark_token_invalid(page_pk: int, reason: str) -> None:
    """Record that the page's token stopped working; the owner must reconnect."""
    FacebookPage.objects.filter(pk=page_pk, token_invalid_since__isnull=True).update(
        token_invalid_since=timezone.now(), token_error=reason[:200]
    )
    logger.warning("page %s: access token refused (%s); reconnect the page",
                   page_pk, reason)


def throttle_page(page_pk: int, seconds: float) -> None:
    """Hold every send to a page for a while, as Meta asked."""
    until = timezone.now() + timedelta(seconds=seconds)
    FacebookPage.objects.filter(pk=page_pk).update(throttled_until=until)
    logger.warning("page %s rate limited; holding sends for %.0f s", page_pk, seconds)
