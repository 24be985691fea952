"""Process-wide tuning of the gateway's servers: Daphne's requests, the GC.

Twisted parses the body of every form or multipart POST into its own
`request.args`, and reads the Content-Type header through the `email`
package to decide whether to. Daphne never looks at those arguments: it
hands the body as received to the application, which parses what it needs
itself. On the bubble's POSTs (a form for pusher-js's channel auth, JSON
for messages) that unused parse cost about a tenth of the server's CPU
(see bench/web_api.py), so the gateway's server skips it.

Python's collector also walks every object of the process in its full
passes, which under load came every few seconds and took 30 to 40 ms of
the event loop: the tail of the webhook's ack latency
(bench/facebook_ingest.py). Most of those objects are made while starting
(modules, Django's registries, the routes) and live as long as the process,
so once the application is loaded they are frozen out of the collector's
sight, which cut those passes to under 10 ms.
"""

from __future__ import annotations

import gc
from typing import Any

from daphne import http_protocol


class UnparsedBodyRequest(http_protocol.WebRequest):
    """Daphne's request, with Twisted's parsing of POST bodies turned off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


def install_unparsed_body_requests() -> None:
    """Make Daphne's HTTP protocol build its requests from our class.

    Daphne's factory looks the class up by name when each connection
    opens, so replacing it before the server accepts connections is enough.
    """
    http_protocol.WebRequest = UnparsedBodyRequest


def freeze_startup_objects() -> None:
    """Keep the objects that exist now out of the collector's passes.

    Call once the application is loaded. Garbage is collected first, so
    that only what is still in use is frozen.
    """
    gc.collect()
    gc.freeze()
