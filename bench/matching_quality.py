"""Measure how well the dialogue engine matches labelled queries.

Run from the repository root:

    .venv/bin/python bench/matching_quality.py [--failures SPLIT]
    .venv/bin/python bench/matching_quality.py --calibrate

Every bot file `bench/data/NAME.bot.json` comes with labelled queries in
`bench/data/NAME.queries.json`: a list of {"text", "expect", "tags"}, where
"expect" is a dialogue id or null for a question the bot does not cover.
A fixed third of the queries (chosen by a checksum of their text) is held
out as the test split; tuning (`--calibrate`) looks only at the dev split.
The shop and clinic bots include out-of-scope questions that share words
with their domain, and in-scope ones with words their samples lack, so that
the dev split holds the case the fallback most often gets wrong.
The bots in FRESH_BOTS were never used to choose the method or its
settings: all their queries form the "fresh" split.  hotel_en, library_en
and sykkel_no were written against an earlier version of the method;
gym_en and buss_no were written before the current method was frozen, and
their figures were not looked at until it was.  vet_en (a veterinary
clinic) and ski_no (a ski resort) were written before the changes that
followed, and the method was not tuned on them.

The tables print the targets beside the figures: top-1 of at least 90 %
in scope and at least 85 % of out-of-scope queries answered with the
fallback; "missed" names the targets a row falls short of.

The baseline is difflib's SequenceMatcher: the best ratio between the query
and any sample, answered when it reaches a threshold calibrated on dev with
the same objective as the engine's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from botcore.botfile import BotDefinition, parse_bot_file  # noqa: E402
from botcore.dialogue import DialogueEngine  # noqa: E402
from botcore.matching import MatchSettings  # noqa: E402

DATA = REPO / "bench" / "data"
TEST_SHARE = 3
FRESH_BOTS = frozenset({
    "hotel_en", "library_en", "sykkel_no", "gym_en", "buss_no", "vet_en",
    "ski_no",
})
SPLITS = ("dev", "test", "fresh", "all")
BASELINE_THRESHOLDS = [step / 100 for step in range(30, 96, 5)]
PUNCTUATION = re.compile(r"[^\w\s]")

# The grid `--calibrate` searches; threshold and margin are swept for each.
SEARCH_SPACE: dict[str, tuple[float, ...]] = {
    "query_coverage_share": (0.7, 0.8, 0.9),
    "common_word_weight": (0.0, 0.25, 0.5),
    "question_word_weight": (0.25, 0.5, 1.0),
    "edit_penalty": (0.6, 0.9, 1.2),
    "near_exact_factor": (0.5, 0.7),
    "affix_similarity": (0.4, 0.5, 0.6),
    "related_similarity": (0.5, 0.7, 0.9),
}
THRESHOLDS = [step / 100 for step in range(36, 72, 2)]
MARGINS = (0.0, 0.02, 0.04, 0.06, 0.08)
TOP1_TARGET = 0.90
FALLBACK_TARGET = 0.85

Matcher = Callable[[str], str | None]
Ranking = tuple[str | None, str | None, float, float]


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    expect: str | None
    tags: tuple[str, ...]
    split: str


def split_of(bot_name: str, text: str) -> str:
    """Return "fresh", "test" (a fixed third of the queries) or "dev"."""
    if bot_name in FRESH_BOTS:
        return "fresh"
    checksum = zlib.crc32(text.encode("utf-8"))
    return "test" if checksum % TEST_SHARE == 0 else "dev"


@dataclass(frozen=True)
class EvaluationBot:
    name: str
    definition: BotDefinition
    queries: tuple[LabelledQuery, ...]


@dataclass(frozen=True)
class Scores:
    """Top-1 accuracy in scope, and precision and recall of the fallback."""

    in_scope: int
    out_of_scope: int
    top1: float
    fallback_precision: float
    fallback_recall: float


def load_bots(data: Path = DATA) -> list[EvaluationBot]:
    """Load every evaluation bot with its labelled queries."""
    bots = []
    for bot_path in sorted(data.glob("*.bot.json")):
        name = bot_path.name.removesuffix(".bot.json")
        definition = parse_bot_file(json.loads(bot_path.read_text("utf-8")))
        raw = json.loads((data / f"{name}.queries.json").read_text("utf-8"))
        queries = tuple(
            LabelledQuery(
                item["text"],
                item["expect"],
                tuple(item["tags"]),
                split_of(name, item["text"]),
            )
            for item in raw
        )
        bots.append(EvaluationBot(name, definition, queries))
    return bots


def engine_matcher(definition: BotDefinition) -> Matcher:
    engine = DialogueEngine(definition)
    return lambda text: engine.match(text).label


def baseline_text(text: str) -> str:
    return " ".join(PUNCTUATION.sub(" ", text.casefold()).split())


class DifflibBaseline:
    """Answer with the dialogue of the most similar sample (difflib ratio)."""

    def __init__(self, definition: BotDefinition) -> None:
        self.samples = [
            (dialogue.id, baseline_text(sample))
            for dialogue in definition.dialogues
            for sample in dialogue.samples
        ]

    def best(self, text: str) -> tuple[str | None, float]:
        query = baseline_text(text)
        best_label, best_ratio = None, 0.0
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(query)
        for label, sample in self.samples:
            matcher.set_seq1(sample)
            ratio = matcher.ratio()
            if ratio > best_ratio:
                best_label, best_ratio = label, ratio
        return best_label, best_ratio

    def matcher(self, threshold: float) -> Matcher:
        def match(text: str) -> str | None:
            label, ratio = self.best(text)
            return label if ratio >= threshold else None

        return match


def score(pairs: Sequence[tuple[str | None, str | None]]) -> Scores:
    """Score (expected, answered) pairs; None stands for the fallback."""
    in_scope = [(want, got) for want, got in pairs if want is not None]
    out_of_scope = [got for want, got in pairs if want is None]
    fallbacks = [want for want, got in pairs if got is None]
    return Scores(
        in_scope=len(in_scope),
        out_of_scope=len(out_of_scope),
        top1=_share(sum(want == got for want, got in in_scope), len(in_scope)),
        fallback_precision=_share(
            sum(want is None for want in fallbacks), len(fallbacks)
        ),
        fallback_recall=_share(
            sum(got is None for got in out_of_scope), len(out_of_scope)
        ),
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def calibrate_baseline(bots: Sequence[EvaluationBot]) -> float:
    """Pick the baseline threshold that does best on the dev split."""
    best_threshold, best_value = BASELINE_THRESHOLDS[0], (-1.0, -1.0)
    baselines = [DifflibBaseline(bot.definition) for bot in bots]
    ratios = [
        (query.expect, *baseline.best(query.text))
        for bot, baseline in zip(bots, baselines, strict=True)
        for query in bot.queries
        if query.split == "dev"
    ]
    for threshold in BASELINE_THRESHOLDS:
        pairs = [
            (want, label if ratio >= threshold else None)
            for want, label, ratio in ratios
        ]
        value = objective(score(pairs))
        if value > best_value:
            best_threshold, best_value = threshold, value
    return best_threshold


def evaluate(
    bots: Sequence[EvaluationBot], baseline_threshold: float
) -> dict[str, list[tuple[LabelledQuery, str | None, str | None]]]:
    """Answer every query with the engine and the baseline, per bot."""
    results = {}
    for bot in bots:
        ours = engine_matcher(bot.definition)
        baseline = DifflibBaseline(bot.definition).matcher(baseline_threshold)
        results[bot.name] = [
            (query, ours(query.text), baseline(query.text))
            for query in bot.queries
        ]
    return results


Row = list[tuple[LabelledQuery, str | None, str | None]]


def table_rows(results: dict[str, Row]) -> list[tuple[str, str, Row]]:
    everything = [item for rows in results.values() for item in rows]
    rows = []
    for name, items in [*results.items(), ("overall", everything)]:
        for split in SPLITS:
            chosen = [
                item for item in items if split in ("all", item[0].split)
            ]
            if chosen:
                rows.append((name, split, chosen))
    return rows


SCORE_COLUMNS = ("top1", "fb-P", "fb-R")
SCORE_WIDTH = 6
ROW_LABEL = "{:15} {:5} {:>4} {:>4}"


def format_scores(result: Scores) -> str:
    values = (result.top1, result.fallback_precision, result.fallback_recall)
    return " ".join(f"{100 * value:{SCORE_WIDTH}.1f}" for value in values)


def missed_targets(result: Scores) -> str:
    """Name the targets a row misses (NaN, for no queries, misses none)."""
    missed = []
    if result.top1 < TOP1_TARGET:
        missed.append("top1")
    if result.fallback_recall < FALLBACK_TARGET:
        missed.append("fb-R")
    return " ".join(missed)


def print_table(results: dict[str, Row], baseline_threshold: float) -> None:
    columns = " ".join(f"{name:>{SCORE_WIDTH}}" for name in SCORE_COLUMNS)
    block = len(columns)
    # Only the top-1 and fallback recall columns have a target.
    targets = " ".join(
        f"{text:>{SCORE_WIDTH}}"
        for text in (f"{100 * TOP1_TARGET:.0f}", "", f"{100 * FALLBACK_TARGET:.0f}")
    )
    label_width = len(ROW_LABEL.format("", "", "", ""))
    print(f"{'queries':>{label_width}}   {'engine':^{block}}   {'':9}   "
          f"{'baseline':^{block}}".rstrip())
    print(f"{ROW_LABEL.format('bot', 'split', 'in', 'out')}   {columns}   "
          f"{'missed':9}   {columns}")
    print(f"{ROW_LABEL.format('target (%)', '', '', '')}   {targets}")
    for name, split, items in table_rows(results):
        ours = score([(query.expect, got) for query, got, _ in items])
        theirs = score([(query.expect, got) for query, _, got in items])
        label = ROW_LABEL.format(name, split, ours.in_scope, ours.out_of_scope)
        print(f"{label}   {format_scores(ours)}   {missed_targets(ours):9}   "
              f"{format_scores(theirs)}")
    print(f"baseline: difflib ratio >= {baseline_threshold:.2f} (tuned on dev)")


def print_tags(results: dict[str, Row]) -> None:
    """Print accuracy per robustness dimension, over all bots and splits."""
    by_tag: dict[str, list[tuple[LabelledQuery, str | None, str | None]]] = {}
    for items in results.values():
        for item in items:
            for tag in item[0].tags:
                by_tag.setdefault(tag, []).append(item)
    print(f"\n{'dimension':15} {'n':>4} {'engine':>7} {'baseline':>9} {'target':>7}")
    for tag, items in sorted(by_tag.items()):
        ours = sum(query.expect == got for query, got, _ in items)
        theirs = sum(query.expect == got for query, _, got in items)
        target = FALLBACK_TARGET if tag == "out_of_scope" else TOP1_TARGET
        print(
            f"{tag:15} {len(items):4} {100 * ours / len(items):6.1f}% "
            f"{100 * theirs / len(items):8.1f}% {100 * target:6.0f}%"
        )


def print_failures(results: dict[str, Row], split: str) -> None:
    for name, items in results.items():
        for query, got, _ in items:
            if got != query.expect and split in ("all", query.split):
                print(f"{name}: {query.text!r} want {query.expect} got {got}")


def rankings(
    bots: Sequence[EvaluationBot], settings: MatchSettings
) -> list[Ranking]:
    """Return (expected, best label, best score, runner-up) for dev queries."""
    found: list[Ranking] = []
    for bot in bots:
        engine = DialogueEngine(bot.definition, settings)
        for query in bot.queries:
            if query.split != "dev":
                continue
            nobody: list[tuple[str | None, float]] = [(None, 0.0), (None, 0.0)]
            ranked = [*engine.index.ranked(query.text), *nobody]
            (label, best), (_, runner_up) = ranked[0], ranked[1]
            found.append((query.expect, label, best, runner_up))
    return found


def objective(result: Scores) -> tuple[float, float]:
    """Rank settings by the worse of the two figures relative to its target,
    then by their sum."""
    relative = min(
        result.top1 / TOP1_TARGET, result.fallback_recall / FALLBACK_TARGET
    )
    return round(relative, 3), result.top1 + result.fallback_recall


def sweep(
    found: list[Ranking],
) -> Iterator[tuple[tuple[float, float], float, float]]:
    """Yield (objective, threshold, margin) for each decision rule."""
    for threshold, margin in itertools.product(THRESHOLDS, MARGINS):
        pairs = [
            (want, label if best >= threshold and best - second > margin else None)
            for want, label, best, second in found
        ]
        yield objective(score(pairs)), threshold, margin


def calibrate(bots: Sequence[EvaluationBot]) -> None:
    """Search the settings grid on the dev split and print the best five."""
    trials = []
    names = list(SEARCH_SPACE)
    for values in itertools.product(*SEARCH_SPACE.values()):
        settings = MatchSettings(**dict(zip(names, values, strict=True)))
        found = rankings(bots, settings)
        best, threshold, margin = max(sweep(found))
        trials.append((best, dataclasses.replace(
            settings, threshold=threshold, margin=margin
        )))
    trials.sort(key=lambda trial: trial[0], reverse=True)
    for (relative, total), settings in trials[:5]:
        print(f"{relative:.3f} {total:.3f} {settings}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--failures",
        choices=SPLITS,
        help="also list the queries the engine got wrong in this split",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="search the matching settings on the dev split instead",
    )
    options = parser.parse_args()
    bots = load_bots()
    if options.calibrate:
        calibrate(bots)
        return
    threshold = calibrate_baseline(bots)
    results = evaluate(bots, threshold)
    print_table(results, threshold)
    print_tags(results)
    if options.failures:
        print()
        print_failures(results, options.failures)


if __name__ == "__main__":
    main()
