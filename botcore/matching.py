"""Match what people type against the sample sentences of a bot.

A text becomes a list of terms: it is normalised (case, accents, Norwegian
letters), split into words, stripped of stop words and lightly stemmed.
Each term of a query is looked up in the vocabulary of the samples with a
tolerance for typos that grows with the length of the word.  An inverted
index then finds the labels whose samples share a term with the query, and
each is scored by how much of the query its samples cover together and how
much of its best covered sample the query covers, both weighted by how rare
a term is among the labels.

A word the bot has never seen weighs more than any term it knows: a
question about something else shares a word or two with the bot, but its
topic is what the bot lacks.  Everyday words ("new", "tomorrow", "mulig")
and question words weigh less, since they say little about the topic.
Beside such a word, a label is only answered when the words of the query
it knows, as typed or mistyped, outweigh the unseen ones: a related word
of the lexicon ("bill" for "invoice") is a guess that needs the support
of the rest of the query, not evidence of its own.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from botcore.lexicon import word_groups

SHORTEST_SPLIT_PART = 3
LINKING_LETTERS = "se"
# A word the bot has never seen weighs as a term used by half a label:
# more than any term it knows, as inverse label frequency would have it.
UNSEEN_LABEL_SHARE = 0.5
SHORTEST_AFFIX = 4
MOST_AFFIX_TERMS = 5
# Bounds that keep a long or garbled message from costing much time.
LONGEST_FUZZY_WORD = 24
MOST_QUERY_WORDS = 64

NORWEGIAN_CODES = frozenset({"no", "nb", "nn"})
LETTER_FOLDS = str.maketrans({
    "æ": "ae", "ø": "o", "å": "a", "œ": "oe", "ß": "ss",
    "đ": "d", "ð": "d", "þ": "th", "ł": "l", "\u0131": "i",
})
NORWEGIAN_SPELLINGS = (("aa", "a"), ("oe", "o"))
# Apostrophes, straight or typographic, join: "don't" -> "dont".
WORD_JOINERS = re.compile("['`\u00b4\u2018\u2019]")
# A word is letters and digits, hyphens inside it included.
WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")

# Function words, chat filler and shorthand, and light verbs; Norwegian
# ones in nynorsk and common dialect spellings too.  Question words (where, when,
# how, hvor, når, hvordan) are kept: they tell questions apart.  Prepositions
# and conjunctions are all listed: one the samples lack would pass for a topic.
ENGLISH_STOP_WORDS = """
a an the i me my mine myself you your yours u ur we us our it its they them
their he she him her is are am was were be been being do does did doing
done have has had having can could would should will shall may might must
to of in on at for from with about by as into onto up out off over and or
but if so that this these those there here then than just also any some
what which thing things something anything someone somebody anyone not no
very really still already again now today yet one way kind sort possible
possibly im ive id youre theyre dont cant cannot wont isnt arent doesnt
didnt hasnt havent wasnt whats
please pls plz hi hello hey thanks thank thx ty ok okay yes yeah guys
quick question wondering wonder like tell know let lets want wanted wanna
need get got go going goes make makes making take takes
r n ya yall wat wot wut abt cuz coz bc gonna gotta kinda tho lol btw
per via after before during under between without within through until
till since because while against across along among behind below above
beside besides near towards toward upon unless whether though although nor
yourself yourselves ourselves themselves himself herself itself his hers
theirs ours
"""

NORWEGIAN_STOP_WORDS = """
og i jeg eg det at en ei et ett den de dem du deg dere deres han hun ho
henne hans hennes vi oss meg seg sin sitt sine min mitt mine mi din ditt
dine var vart vår vårt våre er være vært blir ble blitt bli til som på med
av ikke ikkje der så men har hadde ha om over da då ved fra nå no ut opp
ned inn kan kunne skal skulle vil ville må måtte fått noen noe nokon noko hos
alle selv her hva kva hvilken hvilke dette disse denne bare også enn for
før etter mot uten hvis fordi mellom hver både sånn slik samme mange
kanskje vel jo altså
hei hallo takk tusen please ok okei ja nei gjerne lurer lurte ønsker ønske
trenger litt helst mye veldig
få får gå går gjøre gjør ta tar
ein eit eg mykje berre dykk dykkar dokker dokk me ka e d te va pga
per via gjennom under innen rundt bak foran langs blant mens eller enten
verken
"""

# Everyday words that say little about what a question is about: when the
# bot has never seen one, that tells little, and a word spelled as one is
# taken as meant, not as a typo of a word the bot knows.
ENGLISH_COMMON_WORDS = """
new old big bigger small smaller large larger little long short good better
best bad worse worst nice great fine right wrong same other another
different next last first second few many much more most less least every
each all both either enough own whole sure true real actual actually
always never often sometimes usually soon later early late ever even only
almost maybe perhaps probably exactly too quite pretty rather totally
completely around ago able option thing stuff question problem issue info
information detail people folks everyone everything nothing lot bit part
wait see look try use work say think feel seem happen ask give keep put
mean find time day today tomorrow tonight yesterday morning afternoon
evening night week weekend month year monday tuesday wednesday thursday
friday saturday sunday january february march april june july august
september october november december black white red blue green yellow grey
gray brown pink orange purple two three four five six seven eight nine ten
"""

NORWEGIAN_COMMON_WORDS = """
ny nytt nye gammel gammelt gamle stor stort store storre liten lite sma
mindre lang langt lange god godt gode bedre best dårlig fin fint flott bra
ille riktig feil annen annet andre neste siste første flere mer mest minst
hele allerede alltid aldri ofte snart senere tidlig sent egentlig faktisk
nok mulig umulig vanligvis akkurat omtrent ganske altfor helt skikkelig
ting spørsmål problem info informasjon folk person måte del vente finne se
prøve bruke spørre si tro synes idag morgen kveld natt uke helg måned år
mandag tirsdag onsdag torsdag fredag lørdag søndag januar februar mars
april juni juli august september oktober november desember svart hvit rød
blå grønn gul grå brun rosa tre fire fem seks sju syv åtte ni ti
"""

# Alone, a question word does not make a question the bot can answer.
ENGLISH_QUESTION_WORDS = "where when how why who whom whose"
NORWEGIAN_QUESTION_WORDS = (
    "hvor når hvordan hvorfor hvem kor kvar korleis kvifor kven åssen koss"
)

ENGLISH_SUFFIXES = (
    ("sses", "ss"), ("ies", "y"), ("ing", ""), ("ed", ""), ("ly", ""),
    ("s", ""),
)
NORWEGIAN_SUFFIXES = (
    "hetene", "heten", "heter", "ingene", "ingen", "inger", "endes", "ende",
    "ing", "ene", "ane", "ers", "ets", "ens", "er", "en", "et", "ar", "a",
    "e",
)
SHORTEST_STEM = 3
SHORTEST_E_STEM = 5
SHORTEST_Y_STEM = 6
# One vowel closed by one consonant, as in "hir(ing)" or "clos(ed)".
SHORT_SYLLABLE = re.compile(r"^[^aeiouy]*[aeiouy][^aeiouwxy]$")


@dataclass(frozen=True)
class MatchSettings:
    """The knobs of matching, calibrated on the dev split of bench/data."""

    # A label scoring below this is not trusted: the caller falls back.
    # Midway between the dev split's out-of-scope and in-scope scores, now
    # that a lone known word beside an unseen topic no longer scores.
    threshold: float = 0.46
    # The best label must beat the runner-up by more than this: a tie or a
    # near tie falls back.
    margin: float = 0.06
    # How much query coverage counts against sample coverage (0 to 1).
    query_coverage_share: float = 0.8
    # Similarity lost per edit between a typed word and a known one, times
    # the length of the known word: a typo weighs more in a short word.
    edit_penalty: float = 0.9
    # A typo match is discounted when the typed word is itself known.
    near_exact_factor: float = 0.5
    # Similarity of a word that starts or ends a known compound, or the
    # other way round ("broke" and "broken", "bøyle" in "tannbøyle").
    affix_similarity: float = 0.5
    # Weight of an everyday word the bot has never seen, relative to that
    # of other words it has never seen.
    common_word_weight: float = 0.25
    # Weight of a question word ("where", "når") relative to its rarity.
    question_word_weight: float = 0.5
    # Similarity of a known term related to a typed word in the lexicon of
    # the language ("fee" for "price"); discounted like a typo neighbour
    # when the typed word is itself known.
    related_similarity: float = 0.7


@dataclass(frozen=True)
class Match:
    """The label a text matched (None: fall back) and how sure that is."""

    label: str | None
    score: float
    runner_up: float = 0.0


@dataclass(frozen=True)
class QueryTerm:
    """A term of a query, the known terms it may stand for, and its weight."""

    term: str
    candidates: tuple[tuple[str, float], ...]
    weight: float
    # The candidates found only through the lexicon, not as typed.
    related: frozenset[str] = frozenset()

    def typed_similarity(self, known: Collection[str]) -> float:
        """Return the best similarity to a known term, as typed or mistyped."""
        return max(
            (
                similarity
                for other, similarity in self.candidates
                if other in known and other not in self.related
            ),
            default=0.0,
        )


def base_language(language: str) -> str:
    """Return the primary subtag of a language code ("nb-NO" -> "nb")."""
    return language.replace("_", "-").split("-")[0].casefold()


class TextAnalyser:
    """Turn text into comparable words and terms for one language."""

    def __init__(self, language: str) -> None:
        self.language = base_language(language)
        self.norwegian = self.language in NORWEGIAN_CODES
        self.english = self.language == "en"
        stop_words, question_words, common_words = "", "", ""
        if self.norwegian:
            stop_words = NORWEGIAN_STOP_WORDS
            question_words = NORWEGIAN_QUESTION_WORDS
            common_words = NORWEGIAN_COMMON_WORDS
        elif self.english:
            stop_words, question_words = ENGLISH_STOP_WORDS, ENGLISH_QUESTION_WORDS
            common_words = ENGLISH_COMMON_WORDS
        self.stop_words = frozenset(self.words(stop_words))
        self.question_terms = self._stems(question_words)
        self.common_terms = self._stems(common_words)

    def _stems(self, text: str) -> frozenset[str]:
        return frozenset(self.stem(word) for word in self.words(text))

    def normalise(self, text: str) -> str:
        """Fold case, accents and special letters; keep letters and digits."""
        folded = text.casefold().translate(LETTER_FOLDS)
        decomposed = unicodedata.normalize("NFKD", folded)
        plain = "".join(
            char for char in decomposed if not unicodedata.combining(char)
        )
        if self.norwegian:
            for spelling, replacement in NORWEGIAN_SPELLINGS:
                plain = plain.replace(spelling, replacement)
        return WORD_JOINERS.sub("", plain)

    def words(self, text: str) -> list[str]:
        """Return the normalised words of a text, in order."""
        found: list[str] = []
        for word in WORD.findall(self.normalise(text)):
            found.extend(_hyphenated_parts(word) if "-" in word else [word])
        return found

    def is_stop_word(self, word: str) -> bool:
        return word in self.stop_words

    def stem(self, word: str) -> str:
        """Strip a common inflection so related forms share one term."""
        if word.isdigit():
            return word
        if self.norwegian:
            return _strip_norwegian_suffix(word)
        if self.english:
            return _strip_english_suffix(word)
        # Other languages get no stop words and no stemming, only typos.
        return word

    def content_words(self, words: Sequence[str]) -> list[str]:
        """Drop stop words, unless that would leave nothing at all."""
        content = [word for word in words if not self.is_stop_word(word)]
        return content or list(words)

    def terms(self, text: str) -> list[str]:
        """Return the distinct terms of a text, in order of appearance."""
        return list(self.spellings(self.words(text)))

    def spellings(self, words: Sequence[str]) -> dict[str, str]:
        """Map the term of each content word to the word as it was written."""
        spelled: dict[str, str] = {}
        for word in self.content_words(words):
            spelled.setdefault(self.stem(word), word)
        return spelled


def _hyphenated_parts(word: str) -> list[str]:
    # "e-mail" and "t-shirt" are single words; "click-and-collect" is not.
    parts = word.split("-")
    if min(len(part) for part in parts) < SHORTEST_SPLIT_PART:
        return ["".join(parts)]
    return parts


def _strip_english_suffix(word: str) -> str:
    stem = _strip_inflection(word)
    if stem.endswith("e") and len(stem) >= SHORTEST_E_STEM:
        return stem[:-1]
    if stem.endswith("y") and len(stem) >= SHORTEST_Y_STEM:
        return stem[:-1]
    return stem


def _strip_inflection(word: str) -> str:
    for suffix, replacement in ENGLISH_SUFFIXES:
        if not word.endswith(suffix) or word.endswith("ss"):
            continue
        stem = word[: -len(suffix)] + replacement
        if len(stem) < SHORTEST_STEM:
            return word
        if suffix in ("ing", "ed"):
            return _restore_verb(stem)
        return stem
    return word


def _restore_verb(stem: str) -> str:
    """Undo the spelling changes of -ing and -ed ("shipping", "hiring")."""
    if stem[-1] == stem[-2] and stem[-1] not in "lsz":
        return stem[:-1]
    if SHORT_SYLLABLE.match(stem):
        return stem + "e"
    return stem


def _strip_norwegian_suffix(word: str) -> str:
    for suffix in NORWEGIAN_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= SHORTEST_STEM:
            return word[: -len(suffix)]
    return word


def allowed_edits(length: int) -> int:
    """Return how many typos a word of this length may carry."""
    # Measured on the dev split: a typo allowed in three letters took more
    # out-of-scope questions to a wrong dialogue than it brought in scope,
    # and a second one in six or seven letters changed no answer.
    if length <= 3:
        return 0
    if length <= 7:
        return 1
    return 2


def edit_distance(first: str, second: str, limit: int) -> int:
    """Return the edit distance with transpositions, or limit + 1 if above.

    Insertions, deletions, substitutions and swaps of two neighbouring
    letters each count as one edit (optimal string alignment).
    """
    if abs(len(first) - len(second)) > limit:
        return limit + 1
    previous_row: list[int] = []
    row = list(range(len(second) + 1))
    for i, first_char in enumerate(first, start=1):
        before, previous_row = previous_row, row
        row = [i] + [0] * len(second)
        for j, second_char in enumerate(second, start=1):
            cost = 0 if first_char == second_char else 1
            row[j] = min(
                previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost
            )
            if (
                i > 1 and j > 1 and first_char == second[j - 2]
                and first[i - 2] == second_char
            ):
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
    return min(row[-1], limit + 1)


def deletions(word: str, depth: int) -> set[str]:
    """Return the word and all strings made by deleting up to depth letters."""
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {
            variant[:index] + variant[index + 1:]
            for variant in frontier
            for index in range(len(variant))
        }
        found |= frontier
    return found


class FuzzyVocabulary:
    """Known terms, looked up with a tolerance for typos and compounds.

    A term is known under its written forms as well as its stem, so typos
    are measured against whole words.  Every form is stored under each
    string obtained by deleting letters from it (a symmetric-delete index):
    a typed word finds its neighbours by generating its own deletions
    instead of being compared with every form.  The beginnings and endings
    of longer terms are indexed too, so that a word missing from the
    vocabulary can still match part of a compound.
    """

    def __init__(
        self, term_of_form: Mapping[str, str], settings: MatchSettings | None = None
    ) -> None:
        self.settings = settings or MatchSettings()
        self.term_of_form = dict(term_of_form)
        self.terms = frozenset(self.term_of_form.values())
        self.by_deletion: dict[str, list[str]] = defaultdict(list)
        self.by_affix: dict[str, list[str]] = defaultdict(list)
        for form in self.term_of_form:
            for variant in deletions(form, allowed_edits(len(form))):
                self.by_deletion[variant].append(form)
        for term in self.terms:
            for affix in affixes(term):
                self.by_affix[affix].append(term)

    def __contains__(self, term: object) -> bool:
        return term in self.terms

    def lookup(
        self, term: str, written: str, common: bool = False
    ) -> dict[str, float]:
        """Return the terms a typed word may stand for, with similarities.

        A word that is known, or a real word of the language (`common`:
        an everyday word or one of the lexicon), is taken to be spelled as
        meant: its typo neighbours count for less.
        """
        if len(written) > LONGEST_FUZZY_WORD:
            return {term: 1.0} if term in self.terms else {}
        similar = self.near(written)
        for near_term, similarity in self.near(term).items():
            similar[near_term] = max(similarity, similar.get(near_term, 0.0))
        if term in self.terms or common:
            similar = {
                known: similarity * self.settings.near_exact_factor
                for known, similarity in similar.items()
            }
        if term in self.terms:
            similar[term] = 1.0
        return similar or self.compound_parts(term)

    def near(self, word: str) -> dict[str, float]:
        """Return the terms with a form within typo reach of a word."""
        forms: set[str] = set()
        for variant in deletions(word, allowed_edits(len(word))):
            forms.update(self.by_deletion.get(variant, ()))
        similar: dict[str, float] = {}
        for form in forms:
            limit = allowed_edits(min(len(word), len(form)))
            distance = edit_distance(word, form, limit)
            if distance > limit:
                continue
            term = self.term_of_form[form]
            similarity = 1.0 - self.settings.edit_penalty * distance / len(form)
            similar[term] = max(similarity, similar.get(term, 0.0))
        return similar

    def compound_parts(self, word: str) -> dict[str, float]:
        """Return known terms that start or end the word, and the reverse."""
        if len(word) < SHORTEST_AFFIX:
            return {}
        found = [
            part for part in affixes(word) if part in self.terms
        ]
        wider = self.by_affix.get(word, [])
        if len(wider) <= MOST_AFFIX_TERMS:
            found.extend(wider)
        return dict.fromkeys(found, self.settings.affix_similarity)


def affixes(word: str) -> Iterator[str]:
    """Yield the beginnings and endings of a word that are long enough."""
    for length in range(SHORTEST_AFFIX, len(word)):
        yield word[:length]
        yield word[-length:]


class SampleIndex:
    """Labelled samples, indexed to score a query against every label.

    A label scores by two coverages, each weighted by how rare a term is:
    how much of the query its samples cover together, and how much of its
    best covered sample the query covers.  Only labels that share a term
    with the query are looked at.
    """

    def __init__(
        self,
        labelled_samples: Iterable[tuple[str, Sequence[str]]],
        language: str,
        settings: MatchSettings | None = None,
    ) -> None:
        self.settings = settings or MatchSettings()
        self.analyser = TextAnalyser(language)
        self.related = related_terms(self.analyser.language)
        term_of_form: dict[str, str] = {}
        sample_terms: list[tuple[str, tuple[str, ...]]] = []
        for label, samples in labelled_samples:
            for sample in samples:
                spelled = self.analyser.spellings(self.analyser.words(sample))
                term_of_form.update({word: term for term, word in spelled.items()})
                term_of_form.update({term: term for term in spelled})
                if spelled:
                    sample_terms.append((label, tuple(spelled)))
        self.weights = self._weigh_terms(sample_terms)
        label_count = len({label for label, _ in sample_terms})
        self.unknown_weight = label_rarity(label_count, UNSEEN_LABEL_SHARE)
        self.vocabulary = FuzzyVocabulary(term_of_form, self.settings)
        self._index_labels(sample_terms)

    def _weigh_terms(
        self, sample_terms: list[tuple[str, tuple[str, ...]]]
    ) -> dict[str, float]:
        """Weigh terms by rarity; a question word says less than a topic."""
        weights = _term_weights(sample_terms)
        for term in self.analyser.question_terms & weights.keys():
            weights[term] *= self.settings.question_word_weight
        return weights

    def _index_labels(self, sample_terms: list[tuple[str, tuple[str, ...]]]) -> None:
        """Index the samples of each label and the labels of each term."""
        self.samples_of: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.terms_of: dict[str, set[str]] = defaultdict(set)
        self.labels_with: dict[str, list[str]] = defaultdict(list)
        self.question_labels = {
            label
            for label, terms in sample_terms
            if set(terms) <= self.analyser.question_terms
        }
        for label, terms in sample_terms:
            self.samples_of[label].append(self._term_shares(terms))
            for term in terms:
                if term not in self.terms_of[label]:
                    self.terms_of[label].add(term)
                    self.labels_with[term].append(label)

    def _term_shares(self, terms: tuple[str, ...]) -> dict[str, float]:
        total = sum(self.weights[term] for term in terms)
        return {term: self.weights[term] / total for term in terms}

    def match(self, text: str) -> Match:
        """Return the best label for a text, or None when it is not clear."""
        threshold, margin = self.settings.threshold, self.settings.margin
        ranked = self.ranked(text, floor=threshold - margin, limit=2)
        if not ranked:
            return Match(None, 0.0)
        label, score = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        if score < threshold or score - runner_up <= margin:
            return Match(None, score, runner_up)
        return Match(label, score, runner_up)

    def ranked(
        self, text: str, floor: float = 0.0, limit: int | None = None
    ) -> list[tuple[str, float]]:
        """Return the labels scoring at least `floor`, best first.

        With a limit, only that many of the best labels are sure to be
        found.  Labels that cannot make it are left out early, which is
        what keeps matching fast on large bots.
        """
        scores = self.scores(text, floor, limit)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:limit]

    def scores(
        self, text: str, floor: float = 0.0, limit: int | None = None
    ) -> dict[str, float]:
        """Return the score of the labels sharing a term with the text.

        Labels are scored in order of how high their query coverage alone
        could take them, and scoring stops once that cannot reach the floor
        or, with a limit, beat the worst of the best `limit` labels so far.
        """
        query = self.query_terms(text)
        similarity_of = _best_similarities(query)
        exponent = self.settings.query_coverage_share
        scores: dict[str, float] = {}
        best: list[float] = []
        for bound, label in self._bounds(query, floor):
            if bound < floor or (limit and len(best) >= limit and bound < best[-1]):
                break
            sample_share = self._best_sample_share(label, similarity_of)
            score = bound * sample_share ** (1 - exponent)
            if score >= floor:
                scores[label] = score
                if limit:
                    best = sorted([*best, score], reverse=True)[:limit]
        return scores

    def _bounds(
        self, query: list[QueryTerm], floor: float
    ) -> list[tuple[float, str]]:
        """Return the highest score each label could reach, highest first."""
        exponent = self.settings.query_coverage_share
        reachable = {
            label: share**exponent
            for label, share in self._query_shares(query, floor).items()
            if share > 0 and share**exponent >= floor
        }
        bounds = [
            (reachable[label], label)
            for label in self._eligible(query, list(reachable))
        ]
        return sorted(bounds, key=lambda item: (-item[0], item[1]))

    def _eligible(self, query: list[QueryTerm], labels: list[str]) -> list[str]:
        """Keep the labels that the query may match at all."""
        # Alone, question words only match samples made of question words.
        if not self._has_topic(query):
            return [label for label in labels if label in self.question_labels]
        unseen = sum(term.weight for term in query if self._is_unseen_topic(term))
        if not unseen:
            return labels
        return [
            label for label in labels if self._typed_evidence(query, label) > unseen
        ]

    def _typed_evidence(self, query: list[QueryTerm], label: str) -> float:
        """Weigh the topic words of a query that a label has as typed or
        mistyped, not only through the lexicon."""
        known = self.terms_of[label]
        return sum(
            term.weight * term.typed_similarity(known)
            for term in query
            if term.term not in self.analyser.question_terms
        )

    def _is_unseen_topic(self, term: QueryTerm) -> bool:
        """Tell whether a term is a word the bot has never seen that names a
        topic: not a number, an everyday word or a question word."""
        if term.candidates or term.term.isdigit():
            return False
        analyser = self.analyser
        return not (
            term.term in analyser.common_terms or term.term in analyser.question_terms
        )

    def _has_topic(self, query: list[QueryTerm]) -> bool:
        """Tell whether a known term other than a question word is asked."""
        return any(
            term.candidates and term.term not in self.analyser.question_terms
            for term in query
        )

    def query_terms(self, text: str) -> list[QueryTerm]:
        """Analyse a query into weighted terms with their known candidates."""
        written = self.analyser.words(text)[:MOST_QUERY_WORDS]
        words = self._split_compounds(self._join_split_words(written))
        spelled = self.analyser.spellings(words)
        return [self._query_term(term, word) for term, word in spelled.items()]

    def _query_term(self, term: str, written: str) -> QueryTerm:
        common = term in self.analyser.common_terms
        # A word of the lexicon is a real word: taken as spelled as meant.
        real_word = common or term in self.related
        typed = self.vocabulary.lookup(term, written, real_word)
        candidates = self._with_related(term, typed)
        if not candidates:
            return QueryTerm(term, (), self._unknown_weight(term, common))
        ordered = sorted(candidates.items(), key=lambda item: (-item[1], item[0]))
        related = frozenset(
            known for known, value in candidates.items() if typed.get(known) != value
        )
        return QueryTerm(
            term, tuple(ordered), self.weights[ordered[0][0]], related
        )

    def _with_related(
        self, term: str, candidates: dict[str, float]
    ) -> dict[str, float]:
        """Add the known terms related to a term or to what it may stand for."""
        factor = self.settings.related_similarity
        if term in self.vocabulary:
            factor *= self.settings.near_exact_factor
        sources = {term: 1.0, **candidates}
        found = dict(candidates)
        for source, similarity in sources.items():
            for other in self.related.get(source, ()):
                value = similarity * factor
                if other in self.vocabulary and value > found.get(other, 0.0):
                    found[other] = value
        return found

    def _unknown_weight(self, term: str, common: bool) -> float:
        """Weigh a word the bot has never seen."""
        if term.isdigit():
            return 0.0
        if common:
            return self.unknown_weight * self.settings.common_word_weight
        return self.unknown_weight

    def _query_shares(
        self, query: list[QueryTerm], floor: float
    ) -> dict[str, float]:
        """Return how much of the query each label's samples cover together.

        Terms are taken heaviest first.  Once the terms left weigh too little
        to lift a label the query has not touched yet above the floor, they
        only add to the labels already found: this spares walking the long
        label lists of common words.
        """
        query_weight = sum(term.weight for term in query)
        covered: dict[str, float] = defaultdict(float)
        if query_weight <= 0:
            return covered
        left = 1.0
        for term in sorted(query, key=lambda term: -term.weight):
            share = term.weight / query_weight
            left -= share
            matches = self._label_matches(term, covered, share, left, floor)
            for label, value in matches.items():
                covered[label] += share * value
        return covered

    def _label_matches(
        self,
        term: QueryTerm,
        covered: dict[str, float],
        share: float,
        left: float,
        floor: float,
    ) -> dict[str, float]:
        """Map each label having a candidate of the term to its best value.

        A candidate more common than the term is worth only its own weight:
        a typo close to a rare word and to a common one ("comt") is not
        strong evidence for every label that has the common one.
        """
        exponent = self.settings.query_coverage_share
        best: dict[str, float] = {}
        for known, similarity in term.candidates:
            value = similarity * min(1.0, self.weights[known] / term.weight)
            reachable = floor <= 0 or (left + share * value) ** exponent >= floor
            for label in self._labels_having(known, covered, reachable):
                if value > best.get(label, 0.0):
                    best[label] = value
        return best

    def _labels_having(
        self, known: str, covered: dict[str, float], new_ones_too: bool
    ) -> Iterable[str]:
        """Return the labels that have a term, or only those already covered
        when no new label could still reach the floor."""
        labels = self.labels_with[known]
        if new_ones_too:
            return labels
        if len(labels) <= len(covered):
            return [label for label in labels if label in covered]
        return [label for label in covered if known in self.terms_of[label]]

    def _best_sample_share(
        self, label: str, similarity_of: dict[str, float]
    ) -> float:
        """Return how much of its best covered sample the query covers."""
        return max(
            sum(
                share * similarity_of.get(term, 0.0)
                for term, share in shares.items()
            )
            for shares in self.samples_of[label]
        )

    def _join_split_words(self, words: list[str]) -> list[str]:
        """Join two words written apart that the bot knows as one ("gift
        card" -> "giftcard"), or that the lexicon knows ("sign in")."""
        joined: list[str] = []
        index = 0
        while index < len(words):
            pair = "".join(words[index:index + 2])
            if index + 1 < len(words) and self._prefers_joined(
                words[index], words[index + 1], pair
            ):
                joined.append(pair)
                index += 2
            else:
                joined.append(words[index])
                index += 1
        return joined

    def _prefers_joined(self, first: str, second: str, pair: str) -> bool:
        if not (self._is_known(pair) or self._has_known_relative(pair)):
            return False
        return not (self._is_known(first) and self._is_known(second))

    def _split_compounds(self, words: list[str]) -> list[str]:
        """Split a word the bot does not know into two it does ("login")."""
        result: list[str] = []
        for word in words:
            result.extend(self._split_word(word))
        return result

    def _split_word(self, word: str) -> list[str]:
        if self._is_known(word) or len(word) > LONGEST_FUZZY_WORD:
            return [word]
        for cut in range(SHORTEST_SPLIT_PART, len(word) - 1):
            head, tail = word[:cut], word[cut:]
            if not self._is_known(head):
                continue
            if self.analyser.is_stop_word(tail):
                return [head, tail]
            for rest in self._compound_tails(tail):
                if len(rest) >= SHORTEST_SPLIT_PART and self._is_known(rest):
                    return [head, rest]
        return [word]

    def _compound_tails(self, tail: str) -> Iterator[str]:
        """Yield the tail of a compound, and without a linking letter, as in
        Norwegian "parkering-s-plass" or "barn-e-hage"."""
        yield tail
        if self.analyser.norwegian and tail[0] in LINKING_LETTERS:
            yield tail[1:]

    def _is_known(self, word: str) -> bool:
        return self.analyser.stem(word) in self.vocabulary

    def _has_known_relative(self, word: str) -> bool:
        """Tell whether the lexicon relates a word to a term the bot knows."""
        related = self.related.get(self.analyser.stem(word), ())
        return any(term in self.vocabulary for term in related)


def _best_similarities(query: list[QueryTerm]) -> dict[str, float]:
    """Map each known term the query may mean to its best similarity."""
    similarity_of: dict[str, float] = {}
    for term in query:
        for known, similarity in term.candidates:
            if similarity > similarity_of.get(known, 0.0):
                similarity_of[known] = similarity
    return similarity_of


def _term_weights(sample_terms: list[tuple[str, tuple[str, ...]]]) -> dict[str, float]:
    """Weigh each term by how few labels use it (inverse label frequency)."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for label, terms in sample_terms:
        for term in terms:
            labels_of[term].add(label)
    label_count = len({label for label, _ in sample_terms})
    return {
        term: label_rarity(label_count, len(labels))
        for term, labels in labels_of.items()
    }


@cache
def related_terms(language: str) -> dict[str, frozenset[str]]:
    """Map each term of the language's lexicon to the terms related to it."""
    analyser = TextAnalyser(language)
    related: dict[str, set[str]] = defaultdict(set)
    for line in word_groups(analyser.language):
        group = {analyser.stem(word) for word in analyser.words(line)}
        for term in group:
            related[term] |= group - {term}
    return {term: frozenset(others) for term, others in related.items()}


def label_rarity(label_count: int, labels_using: float) -> float:
    """Return the inverse label frequency of a term used by some labels."""
    return math.log(1.0 + label_count / labels_using)
