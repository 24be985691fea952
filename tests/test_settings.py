"""Settings come from the environment, with the contract's defaults."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.conftest import PYTHON, REPO

READ_SETTINGS = """
import json
import gateway.settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "ENGINE": s.DATABASES["default"]["ENGINE"],
    "DB_OPTIONS": s.DATABASES["default"].get("OPTIONS", {}),
    "LAYER": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "CACHE": s.CACHES["default"]["BACKEND"],
    "PUSHER_URL": s.PUSHER_URL,
    "PUSHER_APP_ID": s.PUSHER_APP_ID,
    "CHAT_TOKEN_TTL": s.CHAT_TOKEN_TTL,
    "CHAT_TOKEN_KEYS": len(s.CHAT_TOKEN_KEYS),
    "FIELD_ENCRYPTION_KEYS": len(s.FIELD_ENCRYPTION_KEYS),
    "FACEBOOK_APP_SECRET": s.FACEBOOK_APP_SECRET,
    "FACEBOOK_GRAPH_URL": s.FACEBOOK_GRAPH_URL,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
}))
"""
CONTRACT_VARIABLES = {
    "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL",
    "PUSHER_URL", "PUSHER_WS_HOST", "PUSHER_WS_PORT", "PUSHER_APP_ID",
    "PUSHER_KEY", "PUSHER_SECRET", "CHAT_TOKEN_KEYS", "CHAT_TOKEN_TTL",
    "FIELD_ENCRYPTION_KEYS", "FACEBOOK_APP_SECRET", "FACEBOOK_VERIFY_TOKEN",
    "FACEBOOK_GRAPH_URL", "SECURE_SSL_REDIRECT", "DJANGO_SETTINGS_MODULE",
}


def read_settings(**environment: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items()
        if key not in CONTRACT_VARIABLES
    }
    env.update(environment)
    return subprocess.run(
        [PYTHON, "-c", READ_SETTINGS], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )


def settings_with(**environment: str) -> dict[str, Any]:
    result = read_settings(**environment)
    assert result.returncode == 0, result.stderr
    values: dict[str, Any] = json.loads(result.stdout)
    return values


def test_the_defaults_are_the_embedded_gateway() -> None:
    values = settings_with(SECRET_KEY="s3cret")
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["LAYER"].endswith("InMemoryChannelLayer")
    assert values["CACHE"].endswith("LocMemCache")
    assert values["PUSHER_URL"] == ""
    assert str(values["PUSHER_APP_ID"]).isdigit()
    assert values["CHAT_TOKEN_TTL"] == 86400
    assert values["CHAT_TOKEN_KEYS"] == values["FIELD_ENCRYPTION_KEYS"] == 1
    assert values["FACEBOOK_APP_SECRET"] == ""
    assert values["FACEBOOK_GRAPH_URL"] == "https://graph.facebook.com/v25.0"
    assert values["SECURE_SSL_REDIRECT"] is True


def test_without_debug_a_secret_key_is_required() -> None:
    result = read_settings()
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr
    assert settings_with(DEBUG="1")["DEBUG"] is True


def test_production_services_and_tls_to_postgres() -> None:
    values = settings_with(
        SECRET_KEY="s3cret",
        DATABASE_URL="postgres://u:p@db.example:5432/bots?sslmode=require",
        REDIS_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="bots.example.org, admin.example.org",
        CHAT_TOKEN_TTL="600",
        SECURE_SSL_REDIRECT="0",
    )
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["DB_OPTIONS"] == {"sslmode": "require"}
    assert values["LAYER"] == "channels_redis.core.RedisChannelLayer"
    assert values["CACHE"].endswith("RedisCache")
    assert values["ALLOWED_HOSTS"] == ["bots.example.org", "admin.example.org"]
    assert values["CHAT_TOKEN_TTL"] == 600
    assert values["SECURE_SSL_REDIRECT"] is False


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://graph.example/v25.0/", True),
        ("http://127.0.0.1:8123/v25.0", True),
        ("http://localhost:8123/v25.0", True),
        ("http://graph.example/v25.0", False),
        ("ftp://graph.example/v25.0", False),
    ],
)
def test_the_graph_api_is_reached_over_https_unless_local(
    url: str, accepted: bool
) -> None:
    result = read_settings(SECRET_KEY="s3cret", FACEBOOK_GRAPH_URL=url)
    if accepted:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["FACEBOOK_GRAPH_URL"] == url.rstrip("/")
    else:
        assert result.returncode != 0
        assert "FACEBOOK_GRAPH_URL must be https" in result.stderr
