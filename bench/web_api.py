"""Throughput of the bubble's hot paths against two baselines, on one Daphne.

Run from the repository root:

    .venv/bin/python bench/web_api.py [--duration 10] [--connections 32]

It needs `wrk` (Debian's package) as the load generator, in its own
process; when it is missing and the script runs as root, it installs it
with `apt-get install -y wrk`, otherwise it says so and stops.

One Daphne process serves, side by side in the same run:

- a raw ASGI app answering 200 (the server's own limit),
- a bare Django view behind the project's middleware,
- POST sessions, POST pusher/auth, and POST messages of the gateway.

It uses a fresh SQLite database unless DATABASE_URL is set, and the
in-memory layer unless REDIS_URL is set. The embedded worker is off, so
that the numbers are those of accepting messages, not of answering them.
Rate limits are lifted (bench/web_settings.py): one address sends all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
SETTINGS = "bench.web_settings"
SOCKET_ID = "1234.5678"
TARGET_SHARE = 0.25


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Result:
    scenario: str
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Requests per second of the server's own CPU time: what one fully
    # available core would serve, whatever else the machine is doing.
    per_cpu_second: float


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: install Debian's package with "
                 "`apt-get install -y wrk`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        SECRET_KEY="bench-only-secret-key",  # noqa: S106 - a throwaway server
        DEBUG="0",
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        EMBEDDED_WORKER="0",
        DATABASE_URL=os.environ.get("DATABASE_URL") or f"sqlite:///{database}",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True,
        capture_output=True, text=True,
    )
    return done.stdout


def create_bot(env: dict[str, str]) -> str:
    code = (
        "from storage.models import Bot\n"
        "bot, _ = Bot.objects.update_or_create(slug='bench-web', defaults="
        "{'name': 'Bench', 'allowed_origins': ['*']})\n"
        "print(bot.web_key)\n"
    )
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def start_daphne(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    args = [PYTHON, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port),
            "bench.web_baselines:application"]
    handle = log.open("ab")
    server = subprocess.Popen(args, cwd=REPO, env=env, stdout=handle, stderr=handle)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/bench/raw"
            with urllib.request.urlopen(url, timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"the server did not start; see {log}")


def post_json(url: str, payload: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def scenarios(base: str, web_key: str) -> list[Scenario]:
    session = post_json(f"{base}/api/web/v1/sessions", {"bot": web_key})
    bearer = ("Authorization", f"Bearer {session['token']}")
    form = f"socket_id={SOCKET_ID}&channel_name={session['channel']}"
    as_json = ("Content-Type", "application/json")
    return [
        Scenario("raw ASGI 200", "GET", "/bench/raw"),
        Scenario("Django view + middleware", "GET", "/bench/django/"),
        Scenario("POST sessions", "POST", "/api/web/v1/sessions",
                 json.dumps({"bot": web_key}), (as_json,)),
        Scenario("POST pusher/auth", "POST", "/api/web/v1/pusher/auth", form,
                 (("Content-Type", "application/x-www-form-urlencoded"), bearer)),
        Scenario("POST messages", "POST", "/api/web/v1/messages",
                 json.dumps({"type": "text", "text": "when are you open"}),
                 (as_json, bearer)),
    ]


def lua_script(scenario: Scenario, folder: Path) -> Path:
    lines = [f"wrk.method = {json.dumps(scenario.method)}"]
    if scenario.body:
        lines.append(f"wrk.body = {json.dumps(scenario.body)}")
    for name, value in scenario.headers:
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    path = folder / f"{abs(hash(scenario.name))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]
    return float(number) * factor


def cpu_seconds(pid: int) -> float:
    """Return the CPU time a process has used, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, base: str, scenario: Scenario, connections: int,
            seconds: int, folder: Path, server_pid: int) -> Result:
    script = lua_script(scenario, folder)
    args = [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
            "--latency", "-s", str(script), base + scenario.path]
    cpu_before = cpu_seconds(server_pid)
    output = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    cpu_used = cpu_seconds(server_pid) - cpu_before
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        print(f"  {scenario.name}: socket errors: {socket_errors.group(1)}")
    return Result(
        scenario.name, rate, parse_duration_ms(latency["50"]),
        parse_duration_ms(latency["99"]), int(errors.group(1)) if errors else 0,
        total / cpu_used if cpu_used else 0.0,
    )


def best_of(rounds: list[list[Result]]) -> list[Result]:
    """Keep each scenario's best round: other load only ever slows it."""
    return [max(runs, key=lambda result: result.rate) for runs in zip(*rounds,
                                                                    strict=True)]


def print_table(results: list[Result], options: argparse.Namespace) -> None:
    raw, raw_cpu = results[0].rate, results[0].per_cpu_second
    print()
    print(f"One Daphne process; wrk -t1 -c{options.connections} "
          f"-d{options.duration}s, best of {options.rounds} rounds; database "
          f"{'PostgreSQL' if os.environ.get('DATABASE_URL') else 'SQLite'}, "
          f"layer {'Redis' if os.environ.get('REDIS_URL') else 'in-memory'}")
    print(f"{'endpoint':<26}{'req/s':>8}{'of raw':>8}{'req/CPU-s':>11}"
          f"{'of raw':>8}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}")
    for result in results:
        print(f"{result.scenario:<26}{result.rate:>8.0f}"
              f"{100 * result.rate / raw:>7.1f}%{result.per_cpu_second:>11.0f}"
              f"{100 * result.per_cpu_second / raw_cpu:>7.1f}%"
              f"{result.p50_ms:>8.1f}{result.p99_ms:>8.1f}{result.errors:>8}")
    print(f"\ntarget: the hot paths at {TARGET_SHARE:.0%} of the raw ASGI rate "
          "or more, without errors")
    for result in results[2:]:
        share = result.rate / raw
        verdict = "met" if share >= TARGET_SHARE and not result.errors else "NOT met"
        print(f"  {result.scenario:<24}{share:>7.1%}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    options = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as temporary:
        folder = Path(temporary)
        env = server_env(str(folder / "bench.sqlite3"))
        manage(env, "migrate", "--noinput", "-v", "0")
        web_key = create_bot(env)
        port = free_port()
        server = start_daphne(env, port, folder / "daphne.log")
        try:
            base = f"http://127.0.0.1:{port}"
            planned = scenarios(base, web_key)
            for scenario in planned:
                # A short warm-up, not counted.
                run_wrk(wrk, base, scenario, options.connections, 1, folder,
                        server.pid)
            rounds = []
            for number in range(1, options.rounds + 1):
                print(f"round {number} of {options.rounds}…", flush=True)
                rounds.append([
                    run_wrk(wrk, base, scenario, options.connections,
                            options.duration, folder, server.pid)
                    for scenario in planned
                ])
        finally:
            server.terminate()
            server.wait(10)
        print_table(best_of(rounds), options)


if __name__ == "__main__":
    main()
