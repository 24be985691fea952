"""The embedded default: one web process that also runs the worker."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, cast

from django.conf import settings

from gateway.pipeline.runner import WorkerRunner

logger = logging.getLogger("gateway.pipeline")


class EmbeddedWorker:
    """Wrap the ASGI application and run the worker in the server's loop.

    Daphne does not speak the ASGI lifespan protocol. Under Daphne the worker
    starts as soon as the reactor runs, so that a restarted process answers
    what was left waiting even before anybody connects; under another
    server, with the first connection.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self.task: asyncio.Task[None] | None = None
        if "daphne.server" in sys.modules:
            from twisted.internet import reactor

            # Runs once the reactor, and with it the event loop, is running.
            cast(Any, reactor).callLater(0, self.start)

    def start(self) -> None:
        if self.task is None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(WorkerRunner().run())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.start()
        await self.application(scope, receive, send)


def start_embedded_worker(application: Any) -> Any:
    """Return the application, wrapped to run the worker when embedded."""
    if settings.EMBEDDED and settings.EMBEDDED_WORKER:
        return EmbeddedWorker(application)
    return application
