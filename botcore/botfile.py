"""Read and write bot files, failing with the path of the offending field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botcore.messages import Button, QuickReply, Reply

MAX_BUTTONS = 3
MAX_QUICK_REPLIES = 13
MAX_TEXT = 2000
MAX_TITLE = 80
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
DIALOGUE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
TOP_LEVEL_FIELDS = {
    "slug", "name", "language", "greeting", "fallback", "dialogues", "web",
}
DIALOGUE_FIELDS = {"id", "samples", "replies"}
REPLY_FIELDS = {"text", "buttons", "quick_replies", "image"}
BUTTON_FIELDS = {"title", "goto", "url"}
QUICK_REPLY_FIELDS = {"title", "goto"}
WEB_FIELDS = {"allowed_origins"}


class BotFileError(ValueError):
    """A bot file that cannot be used; `field` names where it went wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Dialogue:
    id: str
    samples: tuple[str, ...]
    replies: tuple[Reply, ...]


@dataclass(frozen=True)
class BotDefinition:
    slug: str
    name: str
    language: str
    greeting: tuple[Reply, ...]
    fallback: tuple[Reply, ...]
    dialogues: tuple[Dialogue, ...]
    allowed_origins: tuple[str, ...]

    def dialogue(self, dialogue_id: str) -> Dialogue | None:
        for dialogue in self.dialogues:
            if dialogue.id == dialogue_id:
                return dialogue
        return None


def parse_bot_file(data: Any) -> BotDefinition:
    """Validate a decoded bot file and return its definition."""
    _object(data, TOP_LEVEL_FIELDS, "")
    slug = _string(data, "slug", "slug", pattern=SLUG_PATTERN)
    dialogues = _dialogues(data.get("dialogues", []))
    known_ids = {dialogue.id for dialogue in dialogues}
    definition = BotDefinition(
        slug=slug,
        name=_string(data, "name", "name", limit=200),
        language=_string(data, "language", "language", limit=10),
        greeting=_replies(data.get("greeting", []), "greeting"),
        fallback=_replies(data.get("fallback", []), "fallback"),
        dialogues=dialogues,
        allowed_origins=_origins(data.get("web", {})),
    )
    _check_gotos(definition, known_ids)
    return definition


def dump_bot_file(definition: BotDefinition) -> dict[str, Any]:
    """Return the bot file of a definition; parsing it gives it back."""
    return {
        "slug": definition.slug,
        "name": definition.name,
        "language": definition.language,
        "greeting": [_dump_reply(reply) for reply in definition.greeting],
        "fallback": [_dump_reply(reply) for reply in definition.fallback],
        "dialogues": [
            {
                "id": dialogue.id,
                "samples": list(dialogue.samples),
                "replies": [_dump_reply(reply) for reply in dialogue.replies],
            }
            for dialogue in definition.dialogues
        ],
        "web": {"allowed_origins": list(definition.allowed_origins)},
    }


def _string(
    data: dict[str, Any],
    key: str,
    path: str,
    *,
    limit: int = 100,
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BotFileError(path, "must be a non-empty string")
    if len(value) > limit:
        raise BotFileError(path, f"must be at most {limit} characters")
    if pattern is not None and not pattern.match(value):
        raise BotFileError(path, f"must match {pattern.pattern}")
    return value


def _object(value: Any, fields: set[str], path: str) -> dict[str, Any]:
    """Check that `value` is an object with no fields but `fields`."""
    if not isinstance(value, dict):
        raise BotFileError(path or "(file)", "must be an object")
    unknown = sorted(set(value) - fields)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise BotFileError(where, "unknown field")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise BotFileError(path, "must be a list")
    return value


def _dialogues(value: Any) -> tuple[Dialogue, ...]:
    seen: set[str] = set()
    dialogues = []
    for index, item in enumerate(_list(value, "dialogues")):
        path = f"dialogues[{index}]"
        _object(item, DIALOGUE_FIELDS, path)
        dialogue_id = _string(item, "id", f"{path}.id", pattern=DIALOGUE_ID_PATTERN)
        if dialogue_id in seen:
            raise BotFileError(f"{path}.id", f"duplicate dialogue id {dialogue_id!r}")
        seen.add(dialogue_id)
        samples = _list(item.get("samples", []), f"{path}.samples")
        for number, sample in enumerate(samples):
            if not isinstance(sample, str) or not sample.strip():
                raise BotFileError(
                    f"{path}.samples[{number}]", "must be a non-empty string"
                )
        replies = _replies(item.get("replies"), f"{path}.replies")
        dialogues.append(Dialogue(dialogue_id, tuple(samples), replies))
    return tuple(dialogues)


def _replies(value: Any, path: str) -> tuple[Reply, ...]:
    items = _list(value, path)
    return tuple(_reply(item, f"{path}[{index}]") for index, item in enumerate(items))


def _reply(item: Any, path: str) -> Reply:
    _object(item, REPLY_FIELDS, path)
    text = _string(item, "text", f"{path}.text", limit=MAX_TEXT)
    buttons = _list(item.get("buttons", []), f"{path}.buttons")
    if len(buttons) > MAX_BUTTONS:
        raise BotFileError(f"{path}.buttons", f"at most {MAX_BUTTONS} buttons")
    chips = _list(item.get("quick_replies", []), f"{path}.quick_replies")
    if len(chips) > MAX_QUICK_REPLIES:
        raise BotFileError(
            f"{path}.quick_replies", f"at most {MAX_QUICK_REPLIES} quick replies"
        )
    image = item.get("image")
    if image is not None:
        _https_url(image, f"{path}.image")
    return Reply(
        text=text,
        buttons=tuple(
            _button(button, f"{path}.buttons[{index}]")
            for index, button in enumerate(buttons)
        ),
        quick_replies=tuple(
            _quick_reply(chip, f"{path}.quick_replies[{index}]")
            for index, chip in enumerate(chips)
        ),
        image=image,
    )


def _button(item: Any, path: str) -> Button:
    _object(item, BUTTON_FIELDS, path)
    title = _string(item, "title", f"{path}.title", limit=MAX_TITLE)
    has_goto, has_url = "goto" in item, "url" in item
    if has_goto == has_url:
        raise BotFileError(path, "needs exactly one of goto and url")
    if has_url:
        return Button(title, url=_https_url(item["url"], f"{path}.url"))
    goto = _string(item, "goto", f"{path}.goto")
    return Button(title, payload=goto)


def _quick_reply(item: Any, path: str) -> QuickReply:
    if isinstance(item, dict) and "url" in item:
        raise BotFileError(f"{path}.url", "quick replies take goto only")
    _object(item, QUICK_REPLY_FIELDS, path)
    title = _string(item, "title", f"{path}.title", limit=MAX_TITLE)
    return QuickReply(title, _string(item, "goto", f"{path}.goto"))


def _https_url(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise BotFileError(path, "must be a string")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise BotFileError(path, "must be an https URL")
    return value


def _origins(web: Any) -> tuple[str, ...]:
    _object(web, WEB_FIELDS, "web")
    origins = _list(web.get("allowed_origins", []), "web.allowed_origins")
    for index, origin in enumerate(origins):
        if origin != "*" and (
            not isinstance(origin, str) or not ORIGIN_PATTERN.match(origin)
        ):
            raise BotFileError(
                f"web.allowed_origins[{index}]",
                'must be "*" or scheme://host[:port]',
            )
    return tuple(origins)


def _check_gotos(definition: BotDefinition, known_ids: set[str]) -> None:
    sections: list[tuple[str, tuple[Reply, ...]]] = [
        ("greeting", definition.greeting),
        ("fallback", definition.fallback),
    ]
    sections += [
        (f"dialogues[{index}].replies", dialogue.replies)
        for index, dialogue in enumerate(definition.dialogues)
    ]
    for path, replies in sections:
        for number, reply in enumerate(replies):
            targets = [
                (f"buttons[{i}]", b.payload) for i, b in enumerate(reply.buttons)
            ] + [
                (f"quick_replies[{i}]", q.payload)
                for i, q in enumerate(reply.quick_replies)
            ]
            for where, goto in targets:
                if goto is not None and goto not in known_ids:
                    raise BotFileError(
                        f"{path}[{number}].{where}.goto",
                        f"unknown dialogue {goto!r}",
                    )


def _dump_reply(reply: Reply) -> dict[str, Any]:
    data: dict[str, Any] = {"text": reply.text}
    if reply.buttons:
        data["buttons"] = [
            {"title": b.title, "url": b.url}
            if b.url is not None
            else {"title": b.title, "goto": b.payload}
            for b in reply.buttons
        ]
    if reply.quick_replies:
        data["quick_replies"] = [
            {"title": q.title, "goto": q.payload} for q in reply.quick_replies
        ]
    if reply.image is not None:
        data["image"] = reply.image
    return data
