"""Webhook ingest: signed deliveries accepted and stored durably, per second.

Side by side, on the same Daphne: a raw ASGI app that only reads the body
(the server's own limit), then the gateway's webhook (production profile:
PostgreSQL, Redis, DEBUG off; no worker, so only ingest is measured).
Saturation comes from wrk (2 threads, 32 connections); the ack latency at
half the single-event rate from an open-loop client. Every delivery of a
run carries messages of its own (Meta's ids are unique), some of them in
non-ASCII text and emoji escaped as Meta escapes them. Rates count the
deliveries answered 2xx; a run meets its target only when no delivery met
an error and every event sent was stored.

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
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.facebook_support import (
    END_OF_RUN_PATH,
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
# Each thread reads its own file of signed bodies and sends each once,
# for the seconds the run lasts. Then, and once the bodies run out, it
# sends a request both servers answer 404 until wrk stops, a little later:
# so no delivery is still on its way when wrk hangs up. Each thread counts
# the deliveries it sent and their answers (2xx, or any other status but
# that 404), and when its first delivery went and its last 2xx came;
# done() adds them up.
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *moment);
]]
local moment = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, moment)
  return tonumber(moment.tv_sec) + tonumber(moment.tv_nsec) / 1e9
end
local signatures, bodies, counter = {}, {}, 0
local finish, seconds = nil, 0
local created, threads, verified = 0, {}, false
sent, accepted, refused, first, last = 0, 0, 0, 0, 0
function setup(thread)
  created = created + 1
  thread:set("id", created)
  threads[#threads + 1] = thread
end
function init(args)
  finish, seconds = args[2], tonumber(args[3])
  for line in io.lines(args[1] .. "-" .. id .. ".txt") do
    local tab = line:find("\\t")
    signatures[#signatures + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
end
function request()
  if id == 1 and not verified then
    -- wrk calls this once in its first thread before the run, to check
    -- the request; that one is never sent.
    verified = true
    return wrk.format("GET", finish)
  end
  local moment = now()
  if first == 0 then first = moment end
  if counter >= #bodies or moment - first > seconds then
    return wrk.format("GET", finish)
  end
  counter = counter + 1
  sent = sent + 1
  return wrk.format("POST", "/webhooks/facebook", {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = signatures[counter],
  }, bodies[counter])
end
function response(status, headers, body)
  if status >= 200 and status < 300 then
    accepted = accepted + 1
    last = now()
  elseif status ~= 404 then
    refused = refused + 1
  end
end
function done(summary, latency, requests)
  local totals = {sent = 0, accepted = 0, refused = 0}
  local started, ended = math.huge, 0
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    if thread:get("first") > 0 then
      started = math.min(started, thread:get("first"))
    end
    ended = math.max(ended, thread:get("last"))
  end
  local errors = summary.errors
  io.write(string.format(
    "bench: sent %d accepted %d refused %d socket_errors %d seconds %.6f\\n",
    totals.sent, totals.accepted, totals.refused,
    errors.connect + errors.read + errors.write + errors.timeout,
    math.max(ended - started, 0)))
end
"""
# After the run's seconds, wrk goes on this long, for the last answers.
WRK_GRACE_SECONDS = 2
# What the script's done() prints.
WRK_COUNTS = re.compile(
    r"bench: sent (\d+) accepted (\d+) refused (\d+) socket_errors (\d+) "
    r"seconds ([\d.]+)"
)


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


@dataclass(frozen=True)
class Run:
    """What one wrk run sent, and how the server answered."""

    seconds: float
    sent: int  # deliveries posted
    accepted: int  # answered 2xx
    refused: int  # answered with any other status
    socket_errors: int  # connect, read, write errors and timeouts
    events: int = 1  # events in each delivery
    stored: int = 0  # events stored meanwhile

    @property
    def rate(self) -> float:
        """Deliveries per second answered 2xx."""
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.refused + self.socket_errors

    def sound(self) -> bool:
        """No error, and every event sent was stored."""
        return self.errors == 0 and self.stored == self.sent * self.events


def run_wrk(
    wrk: str, base: str, script: Path, bodies: tuple[str, int], duration: int
) -> Run:
    prefix, count = bodies
    done = subprocess.run(
        [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}",
         f"-d{duration + WRK_GRACE_SECONDS}s", "-s", str(script),
         f"{base}/webhooks/facebook", "--", prefix, END_OF_RUN_PATH,
         str(duration)],
        capture_output=True, text=True, check=True,
    )
    counts = WRK_COUNTS.search(done.stdout)
    if counts is None:
        raise SystemExit(f"wrk printed no counts:\n{done.stdout}{done.stderr}")
    sent, accepted, refused, socket_errors = (int(n) for n in counts.groups()[:4])
    if sent >= count:
        print(f"  the run used up its {count} unique deliveries: the rate is "
              "capped by them; raise the ceilings", flush=True)
    return Run(float(counts.group(5)), sent, accepted, refused, socket_errors)


def stored_inbound() -> int:
    from storage.models import Message

    return Message.objects.filter(channel="facebook", direction="in").count()


def settled_count(before: int, timeout: float = 10.0) -> int:
    """Events stored since `before`, once commits under way are done."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = stored_inbound() - before
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    return last


def measure_gateway(
    wrk: str, base: str, script: Path, folder: Path, duration: int
) -> dict[str, Run]:
    results = {}
    for name, bodies, events in (
        ("single", single_deliveries(SINGLE_CEILING * duration), 1),
        ("batched", batched_deliveries(BATCHED_CEILING * duration), BATCH_EVENTS),
    ):
        before = stored_inbound()
        run = run_wrk(wrk, base, script, write_bodies(folder, name, bodies),
                      duration)
        results[name] = replace(run, events=events,
                                stored=settled_count(before))
        clear_doorbell()
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
        raw_rate = run_wrk(wrk, raw_base, script, raw_bodies, duration).rate
    finally:
        raw.stop()

    web, base = start_daphne("web", "gateway.asgi:application", env)
    try:
        results = measure_gateway(wrk, base, script, folder, duration)
        half = results["single"].rate / 2
        latencies = measure_ack_latency(base, half, duration)
    finally:
        web.stop()
        clear_doorbell()
    report(raw_rate, results, half, latencies, duration)


def verdicts(raw_rate: float, results: dict[str, Run]) -> dict[str, str]:
    """Each run's target, and whether it was met.

    A run that lost a delivery or met an error misses its target, whatever
    its rate.
    """
    single, batched = results["single"], results["batched"]
    floor = SHARE_TARGET * raw_rate
    return {
        "single": f"≥ {floor:.0f} deliveries/s, no error, all stored: "
        f"{mark(single.sound() and single.rate >= floor)}",
        "batched": f"> {single.rate:.0f} events/s (the single-event rate), "
        "no error, all stored: "
        f"{mark(batched.sound() and batched.rate * batched.events > single.rate)}",
    }


def report(raw_rate: float, results: dict[str, Run], half: float,
           latencies: list[tuple[float, float, int]], duration: int) -> None:
    rows = [["raw ASGI app (reads the body)", f"{raw_rate:.0f}", f"{raw_rate:.0f}",
             "100 %", "-", "-", "-"]]
    targets = verdicts(raw_rate, results)
    for name, run in results.items():
        measured = run.rate * run.events
        rows.append([
            f"webhook, {name} ({run.events} event{'s' if run.events > 1 else ''})",
            f"{run.rate:.0f}", f"{measured:.0f}",
            f"{100 * measured / raw_rate:.0f} %",
            f"{run.errors}", f"{run.stored} of {run.sent * run.events}",
            targets[name],
        ])
    print(f"\nWebhook ingest, wrk -t{THREADS} -c{CONNECTIONS}, {duration} s of "
          "deliveries a run, one Daphne process, PostgreSQL + Redis; rates "
          "count deliveries answered 2xx; target: the webhook at "
          f"{SHARE_TARGET:.0%} of the raw app's rate at least, and batched "
          "deliveries carrying more events per second than single ones")
    print(table(["server", "deliveries/s", "events/s", "of raw", "errors",
                 "events stored", "target"], rows))
    values = [latency * 1000 for _, latency, status in latencies]
    ok = sum(1 for *_, status in latencies if status == 200)
    p99 = percentile(values, 0.99)
    print(f"\nAck latency at half the single-event rate ({half:.0f} deliveries/s, "
          f"open loop, {len(latencies)} deliveries, {ok} answered 200)")
    print(table(["p50 ms", "p90 ms", "p99 ms", "max ms", "target"],
                [[f"{percentile(values, q):.1f}" for q in (0.5, 0.9, 0.99)]
                 + [f"{max(values, default=float('nan')):.1f}",
                    f"p99 < {ACK_P99_TARGET_MS:.0f} ms, all answered 200: "
                    f"{mark(p99 < ACK_P99_TARGET_MS and ok == len(latencies))}"]]))


if __name__ == "__main__":
    main()
