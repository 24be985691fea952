"""The health check answers for the database and the channel layer."""

import json

import pytest
from channels.testing import HttpCommunicator

from gateway.asgi import application


@pytest.mark.django_db(transaction=True)
async def test_health_ok_when_database_and_layer_answer() -> None:
    communicator = HttpCommunicator(application, "GET", "/healthz")
    answer = await communicator.get_response()
    assert answer["status"] == 200
    assert json.loads(answer["body"]) == {"status": "ok"}
