"""Keep a Messenger contact's name and avatar, and nothing else about them.

Profiles are fetched in the background once a worker is done with a
conversation (whatever came of its replies), so that a slow Graph never
delays a reply. A profile Meta does not give (error 2018218, permissions)
leaves the contact nameless; it is tried again when it is old. A failure of
the page's token marks the page and keeps what is stored.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from adapters.facebook.graph import Failure, GraphClient, GraphError
from adapters.facebook.pages import (
    hold_page_for_usage,
    mark_token_invalid,
    open_page_token,
    throttle_page,
)
from gateway.secrets_at_rest import SecretDecryptionError
from storage.models import Contact, FacebookPage

logger = logging.getLogger("gateway.facebook")
# The only fields asked for, and the only ones kept.
PROFILE_FIELDS = ("name", "profile_pic")
MAX_NAME = 200
MAX_AVATAR_URL = 1000
PROFILE_THREADS = 4
# A profile thread with nothing to fetch this long closes its connection.
PROFILE_THREAD_IDLE_SECONDS = 1.0


def profile_max_age() -> timedelta:
    return timedelta(seconds=settings.FACEBOOK_PROFILE_MAX_AGE)


def profile_is_stale(fetched_at: datetime | None, now: datetime) -> bool:
    return fetched_at is None or now - fetched_at > profile_max_age()


def refresh_profile(graph: GraphClient, contact_pk: int) -> None:
    """Fetch a contact's profile and keep only the name and avatar URL."""
    contact = (
        Contact.objects.select_related("page").filter(pk=contact_pk).first()
    )
    if contact is None or contact.page is None or not page_usable(contact.page):
        return
    page = contact.page
    try:
        token = open_page_token(page.pk, page.page_id, page.access_token_encrypted)
        answer = graph.profile(token, contact.external_id, PROFILE_FIELDS)
    except SecretDecryptionError:
        return
    except GraphError as error:
        profile_not_fetched(contact.pk, page.pk, error)
        return
    if answer.hold_seconds:
        hold_page_for_usage(page.pk, answer.hold_seconds)
    Contact.objects.filter(pk=contact_pk).update(
        full_name=profile_name(answer.data),
        avatar_url=profile_avatar(answer.data),
        profile_fetched_at=timezone.now(),
    )


def page_usable(page: FacebookPage) -> bool:
    if page.token_invalid_since is not None:
        return False
    return page.throttled_until is None or page.throttled_until <= timezone.now()


def profile_not_fetched(contact_pk: int, page_pk: int, error: GraphError) -> None:
    """Deal with a failed fetch; only Meta's refusal counts as fetched."""
    if error.failure is Failure.TOKEN_INVALID:
        mark_token_invalid(page_pk, error.reason)
    elif error.failure is Failure.THROTTLED:
        throttle_page(page_pk, error.retry_after)
    elif error.failure is Failure.RETRY:
        logger.info("profile of contact %s not fetched yet: %s",
                    contact_pk, error.reason)
    else:
        # A contact stays nameless, or keeps the name it had.
        logger.info("profile of contact %s unavailable: %s",
                    contact_pk, error.reason)
        Contact.objects.filter(pk=contact_pk).update(
            profile_fetched_at=timezone.now()
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
    """Refresh profiles on background threads, each contact once at a time.

    Several threads, so that a Graph API slow to answer does not leave the
    new people of a busy page waiting for their names. A thread keeps its
    database connection while fetches keep coming, and closes it once it
    has had nothing to fetch for a while.
    """

    def __init__(self, graph: GraphClient, threads: int = PROFILE_THREADS) -> None:
        self.graph = graph
        self.threads = threads
        self.started = False
        self.queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.pending: set[int] = set()
        self.lock = threading.Lock()

    def refresh_soon(self, contact_pk: int) -> None:
        with self.lock:
            if contact_pk in self.pending:
                return
            self.pending.add(contact_pk)
            if not self.started:
                self.started = True
                for number in range(self.threads):
                    threading.Thread(
                        target=self.run, name=f"facebook-profiles-{number}",
                        daemon=True,
                    ).start()
        self.queue.put(contact_pk)

    def run(self) -> None:
        while True:
            try:
                contact_pk = self.queue.get(timeout=PROFILE_THREAD_IDLE_SECONDS)
            except queue.Empty:
                connection.close()
                continue
            self.refresh(contact_pk)

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
