"""Settings of the API benchmark's server: the gateway's, plus baselines."""

from typing import Any

from gateway.settings import *  # noqa: F403
from gateway.settings import CHANNEL_LAYERS

ROOT_URLCONF = "bench.web_baselines"
# One client address sends everything: lift the per-address and per-chat
# limits so that they do not cap the measurement.
WEB_RATE_LIMITS = dict.fromkeys(
    [
        "session.address", "auth.address", "auth.chat", "message.address",
        "message.chat", "history.address", "history.chat",
    ],
    (10_000_000, 60),
)
# No worker runs during the measurement, so nobody answers the doorbell:
# let it take every ring rather than log a full channel each time.
_layer: dict[str, Any] = CHANNEL_LAYERS["default"]
_layer.setdefault("CONFIG", {})["capacity"] = 10_000_000
