"""Create, update and export bots from bot files."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from botcore.botfile import BotDefinition, dump_bot_file, parse_bot_file
from storage.models import Bot, Membership


def import_bot(data: Any, owner_username: str | None = None) -> tuple[Bot, bool]:
    """Validate a bot file and store it, all or nothing.

    Return the bot and whether anything changed. Raise BotFileError for a
    bad file and LookupError for an unknown owner, before writing anything.
    """
    definition = parse_bot_file(data)
    owner = None
    if owner_username is not None:
        try:
            owner = get_user_model().objects.get(username=owner_username)
        except get_user_model().DoesNotExist:
            raise LookupError(f"no user named {owner_username!r}") from None
    with transaction.atomic():
        bot, changed = _store_definition(definition)
        if owner is not None:
            changed = _make_owner(owner, bot) or changed
    return bot, changed


def _make_owner(user: Any, bot: Bot) -> bool:
    """Make the user an owner of the bot; return whether that is new."""
    membership, added = Membership.objects.get_or_create(
        user=user, bot=bot, defaults={"role": Membership.Role.OWNER}
    )
    promoted = membership.role != Membership.Role.OWNER
    if promoted:
        membership.role = Membership.Role.OWNER
        membership.save(update_fields=["role"])
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return added or promoted


def export_bot(bot: Bot) -> dict[str, Any]:
    """Return the bot file of a stored bot, in its canonical form."""
    return dump_bot_file(parse_bot_file(bot.bot_file()))


def _store_definition(definition: BotDefinition) -> tuple[Bot, bool]:
    canonical = dump_bot_file(definition)
    fields = {
        "name": canonical["name"],
        "language": canonical["language"],
        "greeting": canonical["greeting"],
        "fallback": canonical["fallback"],
        "dialogues": canonical["dialogues"],
        "allowed_origins": canonical["web"]["allowed_origins"],
    }
    bot = Bot.objects.select_for_update().filter(slug=definition.slug).first()
    if bot is None:
        return Bot.objects.create(slug=definition.slug, **fields), True
    changed = [name for name, value in fields.items() if getattr(bot, name) != value]
    if changed:
        for name in changed:
            setattr(bot, name, fields[name])
        bot.save(update_fields=[*changed, "updated_at"])
    return bot, bool(changed)
