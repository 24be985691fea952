"""The embedded default: one web process that also runs the worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from gateway.pipeline.runner import WorkerRunner

logger = logging.getLogger("gateway.pipeline")


class EmbeddedWorker:
    """Wrap the ASGI application; start the worker with the first scope.

    Daphne does not speak the ASGI lifespan protocol, so the worker starts
    when the server hands the application its first connection, inside the
    server's own event loop.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(WorkerRunner().run())
        await self.application(scope, receive, send)


def start_embedded_worker(application: Any) -> Any:
    """Return the application, wrapped to run the worker when embedded."""
    if settings.EMBEDDED and settings.EMBEDDED_WORKER:
        return EmbeddedWorker(application)
    return application
