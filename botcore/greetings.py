"""Tell a message that only greets from one that asks something.

People open a chat by typing "hi", "hei!" or "good morning 👋" as often as
by tapping a button.  Such a text has no topic to match, so the engine
answers it with the bot's greeting.  A greeting followed by anything else
("good morning, when are you open") is a question: the greeting is left
out and the rest is matched.

Greetings are known in English and Norwegian alike, whatever the language
of the bot: Norwegians often type "hi", and a "hei" means nothing else in
an English bot.  Letters held down ("hiii", "heyyy") count once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from botcore.matching import TextAnalyser

# One greeting a line, as people type them; each may stand alone.
GREETING_PHRASES = """
hi
hello
hey
heya
hiya
howdy
hallo
hullo
yo
greetings
sup
wassup
whats up
hi there
good morning
good afternoon
good evening
good day
gday
morning
evening
how are you
how are you doing
how r u
hows it going
nice to meet you
hei
heisann
heia
hoi
halla
hallais
hei sann
morn
morna
god morgen
god dag
goddag
god ettermiddag
god kveld
hvordan går det
hvordan har du det
hva skjer
"""

# Words that may stand beside a greeting without making it a question.
GREETING_FILLERS = """
there all everyone everybody anyone anybody is guys folks team friend
friends bot again and oh so today you
på deg dere alle sammen du der igjen og
"""

LONGEST_PHRASE = 4
WAVING_HAND = "\U0001f44b"
REPEATED_LETTER = re.compile(r"(.)\1+")


def _collapse(word: str) -> str:
    """Write a held-down letter once ("heyyy" -> "hey", "hello" -> "helo")."""
    return REPEATED_LETTER.sub(r"\1", word)


class GreetingDetector:
    """Recognise texts made only of greetings and filler words."""

    def __init__(self, analyser: TextAnalyser) -> None:
        self.analyser = analyser
        self.phrases = {
            tuple(self._plain_words(line))
            for line in GREETING_PHRASES.strip().splitlines()
        }
        self.fillers = frozenset(self._plain_words(GREETING_FILLERS))

    def _plain_words(self, text: str) -> list[str]:
        return [_collapse(word) for word in self.analyser.words(text)]

    def only_greets(self, text: str) -> bool:
        """Tell whether a text greets and says nothing else."""
        greeted, rest = self.split(text)
        return greeted and not rest

    def split(self, text: str) -> tuple[bool, list[str]]:
        """Tell whether a text opens with a greeting; return the words after
        it, or all of its words when it does not."""
        words = self.analyser.words(text)
        if not words:
            return WAVING_HAND in text, []
        plain = [_collapse(word) for word in words]
        greeted, index = False, 0
        while index < len(plain):
            length = self._phrase_at(plain, index)
            if length:
                greeted = True
            elif plain[index] in self.fillers:
                length = 1
            else:
                break
            index += length
        return greeted, words[index:] if greeted else words

    def _phrase_at(self, words: Sequence[str], index: int) -> int:
        """Return the length of the longest greeting starting at index."""
        longest = min(LONGEST_PHRASE, len(words) - index)
        for length in range(longest, 0, -1):
            if tuple(words[index:index + length]) in self.phrases:
                return length
        return 0
