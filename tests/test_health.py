"""The health check answers for the database and the channel layer."""

import json
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from gateway.asgi import application
from tests.conftest import free_port


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
