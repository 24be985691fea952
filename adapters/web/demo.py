"""The demo page: a host page on another origin, under a strict policy.

It is what a bot owner's site looks like to the bubble: a different origin
than the gateway's (so the API is reached through CORS), and a Content
Security Policy that allows scripts, styles and connections only from the
gateway, with no 'unsafe-inline' and no 'unsafe-eval'.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit


def websocket_origin(gateway: str) -> str:
    """Return where the self-hosted Pusher server takes websockets."""
    url = urlsplit(gateway)
    scheme = "wss" if url.scheme == "https" else "ws"
    return f"{scheme}://{url.netloc}"


def content_security_policy(gateway: str, websocket: str) -> str:
    """Return the policy a site embedding the bubble needs, and no more."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {gateway}",
            f"style-src {gateway}",
            f"connect-src {gateway} {websocket}",
            f"img-src {gateway} https: data:",
            f"font-src {gateway}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def render_page(gateway: str, web_key: str, title: str, policy: str) -> str:
    snippet = (
        f'<script src="{gateway}/web/bubble.js" data-bot="{web_key}" '
        "async></script>"
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}: chat bubble demo</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{escape(gateway)}/web/demo.css">
</head>
<body>
<main class="demo">
<h1>{escape(title)}</h1>
<p>This page stands in for a bot owner's website. It is served from a
different origin than the gateway, under this Content Security Policy:</p>
<pre><code>{escape(policy)}</code></pre>
<p>The chat bubble in the corner is embedded with one tag:</p>
<pre><code>{escape(snippet)}</code></pre>
<p>Open it with the button at the bottom right, or with the keyboard.</p>
</main>
<script src="{escape(gateway)}/web/bubble.js" data-bot="{escape(web_key)}"
 data-title="{escape(title)}" async></script>
</body>
</html>
"""
