"""Text normalisation, typo-tolerant lookup and scoring of botcore.matching."""

from __future__ import annotations

import pytest

from botcore.matching import (
    FuzzyVocabulary,
    MatchSettings,
    SampleIndex,
    TextAnalyser,
    allowed_edits,
    base_language,
    deletions,
    edit_distance,
    related_terms,
)

SHOP_SAMPLES = [
    ("hours", ["when are you open", "opening hours", "what time do you close"]),
    ("address", ["where are you", "what is your address", "is there parking"]),
    ("shipping", ["how much is shipping", "delivery cost", "is delivery free"]),
    ("returns", ["how do I return an item", "return policy", "return label"]),
    ("gift_cards", ["do you sell gift cards", "check gift card balance"]),
    ("account", ["I forgot my password", "reset password", "can't log in"]),
    ("contact", ["customer service phone number", "how can I contact you"]),
    ("warranty", ["my jacket is broken", "warranty on tents"]),
]

CLINIC_SAMPLES = [
    ("hours", ["åpningstider", "når har dere åpent", "er dere åpne på lørdag"]),
    ("booking", ["bestille time", "ledig time hos tannlegen"]),
    ("cancel", ["avbestille time", "jeg kan ikke komme på timen min"]),
    ("prices", ["hva koster en undersøkelse", "prisliste"]),
    ("fear", ["jeg er redd for tannlegen", "tannlegeskrekk", "nervøs"]),
    ("braces", ["tannregulering", "reguleringsbøyle", "skjeve tenner"]),
    ("contact", ["telefonnummer", "e-post", "ringe klinikken"]),
    ("hygiene", ["tannrens", "fjerne tannstein"]),
]


@pytest.fixture(scope="module")
def shop() -> SampleIndex:
    return SampleIndex(SHOP_SAMPLES, "en")


@pytest.fixture(scope="module")
def clinic() -> SampleIndex:
    return SampleIndex(CLINIC_SAMPLES, "nb")


# Normalisation and terms


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "Hello, WORLD!", ["hello", "world"]),
        ("en", "What\u2019s up?", ["whats", "up"]),
        ("en", "Café résumé naïve", ["cafe", "resume", "naive"]),
        ("en", "e-mail, click-and-collect", ["email", "click", "and", "collect"]),
        ("en", "Straße", ["strasse"]),
        ("nb", "Åpningstider på lørdag", ["apningstider", "pa", "lordag"]),
        ("nb", "aapningstider paa loerdag", ["apningstider", "pa", "lordag"]),
        ("nb", "Tannlegeskrekk og bøyle", ["tannlegeskrekk", "og", "boyle"]),
        ("nb", "lære", ["laere"]),
        ("en", "", []),
        ("en", "?!...", []),
    ],
)
def test_words_are_normalised(language: str, text: str, expected: list[str]) -> None:
    assert TextAnalyser(language).words(text) == expected


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("hours", "hour"),
        ("shipping", "ship"),
        ("hiring", "hire"),
        ("hire", "hire"),
        ("closing", "clos"),
        ("close", "clos"),
        ("deliveries", "deliver"),
        ("delivery", "deliver"),
        ("care", "care"),
        ("cars", "car"),
        ("address", "address"),
    ],
)
def test_english_stems_join_related_forms(word: str, stem: str) -> None:
    assert TextAnalyser("en").stem(word) == stem


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("timen", "tim"),
        ("timer", "tim"),
        ("betalingen", "betal"),
        ("betale", "betal"),
        ("tennene", "tenn"),
    ],
)
def test_norwegian_stems_join_related_forms(word: str, stem: str) -> None:
    assert TextAnalyser("nb").stem(word) == stem


def test_stop_words_are_dropped_unless_nothing_else_is_left() -> None:
    analyser = TextAnalyser("en")
    assert analyser.terms("Can I please get the opening hours?") == ["open", "hour"]
    assert analyser.terms("is it you") == ["is", "it", "you"]


def test_language_codes_are_reduced_to_their_base() -> None:
    assert base_language("nb-NO") == "nb"
    assert base_language("en_GB") == "en"
    assert TextAnalyser("no").norwegian
    assert TextAnalyser("nn").norwegian
    assert not TextAnalyser("en").norwegian


# Typo tolerance


@pytest.mark.parametrize(
    ("first", "second", "distance"),
    [
        ("order", "order", 0),
        ("order", "ordr", 1),
        ("order", "oredr", 1),
        ("order", "odrer", 1),
        ("shipping", "shiping", 1),
        ("customer", "custmoer", 1),
        ("warranty", "waranty", 1),
        ("international", "internatonal", 1),
        ("abc", "xyz", 3),
    ],
)
def test_edit_distance_counts_swaps_as_one(
    first: str, second: str, distance: int
) -> None:
    assert edit_distance(first, second, limit=3) == distance


def test_edit_distance_stops_above_the_limit() -> None:
    assert edit_distance("completely", "different", limit=2) == 3


def test_allowed_edits_grow_with_word_length() -> None:
    assert [allowed_edits(n) for n in (2, 3, 4, 7, 8, 12)] == [0, 0, 1, 1, 2, 2]


def test_deletions_reach_the_requested_depth() -> None:
    assert deletions("abc", 1) == {"abc", "bc", "ac", "ab"}
    assert "a" in deletions("abc", 2)


def test_vocabulary_finds_terms_within_typo_reach() -> None:
    vocabulary = FuzzyVocabulary({"password": "password", "order": "order"})
    assert set(vocabulary.lookup("pasword", "pasword")) == {"password"}
    assert set(vocabulary.lookup("pasword", "paswrod")) == {"password"}
    assert set(vocabulary.lookup("ordr", "ordr")) == {"order"}
    assert vocabulary.lookup("car", "car") == {}


def test_exact_terms_outrank_their_typo_neighbours() -> None:
    vocabulary = FuzzyVocabulary({"card": "card", "cart": "cart"})
    found = vocabulary.lookup("card", "card")
    assert found["card"] == 1.0
    assert found["cart"] < 0.5


def test_vocabulary_matches_parts_of_compounds() -> None:
    vocabulary = FuzzyVocabulary({"reguleringsboyl": "reguleringsboyl"})
    assert set(vocabulary.lookup("boyl", "boyle")) == {"reguleringsboyl"}


# Words the bot has never seen


def test_an_unseen_word_outweighs_every_known_term(shop: SampleIndex) -> None:
    weights = {term.term: term.weight for term in shop.query_terms("museum open")}
    assert weights["museum"] > max(shop.weights.values())


def test_an_unseen_everyday_word_weighs_less_than_an_unseen_topic(
    shop: SampleIndex,
) -> None:
    weights = {term.term: term.weight for term in shop.query_terms("tomorrow museum")}
    assert 0 < weights["tomorrow"] < weights["museum"]


def test_everyday_words_are_known_per_language() -> None:
    norwegian = TextAnalyser("nb")
    terms = {norwegian.stem(word) for word in norwegian.words("søndag mulig folk")}
    assert terms <= norwegian.common_terms
    assert TextAnalyser("en").stem("options") in TextAnalyser("en").common_terms
    assert TextAnalyser("de").common_terms == frozenset()


@pytest.mark.parametrize(
    ("bot", "query", "label"),
    [
        # an unseen everyday word does not stand in the way
        ("shop", "are you open tomorrow", "hours"),
        ("shop", "when do you close on friday", "hours"),
        ("shop", "is delivery free for big orders", "shipping"),
        ("clinic", "er dere åpne i morgen", "hours"),
        ("clinic", "er dere åpne på søndag", "hours"),
        # an unseen topic outweighs the one word it shares with a sample
        ("shop", "is the museum open", None),
        ("shop", "my bike is broken", None),
        ("clinic", "hva koster en ny bil", None),
        ("clinic", "ringe legen", None),
    ],
)
def test_unseen_everyday_words_pass_and_unseen_topics_fall_back(
    request: pytest.FixtureRequest, bot: str, query: str, label: str | None
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label == label


def test_an_everyday_word_is_not_taken_for_a_typo() -> None:
    index = SampleIndex(
        [("address", ["find the store"]), ("hours", ["opening hours"])], "en"
    )
    assert index.match("fnid the store").label == "address"
    assert index.match("fine").label is None
    vocabulary = FuzzyVocabulary({"find": "find"})
    as_typed = vocabulary.lookup("fine", "fine")["find"]
    assert vocabulary.lookup("fine", "fine", common=True)["find"] < as_typed


def test_a_question_word_weighs_less_than_a_topic_as_rare() -> None:
    index = SampleIndex(
        [("address", ["where is the store"]), ("hours", ["opening hours"])], "en"
    )
    where, store = (index.analyser.stem(word) for word in ("where", "store"))
    assert index.weights[where] < index.weights[store]


# Matching, English


@pytest.mark.parametrize(
    ("query", "label"),
    [
        # any case and punctuation
        ("WHEN ARE YOU OPEN???", "hours"),
        ("what's your address", "address"),
        # other word order
        ("hours opening", "hours"),
        ("policy on returns", "returns"),
        # extra words
        ("hi there, could you tell me your opening hours please", "hours"),
        ("I would like to know the return policy for shoes", "returns"),
        # missing words
        ("hours?", "hours"),
        ("parking", "address"),
        ("delivery", "shipping"),
        # one or two typos per word
        ("opneing hours", "hours"),
        ("retrun polcy", "returns"),
        ("custmer servise phone", "contact"),
        ("pasword reset", "account"),
        ("shiping cost", "shipping"),
        # words written together or apart
        ("giftcard balance", "gift_cards"),
        ("i cant login", "account"),
        # accents
        ("Rétürn pölicy", "returns"),
    ],
)
def test_english_queries_find_their_label(
    shop: SampleIndex, query: str, label: str
) -> None:
    assert shop.match(query).label == label


@pytest.mark.parametrize(
    "query",
    [
        "what is the weather tomorrow",
        "tell me a joke",
        "who won the football match",
        "how are you",
        "asdfgh",
        "",
        "?!",
        "42",
    ],
)
def test_english_questions_out_of_scope_fall_back(
    shop: SampleIndex, query: str
) -> None:
    assert shop.match(query).label is None


def test_a_question_word_alone_matches_only_question_samples(
    shop: SampleIndex,
) -> None:
    assert shop.match("where are you?").label == "address"
    assert shop.match("how").label is None


def test_ties_fall_back() -> None:
    index = SampleIndex([("a", ["red box"]), ("b", ["red bag"])], "en")
    decision = index.match("red")
    assert decision.label is None
    assert decision.score == decision.runner_up


def test_match_reports_its_score(shop: SampleIndex) -> None:
    exact = shop.match("reset password")
    fuzzy = shop.match("resett pasword please")
    assert exact.label == fuzzy.label == "account"
    assert exact.score == pytest.approx(1.0)
    assert 0 < fuzzy.score < exact.score


def test_ranked_lists_every_touched_label_best_first(shop: SampleIndex) -> None:
    ranked = shop.ranked("return shipping")
    assert {label for label, _ in ranked[:2]} == {"returns", "shipping"}
    assert [score for _, score in ranked] == sorted(
        (score for _, score in ranked), reverse=True
    )


def test_an_empty_index_falls_back() -> None:
    index = SampleIndex([], "en")
    assert index.match("anything").label is None


# Matching, Norwegian


@pytest.mark.parametrize(
    ("query", "label"),
    [
        # any case and punctuation
        ("ÅPNINGSTIDER?!", "hours"),
        # æ ø å typed as ae oe aa, or as o and a
        ("aapningstider", "hours"),
        ("apningstider", "hours"),
        ("er dere aapne paa loerdag", "hours"),
        ("nervos", "fear"),
        ("jeg er redd for tannlegen", "fear"),
        # other word order
        ("time bestille", "booking"),
        # extra words
        ("hei, jeg lurer på om jeg kan bestille en time neste uke", "booking"),
        # missing words
        ("avbestille", "cancel"),
        # typos
        ("tannlegeskrek", "fear"),
        ("tannreguleing", "braces"),
        ("bestile time", "booking"),
        # compounds, hyphens and inflections
        ("bøyle", "braces"),
        ("epost", "contact"),
        ("åpnings tider", "hours"),
        ("hva koster undersøkelsen", "prices"),
    ],
)
def test_norwegian_queries_find_their_label(
    clinic: SampleIndex, query: str, label: str
) -> None:
    assert clinic.match(query).label == label


@pytest.mark.parametrize(
    "query",
    [
        "hva blir været i morgen",
        "fortell en vits",
        "hvem vant kampen i går",
        "hei hvordan går det",
        "sdfjkl",
    ],
)
def test_norwegian_questions_out_of_scope_fall_back(
    clinic: SampleIndex, query: str
) -> None:
    assert clinic.match(query).label is None


@pytest.mark.parametrize(
    "text",
    [
        "x" * 5000,
        "a-" * 2000,
        "-".join(["abcdef"] * 500),
        "asdf " * 1000,
        "\u0301" * 100,
        "\U0001f600\U0001f44d",
        "\x00\n\t",
    ],
)
def test_long_or_garbled_text_falls_back(shop: SampleIndex, text: str) -> None:
    assert shop.match(text).label is None


def test_a_long_message_still_matches_its_topic(shop: SampleIndex) -> None:
    text = "hello, " + "I have a question about the " * 3 + "return policy"
    assert shop.match(text).label == "returns"


def test_other_languages_match_without_stemming_or_stop_words() -> None:
    index = SampleIndex([("hours", ["öffnungszeiten"]), ("shop", ["laden"])], "de")
    assert index.analyser.stop_words == frozenset()
    assert index.match("Offnungszeiten?").label == "hours"
    assert index.match("öfnungszeiten").label == "hours"
    assert index.match("wetter").label is None


# Related words of the lexicon

SERVICE_SAMPLES = [
    ("prices", ["price list", "how much is a membership"]),
    ("cancel", ["cancel my membership", "cancel my subscription"]),
    ("access", ["is there an elevator", "wheelchair access"]),
    ("hours", ["opening hours", "when are you open"]),
    ("account", ["I can't log in", "reset password"]),
    ("jobs", ["job vacancies", "work for you"]),
    ("pets", ["are dogs allowed", "bring my dog"]),
]

TJENESTE_SAMPLES = [
    ("priser", ["hva koster det", "prisliste"]),
    ("avbestille", ["avbestille timen", "avbestille abonnement"]),
    ("levering", ["hvor lang er leveringstiden", "levering hjem"]),
    ("redd", ["jeg er redd for tannlegen"]),
    ("barn", ["tilbud for barn", "barn under 12"]),
    ("bursdag", ["feiring av bursdag"]),
]


@pytest.fixture(scope="module")
def service() -> SampleIndex:
    return SampleIndex(SERVICE_SAMPLES, "en")


@pytest.fixture(scope="module")
def tjeneste() -> SampleIndex:
    return SampleIndex(TJENESTE_SAMPLES, "nb")


@pytest.mark.parametrize(
    ("bot", "query", "label"),
    [
        # a related word the samples lack
        ("service", "what is the monthly fee", "prices"),
        ("service", "how much does it cost", "prices"),
        ("service", "do you have a lift", "access"),
        ("service", "how do I stop my subscription", "cancel"),
        ("service", "terminate membership", "cancel"),
        ("service", "careers?", "jobs"),
        ("service", "can I bring my cat", "pets"),
        ("tjeneste", "hva er prisen", "priser"),
        ("tjeneste", "kansellere abonnementet", "avbestille"),
        ("tjeneste", "hvor lang er frakten", "levering"),
        ("tjeneste", "jeg gruer meg til tannlegen", "redd"),
        ("tjeneste", "rabatt for ungene", "barn"),
        # a typo of a related word
        ("service", "do you have an elevater or lift", "access"),
        # written apart, as the lexicon knows the word ("sign in")
        ("service", "I cannot sign in", "account"),
        # chat shorthand and nynorsk function words are not topics
        ("service", "r u open", "hours"),
        ("service", "wat time r u open", "hours"),
        ("tjeneste", "kor mykje kostar det", "priser"),
        ("tjeneste", "e det tilbud for barn", "barn"),
        # a Norwegian compound with a linking letter
        ("tjeneste", "bursdagsfeiring", "bursdag"),
    ],
)
def test_related_words_find_their_label(
    request: pytest.FixtureRequest, bot: str, query: str, label: str
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label == label


@pytest.mark.parametrize(
    ("bot", "query"),
    [
        # words about the same subject are not related
        ("service", "can I take the train"),
        ("service", "do you sell dog food"),
        ("service", "what is the price of a car"),
        ("tjeneste", "hva koster en ny bil"),
        ("tjeneste", "når går toget"),
    ],
)
def test_related_words_do_not_bring_in_other_topics(
    request: pytest.FixtureRequest, bot: str, query: str
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label is None


def test_the_lexicon_relates_stems_both_ways() -> None:
    english = related_terms("en")
    stem = TextAnalyser("en").stem
    assert stem("price") in english[stem("fees")]
    assert stem("fees") in english[stem("price")]
    assert stem("lift") in english[stem("elevator")]
    assert stem("price") not in english[stem("price")]
    norwegian = related_terms("nb-NO")
    assert TextAnalyser("nb").stem("pris") in norwegian["kostnad"]
    assert related_terms("de") == {}


def test_a_related_word_counts_less_than_the_word_itself() -> None:
    stem = TextAnalyser("en").stem
    fee, price = stem("fee"), stem("price")
    index = SampleIndex([("prices", ["price list"]), ("fees", ["late fee"])], "en")
    found = dict(index.query_terms("fee")[0].candidates)
    assert found[fee] == 1.0
    assert 0 < found[price] < MatchSettings().related_similarity
    assert index.match("late fee").label == "fees"
    unknown = SampleIndex([("prices", ["price list"])], "en").query_terms("fee")
    assert dict(unknown[0].candidates)[price] == MatchSettings().related_similarity


def test_a_word_of_the_lexicon_is_not_taken_for_a_typo() -> None:
    index = SampleIndex(
        [("access", ["is there an elevator"]), ("prices", ["price list"])], "en"
    )
    candidates = dict(index.query_terms("lift")[0].candidates)
    assert candidates["elevator"] > candidates["list"]
    assert index.match("do you have a lift").label == "access"


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("bursdagsfeiring", ["bursdag", "feir"]),
        ("parkeringsplass", ["parker", "plass"]),
        ("parkeringplass", ["parker", "plass"]),
        ("parkeringsxplass", ["parkeringsxplass"]),
    ],
)
def test_a_norwegian_compound_splits_at_a_linking_letter(
    query: str, terms: list[str]
) -> None:
    index = SampleIndex(
        [("bursdag", ["feiring av bursdag"]), ("parkering", ["parkering", "plass"])],
        "nb",
    )
    assert [term.term for term in index.query_terms(query)] == terms


# Words the bot has never seen against the words it knows


@pytest.mark.parametrize(
    ("bot", "query"),
    [
        # one word a label has, as typed, beside a topic the bot lacks
        ("shop", "bicycle parking"),
        ("clinic", "åpningstider for apoteket"),
        ("clinic", "telefonnummer til legen"),
        ("clinic", "tannregulering for hunden"),
        # a typo of a word a label has
        ("clinic", "tannreguleing for hunden"),
        # a word a label has only through the lexicon does not count
        ("service", "stop my newspaper subscription"),
        ("service", "end my newspaper subscription"),
        ("tjeneste", "kansellere abonnementet på avisen"),
    ],
)
def test_an_unseen_topic_needs_more_known_words_to_match(
    request: pytest.FixtureRequest, bot: str, query: str
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label is None
    assert index.ranked(query) == []


@pytest.mark.parametrize(
    ("bot", "query", "label"),
    [
        ("service", "cancel my newspaper subscription", "cancel"),
        ("service", "opening hours of the pharmacy", "hours"),
        ("service", "resett my router password", "account"),
        ("shop", "delivry cost to mars", "shipping"),
        ("shop", "gift card for amazon", "gift_cards"),
    ],
)
def test_known_words_that_outweigh_an_unseen_topic_match(
    request: pytest.FixtureRequest, bot: str, query: str, label: str
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label == label


def test_a_term_tells_its_related_candidates_from_its_typed_ones() -> None:
    index = SampleIndex([("invoice", ["copy of my invoice"])], "en")
    invoice = index.analyser.stem("invoice")
    (bill,) = index.query_terms("bill")
    assert bill.related == {invoice}
    assert bill.typed_similarity({invoice}) == 0.0
    (typo,) = index.query_terms("invoise")
    assert typo.related == frozenset()
    assert 0 < typo.typed_similarity({invoice}) < 1
    assert typo.typed_similarity({"copy"}) == 0.0


@pytest.mark.parametrize(
    ("bot", "query", "label"),
    [
        ("service", "how much does it cost per month", "prices"),
        ("service", "opening hours during christmas", "hours"),
        ("shop", "can I return it after a week", "returns"),
        ("shop", "is there parking near you", "address"),
        ("tjeneste", "hva koster det per time", "priser"),
        ("tjeneste", "levering innen fredag", "levering"),
        ("clinic", "bestille time rundt jul", "booking"),
    ],
)
def test_a_function_word_the_samples_lack_is_no_topic(
    request: pytest.FixtureRequest, bot: str, query: str, label: str
) -> None:
    index: SampleIndex = request.getfixturevalue(bot)
    assert index.match(query).label == label
