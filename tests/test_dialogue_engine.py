"""DialogueEngine: greetings, taps, free text, and the evaluation set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from botcore.botfile import BotDefinition, parse_bot_file
from botcore.dialogue import DialogueEngine
from botcore.engine import Engine
from botcore.greetings import GreetingDetector
from botcore.matching import TextAnalyser
from botcore.messages import Attachment, Inbound, Reply

REPO = Path(__file__).resolve().parent.parent

SHOP_FILE: dict[str, Any] = {
    "slug": "shop",
    "name": "Shop assistant",
    "language": "en",
    "greeting": [
        {
            "text": "Hi! Ask me about opening hours.",
            "quick_replies": [{"title": "Opening hours", "goto": "hours"}],
        }
    ],
    "fallback": [{"text": "Sorry, I did not get that."}],
    "dialogues": [
        {
            "id": "hours",
            "samples": ["when are you open", "opening hours"],
            "replies": [
                {
                    "text": "Monday to Friday, 9 to 17.",
                    "buttons": [
                        {"title": "Where are you?", "goto": "address"},
                        {"title": "Website", "url": "https://shop.example"},
                    ],
                }
            ],
        },
        {
            "id": "address",
            "samples": ["where are you"],
            "replies": [{"text": "Main street 1."}, {"text": "Next to the park."}],
        },
    ],
    "web": {"allowed_origins": ["https://shop.example"]},
}

CLINIC_FILE: dict[str, Any] = {
    "slug": "klinikk",
    "name": "Tannklinikken",
    "language": "nb",
    "greeting": [{"text": "Hei! Hva lurer du på?"}],
    "fallback": [{"text": "Beklager, det forsto jeg ikke."}],
    "dialogues": [
        {
            "id": "apningstider",
            "samples": ["åpningstider", "når har dere åpent"],
            "replies": [{"text": "Vi har åpent 8-16."}],
        },
        {
            "id": "bestille",
            "samples": ["bestille time", "ledig time hos tannlegen"],
            "replies": [{"text": "Bestill på nett."}],
        },
        {
            "id": "redd",
            "samples": ["jeg er redd for tannlegen", "tannlegeskrekk"],
            "replies": [{"text": "Vi tar oss god tid."}],
        },
    ],
}


@pytest.fixture(scope="module")
def shop() -> BotDefinition:
    return parse_bot_file(SHOP_FILE)


@pytest.fixture(scope="module")
def engine(shop: BotDefinition) -> DialogueEngine:
    return DialogueEngine(shop)


@pytest.fixture(scope="module")
def clinic() -> DialogueEngine:
    return DialogueEngine(parse_bot_file(CLINIC_FILE))


def replies_of(definition: BotDefinition, dialogue_id: str) -> list[Reply]:
    dialogue = definition.dialogue(dialogue_id)
    assert dialogue is not None
    return list(dialogue.replies)


def test_the_engine_satisfies_the_engine_protocol(engine: DialogueEngine) -> None:
    answering: Engine = engine
    assert isinstance(answering.respond(Inbound(kind="greeting")), list)


def test_a_greeting_gets_the_greeting(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    replies = engine.respond(Inbound(kind="greeting"))
    assert replies == list(shop.greeting)
    assert replies[0].quick_replies[0].payload == "hours"


def test_text_gets_the_best_dialogue(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    replies = engine.respond(Inbound(kind="text", text="Opening hours?"))
    assert replies == replies_of(shop, "hours")
    assert all(isinstance(reply, Reply) for reply in replies)


def test_text_the_bot_does_not_cover_gets_the_fallback(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    replies = engine.respond(Inbound(kind="text", text="tell me a joke"))
    assert replies == list(shop.fallback)


@pytest.mark.parametrize("text", [None, "", "   ", "?!"])
def test_missing_or_empty_text_gets_the_fallback(
    engine: DialogueEngine, shop: BotDefinition, text: str | None
) -> None:
    assert engine.respond(Inbound(kind="text", text=text)) == list(shop.fallback)


def test_a_tapped_button_gets_its_dialogue(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    replies = engine.respond(Inbound(kind="postback", payload="address"))
    assert replies == replies_of(shop, "address")
    assert len(replies) == 2


def test_a_tapped_button_wins_over_its_title(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    inbound = Inbound(kind="postback", payload="address", text="Opening hours")
    assert engine.respond(inbound) == replies_of(shop, "address")


def test_an_unknown_payload_with_text_matches_the_text(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    inbound = Inbound(kind="postback", payload="gone", text="Opening hours")
    assert engine.respond(inbound) == replies_of(shop, "hours")


@pytest.mark.parametrize("payload", ["gone", "", None])
def test_an_unknown_payload_without_text_gets_the_fallback(
    engine: DialogueEngine, shop: BotDefinition, payload: str | None
) -> None:
    inbound = Inbound(kind="postback", payload=payload)
    assert engine.respond(inbound) == list(shop.fallback)


def test_attachments_with_text_match_the_text(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    inbound = Inbound(
        kind="attachments",
        text="where are you?",
        attachments=(Attachment("image", "https://cdn.example/a.jpg"),),
    )
    assert engine.respond(inbound) == replies_of(shop, "address")


def test_attachments_alone_get_the_fallback(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    inbound = Inbound(kind="attachments", attachments=(Attachment("location"),))
    assert engine.respond(inbound) == list(shop.fallback)


def test_match_tells_the_dialogue_and_the_score(engine: DialogueEngine) -> None:
    decision = engine.match("when r u open")
    assert decision.label == "hours"
    assert 0 < decision.score <= 1
    assert engine.match(None).label is None
    assert engine.match("what is the capital of France").label is None


def test_a_bot_without_dialogues_always_falls_back() -> None:
    definition = parse_bot_file({**SHOP_FILE, "dialogues": [], "greeting": []})
    engine = DialogueEngine(definition)
    assert engine.respond(Inbound(kind="greeting")) == []
    text = Inbound(kind="text", text="opening hours")
    assert engine.respond(text) == list(definition.fallback)


def test_the_returned_list_is_a_copy(engine: DialogueEngine) -> None:
    engine.respond(Inbound(kind="greeting")).clear()
    assert engine.respond(Inbound(kind="greeting"))


@pytest.mark.parametrize(
    ("text", "dialogue_id"),
    [
        ("Åpningstider?", "apningstider"),
        ("aapningstider", "apningstider"),
        ("naar har dere aapent", "apningstider"),
        ("bestile en time", "bestille"),
        ("tannlegeskrek", "redd"),
        ("jeg er så redd for tannleger", "redd"),
        ("hva blir været i morgen", None),
    ],
)
def test_a_norwegian_bot_understands_norwegian(
    clinic: DialogueEngine, text: str, dialogue_id: str | None
) -> None:
    assert clinic.match(text).label == dialogue_id


# Free text against bots of a realistic size


def bot_file(slug: str, language: str, dialogues: dict[str, list[str]]) -> Any:
    """Return a bot file whose dialogues each reply with their own id."""
    return {
        "slug": slug,
        "name": slug,
        "language": language,
        "greeting": [
            {
                "text": "Hello!",
                "quick_replies": [
                    {"title": dialogue_id, "goto": dialogue_id}
                    for dialogue_id in list(dialogues)[:3]
                ],
            }
        ],
        "fallback": [{"text": "Sorry?"}],
        "dialogues": [
            {
                "id": dialogue_id,
                "samples": samples,
                "replies": [{"text": f"About {dialogue_id}"}],
            }
            for dialogue_id, samples in dialogues.items()
        ],
    }


OUTDOOR_SHOP = {
    "hours": ["when are you open", "opening hours", "are you open on sunday"],
    "address": ["where is the store", "how do I find you", "is there parking"],
    "shipping": ["how much is shipping", "delivery time", "do you ship abroad"],
    "returns": ["how do I return an item", "return policy", "return label"],
    "gift_cards": ["do you sell gift cards", "check gift card balance"],
    "account": ["I forgot my password", "reset password", "can't log in"],
    "rental": ["rent skis", "can I hire a kayak", "rental prices"],
    "warranty": ["my jacket is broken", "can you repair my zipper"],
    "human": ["talk to a person", "speak to a human"],
}

DENTAL_CLINIC = {
    "apningstider": ["åpningstider", "når har dere åpent", "er dere åpne på lørdag"],
    "bestille": ["bestille time", "ledig time hos tannlegen"],
    "avbestille": ["avbestille time", "flytte timen"],
    "priser": ["hva koster en undersøkelse", "prisliste"],
    "redd": ["jeg er redd for tannlegen", "tannlegeskrekk"],
    "akutt": ["akutt tannpine", "jeg har vondt i en tann"],
    "bleking": ["tannbleking", "hvitere tenner", "bleke tennene"],
    "regulering": ["tannregulering", "reguleringsbøyle"],
    "adresse": ["hvor ligger klinikken", "parkering ved klinikken"],
    "jobb": ["ledige stillinger", "jobbe som tannhelsesekretær"],
    "betaling": ["kan jeg betale med vipps", "betale med kort"],
}


@pytest.fixture(scope="module")
def outdoor_shop() -> DialogueEngine:
    return DialogueEngine(parse_bot_file(bot_file("outdoor", "en", OUTDOOR_SHOP)))


@pytest.fixture(scope="module")
def dental_clinic() -> DialogueEngine:
    return DialogueEngine(parse_bot_file(bot_file("klinikk", "nb", DENTAL_CLINIC)))


def answer(engine: DialogueEngine, text: str) -> str:
    """Return the text of the first reply the engine gives to a message."""
    return engine.respond(Inbound(kind="text", text=text))[0].text


@pytest.mark.parametrize(
    ("text", "dialogue_id"),
    [
        # one or two typos per word
        ("opning hours", "hours"),
        ("retrun polcy", "returns"),
        ("pasword forgoten", "account"),
        ("giftcard balanse", "gift_cards"),
        ("reset my pasword please", "account"),
        # accents, case and punctuation
        ("Rétürn pôlicy", "returns"),
        ("WHERE IS THE STORE???", "address"),
        # other word order
        ("hours opening", "hours"),
        ("policy for returns", "returns"),
        # extra words, everyday words the samples lack included
        ("hi there, could you tell me when you are open on saturday please", "hours"),
        ("I would like to know how much shipping costs to Norway", "shipping"),
        ("are you open tomorrow", "hours"),
        ("is the new store open on sunday", "hours"),
        # missing words, and words written together
        ("shipping?", "shipping"),
        ("kayak", "rental"),
        ("i cant login", "account"),
        ("my zipper broke", "warranty"),
    ],
)
def test_english_text_gets_its_dialogue(
    outdoor_shop: DialogueEngine, text: str, dialogue_id: str
) -> None:
    assert answer(outdoor_shop, text) == f"About {dialogue_id}"


@pytest.mark.parametrize(
    "text",
    [
        # each shares a word with a dialogue, but asks about something else
        "can I rent a car from you",
        "can you repair my car",
        "how do I return my library books",
        "can I return a rental car here",
        "do you sell train tickets",
        "where can I find the nearest pharmacy",
        "is there a pharmacy near the store",
        "what time is the football match",
        # shares nothing
        "custmer servise",
        "tell me a joke",
    ],
)
def test_english_questions_the_bot_does_not_cover_get_the_fallback(
    outdoor_shop: DialogueEngine, text: str
) -> None:
    assert answer(outdoor_shop, text) == "Sorry?"


@pytest.mark.parametrize(
    ("text", "dialogue_id"),
    [
        # æ ø å typed as ae oe aa, or as plain a and o
        ("aapningstider", "apningstider"),
        ("apningstider", "apningstider"),
        ("naar har dere aapent", "apningstider"),
        ("er dere aapne paa loerdag", "apningstider"),
        ("er dere apne pa lordag", "apningstider"),
        ("hva koster en undersoekelse", "priser"),
        ("hva koster en undersokelse", "priser"),
        ("reguleringsboeyle", "regulering"),
        ("reguleringsboyle", "regulering"),
        ("tannhelsesekretaer", "jobb"),
        ("tannhelsesekretar", "jobb"),
        # case, punctuation and compounds written apart or cut short
        ("ÅPNINGSTIDER?!", "apningstider"),
        ("åpnings tider", "apningstider"),
        ("bøyle", "regulering"),
        # other word order, extra and missing words
        ("time bestille", "bestille"),
        ("hei, jeg lurer på om jeg kan få bestille en time neste uke", "bestille"),
        ("er dere åpne på søndag", "apningstider"),
        ("avbestille", "avbestille"),
        ("tannpine", "akutt"),
        ("betale med vipps?", "betaling"),
        # typos
        ("tannlegeskrek", "redd"),
        ("bestile time", "bestille"),
    ],
)
def test_norwegian_text_gets_its_dialogue(
    dental_clinic: DialogueEngine, text: str, dialogue_id: str
) -> None:
    assert answer(dental_clinic, text) == f"About {dialogue_id}"


@pytest.mark.parametrize(
    "text",
    [
        # each shares a word with a dialogue, but asks about something else
        "jeg vil bleke håret",
        "kan jeg betale strømregningen her",
        "hva koster en ny bil",
        "kan jeg få time hos legen",
        "kan jeg bestille bord på restaurant",
        "jeg har vondt i ryggen",
        # shares nothing but a question word or everyday words
        "hvor gammel er du",
        "hva blir været i morgen",
    ],
)
def test_norwegian_questions_the_bot_does_not_cover_get_the_fallback(
    dental_clinic: DialogueEngine, text: str
) -> None:
    assert answer(dental_clinic, text) == "Sorry?"


@pytest.mark.parametrize(
    ("inbound", "first_reply"),
    [
        (Inbound(kind="greeting"), "Hello!"),
        (Inbound(kind="greeting", text="returns"), "Hello!"),
        (Inbound(kind="postback", payload="returns"), "About returns"),
        (Inbound(kind="postback", payload="human", text="hours"), "About human"),
        (Inbound(kind="postback", payload="gone", text="opening hours"), "About hours"),
        (Inbound(kind="postback", payload="gone"), "Sorry?"),
        (Inbound(kind="postback", payload="Returns"), "Sorry?"),
    ],
)
def test_greetings_and_taps_do_not_depend_on_matching(
    outdoor_shop: DialogueEngine, inbound: Inbound, first_reply: str
) -> None:
    assert outdoor_shop.respond(inbound)[0].text == first_reply


# Greetings typed as text


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "Hello!",
        "hey there",
        "hiii",
        "heyyy :)",
        "good morning",
        "Good evening everyone",
        "morning!",
        "hello? is anyone there",
        "hi, how are you?",
        "\U0001f44b",
        "hi \U0001f60a",
        # Norwegian greetings in an English bot
        "hei",
        "hallo!",
        "god morgen",
    ],
)
def test_an_english_bot_greets_a_typed_greeting(
    outdoor_shop: DialogueEngine, text: str
) -> None:
    assert answer(outdoor_shop, text) == "Hello!"


@pytest.mark.parametrize(
    "text",
    [
        "hei",
        "Hallo!",
        "hei hei",
        "heisann",
        "hei på deg",
        "hei alle sammen",
        "God morgen!",
        "god dag",
        "morn",
        "hei, hvordan går det?",
        "hi",
        "hello there",
    ],
)
def test_a_norwegian_bot_greets_a_typed_greeting(
    dental_clinic: DialogueEngine, text: str
) -> None:
    assert answer(dental_clinic, text) == "Hello!"


@pytest.mark.parametrize(
    ("bot", "text", "first_reply"),
    [
        # a greeting followed by a question answers the question
        ("outdoor_shop", "hi, when are you open", "About hours"),
        ("outdoor_shop", "Hello! do you ship abroad?", "About shipping"),
        ("outdoor_shop", "good morning, what is your return policy", "About returns"),
        ("outdoor_shop", "hey there, I forgot my password", "About account"),
        ("dental_clinic", "hei, når har dere åpent", "About apningstider"),
        ("dental_clinic", "god morgen, jeg vil bestille time", "About bestille"),
        ("dental_clinic", "hallo! hva koster en undersøkelse", "About priser"),
        # ... or falls back when the bot does not cover it
        ("outdoor_shop", "hi, can I rent a car from you", "Sorry?"),
        ("dental_clinic", "hei, hva blir været i morgen", "Sorry?"),
        # fillers alone, and other emoji, are no greeting
        ("outdoor_shop", "good", "Sorry?"),
        ("outdoor_shop", "is anyone there", "Sorry?"),
        ("outdoor_shop", "\U0001f600", "Sorry?"),
        ("dental_clinic", "alle sammen", "Sorry?"),
    ],
)
def test_a_greeting_with_a_question_answers_the_question(
    request: pytest.FixtureRequest, bot: str, text: str, first_reply: str
) -> None:
    engine: DialogueEngine = request.getfixturevalue(bot)
    assert answer(engine, text) == first_reply


@pytest.mark.parametrize(
    ("language", "text", "greeted", "rest"),
    [
        ("en", "Hi there, where are you?", True, ["where", "are", "you"]),
        ("en", "where are you", False, ["where", "are", "you"]),
        ("en", "HELLOOO!!!", True, []),
        ("en", "good morning team", True, []),
        ("en", "good prices", False, ["good", "prices"]),
        ("en", "\U0001f44b", True, []),
        ("en", "?!", False, []),
        ("nb", "Hei på deg! Åpningstider?", True, ["apningstider"]),
        ("nb", "god kveld", True, []),
        ("nb", "god service", False, ["god", "service"]),
    ],
)
def test_a_leading_greeting_is_told_apart_from_the_rest(
    language: str, text: str, greeted: bool, rest: list[str]
) -> None:
    detector = GreetingDetector(TextAnalyser(language))
    assert detector.split(text) == (greeted, rest)
    assert detector.only_greets(text) == (greeted and not rest)


def test_a_typed_greeting_gets_the_greeting_of_the_bot(
    engine: DialogueEngine, shop: BotDefinition
) -> None:
    replies = engine.respond(Inbound(kind="text", text="Hi there!"))
    assert replies == list(shop.greeting)
    assert replies[0].quick_replies[0].payload == "hours"


def test_a_bot_without_a_greeting_falls_back_on_a_typed_one() -> None:
    definition = parse_bot_file({**SHOP_FILE, "greeting": []})
    engine = DialogueEngine(definition)
    assert engine.respond(Inbound(kind="text", text="hello")) == list(
        definition.fallback
    )


def test_dialogues_whose_samples_greet_answer_greetings() -> None:
    dialogues = {**OUTDOOR_SHOP, "small_talk": ["hi", "how are you"]}
    engine = DialogueEngine(parse_bot_file(bot_file("chatty", "en", dialogues)))
    assert answer(engine, "hi!") == "About small_talk"
    assert answer(engine, "hello, how are you") == "About small_talk"
    assert answer(engine, "hi, when are you open") == "About hours"


def test_every_quick_reply_of_the_greeting_leads_to_its_dialogue(
    outdoor_shop: DialogueEngine,
) -> None:
    greeting = outdoor_shop.respond(Inbound(kind="greeting"))
    payloads = [reply.payload for reply in greeting[0].quick_replies]
    assert payloads == ["hours", "address", "shipping"]
    for payload in payloads:
        inbound = Inbound(kind="postback", payload=payload)
        assert outdoor_shop.respond(inbound)[0].text == f"About {payload}"


# The evaluation set of bench/data


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    """Load bench/matching_quality.py, which is a script, not a package."""
    path = REPO / "bench" / "matching_quality.py"
    spec = importlib.util.spec_from_file_location("matching_quality", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


SURFACE_TAGS = {"case", "punctuation", "accents", "split_words"}


def test_the_evaluation_set_is_large_and_honest(quality: ModuleType) -> None:
    bots = quality.load_bots()
    queries = [query for bot in bots for query in bot.queries]
    assert len(queries) >= 150
    assert sum(query.expect is None for query in queries) >= 40
    for bot in bots:
        analyser = DialogueEngine(bot.definition).index.analyser
        samples = [
            sample for dialogue in bot.definition.dialogues
            for sample in dialogue.samples
        ]
        sample_words = {tuple(analyser.words(sample)) for sample in samples}
        known_ids = {dialogue.id for dialogue in bot.definition.dialogues}
        for query in bot.queries:
            assert query.text not in samples, query
            if tuple(analyser.words(query.text)) in sample_words:
                # Only a test of case, punctuation or spelling may differ
                # from a sample by nothing else.
                assert set(query.tags) <= SURFACE_TAGS, query
            assert query.expect is None or query.expect in known_ids, query
