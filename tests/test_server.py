"""Process-wide tuning: Daphne leaves POST bodies alone; startup is frozen."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

from daphne import http_protocol
from twisted.web.test.requesthelper import DummyChannel

from gateway.server import UnparsedBodyRequest

FORM = b"socket_id=1234.5678&channel_name=private-chat-abc"


def received(request_class: type[Any]) -> Any:
    """Feed a form POST to a request of this class, stopping before Daphne."""

    class Stopped(request_class):
        def process(self) -> None:
            """Daphne would hand the request to the application here."""

    channel = DummyChannel()
    channel.factory = SimpleNamespace(  # type: ignore[attr-defined]
        server=SimpleNamespace(protocol_connected=lambda request: None)
    )
    request = Stopped(channel)
    request.requestHeaders.setRawHeaders(
        b"content-type", [b"application/x-www-form-urlencoded"]
    )
    request.gotLength(len(FORM))
    request.handleContentChunk(FORM)
    request.requestReceived(b"POST", b"/api/web/v1/pusher/auth", b"HTTP/1.1")
    return request


def test_daphne_builds_its_requests_from_the_gateways_class() -> None:
    # The gateway's app config installs it when Django starts.
    assert http_protocol.WebRequest is UnparsedBodyRequest


def test_a_form_body_reaches_the_application_unparsed() -> None:
    parsing = received(UnparsedBodyRequest.__mro__[1])
    assert parsing.args[b"channel_name"] == [b"private-chat-abc"]
    request = received(UnparsedBodyRequest)
    assert request.args == {}
    assert request.content.read() == FORM


def test_the_loaded_application_is_out_of_the_collectors_sight() -> None:
    import gateway.asgi

    assert gateway.asgi.application is not None
    # Django, the routes and every module loaded with them.
    assert gc.get_freeze_count() > 10_000
