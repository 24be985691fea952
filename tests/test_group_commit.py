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
