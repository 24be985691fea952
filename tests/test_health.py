"""The health check answers for the database and the channel layer."""

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from gateway.asgi import application
from tests.conftest import (
    PYTHON,
    GatewayProcess,
    free_port,
    process_env,
    wait_until,
)


@pytest.mark.django_db(transaction=True)
async def test_health_ok_when_database_and_layer_answer() -> None:
    communicator = HttpCommunicator(application, "GET", "/healthz")
    answer = await communicator.get_response()
    assert answer["status"] == 200
    assert json.loads(answer["body"]) == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
async def test_health_names_the_channel_layer_when_redis_is_down(
    settings: Any,
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    communicator = HttpCommunicator(application, "GET", "/healthz")
    answer = await communicator.get_response(timeout=10)
    assert answer["status"] == 503
    body = json.loads(answer["body"])
    assert body == {"status": "unavailable", "failing": ["channel_layer"]}


def test_health_names_the_database_when_it_does_not_answer(tmp_path: Any) -> None:
    port = free_port()
    dead_database = f"postgres://postgres@127.0.0.1:{free_port()}/gateway"
    args = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "gateway.asgi:application"]
    env = process_env({"DATABASE_URL": dead_database, "REDIS_URL": ""})
    web = GatewayProcess(args, env, tmp_path / "web.log").start()
    try:
        status, body = wait_until(lambda: health_answer(port), timeout=30)
    finally:
        web.stop()
    assert status == 503
    assert body == {"status": "unavailable", "failing": ["database"]}


def health_answer(port: int) -> tuple[int, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None
