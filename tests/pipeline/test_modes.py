"""Who runs the bot: the one embedded process, or the workers beside Redis."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from channels_redis.core import RedisChannelLayer

from gateway.pipeline.doorbell import ring
from gateway.pipeline.inbound import accept_inbound
from storage.models import Conversation, Message
from tests.conftest import (
    PYTHON,
    GatewayProcess,
    free_port,
    process_env,
    wait_until,
)
from tests.support.pipeline import inbound, output_has, text, worker_env
from tests.support.recorder import Recorder

REDIS = "redis://127.0.0.1:6379/0"


def daphne(env: dict[str, str], log: Path) -> GatewayProcess:
    """Start a web process without calling it, not even for its health."""
    args = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()),
            "gateway.asgi:application"]
    return GatewayProcess(args, process_env(env), log).start()


def test_embedded_web_process_answers_without_a_worker(
    conversation: Conversation, recorder: Recorder, start_web: Any
) -> None:
    web, _ = start_web(worker_env(recorder, REDIS_URL=""))
    accept_inbound(conversation, text("opening hours"))
    wait_until(lambda: recorder.deliveries, timeout=30)
    assert recorder.deliveries[0]["content"]["text"] == "9 to 17."
    assert "worker" in web.output()


def test_restarted_embedded_process_answers_what_waited_before_any_request(
    conversation: Conversation, recorder: Recorder, tmp_path: Path
) -> None:
    accept_inbound(conversation, text("opening hours"))
    web = daphne(worker_env(recorder, REDIS_URL=""), tmp_path / "web.log")
    try:
        wait_until(lambda: recorder.deliveries, timeout=30)
    finally:
        web.stop()
    assert len(recorder.deliveries) == 1


def test_with_redis_the_web_process_runs_no_bot_logic(
    conversation: Conversation,
    recorder: Recorder,
    start_web: Any,
    start_worker: Any,
) -> None:
    env = worker_env(recorder, REDIS_URL=REDIS)
    start_web(env)
    accept_inbound(conversation, text("opening hours"))
    time.sleep(3)
    assert recorder.deliveries == []
    assert inbound(conversation).get().state == Message.State.PENDING
    start_worker(env)
    wait_until(lambda: recorder.deliveries, timeout=30)
    assert len(recorder.deliveries) == 1


def test_the_doorbell_wakes_an_idle_worker_long_before_its_sweep(
    conversation: Conversation, recorder: Recorder, start_worker: Any
) -> None:
    worker = start_worker(
        worker_env(recorder, REDIS_URL=REDIS, WORKER_SWEEP_SECONDS="600")
    )
    wait_until(lambda: output_has(worker, "started"), timeout=30)
    # Let the start-up sweep finish and the worker go idle.
    time.sleep(1)
    accept_inbound(conversation, text("opening hours"))
    layer = RedisChannelLayer(
        hosts=[REDIS], prefix=os.environ["CHANNEL_LAYER_PREFIX"]
    )
    rung = time.monotonic()
    asyncio.run(ring(layer))
    wait_until(lambda: recorder.deliveries, timeout=20)
    assert time.monotonic() - rung < 20
    assert len(recorder.deliveries) == 1
