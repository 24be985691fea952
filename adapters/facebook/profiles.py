"""Keep a Messenger contact's name and avatar, and nothing else about them.

Profiles are fetched in the background after the bot started working on a
message, so that a slow Graph never delays a reply. A profile that cannot
be fetched leaves the contact nameless; it is tried again when it is old.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from adapters.facebook.graph import Failure, GraphClient, GraphError
from adapters.facebook.pages import page_access_token
from storage.models import Contact

logger = logging.getLogger("gateway.facebook")
# The only fields asked for, and the only ones kept.
PROFILE_FIELDS = ("name", "profile_pic")
DEFAULT_MAX_AGE = timedelta(days=7)
MAX_NAME = 200
MAX_AVATAR_URL = 1000


def profile_max_age() -> timedelta:
    seconds = getattr(settings, "FACEBOOK_PROFILE_MAX_AGE", None)
    return DEFAULT_MAX_AGE if seconds is None else timedelta(seconds=seconds)


def profile_is_stale(fetched_at: datetime | None, now: datetime) -> bool:
    return fetched_at is None or now - fetched_at > profile_max_age()


def refresh_profile(graph: GraphClient, contact_pk: int) -> None:
    """Fetch a contact's profile and keep only the name and avatar URL."""
    contact = (
        Contact.objects.select_related("page").filter(pk=contact_pk).first()
    )
    if contact is None or contact.page is None:
        return
    token = page_access_token(contact.page.page_id, contact.page.access_token_encrypted)
    try:
        profile = graph.profile(token, contact.external_id, PROFILE_FIELDS)
    except GraphError as error:
        if error.failure in (Failure.RETRY, Failure.THROTTLED):
            logger.info("profile of contact %s not fetched yet: %s",
                        contact_pk, error.reason)
            return
        logger.info("profile of contact %s unavailable: %s", contact_pk, error.reason)
        profile = {}
    Contact.objects.filter(pk=contact_pk).update(
        full_name=profile_name(profile),
        avatar_url=profile_avatar(profile),
        profile_fetched_at=timezone.now(),
    )


def profile_name(profile: dict[str, object]) -> str:
    name = profile.get("name")
    return name.strip()[:MAX_NAME] if isinstance(name, str) else ""


def profile_avatar(profile: dict[str, object]) -> str:
    url = profile.get("profile_pic")
    if not isinstance(url, str) or not url.startswith("https://"):
        return ""
    return url if len(url) <= MAX_AVATAR_URL else ""


class ProfileRefresher:
    """Refresh profiles on a background thread, each contact once at a time."""

    def __init__(self, graph: GraphClient) -> None:
        self.graph = graph
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="facebook-profiles")
        self.pending: set[int] = set()
        self.lock = threading.Lock()

    def refresh_soon(self, contact_pk: int) -> None:
        with self.lock:
            if contact_pk in self.pending:
                return
            self.pending.add(contact_pk)
        self.executor.submit(self.refresh, contact_pk)

    def refresh(self, contact_pk: int) -> None:
        close_old_connections()
        try:
            refresh_profile(self.graph, contact_pk)
        except Exception as error:  # noqa: BLE001 - never worth a crash
            # The type only: a database error's text may quote the PSID.
            logger.error("profile refresh of contact %s failed (%s)",
                         contact_pk, type(error).__name__)
        finally:
            with self.lock:
                self.pending.discard(contact_pk)
            close_old_connections()
