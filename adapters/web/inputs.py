"""Read the bubble's request bodies, failing with a clear reason."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from adapters.web.pusher.names import is_valid_channel_name, is_valid_socket_id
from botcore.messages import Inbound
from gateway.errors import ApiError

MAX_TEXT = 2000
MAX_PAYLOAD = 200
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
WEB_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
MESSAGE_FIELDS = {
    "greeting": {"type", "client_id"},
    "text": {"type", "text", "client_id"},
    "button": {"type", "payload", "client_id"},
}


def malformed(message: str) -> ApiError:
    return ApiError(400, "malformed", message)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise malformed("The body must be JSON.") from None
    if not isinstance(data, dict):
        raise malformed("The body must be a JSON object.")
    return data


def session_request(body: bytes) -> str:
    """Return the web key a new session is asked for."""
    data = json_object(body)
    web_key = data.get("bot")
    if not isinstance(web_key, str) or not web_key:
        raise malformed('"bot" must be the web key of a bot.')
    if not WEB_KEY.fullmatch(web_key):
        raise ApiError(404, "unknown_bot", "No bot has this web key.")
    return web_key


@dataclass(frozen=True)
class VisitorMessage:
    inbound: Inbound
    client_id: str | None


def visitor_message(body: bytes) -> VisitorMessage:
    """Return what a visitor sent, as the pipeline's inbound message."""
    data = json_object(body)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_FIELDS:
        raise malformed('"type" must be "greeting", "text" or "button".')
    unknown = sorted(set(data) - MESSAGE_FIELDS[kind])
    if unknown:
        raise malformed(f'Unknown field "{unknown[0]}".')
    return VisitorMessage(_inbound(kind, data), _client_id(data))


def _inbound(kind: str, data: dict[str, Any]) -> Inbound:
    if kind == "greeting":
        return Inbound("greeting")
    if kind == "text":
        text = _string(data, "text", MAX_TEXT)
        return Inbound("text", text=text)
    return Inbound("postback", payload=_string(data, "payload", MAX_PAYLOAD))


def _string(data: dict[str, Any], field: str, limit: int) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise malformed(f'"{field}" must be a non-empty string.')
    if len(value) > limit:
        raise ApiError(
            413, "too_large", f'"{field}" must be at most {limit} characters.'
        )
    return value


def _client_id(data: dict[str, Any]) -> str | None:
    client_id = data.get("client_id")
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise malformed('"client_id" must be 1 to 64 letters, digits or "_.:-".')
    return client_id


@dataclass(frozen=True)
class ChannelAuthRequest:
    socket_id: str
    channel_name: str


def channel_auth_request(body: bytes) -> ChannelAuthRequest:
    """Read pusher-js's form: `socket_id` and `channel_name`."""
    try:
        fields = dict(
            parse_qsl(body.decode("ascii"), strict_parsing=True, max_num_fields=8)
        )
    except (UnicodeDecodeError, ValueError):
        raise malformed("The body must be a form with socket_id and "
                        "channel_name.") from None
    socket_id = fields.get("socket_id")
    channel_name = fields.get("channel_name")
    if not is_valid_socket_id(socket_id):
        raise malformed('"socket_id" is not a Pusher socket id.')
    if not is_valid_channel_name(channel_name):
        raise malformed('"channel_name" is not a Pusher channel name.')
    assert isinstance(socket_id, str) and isinstance(channel_name, str)
    return ChannelAuthRequest(socket_id, channel_name)
