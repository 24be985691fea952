"""Create or update a bot from a bot file."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from botcore.botfile import BotFileError
from storage.bots import import_bot


class Command(BaseCommand):
    help = "Create or update the bot described by a bot file (matched by slug)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the bot file (JSON)")
        parser.add_argument(
            "--owner", help="an existing user who becomes an owner of the bot"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from error
        except json.JSONDecodeError as error:
            raise CommandError(
                f"{path} is not valid JSON: line {error.lineno}, "
                f"column {error.colno}: {error.msg}"
            ) from error
        try:
            bot, changed = import_bot(data, options.get("owner"))
        except BotFileError as error:
            raise CommandError(f"invalid bot file, field {error}") from error
        except LookupError as error:
            raise CommandError(str(error)) from error
        summary = {"slug": bot.slug, "web_key": bot.web_key, "changed": changed}
        self.stdout.write(json.dumps(summary))
