"""Channel-agnostic message types shared by the adapters and the engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

InboundKind = Literal["greeting", "text", "postback", "attachments"]


@dataclass(frozen=True)
class Button:
    """A button under a reply: follows a dialogue (payload) or opens a URL."""

    title: str
    payload: str | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, str]:
        if self.url is not None:
            return {"title": self.title, "url": self.url}
        return {"title": self.title, "payload": self.payload or ""}


@dataclass(frozen=True)
class QuickReply:
    """A chip offered under a reply; it sends its payload back when tapped."""

    title: str
    payload: str

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class Reply:
    """One message the bot sends."""

    text: str
    buttons: tuple[Button, ...] = ()
    quick_replies: tuple[QuickReply, ...] = ()
    image: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "buttons": [button.as_dict() for button in self.buttons],
            "quick_replies": [chip.as_dict() for chip in self.quick_replies],
            "image": self.image,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=data.get("text") or "",
            buttons=tuple(
                Button(b["title"], payload=b.get("payload"), url=b.get("url"))
                for b in data.get("buttons") or ()
            ),
            quick_replies=tuple(
                QuickReply(q["title"], q["payload"])
                for q in data.get("quick_replies") or ()
            ),
            image=data.get("image"),
        )


@dataclass(frozen=True)
class Attachment:
    """Something a person sent that is not text: image, audio, location..."""

    kind: str
    url: str | None = None


@dataclass(frozen=True)
class Inbound:
    """What a person sent, as the bot core sees it, whatever the channel."""

    kind: InboundKind
    text: str | None = None
    payload: str | None = None
    attachments: tuple[Attachment, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "payload": self.payload,
            "attachments": [
                {"kind": a.kind, "url": a.url} for a in self.attachments
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inbound:
        return cls(
            kind=data["kind"],
            text=data.get("text"),
            payload=data.get("payload"),
            attachments=tuple(
                Attachment(a["kind"], a.get("url"))
                for a in data.get("attachments") or ()
            ),
        )
