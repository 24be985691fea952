"""Print the bot file of a bot."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from botcore.botfile import BotFileError
from storage.bots import export_bot
from storage.models import Bot


class Command(BaseCommand):
    help = "Print the bot file of the bot with this slug."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            bot = Bot.objects.get(slug=options["slug"])
        except Bot.DoesNotExist:
            raise CommandError(f"no bot with slug {options['slug']!r}") from None
        try:
            data = export_bot(bot)
        except BotFileError as error:
            raise CommandError(
                f"the stored bot is not a valid bot file, field {error}"
            ) from error
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
