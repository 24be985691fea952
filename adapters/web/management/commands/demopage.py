"""Serve the demo page, on its own port, so that it has its own origin."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from adapters.web.demo import content_security_policy, render_page, websocket_origin
from storage.models import Bot


class Command(BaseCommand):
    help = "Serve a host page with the chat bubble, on another origin."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument(
            "--gateway", default="http://localhost:8000",
            help="the gateway's origin, as browsers reach it",
        )
        parser.add_argument(
            "--websocket", default="",
            help="where browsers open the Pusher websocket "
            "(default: the gateway's own origin, ws or wss)",
        )
        parser.add_argument("--bot", default="demo", help="slug of the bot")
        parser.add_argument("--web-key", default="", help="web key of the bot")

    def handle(self, *args: Any, **options: Any) -> None:
        gateway = options["gateway"].rstrip("/")
        websocket = options["websocket"] or websocket_origin(gateway)
        page = DemoPage(gateway, websocket, options["bot"], options["web_key"])
        try:
            server = ThreadingHTTPServer(
                (options["bind"], options["port"]), handler_for(page)
            )
        except OSError as error:
            raise CommandError(f"cannot listen: {error}") from error
        self.stdout.write(f"demo page on port {options['port']}", ending="\n")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.server_close()


class DemoPage:
    def __init__(self, gateway: str, websocket: str, slug: str, web_key: str):
        self.gateway = gateway
        self.policy = content_security_policy(gateway, websocket)
        self.slug = slug
        self.web_key = web_key

    def render(self) -> bytes | None:
        close_old_connections()
        if self.web_key:
            bot = Bot.objects.filter(web_key=self.web_key).first()
        else:
            bot = Bot.objects.filter(slug=self.slug).first()
        if bot is None:
            return None
        page = render_page(self.gateway, bot.web_key, bot.name, self.policy)
        return page.encode()


def handler_for(page: DemoPage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "demo"
        sys_version = ""

        def do_GET(self) -> None:
            body = page.render() if self.path.split("?")[0] == "/" else None
            if body is None:
                self.answer(404, b"Not found", "text/plain")
                return
            self.answer(200, body, "text/html; charset=utf-8")

        def answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", page.policy)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Log nothing: the default line starts with the client address."""

    return Handler
