"""The self-hosted Pusher protocol 7: in-process, then with real clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect

from adapters.web.pusher import pubsub
from adapters.web.pusher.hub import (
    STOP_SECONDS,
    YOUNG_COLLECTION_THRESHOLD,
    get_hub,
    stop_hub,
)
from adapters.web.pusher.layers import InMemoryChannelLayer
from adapters.web.pusher.names import group_name
from adapters.web.pusher.publish import PublishError, publish, publish_sync
from adapters.web.pusher.signing import channel_auth
from tests.conftest import REPO, free_port
from tests.conftest_pusher import (
    RedisServer,
    api_client,
    connect,
    receive_event,
    socket_path,
    subscribe,
    subscribed,
    websocket_app,
)


@pytest.fixture(autouse=True)
async def stop_pusher_hub() -> AsyncIterator[None]:
    yield
    await stop_hub()


def last_digit_changed(auth: str) -> str:
    return auth[:-1] + ("1" if auth.endswith("0") else "0")


async def refused_with(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    socket = WebsocketCommunicator(websocket_app, path)
    connected, _ = await socket.connect()
    assert connected
    error = await receive_event(socket)
    return error, await socket.receive_output(timeout=3)


# The websocket, in-process.


async def test_connection_established_carries_a_json_string() -> None:
    socket = WebsocketCommunicator(websocket_app, socket_path())
    await socket.connect()

    frame = await receive_event(socket)

    assert frame["event"] == "pusher:connection_established"
    assert isinstance(frame["data"], str)
    data = json.loads(frame["data"])
    assert set(data) == {"socket_id", "activity_timeout"}
    first, _, second = data["socket_id"].partition(".")
    assert first.isdigit() and second.isdigit()
    assert data["activity_timeout"] == 120
    await socket.disconnect()


async def test_wrong_key_is_refused_with_4001() -> None:
    error, close = await refused_with(socket_path(key="wrong"))

    assert error == {
        "event": "pusher:error",
        "data": {"code": 4001, "message": "Application does not exist"},
    }
    assert close == {"type": "websocket.close", "code": 4001}


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("client=js", 4008, "No protocol version supplied"),
        ("protocol=&client=js", 4008, "No protocol version supplied"),
        ("protocol=x", 4006, "Invalid version string format"),
        ("protocol=7.0", 4006, "Invalid version string format"),
        ("protocol=-7", 4006, "Invalid version string format"),
        ("protocol=%D9%A7", 4006, "Invalid version string format"),
        ("protocol=2", 4007, "Unsupported protocol version"),
        ("protocol=8", 4007, "Unsupported protocol version"),
        pytest.param(
            "protocol=" + "9" * 5000, 4007, "Unsupported protocol version",
            id="protocol=99…9",
        ),
    ],
)
async def test_missing_malformed_or_unsupported_protocol_is_refused(
    query: str, code: int, message: str
) -> None:
    error, close = await refused_with(socket_path(query=query))

    assert error == {
        "event": "pusher:error",
        "data": {"code": code, "message": message},
    }
    assert close == {"type": "websocket.close", "code": code}


@pytest.mark.parametrize("query", ["protocol=5", "protocol=6", "protocol=007"])
async def test_earlier_protocol_versions_still_connect(query: str) -> None:
    socket = WebsocketCommunicator(websocket_app, socket_path(query=query))
    await socket.connect()

    frame = await receive_event(socket)

    assert frame["event"] == "pusher:connection_established"
    await socket.disconnect()


@pytest.mark.parametrize("path", ["/app/", "/app/key/extra", "/", "/apps/1"])
async def test_any_other_path_is_refused_with_4005(path: str) -> None:
    error, close = await refused_with(f"{path}?protocol=7")

    assert error == {
        "event": "pusher:error",
        "data": {"code": 4005, "message": "Path not found"},
    }
    assert close == {"type": "websocket.close", "code": 4005}


async def test_public_subscription_receives_published_events() -> None:
    socket, _ = await connect()

    answer = await subscribe(socket, "news")
    await publish("news", "headline", {"title": "Hi"})

    assert answer == {
        "event": "pusher_internal:subscription_succeeded",
        "channel": "news",
        "data": "{}",
    }
    assert await receive_event(socket) == {
        "event": "headline",
        "channel": "news",
        "data": '{"title":"Hi"}',
    }
    await socket.disconnect()


async def test_private_subscription_with_a_good_signature() -> None:
    socket, socket_id = await connect()

    answer = await subscribe(
        socket, "private-chat-a", channel_auth(socket_id, "private-chat-a")
    )
    await publish("private-chat-a", "message", "hello")

    assert answer["event"] == "pusher_internal:subscription_succeeded"
    assert (await receive_event(socket))["data"] == "hello"
    await socket.disconnect()


@pytest.mark.parametrize(
    "forge",
    [
        lambda socket_id: None,
        lambda socket_id: channel_auth(socket_id, "private-chat-b"),
        lambda socket_id: channel_auth("1.1", "private-chat-a"),
        lambda socket_id: last_digit_changed(channel_auth(socket_id, "private-chat-a")),
        lambda socket_id: (
            "otherkey:" + channel_auth(socket_id, "private-chat-a").split(":")[1]
        ),
    ],
)
async def test_private_subscription_with_a_forged_signature_is_refused(
    forge: Callable[[str], str | None],
) -> None:
    socket, socket_id = await connect()

    answer = await subscribe(socket, "private-chat-a", forge(socket_id))
    error = await receive_event(socket)
    await publish("private-chat-a", "message", "secret")

    assert answer == {
        "event": "pusher:subscription_error",
        "channel": "private-chat-a",
        "data": {"type": "AuthError", "error": "Invalid signature", "status": 401},
    }
    assert error == {
        "event": "pusher:error",
        "data": {"code": None, "message": "Invalid signature"},
    }
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_presence_channels_are_refused() -> None:
    socket, socket_id = await connect()

    answer = await subscribe(
        socket, "presence-room", channel_auth(socket_id, "presence-room")
    )

    assert answer["event"] == "pusher:subscription_error"
    assert answer["data"]["status"] == 403
    await socket.disconnect()


async def test_ping_is_answered_with_pong() -> None:
    socket, _ = await connect()

    await socket.send_json_to({"event": "pusher:ping", "data": {}})

    assert await receive_event(socket) == {"event": "pusher:pong", "data": {}}
    await socket.disconnect()


async def test_unsubscribed_socket_receives_nothing_more() -> None:
    socket, _ = await subscribed("news")

    await socket.send_json_to(
        {"event": "pusher:unsubscribe", "data": {"channel": "news"}}
    )
    await socket.send_json_to({"event": "pusher:ping", "data": {}})
    assert (await receive_event(socket))["event"] == "pusher:pong"
    await publish("news", "headline", "late")

    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_subscribing_twice_delivers_once() -> None:
    socket, _ = await subscribed("news")

    assert (await subscribe(socket, "news"))["event"] == (
        "pusher_internal:subscription_succeeded"
    )
    await publish("news", "headline", "once")

    assert (await receive_event(socket))["data"] == "once"
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_publish_fans_out_and_excludes_a_socket() -> None:
    first, first_id = await subscribed("private-room")
    second, _ = await subscribed("private-room")

    await publish("private-room", "note", "to the second", except_socket_id=first_id)

    assert (await receive_event(second))["data"] == "to the second"
    assert await first.receive_nothing(timeout=0.2)
    await first.disconnect()
    await second.disconnect()


async def test_publish_sync_works_from_synchronous_code() -> None:
    socket, _ = await subscribed("news")

    await sync_to_async(publish_sync)("news", "headline", {"from": "sync"})

    assert (await receive_event(socket))["data"] == '{"from":"sync"}'
    await socket.disconnect()


@pytest.mark.parametrize(
    ("channel", "event", "data"),
    [("bad channel", "e", ""), ("news", "pusher:x", ""), ("news", "e", "x" * 10241)],
)
async def test_publish_refuses_what_pusher_refuses(
    channel: str, event: str, data: str
) -> None:
    with pytest.raises(PublishError):
        await publish(channel, event, data)


async def test_client_events_are_refused_by_default() -> None:
    socket, _ = await subscribed("private-room")
    other, _ = await subscribed("private-room")

    await socket.send_json_to(
        {"event": "client-typing", "channel": "private-room", "data": {}}
    )

    error = await receive_event(socket)
    assert error["event"] == "pusher:error"
    assert error["data"]["message"] == "Client events are not enabled"
    assert await other.receive_nothing(timeout=0.2)
    await socket.disconnect()
    await other.disconnect()


async def test_enabled_client_events_reach_the_others_only(settings: Any) -> None:
    settings.PUSHER_CLIENT_EVENTS = True
    sender, _ = await subscribed("private-room")
    other, _ = await subscribed("private-room")

    await sender.send_json_to(
        {"event": "client-typing", "channel": "private-room", "data": {"on": True}}
    )

    assert await receive_event(other) == {
        "event": "client-typing",
        "channel": "private-room",
        "data": '{"on":true}',
    }
    assert await sender.receive_nothing(timeout=0.2)
    await sender.disconnect()
    await other.disconnect()


@pytest.mark.parametrize("channel", ["news", "private-elsewhere"])
async def test_client_events_need_a_subscribed_private_channel(
    settings: Any, channel: str
) -> None:
    settings.PUSHER_CLIENT_EVENTS = True
    socket, _ = await subscribed("news")

    await socket.send_json_to(
        {"event": "client-typing", "channel": channel, "data": {}}
    )

    assert (await receive_event(socket))["event"] == "pusher:error"
    await socket.disconnect()


async def test_client_events_are_rate_limited_with_4301(settings: Any) -> None:
    settings.PUSHER_CLIENT_EVENTS = True
    socket, _ = await subscribed("private-room")
    frame = {"event": "client-typing", "channel": "private-room", "data": {}}

    # Counted per second of the clock: 21 events leave 11 in one second
    # even when a second ends among them.
    for _ in range(21):
        await socket.send_json_to(frame)

    error = await receive_event(socket)
    assert error["data"] == {
        "code": 4301,
        "message": "Client event rejected due to rate limit",
    }
    await socket.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"text_data": "not json"},
        {"text_data": "[1, 2]"},
        {"text_data": '{"data": {}}'},
        {"text_data": '{"event": "pusher:signin", "data": {}}'},
        {"text_data": '{"event": "nonsense", "data": {}}'},
        {"text_data": '{"event": "pusher:subscribe", "data": {"channel": "a b"}}'},
        {"text_data": "x" * 20000},
        {"bytes_data": b"\x00"},
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(
    frame: dict[str, Any],
) -> None:
    socket, _ = await connect()

    await socket.send_to(**frame)
    error = await receive_event(socket)
    await socket.send_json_to({"event": "pusher:ping", "data": {}})

    assert error["event"] == "pusher:error"
    assert error["data"]["code"] is None
    assert (await receive_event(socket))["event"] == "pusher:pong"
    await socket.disconnect()


async def test_idle_socket_is_pinged_then_closed_with_4201() -> None:
    socket, _ = await connect()
    hub = get_hub()
    (consumer,) = hub.sockets

    consumer.last_seen -= 121
    await hub.check_activity(time.monotonic())
    ping = await receive_event(socket)
    consumer.last_seen -= 30
    await hub.check_activity(time.monotonic())

    assert ping == {"event": "pusher:ping", "data": {}}
    close = await socket.receive_output(timeout=3)
    assert (close["type"], close["code"]) == ("websocket.close", 4201)
    await socket.disconnect()


async def test_answering_a_ping_keeps_the_socket_open() -> None:
    socket, _ = await connect()
    hub = get_hub()
    (consumer,) = hub.sockets

    consumer.last_seen -= 121
    await hub.check_activity(time.monotonic())
    assert (await receive_event(socket))["event"] == "pusher:ping"
    await socket.send_json_to({"event": "pusher:pong", "data": {}})
    await socket.send_json_to({"event": "pusher:ping", "data": {}})
    assert (await receive_event(socket))["event"] == "pusher:pong"
    await hub.check_activity(time.monotonic() + 60)

    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_the_hub_leaves_groups_nobody_listens_to() -> None:
    socket, _ = await subscribed("news")
    hub = get_hub()

    await socket.disconnect()
    await asyncio.sleep(0.05)
    hub.leave_empty_groups()
    await asyncio.gather(*hub.leaving.values())

    assert hub.groups == {}
    assert await hub.counts() == {}


# The fan-out layers.


async def test_the_in_memory_layer_looks_for_expired_messages_once_a_second() -> None:
    layer = InMemoryChannelLayer(expiry=-1)

    await layer.send("stale", {"type": "old"})
    await layer.group_send("group", {"type": "new"})
    assert "stale" not in layer.channels
    await layer.send("stale", {"type": "old"})
    await layer.group_send("group", {"type": "new"})

    # Within the second, a send no longer walks every channel and group.
    assert "stale" in layer.channels


async def test_a_hub_lets_short_lived_objects_die_young() -> None:
    young, middle, old = gc.get_threshold()
    gc.set_threshold(700, middle, old)
    try:
        socket, _ = await connect()

        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, middle, old)
        await socket.disconnect()
    finally:
        gc.set_threshold(young, middle, old)


@pytest.fixture
def own_redis(tmp_path: Path, settings: Any) -> Iterator[RedisServer]:
    """Carry this process's Pusher events on a Redis of the test's own."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "pusher": {
            "BACKEND": "adapters.web.pusher.pubsub.RedisPubSubLayer",
            "CONFIG": {"url": server.url, "prefix": f"t{uuid.uuid4().hex[:8]}"},
        },
    }
    yield server
    server.stop()


async def published_until_received(
    socket: WebsocketCommunicator, channel: str, seconds: float = 20
) -> bool:
    """Publish until the socket gets an event, as long as Redis refuses."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError):
            await publish(channel, "message", "after")
        # A communicator that times out stops its application: wait first.
        if not await socket.receive_nothing(timeout=0.5):
            return (await receive_event(socket))["data"] == "after"
    return False


async def test_sockets_get_events_again_after_redis_restarts(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    socket, _ = await subscribed("private-chat-r")
    await publish("private-chat-r", "message", "before")
    assert (await receive_event(socket))["data"] == "before"

    own_redis.stop()
    own_redis.start()

    # Events published before the subscription is back are lost, at most
    # once as with Pusher itself; later ones arrive.
    assert await published_until_received(socket, "private-chat-r")
    assert "Redis pub/sub connection lost (ConnectionError); reconnecting" in (
        caplog.messages
    )
    assert any(line.startswith("Redis pub/sub is back") for line in caplog.messages)
    await socket.disconnect()


async def test_a_silent_redis_is_left_for_a_new_connection(
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pubsub, "PING_SECONDS", 0.2)
    monkeypatch.setattr(pubsub, "SILENT_SECONDS", 0.6)
    socket, _ = await subscribed("private-chat-s")
    assert own_redis.process is not None

    # A stopped server keeps its connections open and answers nothing,
    # as a peer behind a broken network would.
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.5)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)

    assert "Redis pub/sub connection lost (ConnectionError); reconnecting" in (
        caplog.messages
    )
    assert await published_until_received(socket, "private-chat-s")
    await socket.disconnect()


async def test_a_subscription_redis_does_not_confirm_is_refused(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pubsub, "CONFIRM_SECONDS", 0.5)
    socket, socket_id = await connect()
    own_redis.stop()

    answer = await subscribe(
        socket, "private-chat-t", channel_auth(socket_id, "private-chat-t")
    )
    error = await receive_event(socket)
    own_redis.start()
    # A subscription asked for wakes the connection up from its wait.
    again = await subscribe(
        socket, "private-chat-t", channel_auth(socket_id, "private-chat-t")
    )

    assert answer["event"] == "pusher:subscription_error"
    assert answer["data"]["status"] == 503
    assert error["event"] == "pusher:error"
    assert again["event"] == "pusher_internal:subscription_succeeded"
    await socket.disconnect()


async def test_a_hub_stops_while_redis_is_away(own_redis: RedisServer) -> None:
    socket, _ = await subscribed("news")
    own_redis.stop()

    started = time.monotonic()
    await stop_hub()

    assert time.monotonic() - started < STOP_SECONDS
    await socket.disconnect()


# The real clients against Daphne.


async def receive_frame(websocket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    return frame


async def open_socket(base: str, *channels: str) -> ClientConnection:
    """Connect to a live gateway and subscribe, as a browser would."""
    url = base.replace("http://", "ws://") + socket_path()
    websocket = await websocket_connect(url)
    established = await receive_frame(websocket)
    socket_id = json.loads(established["data"])["socket_id"]
    for channel in channels:
        data = {"channel": channel, "auth": channel_auth(socket_id, channel)}
        await websocket.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        answer = await receive_frame(websocket)
        assert answer["event"] == "pusher_internal:subscription_succeeded"
    return websocket


def live_client(base: str) -> Any:
    host, port = base.removeprefix("http://").split(":")
    return api_client(host=host, port=int(port))


async def test_pusher_library_against_daphne(start_web: Any) -> None:
    _, base = start_web()
    websocket = await open_socket(base, "private-chat-x", "news")
    client = live_client(base)

    await asyncio.to_thread(client.trigger, ["private-chat-x"], "message", {"n": 1})
    await asyncio.to_thread(
        client.trigger_batch,
        [
            {"channel": "news", "name": "first", "data": "1"},
            {"channel": "news", "name": "second", "data": "2"},
        ],
    )
    listing = await asyncio.to_thread(
        client.channels_info, "private-", ["subscription_count"]
    )
    info = await asyncio.to_thread(client.channel_info, "news", ["subscription_count"])

    assert await receive_frame(websocket) == {
        "event": "message",
        "channel": "private-chat-x",
        "data": '{"n": 1}',
    }
    assert [(await receive_frame(websocket))["event"] for _ in range(2)] == [
        "first",
        "second",
    ]
    assert listing == {"channels": {"private-chat-x": {"subscription_count": 1}}}
    assert info == {"occupied": True, "subscription_count": 1}
    await websocket.close()


PUSHER_JS_CLIENT = """
const crypto = require("crypto");
const Pusher = require(process.env.PUSHER_JS);
const key = process.env.PUSHER_KEY;
const pusher = new Pusher(key, {
  cluster: "mt1",
  wsHost: "127.0.0.1",
  wsPort: Number(process.env.PORT),
  forceTLS: false,
  enabledTransports: ["ws"],
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, callback) => {
      const signature = crypto
        .createHmac("sha256", process.env.PUSHER_SECRET)
        .update(`${socketId}:${channelName}`)
        .digest("hex");
      callback(null, { auth: `${key}:${signature}` });
    },
  },
});
const say = (line) => console.log(JSON.stringify(line));
const channel = pusher.subscribe(process.env.CHANNEL);
channel.bind("pusher:subscription_succeeded", () => say({ subscribed: true }));
channel.bind("pusher:subscription_error", (error) => say({ error }));
channel.bind("message", (data) => {
  say({ message: data });
  pusher.disconnect();
});
setTimeout(() => process.exit(3), 20000).unref();
"""


async def read_line(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line, "pusher-js exited without answering"
    answer: dict[str, Any] = json.loads(line)
    return answer


async def test_pusher_js_receives_from_the_pusher_library(
    start_web: Any, tmp_path: Path
) -> None:
    _, base = start_web()
    script = tmp_path / "client.js"
    script.write_text(PUSHER_JS_CLIENT)
    channel = f"private-chat-{uuid.uuid4().hex}"
    env = {
        "PUSHER_JS": str(REPO / "node_modules" / "pusher-js"),
        "PUSHER_KEY": settings.PUSHER_KEY,
        "PUSHER_SECRET": settings.PUSHER_SECRET,
        "PORT": base.rsplit(":", 1)[1],
        "CHANNEL": channel,
    }
    node = await asyncio.create_subprocess_exec(
        "node", str(script), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await read_line(node) == {"subscribed": True}
        await asyncio.to_thread(
            live_client(base).trigger, channel, "message", {"text": "Hello"}
        )
        assert await read_line(node) == {"message": {"text": "Hello"}}
        assert await asyncio.wait_for(node.wait(), 10) == 0
    finally:
        if node.returncode is None:
            node.kill()


async def test_trigger_reaches_a_socket_of_another_process(start_web: Any) -> None:
    shared = {
        "REDIS_URL": settings.REDIS_URL or "redis://127.0.0.1:6379/0",
        "CHANNEL_LAYER_PREFIX": f"pusher{uuid.uuid4().hex[:12]}",
    }
    _, first = start_web(env=shared)
    _, second = start_web(env=shared)
    websocket = await open_socket(second, "private-chat-y", "news")
    client = live_client(first)

    await asyncio.to_thread(client.trigger, ["private-chat-y", "news"], "m", "x")
    received = {(await receive_frame(websocket))["channel"] for _ in range(2)}
    subscribers = await subscribers_on_redis(
        shared, group_name("private-chat-y"), group_name("news")
    )
    # Occupancy reaches other processes within about a second.
    await asyncio.sleep(1.5)
    listing = await asyncio.to_thread(client.channels_info, None, [])
    info = await asyncio.to_thread(client.channel_info, "private-chat-y", [])

    assert received == {"private-chat-y", "news"}
    # Carried by Redis pub/sub: the socket's process subscribed to both.
    assert subscribers == [1, 1]
    # Private names carry tokens: other processes know them only hashed.
    assert listing == {"channels": {"news": {}}}
    assert info == {"occupied": True}
    await websocket.close()


async def subscribers_on_redis(env: dict[str, str], *groups: str) -> list[int]:
    """Count the processes subscribed to each group's pub/sub channel."""
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        prefix = env["CHANNEL_LAYER_PREFIX"]
        keys = [f"{prefix}:group:{group}" for group in groups]
        counts = await redis.pubsub_numsub(*keys)
        return [count for _, count in counts]
    finally:
        await redis.aclose()
