"""Origins compared as browsers write them; PUSHER_URL's credentials decoded."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

import pytest

from adapters.web.cors import canonical_origin
from tests.conftest import PYTHON, REPO, process_env


@pytest.mark.parametrize(("written", "canonical"), [
    ("https://shop.example", "https://shop.example"),
    ("HTTPS://Shop.EXAMPLE", "https://shop.example"),
    ("https://shop.example:443", "https://shop.example"),
    ("http://shop.example:80", "http://shop.example"),
    ("http://Shop.example:8080", "http://shop.example:8080"),
    # Another scheme's default port is a port like any other.
    ("https://shop.example:80", "https://shop.example:80"),
    ("http://shop.example:443", "http://shop.example:443"),
    ("http://[::1]:80", "http://[::1]"),
    ("http://[::1]:8000", "http://[::1]:8000"),
])
def test_an_origin_is_written_as_browsers_write_it(
    written: str, canonical: str
) -> None:
    assert canonical_origin(written) == canonical


@pytest.mark.parametrize("other", [
    "*", "null", "https://shop.example/path", "ftp://shop.example",
    "https://user@shop.example", "https://shop.example:99999", "not an origin",
])
def test_what_is_not_an_origin_stays_as_it_was(other: str) -> None:
    assert canonical_origin(other) == other


SHOW_PUSHER_SETTINGS = """
import json
import django
django.setup()
from django.conf import settings
from adapters.web.channel import CloudPublisher, client_options
from adapters.web.pusher.signing import channel_auth
cloud = CloudPublisher(settings.PUSHER_URL).client
print(json.dumps({
    "settings": [settings.PUSHER_APP_ID, settings.PUSHER_KEY,
                 settings.PUSHER_SECRET],
    "gateway_auth": channel_auth("1.2", "private-chat-x"),
    "publisher_auth": cloud.authenticate("private-chat-x", "1.2")["auth"],
    "browser_key": client_options({"headers": []})["key"],
}))
"""


def test_pusher_url_credentials_are_percent_decoded() -> None:
    env = process_env({
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "PUSHER_URL": "https://k%2Bey:s%2Fe%40cret%3D@api-eu.pusher.com/apps/42",
    })
    shown = subprocess.run(
        [PYTHON, "-c", SHOW_PUSHER_SETTINGS], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )
    found = json.loads(shown.stdout.strip().splitlines()[-1])
    assert found["settings"] == ["42", "k+ey", "s/e@cret="]
    signature = hmac.new(b"s/e@cret=", b"1.2:private-chat-x", hashlib.sha256)
    # The gateway signs channel auth with the secret Pusher knows, as the
    # pusher library does.
    assert found["gateway_auth"] == f"k+ey:{signature.hexdigest()}"
    assert found["publisher_auth"] == found["gateway_auth"]
    assert found["browser_key"] == "k+ey"
