"""Deliveries that arrive together share a commit; a bad one fails alone."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from django.db import connection, transaction

from storage.models import Message
from tests.conftest import wait_until
from tests.facebook.conftest import Gateway, post_body, shifted_fixture

pytestmark = pytest.mark.django_db(transaction=True)
REFUSED_TEXT = "the database refuses this one"
# Triggers take no parameters: the text is written out in them.
POSTGRES_REFUSAL = """
CREATE FUNCTION test_refuse_message() RETURNS trigger AS $$
BEGIN
    IF NEW.content->>'text' = 'the database refuses this one' THEN
        RAISE EXCEPTION 'message refused';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_refuse_message BEFORE INSERT ON storage_message
    FOR EACH ROW EXECUTE FUNCTION test_refuse_message();
"""
SQLITE_REFUSAL = """
CREATE TRIGGER test_refuse_message BEFORE INSERT ON storage_message
WHEN json_extract(NEW.content, '$.text') = 'the database refuses this one'
BEGIN SELECT RAISE(ABORT, 'message refused'); END
"""


@pytest.fixture
def refusing_database(transactional_db: None) -> Iterator[None]:
    """Have the database refuse to store a message with REFUSED_TEXT.

    It stands for any failure to store one delivery that the parser could
    not foresee.
    """
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(POSTGRES_REFUSAL if postgres else SQLITE_REFUSAL)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_message"
                       + (" ON storage_message" if postgres else ""))
        if postgres:
            cursor.execute("DROP FUNCTION test_refuse_message()")


@contextmanager
def writes_held() -> Iterator[None]:
    """Keep the gateway from writing messages until the block ends."""
    with transaction.atomic():
        # SQLite's transactions begin IMMEDIATE here: they hold the write
        # lock already. PostgreSQL needs the table locked against inserts.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE storage_message IN EXCLUSIVE MODE")
        yield


def delivery(number: int, text: str) -> bytes:
    mid = f"LrT{number:04d}x".encode()
    body = shifted_fixture("messages__text", {b"LrT0001x": mid})
    data = json.loads(body)
    data["entry"][0]["messaging"][0]["message"]["text"] = text
    return json.dumps(data).encode()


def post_later(pool: ThreadPoolExecutor, base: str, body: bytes) -> Future[
    requests.Response
]:
    return pool.submit(post_body, base, body)


def test_a_delivery_that_cannot_be_stored_fails_only_its_own_request(
    gateway: Gateway, refusing_database: None
) -> None:
    texts = ["first", "second", REFUSED_TEXT, "fourth"]
    with ThreadPoolExecutor(8) as pool:
        with writes_held():
            # The first delivery's commit waits for the lock; the others
            # arrive meanwhile and wait for the next commit, together.
            first = post_later(pool, gateway.base, delivery(1, "held"))
            time.sleep(1)
            together = [
                post_later(pool, gateway.base, delivery(number + 2, text))
                for number, text in enumerate(texts)
            ]
            time.sleep(1)
        answers = [future.result() for future in [first, *together]]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 500, 200]
    assert answers[3].json()["error"]["code"] == "internal_error"
    stored = Message.objects.filter(direction=Message.Direction.INBOUND)
    assert sorted(stored.values_list("content__text", flat=True)) == sorted(
        ["held", "first", "second", "fourth"]
    )
    wait_until(lambda: "shared batch of 4 items failed" in gateway.output())
    output = gateway.output()
    assert re.search(r"webhook delivery not stored: \w+Error at "
                     r"adapters/facebook/ingest\.py:\d+", output)
    assert REFUSED_TEXT not in output and "message refused" not in output
