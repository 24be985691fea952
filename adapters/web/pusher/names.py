"""Pusher channel and event names, and the channel layer groups behind them."""

import hashlib
import re
from typing import TypeGuard

MAX_CHANNEL_NAME = 164
MAX_EVENT_NAME = 200

CHANNEL_NAME = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,164}")
SOCKET_ID = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")

PRIVATE_PREFIX = "private-"
ENCRYPTED_PREFIX = "private-encrypted-"
PRESENCE_PREFIX = "presence-"
CLIENT_EVENT_PREFIX = "client-"
RESERVED_EVENT_PREFIXES = ("pusher:", "pusher_internal:")

GROUP_PREFIX = "pusher."


def is_valid_channel_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


def is_valid_socket_id(socket_id: object) -> TypeGuard[str]:
    return isinstance(socket_id, str) and SOCKET_ID.fullmatch(socket_id) is not None


def is_valid_event_name(name: object) -> TypeGuard[str]:
    """Accept the names a publisher may use: not empty, short, not reserved."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_EVENT_NAME
        and not name.startswith(RESERVED_EVENT_PREFIXES)
    )


def needs_authorization(channel_name: str) -> bool:
    return channel_name.startswith((PRIVATE_PREFIX, PRESENCE_PREFIX))


def is_private(channel_name: str) -> bool:
    return channel_name.startswith(PRIVATE_PREFIX)


def is_presence(channel_name: str) -> bool:
    return channel_name.startswith(PRESENCE_PREFIX)


def is_encrypted(channel_name: str) -> bool:
    return channel_name.startswith(ENCRYPTED_PREFIX)


def group_name(channel_name: str) -> str:
    """Map a Pusher channel to a channel layer group name.

    Group names allow fewer characters and stay under 100, so the channel
    name is hashed; a hash also keeps chat tokens out of Redis keys.
    """
    digest = hashlib.sha256(channel_name.encode()).hexdigest()
    return GROUP_PREFIX + digest
