"""Pusher signatures: channel authorization and signed HTTP API requests.

Every comparison of a secret-derived value runs in constant time.
"""

import hashlib
import hmac
import time
from urllib.parse import unquote

from django.conf import settings

AUTH_VERSION = "1.0"
TIMESTAMP_TOLERANCE = 600
REQUIRED_PARAMS = ("auth_key", "auth_timestamp", "auth_version", "auth_signature")


class SignatureError(Exception):
    """A signed HTTP API request that must be refused, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(secret: str, message: str) -> str:
    """Return the hex HMAC-SHA256 of the message under the secret."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def channel_auth(socket_id: str, channel_name: str) -> str:
    """Return the ``auth`` value that lets a socket subscribe to a channel."""
    signature = sign(settings.PUSHER_SECRET, f"{socket_id}:{channel_name}")
    return f"{settings.PUSHER_KEY}:{signature}"


def verify_channel_auth(socket_id: str, channel_name: str, auth: object) -> bool:
    if not isinstance(auth, str):
        return False
    return constant_time_equal(auth, channel_auth(socket_id, channel_name))


def parse_query(query_string: bytes) -> dict[str, str]:
    """Split a query string without unescaping it, as the signer saw it."""
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError(400, "Query string is not ASCII") from None
    params: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key = key.lower()
        if key in params:
            raise SignatureError(400, "Duplicate query parameter")
        params[key] = value
    return params


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{key}={params[key]}" for key in sorted(params))


def string_to_sign(method: str, path: str, params: dict[str, str]) -> str:
    return f"{method}\n{path}\n{canonical_query(params)}"


def verify_request(
    method: str,
    path: str,
    query_string: bytes,
    body: bytes,
    now: float | None = None,
) -> dict[str, str]:
    """Check a signed HTTP API request; return its query parameters.

    Raise SignatureError with the status Pusher answers when it fails.
    """
    params = parse_query(query_string)
    missing = [name for name in REQUIRED_PARAMS if not params.get(name)]
    if missing:
        raise SignatureError(401, "Missing parameter: " + ", ".join(missing))
    if not constant_time_equal(params["auth_key"], settings.PUSHER_KEY):
        raise SignatureError(401, "Unknown auth_key")
    if params["auth_version"] != AUTH_VERSION:
        raise SignatureError(401, "Unsupported auth_version")
    verify_signature(method, path, params)
    verify_timestamp(params["auth_timestamp"], time.time() if now is None else now)
    verify_body_md5(params.get("body_md5"), body)
    return params


def verify_signature(method: str, path: str, params: dict[str, str]) -> None:
    """Accept the signature over the raw or the unescaped query values.

    Pusher's libraries sign the values unescaped; some HTTP clients escape
    them on the wire, others send them as they are.
    """
    given = params["auth_signature"]
    signed = {key: value for key, value in params.items() if key != "auth_signature"}
    unescaped = {key: unquote(value) for key, value in signed.items()}
    matches = [
        constant_time_equal(given, sign(settings.PUSHER_SECRET, candidate))
        for candidate in {
            string_to_sign(method, path, signed),
            string_to_sign(method, path, unescaped),
        }
    ]
    if not any(matches):
        raise SignatureError(401, "Invalid signature")


def verify_timestamp(timestamp: str, now: float) -> None:
    try:
        skew = abs(now - int(timestamp))
    except ValueError:
        raise SignatureError(401, "Invalid auth_timestamp") from None
    if skew > TIMESTAMP_TOLERANCE:
        raise SignatureError(
            401,
            f"Timestamp expired: not within {TIMESTAMP_TOLERANCE} seconds"
            " of server time",
        )


def body_digest(body: bytes) -> str:
    """Return the body's MD5 as the protocol has it; the HMAC secures it."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def verify_body_md5(body_md5: str | None, body: bytes) -> None:
    """Require the body's MD5 when there is a body; check it whenever sent."""
    if body_md5 is None:
        if body:
            raise SignatureError(401, "Missing parameter: body_md5")
        return
    if not constant_time_equal(body_md5, body_digest(body)):
        raise SignatureError(401, "body_md5 does not match the body")
