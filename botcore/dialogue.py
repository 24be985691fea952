"""The built-in engine: answer with the dialogue whose samples match best."""

from __future__ import annotations

from botcore.botfile import BotDefinition, Dialogue
from botcore.matching import Match, MatchSettings, SampleIndex
from botcore.messages import Inbound, Reply


class DialogueEngine:
    """Answer greetings, taps and free text from a bot definition."""

    def __init__(
        self, definition: BotDefinition, settings: MatchSettings | None = None
    ) -> None:
        self.definition = definition
        self.dialogues: dict[str, Dialogue] = {
            dialogue.id: dialogue for dialogue in definition.dialogues
        }
        self.index = SampleIndex(
            ((dialogue.id, dialogue.samples) for dialogue in definition.dialogues),
            definition.language,
            settings,
        )

    def respond(self, inbound: Inbound) -> list[Reply]:
        if inbound.kind == "greeting":
            return list(self.definition.greeting)
        if inbound.kind == "postback" and inbound.payload in self.dialogues:
            return list(self.dialogues[inbound.payload].replies)
        return self.answer_text(inbound.text)

    def answer_text(self, text: str | None) -> list[Reply]:
        """Return the replies of the dialogue matching a text, or fallback."""
        dialogue_id = self.match(text).label
        if dialogue_id is None:
            return list(self.definition.fallback)
        return list(self.dialogues[dialogue_id].replies)

    def match(self, text: str | None) -> Match:
        """Return the matching dialogue id (None: fall back) and its score."""
        if not text or not text.strip():
            return Match(None, 0.0)
        return self.index.match(text)
