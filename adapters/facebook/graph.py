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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

# (connect, read) seconds. A send that times out may still have reached
# Messenger; it is retried, so a slow Graph can at worst repeat a message.
DEFAULT_TIMEOUT = (3.05, 10.0)
USAGE_HEADERS = ("x-business-use-case-usage", "x-page-usage", "x-app-usage")
# The shares of a budget the usage headers report, in per cent.
USAGE_FIGURES = ("call_count", "total_time", "total_cputime")
# From this share of any budget on, the page holds its sends before Meta
# refuses them, for the time Meta names or, naming none, this long.
USAGE_HOLD_PERCENT = 95.0
USAGE_HOLD_SECONDS = 30.0


class Failure(enum.Enum):
    RETRY = "retry"
    THROTTLED = "throttled"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a label, not a secret
    PERMANENT = "permanent"


RETRY_CODES = {1: "unknown Graph error", 2: "Graph service unavailable",
               1200: "temporary send error"}
# Code 613 comes with several subcodes (calls too fast, tags used too
# often): each means slowing down. 80001 and 80006 are the business use
# case limits of pages and of Messenger.
THROTTLE_CODES = {4: "app rate limit", 17: "user rate limit",
                  32: "page rate limit", 613: "rate limit",
                  80001: "page rate limit", 80006: "Messenger rate limit"}
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


@dataclass(frozen=True)
class GraphAnswer:
    """A successful answer, and how long its usage headers ask to pause."""

    data: dict[str, Any]
    hold_seconds: float | None = None


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
            session = self._local.session = new_session(self.base_url)
        return session

    def send(self, access_token: str, body: dict[str, Any]) -> GraphAnswer:
        """Call the Send API; its answer's data holds `message_id`."""
        return self.call("POST", "me/messages", access_token, json_body=body)

    def profile(
        self, access_token: str, psid: str, fields: tuple[str, ...]
    ) -> GraphAnswer:
        return self.call(
            "GET", psid, access_token, params={"fields": ",".join(fields)}
        )

    def page_of_token(self, access_token: str) -> dict[str, Any]:
        """Return the page (`id`, `name`) a page access token belongs to."""
        return self.call("GET", "me", access_token, params={"fields": "id"}).data

    def subscribe_page(
        self, access_token: str, page_id: str, fields: tuple[str, ...]
    ) -> dict[str, Any]:
        return self.call(
            "POST",
            f"{page_id}/subscribed_apps",
            access_token,
            params={"subscribed_fields": ",".join(fields)},
        ).data

    def call(
        self,
        method: str,
        path: str,
        access_token: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> GraphAnswer:
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


def new_session(base_url: str) -> requests.Session:
    """Return a session that reads the environment once, not every call.

    requests otherwise looks for proxies and a CA bundle in the environment
    on every request, which takes longer than a send to a nearby server.
    """
    session = requests.Session()
    session.headers["User-Agent"] = "bot-gateway"
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.cert = found["cert"]
    return session


def read_answer(answer: requests.Response) -> GraphAnswer:
    """Return a successful answer or raise the classified error."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    usage = read_usage(answer.headers)
    if answer.status_code < 300 and isinstance(data, dict):
        return GraphAnswer(data, usage.hold_seconds())
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        raise unexplained_failure(answer.status_code, usage.regain_seconds)
    raise classify_error(error, answer.status_code, usage.regain_seconds)


def unexplained_failure(status: int, regain: float | None) -> GraphError:
    if status == 429:
        return GraphError(Failure.THROTTLED, "Graph API answered HTTP 429",
                          retry_after=regain)
    if status >= 500:
        return GraphError(Failure.RETRY, f"Graph API answered HTTP {status}")
    return GraphError(Failure.PERMANENT, f"Graph API answered HTTP {status}")


def classify_error(
    error: dict[str, Any], status: int, regain: float | None
) -> GraphError:
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    ids = {"code": code, "subcode": subcode}
    label = "Graph error " + ("without a code" if code is None else str(code))
    label += f"/{subcode}" if subcode else ""
    if code in TOKEN_CODES:
        return GraphError(Failure.TOKEN_INVALID, f"{TOKEN_CODES[code]} ({label})",
                          **ids)
    if code in THROTTLE_CODES or status == 429:
        # HTTP 429 asks to slow down, whatever error it carries.
        description = THROTTLE_CODES.get(code or 0, "Graph API answered HTTP 429")
        return GraphError(
            Failure.THROTTLED,
            f"{description} ({label})",
            retry_after=regain,
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


@dataclass(frozen=True)
class Usage:
    """What the usage headers say about the budgets of the caller."""

    # The most used share of any budget, in per cent.
    percent: float = 0.0
    # The longest wait until access returns, in seconds, if one is named.
    regain_seconds: float | None = None

    def hold_seconds(self) -> float | None:
        """How long to hold the page's sends, if the budget is nearly spent."""
        if self.regain_seconds:
            return self.regain_seconds
        if self.percent >= USAGE_HOLD_PERCENT:
            return USAGE_HOLD_SECONDS
        return None


def read_usage(headers: Mapping[str, str]) -> Usage:
    """Read X-App-Usage, X-Page-Usage and X-Business-Use-Case-Usage."""
    entries: list[dict[str, Any]] = []
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if raw:
            entries.extend(_usage_entries(raw))
    percent = max(
        (_number(entry.get(figure)) for entry in entries for figure in USAGE_FIGURES),
        default=0.0,
    )
    minutes = max(
        (_number(entry.get("estimated_time_to_regain_access")) for entry in entries),
        default=0.0,
    )
    return Usage(percent, minutes * 60 if minutes > 0 else None)


def _usage_entries(raw: str) -> list[dict[str, Any]]:
    try:
        usage = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(usage, dict):
        return []
    if any(figure in usage for figure in USAGE_FIGURES):
        return [usage]
    # Business use case usage maps an object id to a list of usages.
    return [
        item
        for group in usage.values() if isinstance(group, list)
        for item in group if isinstance(item, dict)
    ]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
