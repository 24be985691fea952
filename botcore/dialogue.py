"""The built-in engine: answer with the dialogue whose samples match best."""

from __future__ import annotations

from functools import cached_property

from botcore.botfile import BotDefinition, Dialogue
from botcore.greetings import GreetingDetector
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
        self.greetings = GreetingDetector(self.index.analyser)

    @cached_property
    def samples_greet(self) -> bool:
        """Tell whether the owner wrote greetings as samples, wanting those
        dialogues to answer them."""
        # Read when the first greeting comes, not on every build.
        return any(
            self.greetings.only_greets(sample)
            for dialogue in self.definition.dialogues
            for sample in dialogue.samples
        )

    def respond(self, inbound: Inbound) -> list[Reply]:
        if inbound.kind == "greeting":
            return list(self.definition.greeting)
        if inbound.kind == "postback" and inbound.payload in self.dialogues:
            return list(self.dialogues[inbound.payload].replies)
        return self.answer_text(inbound.text)

    def answer_text(self, text: str | None) -> list[Reply]:
        """Return the greeting for a typed greeting, else the replies of
        the dialogue matching a text, or the fallback."""
        if self.only_greets(text):
            return list(self.definition.greeting)
        dialogue_id = self.match(text).label
        if dialogue_id is None:
            return list(self.definition.fallback)
        return list(self.dialogues[dialogue_id].replies)

    def only_greets(self, text: str | None) -> bool:
        """Tell whether a text only greets and the bot has a greeting."""
        if not text or not self.definition.greeting:
            return False
        if not self.greetings.only_greets(text):
            return False
        return not (self.samples_greet and self.index.match(text).label)

    def match(self, text: str | None) -> Match:
        """Return the matching dialogue id (None: fall back) and its score.

        A greeting that opens the text is left out: it says nothing about
        the question.
        """
        if not text or not text.strip():
            return Match(None, 0.0)
        greeted, rest = self.greetings.split(text)
        if greeted and rest:
            return self.index.match(" ".join(rest))
        return self.index.match(text)
