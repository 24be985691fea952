"""Store webhook events durably, many deliveries to one transaction.

Each delivery is acknowledged only once its events are committed. The
deliveries that arrive while a commit is under way wait for the next one
and share it (see `gateway.group_commit`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import DateTimeField, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from adapters.facebook.webhook import (
    Acknowledged,
    Event,
    IncomingMessage,
    PageEcho,
    Receipt,
)
from gateway.group_commit import GroupCommit
from gateway.pipeline.doorbell import shared_ring
from gateway.pipeline.updates import value_per_row
from storage.human_replies import hold_bot_back
from storage.models import Bot, Contact, Conversation, FacebookPage, Message

CHANNEL = "facebook"
logger = logging.getLogger("gateway.facebook")
# Our clock stamps `sent_at` a little after Meta's clock stamped the
# message, and watermarks come from Meta's clock.
WATERMARK_SKEW = timedelta(seconds=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Thread:
    """The conversation of one person with one page."""

    conversation_id: uuid.UUID
    bot_id: int


def store_events(events: Sequence[Event]) -> int:
    """Store the events of one or more deliveries in one transaction.

    Return how many messages were written (redeliveries included).
    """
    with transaction.atomic():
        return _store(events)


def _store(events: Sequence[Event]) -> int:
    pages = _pages({event.page_id for event in events})
    known = [event for event in events if event.page_id in pages]
    for page_id in {event.page_id for event in events} - pages.keys():
        logger.warning("events for page %s, which no bot has; acknowledged",
                       page_id)
    threads = _threads(known, pages)
    fresh = _not_stored_yet(known)
    rows = [row for event in known if (row := _message_row(event, threads))]
    Message.objects.bulk_create(rows, ignore_conflicts=True)
    _touch_conversations(fresh, threads)
    _pause_for_humans(known, threads)
    for event in known:
        if isinstance(event, Receipt):
            _record_receipt(event, threads)
    return len(rows)


def _pages(page_ids: set[str]) -> dict[str, tuple[int, int]]:
    """Map the connected pages among these ids to (page pk, bot pk)."""
    return {
        page_id: (pk, bot_id)
        for pk, page_id, bot_id in FacebookPage.objects.filter(
            page_id__in=page_ids
        ).values_list("pk", "page_id", "bot_id")
    }


def _threads(
    events: Iterable[Event], pages: dict[str, tuple[int, int]]
) -> dict[tuple[str, str], Thread]:
    """Find or start the conversation of each person the events come from."""
    wanted: dict[tuple[str, str], tuple[int, int]] = {}
    creatable: set[tuple[str, str]] = set()
    for event in events:
        if isinstance(event, Acknowledged):
            continue
        key = (event.page_id, event.psid)
        wanted[key] = pages[event.page_id]
        if isinstance(event, IncomingMessage | PageEcho):
            creatable.add(key)
    threads = _existing_threads(wanted)
    missing = {key: wanted[key] for key in creatable if key not in threads}
    if missing:
        _start_threads(missing)
        threads.update(_existing_threads(missing))
    return threads


def _existing_threads(
    wanted: dict[tuple[str, str], tuple[int, int]],
) -> dict[tuple[str, str], Thread]:
    if not wanted:
        return {}
    by_page: dict[int, str] = {
        pk: page_id for (page_id, _), (pk, _) in wanted.items()
    }
    rows = Conversation.objects.filter(
        channel=CHANNEL,
        # The channel first, so the lookup uses the contacts' unique index.
        contact__channel=CHANNEL,
        contact__page_id__in=by_page,
        contact__external_id__in={psid for _, psid in wanted},
    ).values_list("pk", "bot_id", "contact__page_id", "contact__external_id")
    threads = {}
    for conversation_id, bot_id, page_pk, psid in rows:
        key = (by_page[int(page_pk)], str(psid))
        if key in wanted and wanted[key][1] == bot_id:
            threads[key] = Thread(conversation_id, bot_id)
    return threads


def _start_threads(missing: dict[tuple[str, str], tuple[int, int]]) -> None:
    # Another delivery may start the same conversation at the same time:
    # conflicts are skipped, and the rows read back whoever wrote them.
    Contact.objects.bulk_create(
        [
            Contact(bot_id=bot_id, page_id=page_pk, channel=CHANNEL, external_id=psid)
            for (_, psid), (page_pk, bot_id) in missing.items()
        ],
        ignore_conflicts=True,
    )
    bots = {(page_pk, psid): bot_id for (_, psid), (page_pk, bot_id) in missing.items()}
    contacts = Contact.objects.filter(
        channel=CHANNEL,
        page_id__in={page_pk for page_pk, _ in bots},
        external_id__in={psid for _, psid in bots},
    ).values_list("pk", "page_id", "external_id")
    conversations = [
        Conversation(bot_id=bots[(page_pk, psid)], channel=CHANNEL, contact_id=pk)
        for pk, page_pk, psid in contacts
        if (page_pk, psid) in bots
    ]
    Conversation.objects.bulk_create(conversations, ignore_conflicts=True)


Threads = dict[tuple[str, str], Thread]


def _message_row(event: Event, threads: Threads) -> Message | None:
    if isinstance(event, IncomingMessage):
        return Message(
            conversation_id=threads[(event.page_id, event.psid)].conversation_id,
            channel=CHANNEL,
            direction=Message.Direction.INBOUND,
            author="user",
            content=event.inbound.as_dict(),
            state=Message.State.PENDING,
            platform_message_id=event.mid,
        )
    if isinstance(event, PageEcho) and not event.own_send:
        # A person of the page answered in the page inbox.
        return Message(
            conversation_id=threads[(event.page_id, event.psid)].conversation_id,
            channel=CHANNEL,
            direction=Message.Direction.OUTBOUND,
            author="human",
            content=event.content,
            state=Message.State.SENT,
            platform_message_id=event.mid,
            sent_at=from_milliseconds(event.timestamp),
        )
    return None


def _not_stored_yet(events: Sequence[Event]) -> list[IncomingMessage]:
    """The incoming messages of these events that are not redeliveries."""
    incoming = [event for event in events if isinstance(event, IncomingMessage)]
    if not incoming:
        return []
    stored = set(
        Message.objects.filter(
            channel=CHANNEL,
            platform_message_id__in={event.mid for event in incoming},
        ).values_list("platform_message_id", flat=True)
    )
    return [event for event in incoming if event.mid not in stored]


def _touch_conversations(
    events: Sequence[IncomingMessage], threads: dict[tuple[str, str], Thread]
) -> None:
    """Move each conversation's last inbound time to its newest message.

    The time is Meta's (when the person wrote, which starts Messenger's
    24-hour window), never in the future, and it only moves forward.
    """
    now = timezone.now()
    newest: dict[uuid.UUID, datetime] = {}
    for event in events:
        conversation_id = threads[(event.page_id, event.psid)].conversation_id
        moment = min(from_milliseconds(event.timestamp), now)
        newest[conversation_id] = max(moment, newest.get(conversation_id, moment))
    if not newest:
        return
    # SQLite's MAX() of a NULL is NULL, so a conversation's first message
    # is compared with the start of time instead.
    before = Coalesce("last_inbound_at", Value(EPOCH, output_field=DateTimeField()))
    Conversation.objects.filter(pk__in=list(newest)).update(
        last_inbound_at=Greatest(
            before, value_per_row(Conversation, "last_inbound_at", newest)
        )
    )


def _pause_for_humans(
    events: Sequence[Event], threads: dict[tuple[str, str], Thread]
) -> None:
    """Hold the bot back where a human answered, counted from the answer."""
    answered: dict[uuid.UUID, tuple[int, int]] = {}
    for event in events:
        if isinstance(event, PageEcho) and not event.own_send:
            thread = threads[(event.page_id, event.psid)]
            answered[thread.conversation_id] = (thread.bot_id, event.timestamp)
    if not answered:
        return
    holds = dict(
        Bot.objects.filter(
            pk__in={bot_id for bot_id, _ in answered.values()}
        ).values_list("pk", "human_hold_seconds")
    )
    now = timezone.now()
    for conversation_id, (bot_id, timestamp) in answered.items():
        answered_at = min(from_milliseconds(timestamp), now)
        hold_bot_back(conversation_id, holds[bot_id], answered_at)
    logger.info("a human answered in %d conversation(s); the bot holds back",
                len(answered))


def _record_receipt(event: Receipt, threads: dict[tuple[str, str], Thread]) -> None:
    thread = threads.get((event.page_id, event.psid))
    if thread is None:
        return
    moment = from_milliseconds(event.watermark)
    stamp = "delivered_at" if event.kind == "delivery" else "read_at"
    sent = Message.objects.filter(
        conversation_id=thread.conversation_id,
        direction=Message.Direction.OUTBOUND,
        state=Message.State.SENT,
    )
    covered = Q(sent_at__lte=moment + WATERMARK_SKEW)
    if event.mids:
        covered |= Q(platform_message_id__in=event.mids)
    sent.filter(covered, **{f"{stamp}__isnull": True}).update(**{stamp: moment})
    if stamp == "read_at":
        # What was read was delivered, whether or not Meta said so.
        sent.filter(covered, delivered_at__isnull=True).update(delivered_at=moment)


def from_milliseconds(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def store_deliveries(deliveries: Sequence[Sequence[Event]]) -> list[int]:
    """Store several deliveries in one transaction; return their counts."""
    stored = store_events([event for events in deliveries for event in events])
    return [stored] * len(deliveries)


async def ring_if_stored(outcomes: Sequence[object]) -> None:
    if any(isinstance(stored, int) and stored for stored in outcomes):
        await shared_ring.ring()


# A delivery holds one event or up to a thousand. Deliveries share a
# transaction while they hold about a thousand events together (one larger
# delivery goes alone), so a shared transaction stays short.
MAX_EVENTS_PER_COMMIT = 1000
deliveries_committer: GroupCommit[Sequence[Event], int] = GroupCommit(
    store_deliveries,
    max_batch=50,
    weight=len,
    max_weight=MAX_EVENTS_PER_COMMIT,
    after_batch=ring_if_stored,
)


async def store_delivery(events: Sequence[Event]) -> int:
    """Store one delivery's events durably, sharing a commit when it can."""
    return await deliveries_committer.submit(events)
