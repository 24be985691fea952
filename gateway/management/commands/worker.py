"""Run a bot-core worker fed through the channel layer."""

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from gateway.pipeline.runner import WorkerRunner


class Command(BaseCommand):
    help = "Answer pending messages and deliver replies until stopped."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--concurrency", type=int, default=None,
            help="batches worked on at once (default WORKER_CONCURRENCY)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The worker serves its channel through the ASGI application, which
        # freezes what was made while starting (gateway.server).
        import gateway.asgi  # noqa: F401

        asyncio.run(self.run(options["concurrency"]))

    async def run(self, concurrency: int | None) -> None:
        runner = WorkerRunner(concurrency)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, runner.stop)
        await runner.run()
