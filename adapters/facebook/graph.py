"""A client of the Graph API: the Send API, user profiles, page set-up.

Every call carries the page access token in the Authorization header (so it
never appears in a URL or a log line) and the `appsecret_proof` that proves
the call comes from a holder of the app secret. Failures are classified the
way Meta documents them: retry, back off, token invalid, or give up.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import threading
from typing import Any

import requests

# (connect, read) seconds. A send that times out may still have reached
# Messenger; it is retried, so a slow Graph can at worst repeat a message.
DEFAULT_TIMEOUT = (3.05, 10.0)
# How long a page waits after a rate limit when Meta names no time.
DEFAULT_THROTTLE_SECONDS = 5.0
USAGE_HEADERS = ("x-business-use-case-usage", "x-page-usage", "x-app-usage")


class Failure(enum.Enum):
    RETRY = "retry"
    THROTTLED = "throttled"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a label, not a secret
    PERMANENT = "permanent"


RETRY_CODES = {1: "unknown Graph error", 2: "Graph service unavailable",
               1200: "temporary send error"}
THROTTLE_CODES = {4: "app rate limit", 17: "user rate limit",
                  32: "page rate limit", 613: "rate limit"}
TOKEN_CODES = {190: "page access token expired or invalid",
               102: "session invalid"}
PERMANENT_CODES = {
    10: "permission denied",
    100: "invalid parameter",
    200: "permission missing",
    230: "permission missing",
    551: "person not available",
    2018218: "profile not available",
}


class GraphError(Exception):
    """A Graph call that failed; `failure` says what the caller may do."""

    def __init__(
        self,
        failure: Failure,
        reason: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.retry_after = retry_after


def appsecret_proof(access_token: str, app_secret: str) -> str:
    return hmac.new(
        app_secret.encode(), access_token.encode(), hashlib.sha256
    ).hexdigest()


class GraphClient:
    """Calls the Graph API at `base_url` (the version included)."""

    def __init__(
        self,
        base_url: str,
        app_secret: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_secret = app_secret
        self.timeout = timeout
        # requests does not promise a Session is safe across threads, and
        # the worker delivers from several: one session per thread.
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "bot-gateway"
            self._local.session = session
        return session

    def send(self, access_token: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call the Send API; return its answer (`message_id`, ...)."""
        return self.call("POST", "me/messages", access_token, json_body=body)

    def profile(
        self, access_token: str, psid: str, fields: tuple[str, ...]
    ) -> dict[str, Any]:
        return self.call(
            "GET", psid, access_token, params={"fields": ",".join(fields)}
        )

    def page_of_token(self, access_token: str) -> dict[str, Any]:
        """Return the page (`id`, `name`) a page access token belongs to."""
        return self.call("GET", "me", access_token, params={"fields": "id"})

    def subscribe_page(
        self, access_token: str, page_id: str, fields: tuple[str, ...]
    ) -> dict[str, Any]:
        return self.call(
            "POST",
            f"{page_id}/subscribed_apps",
            access_token,
            params={"subscribed_fields": ",".join(fields)},
        )

    def call(
        self,
        method: str,
        path: str,
        access_token: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        query = {"appsecret_proof": appsecret_proof(access_token, self.app_secret)}
        query.update(params or {})
        try:
            answer = self.session.request(
                method,
                f"{self.base_url}/{path}",
                params=query,
                json=json_body,
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise GraphError(
                Failure.RETRY, f"Graph API unreachable ({type(error).__name__})"
            ) from None
        return read_answer(answer)


def read_answer(answer: requests.Response) -> dict[str, Any]:
    """Return a successful answer's JSON or raise the classified error."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    if answer.status_code < 300 and isinstance(data, dict):
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        raise unexplained_failure(answer.status_code)
    raise classify_error(error, answer.status_code, regain_seconds(answer))


def unexplained_failure(status: int) -> GraphError:
    if status >= 500 or status == 429:
        return GraphError(Failure.RETRY, f"Graph API answered HTTP {status}")
    return GraphError(Failure.PERMANENT, f"Graph API answered HTTP {status}")


def classify_error(
    error: dict[str, Any], status: int, regain: float | None
) -> GraphError:
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    ids = {"code": code, "subcode": subcode}
    label = f"Graph error {code}" + (f"/{subcode}" if subcode else "")
    if code in TOKEN_CODES:
        return GraphError(Failure.TOKEN_INVALID, f"{TOKEN_CODES[code]} ({label})",
                          **ids)
    if code in THROTTLE_CODES:
        return GraphError(
            Failure.THROTTLED,
            f"{THROTTLE_CODES[code]} ({label})",
            retry_after=regain or DEFAULT_THROTTLE_SECONDS,
            **ids,
        )
    if code in RETRY_CODES or error.get("is_transient") is True:
        description = RETRY_CODES.get(code or 0, "temporary Graph error")
        return GraphError(Failure.RETRY, f"{description} ({label})", **ids)
    if code in PERMANENT_CODES or subcode in PERMANENT_CODES:
        description = PERMANENT_CODES.get(code or 0) or PERMANENT_CODES.get(
            subcode or 0, ""
        )
        return GraphError(Failure.PERMANENT, f"{description} ({label})", **ids)
    if 200 <= (code or 0) <= 299:
        return GraphError(Failure.PERMANENT, f"permission missing ({label})", **ids)
    if status >= 500:
        return GraphError(Failure.RETRY, f"Graph server error ({label})", **ids)
    return GraphError(Failure.PERMANENT, f"refused by Graph ({label})", **ids)


def regain_seconds(answer: requests.Response) -> float | None:
    """Seconds until access returns, from the usage headers, if they say."""
    minutes: list[float] = []
    for name in USAGE_HEADERS:
        raw = answer.headers.get(name)
        if raw:
            minutes.extend(_regain_minutes(raw))
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


def _regain_minutes(raw: str) -> list[float]:
    try:
        usage = json.loads(raw)
    except ValueError:
        return []
    # Business use case usage maps an object id to a list of usages; page
    # and app usage are one flat object.
    if isinstance(usage, dict) and "call_count" not in usage:
        entries = [
            item
            for group in usage.values() if isinstance(group, list)
            for item in group
        ]
    else:
        entries = [usage]
    return [
        float(entry["estimated_time_to_regain_access"])
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("estimated_time_to_regain_access"), int | float)
    ]


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
