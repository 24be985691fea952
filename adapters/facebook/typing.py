"""Show Messenger's typing indicator when the bot takes its time.

A bot that answers at once gains nothing from the indicator and its reply
would wait a Graph round trip for it; so the indicator goes out only when
no reply has gone out `delay` seconds after the bot started working. A
reply cancels the pending indicator, or, if it is being sent, waits for it
so that it never arrives after the reply.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("gateway.facebook")
DEFAULT_DELAY = 0.3
# How long a reply waits for an indicator already on its way.
SEND_WAIT = 5.0


class TypingIndicator:
    """Schedule typing indicators on one background thread."""

    def __init__(
        self,
        show: Callable[[Any], None],
        delay: float = DEFAULT_DELAY,
        idle: Callable[[], None] | None = None,
    ) -> None:
        self.show = show
        self.delay = delay
        # Called on the thread when it has shown an indicator and no other
        # is due: the place to let go of what it holds between indicators.
        self.idle = idle
        self.due: list[tuple[float, int, Any]] = []
        self.pending: dict[Any, int] = {}
        self.sending: dict[Any, threading.Event] = {}
        self.order = itertools.count()
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def start(self, conversation_id: Any) -> None:
        """The bot started working on this conversation."""
        with self.changed:
            ticket = next(self.order)
            self.pending[conversation_id] = ticket
            heapq.heappush(self.due, (time.monotonic() + self.delay, ticket,
                                      conversation_id))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.run, name="facebook-typing", daemon=True
                )
                self.thread.start()
            self.changed.notify()

    def cancel(self, conversation_id: Any) -> None:
        """A reply is about to go out: no indicator after it."""
        with self.changed:
            self.pending.pop(conversation_id, None)
            in_flight = self.sending.get(conversation_id)
        if in_flight is not None:
            in_flight.wait(SEND_WAIT)

    def run(self) -> None:
        while True:
            conversation_id, done = self.next_due()
            try:
                self.show(conversation_id)
            except Exception as error:  # noqa: BLE001 - only an indicator
                logger.info("typing indicator not shown (%s)", type(error).__name__)
            finally:
                with self.changed:
                    self.sending.pop(conversation_id, None)
                    quiet = not self.pending
                done.set()
            if quiet and self.idle is not None:
                self.idle_quietly()

    def idle_quietly(self) -> None:
        assert self.idle is not None
        try:
            self.idle()
        except Exception as error:  # noqa: BLE001 - only an indicator
            logger.info("typing thread not idled (%s)", type(error).__name__)

    def next_due(self) -> tuple[Any, threading.Event]:
        """Wait for the next indicator that is due and still wanted."""
        with self.changed:
            while True:
                if not self.due:
                    self.changed.wait()
                    continue
                moment, ticket, conversation_id = self.due[0]
                wait = moment - time.monotonic()
                if wait > 0:
                    self.changed.wait(wait)
                    continue
                heapq.heappop(self.due)
                if self.pending.get(conversation_id) != ticket:
                    continue
                del self.pending[conversation_id]
                done = threading.Event()
                self.sending[conversation_id] = done
                return conversation_id, done
