"""Measure how fast the dialogue engine builds and answers as bots grow.

Run from the repository root:

    .venv/bin/python bench/matching_latency.py [--queries N] [--seed S]

Synthetic bots of 10, 100 and 1,000 dialogues with 10 samples each are
generated from a fixed word list with a seeded random generator, and so are
the queries: rephrased samples with typos, dropped and extra words, plus
questions made of unrelated words.  The table gives the build time and the
50th and 99th percentile of the time per query, for the engine and for the
difflib baseline of bench/matching_quality.py, on one CPU core when the
system allows pinning.  Both answer the same queries, after a few warm-up
queries of their own that are not timed.  Times are CPU time of the
benchmark's thread, so that other processes sharing the core do not count;
the 99th percentile of wall-clock time is shown beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.matching_quality import DifflibBaseline  # noqa: E402
from botcore.botfile import BotDefinition, parse_bot_file  # noqa: E402
from botcore.dialogue import DialogueEngine  # noqa: E402

BOT_SIZES = (10, 100, 1000)
SAMPLES_PER_DIALOGUE = 10
# The baseline takes about half a second a query on the largest bot, which
# bounds how many queries the default run can afford for both.
DEFAULT_QUERIES = 500
WARM_UP_QUERIES = 20
TARGET_SIZE = 1000
TARGET_P99_MS = 5.0

# Word lists read better as running text than as list literals.
NOUNS = """
account address adapter airport alarm album apartment appointment apron
backpack badge bag balance bank battery bed belt bicycle bike bill blanket
boat book boot bottle box bracelet brake bread bucket budget bulb bus
button cabin cable cake calendar camera candle canoe cap card carpet cart
case cash chair charger cheese chimney class clock coat code coffee coin
collar compass computer concert contract cooker cord couch coupon course
court cover crate credit cup curtain cushion cycle delivery deposit desk
device diary dinner discount dish dock document door drawer dress drill
driver engine entrance envelope exam fabric fan fee fence ferry file
filter fine flag flight floor flower folder fork form frame freezer fridge
fuel garage garden gate gear gift glass glove grill guide guitar hammer
handle harbour hat heater helmet hinge hood hook hose hotel hour house
invoice iron island jacket jar jeans kettle key keyboard kit kitchen knife
ladder lamp laptop lawn lease lens lesson letter licence lid light line
lock locker lunch machine magazine mailbox map market mask mat mattress
meal membership menu meter microwave mirror mixer monitor motor mug
necklace needle net notebook office oven package paint pan panel parcel
parking pass password path pedal pen pension permit phone photo piano
pillow pipe pizza plan plant plate pocket pool post poster pot printer
profile pump puzzle quilt racket radio rail receipt record refund
registration rent report reservation ring road roof room rope route rug
ruler saddle salad sandal saw scarf schedule scooter screen seat shed
sheet shelf shirt shoe shop shower sink skate ski skirt sleeve slipper
sock sofa speaker sponge spoon stamp station statement sticker stool
stove strap subscription suit suitcase sweater switch table tablet tank
tap tax teapot telescope tent ticket tile timer tire toaster toilet tool
towel tower toy track trailer train tray trolley truck tyre umbrella
uniform vacuum van vase vest voucher wallet wardrobe washer watch water
website wheel window wire workshop yard zipper
""".split()  # noqa: SIM905

VERBS = """
add adjust apply arrange book borrow buy cancel change charge check clean
close collect compare connect cover deliver deposit download drop empty
exchange extend find fix follow hire install join keep lend load lock
lose move open order pack paint park pay pick plan print publish read
rebook recharge recover register reload remove renew rent repair replace
reserve reset return review save sell send share ship sign sort split
start stop store swap switch test track transfer unlock update upgrade
upload use verify wash watch wrap
""".split()  # noqa: SIM905

ADJECTIVES = """
annual automatic available basic big black blue broken cheap clean cold
damaged digital early electric empty express extra fast free frozen full
heavy large late light local long lost missing monthly new next old online
open personal plastic portable private public quick quiet red second small
spare special standard student temporary usual waterproof weekly white
wooden wrong yearly young
""".split()  # noqa: SIM905

FILLERS = """
hi hello please thanks quick question hey so actually basically maybe
""".split()  # noqa: SIM905

TEMPLATES = (
    "how do I {verb} my {noun}",
    "can I {verb} a {adjective} {noun}",
    "{verb} {noun} {other}",
    "where can I {verb} the {noun} {other}",
    "is the {adjective} {noun} {other} available",
    "what does it cost to {verb} a {noun}",
    "{noun} {other} {verb}",
    "I need to {verb} my {adjective} {noun} {other}",
    "when can you {verb} the {noun}",
    "help with {noun} {other}",
    "do you {verb} {adjective} {noun}s",
    "my {noun} {other} is {adjective}",
)


@dataclass(frozen=True)
class Topic:
    verb: str
    noun: str
    other: str


def topics(count: int, rng: random.Random) -> list[Topic]:
    """Return distinct (verb, noun, other noun) topics for the dialogues."""
    chosen: dict[tuple[str, str, str], None] = {}
    while len(chosen) < count:
        noun, other = rng.sample(NOUNS, 2)
        chosen[(rng.choice(VERBS), noun, other)] = None
    return [Topic(*key) for key in chosen]


def sample_sentence(topic: Topic, rng: random.Random) -> str:
    template = rng.choice(TEMPLATES)
    return template.format(
        verb=topic.verb if rng.random() < 0.7 else rng.choice(VERBS),
        noun=topic.noun,
        other=topic.other,
        adjective=rng.choice(ADJECTIVES),
    )


def synthetic_bot(dialogue_count: int, rng: random.Random) -> BotDefinition:
    """Generate a valid bot file of the given size and parse it."""
    dialogues = []
    for number, topic in enumerate(topics(dialogue_count, rng)):
        samples = list(dict.fromkeys(
            sample_sentence(topic, rng) for _ in range(SAMPLES_PER_DIALOGUE * 2)
        ))[:SAMPLES_PER_DIALOGUE]
        dialogues.append({
            "id": f"d{number}",
            "samples": samples,
            "replies": [{"text": f"About {topic.noun} and {topic.other}."}],
        })
    return parse_bot_file({
        "slug": f"synthetic-{dialogue_count}",
        "name": f"Synthetic bot of {dialogue_count} dialogues",
        "language": "en",
        "greeting": [{"text": "Hello!"}],
        "fallback": [{"text": "Sorry?"}],
        "dialogues": dialogues,
    })


def with_typo(word: str, rng: random.Random) -> str:
    """Delete, insert, replace or swap one letter of a word."""
    if len(word) < 4:
        return word
    position = rng.randrange(1, len(word) - 1)
    letter = rng.choice(string.ascii_lowercase)
    edits = (
        word[:position] + word[position + 1:],
        word[:position] + letter + word[position:],
        word[:position] + letter + word[position + 1:],
        word[:position - 1] + word[position] + word[position - 1]
        + word[position + 1:],
    )
    return rng.choice(edits)


def rephrase(sample: str, rng: random.Random) -> str:
    """Turn a sample into what a person might type: typos, words moved,
    dropped or added."""
    words = [
        with_typo(word, rng) if rng.random() < 0.3 else word
        for word in sample.split()
    ]
    if len(words) > 3 and rng.random() < 0.4:
        del words[rng.randrange(len(words))]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    if rng.random() < 0.3:
        rng.shuffle(words)
    text = " ".join(words)
    return text.capitalize() + rng.choice(("", "?", "!", " ?"))


def unrelated_question(rng: random.Random) -> str:
    words = rng.sample(NOUNS + VERBS + ADJECTIVES, 4)
    return "how " + " ".join(with_typo(word, rng) for word in words)


def synthetic_queries(
    definition: BotDefinition, count: int, rng: random.Random
) -> list[str]:
    queries = []
    for _ in range(count):
        if rng.random() < 0.2:
            queries.append(unrelated_question(rng))
        else:
            dialogue = rng.choice(definition.dialogues)
            queries.append(rephrase(rng.choice(dialogue.samples), rng))
    return queries


@dataclass(frozen=True)
class Timing:
    build_ms: float
    p50_ms: float
    p99_ms: float
    p99_wall_ms: float


def time_matcher(
    build: Callable[[], Callable[[str], object]],
    warm_up: Sequence[str],
    queries: Sequence[str],
) -> Timing:
    """Build a matcher, answer the warm-up queries, then time each query."""
    started = time.thread_time()
    answer = build()
    build_ms = 1000 * (time.thread_time() - started)
    for query in warm_up:
        answer(query)
    cpu, wall = [], []
    for query in queries:
        started, started_wall = time.thread_time(), time.perf_counter()
        answer(query)
        cpu.append(1000 * (time.thread_time() - started))
        wall.append(1000 * (time.perf_counter() - started_wall))
    return Timing(
        build_ms, statistics.median(cpu), percentile_99(cpu), percentile_99(wall)
    )


def percentile_99(durations: list[float]) -> float:
    return statistics.quantiles(durations, n=100, method="inclusive")[98]


def engine_answerer(definition: BotDefinition) -> Callable[[str], object]:
    return DialogueEngine(definition).match


def baseline_answerer(definition: BotDefinition) -> Callable[[str], object]:
    return DifflibBaseline(definition).best


def format_timing(timing: Timing) -> str:
    return (
        f"{timing.build_ms:8.1f} {timing.p50_ms:8.3f} {timing.p99_ms:8.3f} "
        f"{timing.p99_wall_ms:8.3f}"
    )


def pin_to_one_core() -> str:
    """Run on a single CPU when the platform allows it; say which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to CPU {core}"


def target_note(size: int, timing: Timing) -> str:
    """Say whether the engine meets the latency target at this size."""
    if size != TARGET_SIZE:
        return ""
    verdict = "met" if timing.p99_ms < TARGET_P99_MS else "MISSED"
    return f"p99 < {TARGET_P99_MS:g} ms: {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    print(pin_to_one_core())
    columns = f"{'build':>8} {'p50':>8} {'p99':>8} {'p99 wall':>8}"
    print(f"{'':17}   {'engine (ms)':^35}   {'baseline (ms)':^35}".rstrip())
    print(f"{'dialogues':>9} {'samples':>7}   {columns}   {columns}   target")
    for size in BOT_SIZES:
        rng = random.Random(f"{options.seed}-{size}")
        definition = synthetic_bot(size, rng)
        warm_up = synthetic_queries(definition, WARM_UP_QUERIES, rng)
        queries = synthetic_queries(definition, options.queries, rng)
        ours = time_matcher(partial(engine_answerer, definition), warm_up, queries)
        theirs = time_matcher(
            partial(baseline_answerer, definition), warm_up, queries
        )
        samples = sum(len(dialogue.samples) for dialogue in definition.dialogues)
        print(
            f"{size:9} {samples:7}   {format_timing(ours)}   "
            f"{format_timing(theirs)}   {target_note(size, ours)}".rstrip()
        )
    print(
        f"{options.queries} timed queries per bot for both, after "
        f"{WARM_UP_QUERIES} untimed warm-up queries"
    )


if __name__ == "__main__":
    main()
