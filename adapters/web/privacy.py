"""Keep visitors' network addresses out of every log the gateway writes.

Daphne's command line writes an access log to standard output whenever its
verbosity is 1 or more (the default), with the client's address first, and
at higher verbosity its own and Twisted's log lines name the peer. The
gateway promises never to log a visitor's address, so:

- the access log keeps its lines but writes "-" where the address was;
- a logging filter on the gateway's handlers drops Twisted's own access log
  lines (at verbosity 2 and up; they carry the user agent and referrer), and
  replaces anything that parses as an IP address in a log line (message and
  traceback) by "[address]".
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from daphne.access import AccessLogGenerator

REDACTED = "[address]"
# Twisted's "combined" access log line: "client" - user [date] "request" ...
COMBINED_LOG_LINE = re.compile(r'^"?[^" ]*"? \S+ \S+ \[[^\]]+\] "[A-Z]+ ')
IPV4_CANDIDATE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                            r"(?:%\w+)?(?![\w:])")


def _redact_match(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    return REDACTED


def redact_addresses(text: str) -> str:
    """Replace every IPv4 and IPv6 address in a text."""
    if "." not in text and ":" not in text:
        return text
    text = IPV4_CANDIDATE.sub(_redact_match, text)
    return IPV6_CANDIDATE.sub(_redact_match, text)


class PrivacyFilter(logging.Filter):
    """A handler filter: no access log lines, no IP addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name.startswith("daphne") and COMBINED_LOG_LINE.match(message):
            return False
        redacted = redact_addresses(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_addresses(record.exc_text)
        return True


class AddressFreeAccessLog(AccessLogGenerator):
    """Daphne's access log, without the client's address."""

    def write_entry(self, host: Any, date: Any, request: Any, *args: Any,
                    **kwargs: Any) -> None:
        super().write_entry("-", date, request, *args, **kwargs)


def install_address_free_access_log() -> None:
    """Make Daphne's command line build its access log without addresses.

    The command line imports the application (and so Django) before it
    builds the access log, so replacing the class it names is enough.
    """
    import daphne.cli

    daphne.cli.AccessLogGenerator = AddressFreeAccessLog
