"""The API's one hop to a thread for database and cache work.

Like Channels' `database_sync_to_async`, it runs synchronous work in the
thread that Django's thread-sensitive code shares, but it does not close
the connection after every call, which with SQLite's CONN_MAX_AGE of 0 would
reopen the database (and re-register Django's SQL functions) on every
request. The connection is replaced when an error left it unusable, or once
it is older than a positive CONN_MAX_AGE.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

Result = TypeVar("Result")


def _retire_stale_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        max_age = connection.settings_dict.get("CONN_MAX_AGE")
        expired = (
            bool(max_age)
            and connection.close_at is not None
            and time.monotonic() >= connection.close_at
        )
        if connection.errors_occurred or expired:
            connection.close_if_unusable_or_obsolete()


class DatabaseHop(SyncToAsync):
    """Run a request's database work in the database thread."""

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _retire_stale_connections()


def in_database_thread(function: Callable[..., Result]) -> Callable[..., Any]:
    """Return an awaitable version of `function` that runs in that thread."""
    return DatabaseHop(function, thread_sensitive=True)
