"""Concurrent requests share batches; one bad item fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from gateway.group_commit import GroupCommit
from storage.models import Bot

pytestmark = pytest.mark.django_db(transaction=True)


class Recorded:
    """A batch function that stores bots, one per item, in one transaction."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.after: list[Sequence[Any]] = []

    def run(self, slugs: Sequence[str]) -> list[Any]:
        self.batches.append(list(slugs))
        outcomes: list[Any] = []
        with transaction.atomic():
            for slug in slugs:
                if slug.startswith("refused"):
                    outcomes.append(PermissionError(slug))
                    continue
                if slug.startswith("broken"):
                    raise ValueError("a bad item")
                outcomes.append(Bot.objects.create(slug=slug, name=slug).pk)
        return outcomes

    async def after_batch(self, outcomes: Sequence[Any]) -> None:
        self.after.append(outcomes)


async def submit_all(group: GroupCommit[str, int], slugs: list[str]) -> list[Any]:
    return await asyncio.gather(
        *(group.submit(slug) for slug in slugs), return_exceptions=True
    )


async def test_concurrent_items_share_batches_and_each_gets_its_result() -> None:
    recorded = Recorded()
    group: GroupCommit[str, int] = GroupCommit(
        recorded.run, after_batch=recorded.after_batch
    )
    slugs = [f"bot-{number}" for number in range(40)]
    results = await submit_all(group, slugs)
    assert len(recorded.batches) < len(slugs)
    assert [item for batch in recorded.batches for item in batch] == slugs
    stored = await database_sync_to_async(
        lambda: dict(Bot.objects.values_list("slug", "pk"))
    )()
    assert results == [stored[slug] for slug in slugs]
    await asyncio.sleep(0)
    assert len(recorded.after) == len(recorded.batches)


async def test_a_refused_item_raises_in_its_own_request_only() -> None:
    recorded = Recorded()
    group: GroupCommit[str, int] = GroupCommit(recorded.run)
    results = await submit_all(group, ["a", "refused-b", "c"])
    assert isinstance(results[1], PermissionError)
    assert all(isinstance(result, int) for result in results[::2])


async def test_a_failing_batch_is_run_again_item_by_item() -> None:
    recorded = Recorded()
    group: GroupCommit[str, int] = GroupCommit(recorded.run, max_batch=10)
    results = await submit_all(group, ["one", "broken-two", "three"])
    assert isinstance(results[1], ValueError)
    assert all(isinstance(result, int) for result in results[::2])
    slugs = await database_sync_to_async(
        lambda: sorted(Bot.objects.values_list("slug", flat=True))
    )()
    # The shared transaction was rolled back whole; the reruns stored the rest.
    assert slugs == ["one", "three"]
    assert recorded.batches[-3:] == [["one"], ["broken-two"], ["three"]]


async def test_batches_are_capped() -> None:
    recorded = Recorded()
    group: GroupCommit[str, int] = GroupCommit(recorded.run, max_batch=4)
    await submit_all(group, [f"bot-{number}" for number in range(10)])
    assert max(len(batch) for batch in recorded.batches) <= 4


class Weighed(Recorded):
    """Items are lists of slugs, weighed by their length."""

    def run_lists(self, lists: Sequence[list[str]]) -> list[Any]:
        self.batches.append([",".join(slugs) for slugs in lists])
        with transaction.atomic():
            for slugs in lists:
                Bot.objects.bulk_create(Bot(slug=slug, name=slug) for slug in slugs)
        return [len(slugs) for slugs in lists]

    def sizes(self) -> list[list[int]]:
        return [[len(entry.split(",")) for entry in batch] for batch in self.batches]


def lists_of(*sizes: int) -> list[list[str]]:
    return [
        [f"item{number}-bot{place}" for place in range(size)]
        for number, size in enumerate(sizes)
    ]


async def test_a_shared_batch_is_capped_by_the_weight_of_its_items() -> None:
    weighed = Weighed()
    group: GroupCommit[list[str], int] = GroupCommit(
        weighed.run_lists, max_batch=50, weight=len, max_weight=10
    )
    items = lists_of(1, 4, 4, 3, 6, 2, 2, 9)

    results = await asyncio.gather(*(group.submit(item) for item in items))

    assert results == [1, 4, 4, 3, 6, 2, 2, 9]
    # Each batch takes items in order while their weights add up to 10.
    assert weighed.sizes() == [[1, 4, 4], [3, 6], [2, 2], [9]]
    assert await database_sync_to_async(Bot.objects.count)() == 31


async def test_an_item_heavier_than_the_cap_goes_alone() -> None:
    weighed = Weighed()
    group: GroupCommit[list[str], int] = GroupCommit(
        weighed.run_lists, weight=len, max_weight=10
    )
    light, heavy, after = lists_of(2, 25, 3)

    results = await asyncio.gather(*(
        group.submit(item) for item in (light, heavy, after)
    ))

    assert results == [2, 25, 3]
    assert weighed.sizes() == [[2], [25], [3]]


def test_a_weight_needs_its_cap() -> None:
    with pytest.raises(ValueError, match="go together"):
        GroupCommit(Recorded().run, weight=len)
