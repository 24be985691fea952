"""Seal stored secrets again with the first key of FIELD_ENCRYPTION_KEYS."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from adapters.facebook.pages import reseal_page_tokens


class Command(BaseCommand):
    help = (
        "Seal every stored page access token again with the first key of "
        "FIELD_ENCRYPTION_KEYS, so that the keys after it can be dropped. "
        "Running it again changes nothing. Prints counts, never a token."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = reseal_page_tokens()
        self.stdout.write(json.dumps({"page_tokens": counts}))
        if counts["unreadable"]:
            raise CommandError(
                f"{counts['unreadable']} page token(s) could not be decrypted "
                "with any configured key: add their key back, or reconnect "
                "those pages"
            )
