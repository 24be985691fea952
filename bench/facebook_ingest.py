"""Webhook ingest: signed deliveries accepted and stored durably, per second.

Side by side, on the same Daphne: a raw ASGI app that only reads the body
(the server's own limit), then the gateway's webhook (production profile:
PostgreSQL, Redis, DEBUG off; no worker, so only ingest is measured).
Saturation comes from wrk (2 threads, 32 connections); the ack latency at
half the single-event rate from an open-loop client. Every delivery of a
run carries messages of its own (Meta's ids are unique), some of them in
non-ASCII text and emoji escaped as Meta escapes them.

It needs wrk (Debian's package), and installs it with apt-get when it is
missing and the bench runs as root.

Run from the repository root: .venv/bin/python bench/facebook_ingest.py
[--duration SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.facebook_support import (
    clear_doorbell,
    delivery,
    gateway_env,
    mark,
    percentile,
    post_open_loop,
    prepare_database,
    psid,
    signature,
    start_daphne,
    table,
    text_for,
)
from bench.web_api import ensure_wrk

CONNECTIONS = 32
THREADS = 2
PEOPLE = 2000
BATCH_EVENTS = 10
BATCH_PER_ENTRY = 5
# Deliveries per second no run here comes near (the raw app serves about
# 2,400 a second on the 2-core machine): each run gets this many unique
# deliveries per second of its duration, so that none is sent twice.
SINGLE_CEILING = 5000
BATCHED_CEILING = 1500
# The targets: a share of the raw app's rate, and the ack latency.
SHARE_TARGET = 0.25
ACK_P99_TARGET_MS = 50.0
# Each thread reads its own file of signed bodies and sends each once;
# past the last one it stops, with a request that stores nothing.
WRK_SCRIPT = """
local signatures, bodies, counter = {}, {}, 0
local created = 0
function setup(thread)
  created = created + 1
  thread:set("id", created)
end
function init(args)
  for line in io.lines(args[1] .. "-" .. id .. ".txt") do
    local tab = line:find("\\t")
    signatures[#signatures + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
end
function request()
  counter = counter + 1
  if counter > #bodies then
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", "/webhooks/facebook", {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = signatures[counter],
  }, bodies[counter])
end
"""


def new_mid() -> str:
    return "m_" + uuid.uuid4().hex + uuid.uuid4().hex


def single_deliveries(count: int) -> list[bytes]:
    return [delivery([(psid(n % PEOPLE), new_mid(), text_for(n))], 1)
            for n in range(count)]


def batched_deliveries(count: int) -> list[bytes]:
    return [
        delivery([(psid((n * BATCH_EVENTS + k) % PEOPLE), new_mid(),
                   text_for(n + k)) for k in range(BATCH_EVENTS)],
                 BATCH_PER_ENTRY)
        for n in range(count)
    ]


def write_bodies(folder: Path, name: str, bodies: list[bytes]) -> tuple[str, int]:
    """Split the bodies between wrk's threads, one signed body a line.

    Return the files' common prefix and how many bodies they hold.
    """
    prefix = folder / name
    for thread in range(THREADS):
        lines = [signature(body) + "\t" + body.decode()
                 for body in bodies[thread::THREADS]]
        Path(f"{prefix}-{thread + 1}.txt").write_text("\n".join(lines) + "\n")
    return str(prefix), len(bodies)


def run_wrk(
    wrk: str, base: str, script: Path, bodies: tuple[str, int], duration: int
) -> tuple[float, int, int]:
    """Return (requests/s, requests, non-2xx answers)."""
    prefix, count = bodies
    done = subprocess.run(
        [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "-s",
         str(script), f"{base}/webhooks/facebook", "--", prefix],
        capture_output=True, text=True, check=True,
    )
    rate = float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", done.stdout))
    total = int(_wrk_figure(r"(\d+) requests in", done.stdout))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if total >= count:
        print(f"  the run used up its {count} unique deliveries: the rate is "
              "capped by them; raise the ceilings", flush=True)
    return rate, total, int(errors.group(1)) if errors else 0


def _wrk_figure(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    if found is None:
        raise SystemExit(f"wrk printed no figure for {pattern!r}:\n{output}")
    return found.group(1)


def stored_inbound() -> int:
    from storage.models import Message

    return Message.objects.filter(channel="facebook", direction="in").count()


def measure_gateway(
    wrk: str, base: str, script: Path, folder: Path, duration: int
) -> dict[str, tuple]:
    results = {}
    for name, bodies, events in (
        ("single", single_deliveries(SINGLE_CEILING * duration), 1),
        ("batched", batched_deliveries(BATCHED_CEILING * duration), BATCH_EVENTS),
    ):
        before = stored_inbound()
        rate, total, errors = run_wrk(
            wrk, base, script, write_bodies(folder, name, bodies), duration
        )
        stored = stored_inbound() - before
        clear_doorbell()
        results[name] = (rate, total, errors, stored, events)
    return results


def measure_ack_latency(
    base: str, rate: float, duration: int
) -> list[tuple[float, float, int]]:
    payloads = single_deliveries(int(rate * duration))
    return asyncio.run(post_open_loop(base, payloads, rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds of each wrk run and of the latency run")
    duration = parser.parse_args().duration
    wrk = ensure_wrk()
    prepare_database()
    clear_doorbell()
    folder = Path(tempfile.mkdtemp(prefix="bench-facebook-"))
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = gateway_env()

    raw, raw_base = start_daphne("raw", "bench.facebook_support:raw_application", env)
    try:
        raw_bodies = write_bodies(folder, "raw",
                                  single_deliveries(SINGLE_CEILING * duration))
        raw_rate, *_ = run_wrk(wrk, raw_base, script, raw_bodies, duration)
    finally:
        raw.stop()

    web, base = start_daphne("web", "gateway.asgi:application", env)
    try:
        results = measure_gateway(wrk, base, script, folder, duration)
        half = results["single"][0] / 2
        latencies = measure_ack_latency(base, half, duration)
    finally:
        web.stop()
        clear_doorbell()
    report(raw_rate, results, half, latencies, duration)


def report(raw_rate: float, results: dict[str, tuple], half: float,
           latencies: list[tuple[float, float, int]], duration: int) -> None:
    floor = SHARE_TARGET * raw_rate
    rows = [["raw ASGI app (reads the body)", f"{raw_rate:.0f}", f"{raw_rate:.0f}",
             "100 %", "-", "-", "-"]]
    for name, (rate, total, errors, stored, events) in results.items():
        measured = rate * events
        if name == "single":
            target = f"≥ {floor:.0f} deliveries/s: {mark(rate >= floor)}"
        else:
            target = f"> {floor:.0f} events/s: {mark(measured > floor)}"
        rows.append([
            f"webhook, {name} ({events} event{'s' if events > 1 else ''})",
            f"{rate:.0f}", f"{measured:.0f}",
            f"{100 * measured / raw_rate:.0f} %",
            f"{errors}", f"{stored} of {(total - errors) * events}", target,
        ])
    print(f"\nWebhook ingest, wrk -t{THREADS} -c{CONNECTIONS} -d{duration}s, "
          "one Daphne process, PostgreSQL + Redis; target: the webhook at "
          f"{SHARE_TARGET:.0%} of the raw app's rate at least")
    print(table(["server", "deliveries/s", "events/s", "of raw", "non-2xx",
                 "events stored", "target"], rows))
    values = [latency * 1000 for _, latency, status in latencies]
    ok = sum(1 for *_, status in latencies if status == 200)
    p99 = percentile(values, 0.99)
    print(f"\nAck latency at half the single-event rate ({half:.0f} deliveries/s, "
          f"open loop, {len(latencies)} deliveries, {ok} answered 200)")
    print(table(["p50 ms", "p90 ms", "p99 ms", "max ms", "target"],
                [[f"{percentile(values, q):.1f}" for q in (0.5, 0.9, 0.99)]
                 + [f"{max(values, default=float('nan')):.1f}",
                    f"p99 < {ACK_P99_TARGET_MS:.0f} ms: "
                    f"{mark(p99 < ACK_P99_TARGET_MS)}"]]))


if __name__ == "__main__":
    main()
