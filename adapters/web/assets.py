"""Serve the bubble's files from the gateway's origin, under /web/.

The embed tag names /web/bubble.js, a stable address, so these answers are
cached only briefly and revalidated by ETag. pusher-js comes from npm
(node_modules) through the static files finders, or from the collected
static files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders

from adapters.web.cors import header
from gateway.consumers import PlainHttpConsumer

logger = logging.getLogger("gateway.web")
STATIC_DIR = Path(__file__).resolve().parent / "static" / "web"
CONTENT_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
BUBBLE_FILES = {"bubble.js", "bubble.css", "demo.css"}
PUSHER_FILE = "pusher.min.js"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


_assets: dict[str, Asset] = {}


def locate(name: str) -> Path | None:
    if name in BUBBLE_FILES:
        return STATIC_DIR / name
    if name == PUSHER_FILE:
        found = finders.find(PUSHER_FILE)
        if isinstance(found, str):
            return Path(found)
        collected = Path(settings.STATIC_ROOT) / PUSHER_FILE
        return collected if collected.exists() else None
    return None


def load_asset(name: str) -> Asset | None:
    """Return a file's contents, read once per process."""
    if name in _assets and not settings.DEBUG:
        return _assets[name]
    path = locate(name)
    if path is None or not path.is_file():
        logger.warning("bubble file %s is missing; is pusher-js installed?", name)
        return None
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:20]
    asset = Asset(body, CONTENT_TYPES[path.suffix], f'"{digest}"'.encode())
    _assets[name] = asset
    return asset


class AssetConsumer(PlainHttpConsumer):
    """GET /web/<file>: the bubble's script, styles and pusher-js."""

    async def handle(self, body: bytes) -> None:
        name = self.scope["url_route"]["kwargs"]["name"]
        asset = load_asset(name)
        if asset is None or self.scope["method"] not in {"GET", "HEAD"}:
            await self.send_response(404, b"Not found", headers=[
                (b"Content-Type", b"text/plain")
            ])
            return
        headers = [
            (b"Content-Type", asset.content_type),
            (b"ETag", asset.etag),
            (b"Cache-Control", b"public, max-age=300"),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Cross-Origin-Resource-Policy", b"cross-origin"),
        ]
        if header(self.scope, b"if-none-match") == asset.etag.decode():
            await self.send_response(304, b"", headers=headers)
            return
        content = b"" if self.scope["method"] == "HEAD" else asset.body
        await self.send_response(200, content, headers=headers)
