"""End to end: webhook received to Send API call at the local Graph API.

Production profile: PostgreSQL, Redis, one Daphne web process, one worker
process (default concurrency), the local Graph API in a process of its
own. Each message comes from a different person, asks "when are you open"
and is answered with a button template. Most people are already known to
the gateway (their profile fetched); one in NEW_CONTACT_EVERY is new, so
that the worker also fetches profiles. Latency runs from the moment the
open-loop client was scheduled to post the delivery to the moment the
reply reached the local Graph API; a message that got no reply within
DRAIN_TIMEOUT counts as such, and as slower than any other.

Run from the repository root: .venv/bin/python bench/facebook_end_to_end.py
[--rates 50,200,500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.facebook_support import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    PYTHON,
    Process,
    answers,
    clear_doorbell,
    delivery,
    free_port,
    gateway_env,
    mark,
    percentile,
    post_open_loop,
    prepare_database,
    psid,
    start_daphne,
    table,
    wait_for,
)

RATES = (50, 200, 500)
SECONDS = 10
WARM_UP = 40
DRAIN_TIMEOUT = 40
NEW_CONTACT_EVERY = 10
# The target, at TARGET_RATE messages per second.
TARGET_RATE = 200
P50_TARGET_MS = 30.0
P99_TARGET_MS = 150.0


def create_people(count: int) -> int:
    """Set up the people of a run; return how many are new to the gateway.

    All but every NEW_CONTACT_EVERY-th are known: a contact, a conversation
    and a fresh profile each. What an earlier run left is removed first.
    """
    from django.utils import timezone

    from storage.models import Bot, Contact, Conversation, FacebookPage

    page = FacebookPage.objects.get(page_id=PAGE_ID)
    bot = Bot.objects.get(pk=page.bot_id)
    now = timezone.now()
    Contact.objects.filter(page=page).delete()
    known = [n for n in range(count) if n % NEW_CONTACT_EVERY]
    Contact.objects.bulk_create(
        [Contact(bot=bot, page=page, channel="facebook", external_id=psid(n),
                 full_name=f"Person {n}", profile_fetched_at=now)
         for n in known],
    )
    contacts = Contact.objects.filter(page=page).values_list("pk", flat=True)
    Conversation.objects.bulk_create(
        [Conversation(bot=bot, channel="facebook", contact_id=pk,
                      last_inbound_at=now) for pk in contacts],
    )
    return count - len(known)


class GraphControl:
    def __init__(self, base: str) -> None:
        self.base = base

    def calls(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.base}/__local/calls", timeout=30) as got:
            return list(json.loads(got.read())["calls"])

    def replies(self) -> dict[str, float]:
        """When the first reply to each person arrived."""
        arrived: dict[str, float] = {}
        for call in self.calls():
            if "message" in call["body"] and call["answered_status"] == 200:
                recipient = call["body"]["recipient"]["id"]
                arrived.setdefault(recipient, call["received_at"])
        return arrived

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.base}/__local/reset", data=b"{}",
                                         method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def run_phase(base: str, graph: GraphControl, first: int, rate: int,
              seconds: int) -> list[float | None]:
    people = [psid(first + n) for n in range(rate * seconds)]
    payloads = [delivery([(person, "m_" + uuid.uuid4().hex * 2, "when are you open")],
                         1) for person in people]
    sent = asyncio.run(post_open_loop(base, payloads, rate))
    scheduled = sorted(moment for moment, _, _ in sent)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        replies = graph.replies()
        if all(person in replies for person in people):
            break
        time.sleep(0.5)
    graph.reset()
    return [replies[person] - when if person in replies else None
            for person, when in zip(people, scheduled, strict=True)]


def start_local_graph() -> tuple[Process, str]:
    port = free_port()
    process = Process("graph", [
        PYTHON, "-m", "adapters.facebook.local_graph", "--port", str(port),
        "--app-secret", APP_SECRET, "--page", f"{PAGE_ID}={PAGE_TOKEN}",
    ], dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/__local/calls"), 20)
    return process, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(map(str, RATES)),
                        help="messages per second of each phase, comma-separated")
    parser.add_argument("--seconds", type=int, default=SECONDS,
                        help="seconds of each phase")
    options = parser.parse_args()
    phases = [(int(rate), options.seconds) for rate in options.rates.split(",")]
    prepare_database()
    clear_doorbell()
    total = WARM_UP + sum(rate * seconds for rate, seconds in phases)
    new_contacts = create_people(total)
    graph_process, graph_base = start_local_graph()
    env = gateway_env(FACEBOOK_GRAPH_URL=f"{graph_base}/v25.0")
    processes = [graph_process]
    try:
        web, base = start_daphne("web", "gateway.asgi:application", env)
        processes.append(web)
        processes.append(Process("worker", [PYTHON, "manage.py", "worker"], env))
        graph = GraphControl(graph_base)
        run_phase(base, graph, 0, WARM_UP // 4, 4)
        rows, first = [], WARM_UP
        for rate, seconds in phases:
            print(f"posting {rate} messages/s for {seconds} s", flush=True)
            latencies = run_phase(base, graph, first, rate, seconds)
            rows.append(summary(rate, latencies, new_in(first, rate * seconds)))
            first += rate * seconds
    finally:
        for process in reversed(processes):
            process.stop()
        clear_doorbell()
    print(f"\nEnd to end, webhook to Send API at the local Graph API "
          f"(load average before: {os.getloadavg()[0]:.1f}); "
          f"{new_contacts} of {total} people new to the gateway; target at "
          f"{TARGET_RATE} messages/s: p50 < {P50_TARGET_MS:.0f} ms, "
          f"p99 < {P99_TARGET_MS:.0f} ms")
    print(table(["messages/s", "sent", "new people", "replied", "no reply",
                 "p50 ms", "p90 ms", "p99 ms", "max ms", "target"], rows))


def new_in(first: int, count: int) -> int:
    return sum(1 for n in range(first, first + count) if not n % NEW_CONTACT_EVERY)


def summary(rate: int, latencies: list[float | None], new: int) -> list[str]:
    """A row of the table; a message without a reply is slower than all."""
    values = [math.inf if value is None else value * 1000 for value in latencies]
    missing = sum(1 for value in latencies if value is None)
    figures = [percentile(values, share) for share in (0.5, 0.9, 0.99)]
    figures.append(max(values, default=math.nan))
    return [str(rate), str(len(latencies)), str(new),
            str(len(latencies) - missing), str(missing),
            *(milliseconds(value) for value in figures), target(rate, figures)]


def milliseconds(value: float) -> str:
    return "no reply" if math.isinf(value) else f"{value:.1f}"


def target(rate: int, figures: list[float]) -> str:
    if rate != TARGET_RATE:
        return "-"
    met = figures[0] < P50_TARGET_MS and figures[2] < P99_TARGET_MS
    return mark(met)


if __name__ == "__main__":
    main()
