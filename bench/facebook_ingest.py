"""Webhook ingest: signed deliveries accepted and stored durably, per second.

Side by side, on the same Daphne: a raw ASGI app that only reads the body
(the server's own limit), then the gateway's webhook (production profile:
PostgreSQL, Redis, DEBUG off; no worker, so only ingest is measured).
Saturation comes from wrk (2 threads, 32 connections, 10 s); the ack
latency at half the single-event rate from an open-loop client.

Run from the repository root: .venv/bin/python bench/facebook_ingest.py
"""

from __future__ import annotations

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
    percentile,
    post_open_loop,
    prepare_database,
    psid,
    signature,
    start_daphne,
    table,
)

DURATION = 10
CONNECTIONS = 32
THREADS = 2
PEOPLE = 2000
BATCH_EVENTS = 10
BATCH_PER_ENTRY = 5
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
  counter = counter % #bodies + 1
  return wrk.format("POST", "/webhooks/facebook", {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = signatures[counter],
  }, bodies[counter])
end
"""


def new_mid() -> str:
    return "m_" + uuid.uuid4().hex + uuid.uuid4().hex


def single_deliveries(count: int) -> list[bytes]:
    return [delivery([(psid(n % PEOPLE), new_mid(), "when are you open")], 1)
            for n in range(count)]


def batched_deliveries(count: int) -> list[bytes]:
    return [
        delivery([(psid((n * BATCH_EVENTS + k) % PEOPLE), new_mid(), "opening hours")
                  for k in range(BATCH_EVENTS)], BATCH_PER_ENTRY)
        for n in range(count)
    ]


def write_bodies(folder: Path, name: str, bodies: list[bytes]) -> str:
    """Split the bodies between wrk's threads, one signed body a line."""
    prefix = folder / name
    for thread in range(THREADS):
        lines = [signature(body) + "\t" + body.decode()
                 for body in bodies[thread::THREADS]]
        Path(f"{prefix}-{thread + 1}.txt").write_text("\n".join(lines) + "\n")
    return str(prefix)


def run_wrk(base: str, script: Path, bodies: str) -> tuple[float, int, int]:
    """Return (requests/s, requests, non-2xx answers)."""
    done = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "-s",
         str(script), f"{base}/webhooks/facebook", "--", bodies],
        capture_output=True, text=True, check=True,
    )
    rate = float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", done.stdout))
    total = int(_wrk_figure(r"(\d+) requests in", done.stdout))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return rate, total, int(errors.group(1)) if errors else 0


def _wrk_figure(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    if found is None:
        raise SystemExit(f"wrk printed no figure for {pattern!r}:\n{output}")
    return found.group(1)


def stored_inbound() -> int:
    from storage.models import Message

    return Message.objects.filter(channel="facebook", direction="in").count()


def measure_gateway(base: str, script: Path, folder: Path) -> dict[str, tuple]:
    results = {}
    for name, bodies, events in (
        ("single", single_deliveries(40000), 1),
        ("batched", batched_deliveries(8000), BATCH_EVENTS),
    ):
        before = stored_inbound()
        rate, total, errors = run_wrk(base, script, write_bodies(folder, name, bodies))
        stored = stored_inbound() - before
        clear_doorbell()
        results[name] = (rate, total, errors, stored, events)
    return results


def measure_ack_latency(base: str, rate: float) -> list[tuple[float, float, int]]:
    payloads = single_deliveries(int(rate * DURATION))
    return asyncio.run(post_open_loop(base, payloads, rate))


def main() -> None:
    prepare_database()
    clear_doorbell()
    folder = Path(tempfile.mkdtemp(prefix="bench-facebook-"))
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = gateway_env()

    raw, raw_base = start_daphne("raw", "bench.facebook_support:raw_application", env)
    try:
        raw_rate, *_ = run_wrk(raw_base, script,
                               write_bodies(folder, "raw", single_deliveries(40000)))
    finally:
        raw.stop()

    web, base = start_daphne("web", "gateway.asgi:application", env)
    try:
        results = measure_gateway(base, script, folder)
        half = results["single"][0] / 2
        latencies = measure_ack_latency(base, half)
    finally:
        web.stop()
        clear_doorbell()
    report(raw_rate, results, half, latencies)


def report(raw_rate: float, results: dict[str, tuple], half: float,
           latencies: list[tuple[float, float, int]]) -> None:
    rows = [["raw ASGI app (reads the body)", f"{raw_rate:.0f}", f"{raw_rate:.0f}",
             "100 %", "-", "-"]]
    for name, (rate, total, errors, stored, events) in results.items():
        rows.append([
            f"webhook, {name} ({events} event{'s' if events > 1 else ''})",
            f"{rate:.0f}", f"{rate * events:.0f}",
            f"{100 * rate * events / raw_rate:.0f} %",
            f"{errors}", f"{stored} of {(total - errors) * events}",
        ])
    print(f"\nWebhook ingest, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, "
          "one Daphne process, PostgreSQL + Redis")
    print(table(["server", "deliveries/s", "events/s", "of raw", "non-2xx",
                 "events stored"], rows))
    values = [latency * 1000 for _, latency, status in latencies]
    ok = sum(1 for *_, status in latencies if status == 200)
    print(f"\nAck latency at half the single-event rate ({half:.0f} deliveries/s, "
          f"open loop, {len(latencies)} deliveries, {ok} answered 200)")
    print(table(["p50 ms", "p90 ms", "p99 ms", "max ms"],
                [[f"{percentile(values, q):.1f}" for q in (0.5, 0.9, 0.99)]
                 + [f"{max(values):.1f}"]]))


if __name__ == "__main__":
    main()
