"""Connect a Facebook page to a bot."""

import getpass
import json
import os
import re
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from adapters.facebook.pages import (
    PageMovedError,
    PageTokenError,
    check_page_token,
    connect_page,
)
from storage.models import Bot

PAGE_ID = re.compile(r"^[0-9]{1,64}$")
TOKEN_VARIABLE = "FACEBOOK_PAGE_ACCESS_TOKEN"  # noqa: S105 - a variable name
UNCHECKED = (
    "the token was NOT checked with the Graph API, and the page was not "
    "subscribed to the webhook's events."
)
NO_SECRET = (
    f"FACEBOOK_APP_SECRET is not set: {UNCHECKED} The webhook answers 503 "
    "until the secret is set; then run this command again."
)


class Command(BaseCommand):
    help = (
        "Connect a Facebook page to a bot. The page access token is read from "
        f"{TOKEN_VARIABLE} or, when that is unset, from standard input."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="the bot's slug")
        parser.add_argument("--page-id", required=True, help="the page's numeric id")
        parser.add_argument(
            "--move", action="store_true",
            help="take the page from the bot it is connected to now",
        )
        parser.add_argument(
            "--offline", action="store_true",
            help="store the token without checking it with the Graph API "
            "(as happens anyway while FACEBOOK_APP_SECRET is unset)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        page_id = options["page_id"]
        if not PAGE_ID.match(page_id):
            raise CommandError("--page-id must be the page's numeric id")
        bot = Bot.objects.filter(slug=options["slug"]).first()
        if bot is None:
            raise CommandError(f"no bot with slug {options['slug']!r}")
        token = read_token()
        # Graph calls need the app secret (appsecret_proof); without it the
        # page is connected all the same, and the operator is told.
        unchecked = None
        if options["offline"]:
            unchecked = f"--offline: {UNCHECKED}"
        elif not settings.FACEBOOK_APP_SECRET:
            unchecked = NO_SECRET
        else:
            check_token(token, page_id)
        try:
            page, created = connect_page(bot, page_id, token, move=options["move"])
        except PageMovedError as error:
            raise CommandError(f"{error}; use --move to take it") from None
        if unchecked:
            self.stderr.write(unchecked)
        summary = {"slug": bot.slug, "page_id": page.page_id,
                   "token_hint": page.token_hint, "created": created}
        self.stdout.write(json.dumps(summary))


def read_token() -> str:
    token = os.environ.get(TOKEN_VARIABLE)
    if token is None:
        if sys.stdin.isatty():
            token = getpass.getpass("Page access token: ")
        else:
            token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise CommandError(f"no page access token in {TOKEN_VARIABLE} or on stdin")
    return token


def check_token(token: str, page_id: str) -> None:
    """Check that the token belongs to the page, and subscribe the page."""
    try:
        check_page_token(token, page_id)
    except PageTokenError as error:
        raise CommandError(str(error)) from None
