"""The engine interface: what the pipeline asks of a bot."""

from __future__ import annotations

from typing import Protocol

from botcore.messages import Inbound, Reply


class Engine(Protocol):
    """Answers one inbound message with zero or more replies."""

    def respond(self, inbound: Inbound) -> list[Reply]: ...
