"""Settings read from the environment, as the operator contract lists them."""

import base64
import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    raw = os.environ.get(name) or default
    return [item.strip() for item in raw.split(",") if item.strip()]


def graph_url(url: str) -> str:
    """Refuse a Graph API base that would send page tokens in the clear."""
    parts = urlsplit(url)
    local = parts.hostname in {"localhost", "::1"} or (
        parts.hostname or ""
    ).startswith("127.")
    if parts.scheme == "https" or (parts.scheme == "http" and local):
        return url.rstrip("/")
    raise ImproperlyConfigured(
        "FACEBOOK_GRAPH_URL must be https (plain http only for a local stand-in)"
    )


def derived_key(purpose: str) -> str:
    """Derive a 32-byte base64url key from SECRET_KEY for one purpose."""
    digest = hashlib.sha256(f"{purpose}:{SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


DEBUG = env_flag("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    # Only with DEBUG on, where nothing is meant to be secret.
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "gateway",
    "storage",
    "botcore",
    "adapters.web",
    "adapters.facebook",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gateway.urls"
ASGI_APPLICATION = "gateway.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production, SQLite as the embedded default.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=600,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
USING_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis carries the channel layer and the cache; without it the gateway
# runs embedded, in one process.
REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED = not REDIS_URL
# The self-hosted Pusher hub of each web process receives every event for
# its sockets on one channel of the "pusher" layer, which drops silently
# what a full channel cannot take: give those channels room for a burst.
WEB_HUB_CHANNEL_CAPACITY = {"pusher-hub.*": 50_000}
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's default socket timeout (5 s) equals the layer's
                # blocking receive (5 s), so idle receives would time out.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 5000,
                "expiry": 60,
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"),
            },
        },
        # Pusher events between web processes: one PUBLISH each, pushed by
        # Redis to the processes that hold the channel's sockets.
        "pusher": {
            "BACKEND": "adapters.web.pusher.pubsub.RedisPubSubLayer",
            "CONFIG": {
                "url": REDIS_URL,
                "channel_capacity": WEB_HUB_CHANNEL_CAPACITY,
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"),
            },
        },
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CHANNEL_LAYER_PREFIX", "gateway"),
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "adapters.web.pusher.layers.InMemoryChannelLayer",
        },
        "pusher": {
            "BACKEND": "adapters.web.pusher.layers.InMemoryChannelLayer",
            "CONFIG": {"channel_capacity": WEB_HUB_CHANNEL_CAPACITY},
        },
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation."
     "UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "node_modules" / "pusher-js" / "dist" / "web"]

# Transport security.
SECURE_SSL_REDIRECT = env_flag("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = 0 if DEBUG else 31536000
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Pusher: the cloud when PUSHER_URL is set, otherwise the gateway itself.
PUSHER_URL = os.environ.get("PUSHER_URL", "")
if PUSHER_URL:
    _pusher = urlsplit(PUSHER_URL)
    PUSHER_APP_ID = _pusher.path.rstrip("/").rsplit("/", 1)[-1]
    # Percent-decoded, as the cloud publisher reads them.
    PUSHER_KEY = unquote(_pusher.username or "")
    PUSHER_SECRET = unquote(_pusher.password or "")
else:
    PUSHER_APP_ID = os.environ.get("PUSHER_APP_ID") or str(
        int(hashlib.sha256(f"app:{SECRET_KEY}".encode()).hexdigest()[:8], 16)
    )
    PUSHER_KEY = os.environ.get("PUSHER_KEY") or derived_key("pusher-key")[:20]
    PUSHER_SECRET = os.environ.get("PUSHER_SECRET") or derived_key("pusher-secret")
PUSHER_WS_HOST = os.environ.get("PUSHER_WS_HOST", "")
PUSHER_WS_PORT = os.environ.get("PUSHER_WS_PORT", "")
PUSHER_CLIENT_EVENTS = env_flag("PUSHER_CLIENT_EVENTS", False)

# Keys for chat tokens and for secrets at rest; the first one encrypts.
CHAT_TOKEN_KEYS = env_list("CHAT_TOKEN_KEYS", derived_key("chat-token"))
CHAT_TOKEN_TTL = int(os.environ.get("CHAT_TOKEN_TTL", "86400"))
FIELD_ENCRYPTION_KEYS = env_list(
    "FIELD_ENCRYPTION_KEYS", derived_key("field-encryption")
)

# How many trusted proxies in front of the gateway append to
# X-Forwarded-For (Heroku's router: 1). Only the per-address rate limits
# read the address it yields, as an ephemeral hash.
PROXY_HOPS = int(os.environ.get("PROXY_HOPS", "0"))

# Facebook Messenger.
FACEBOOK_APP_SECRET = os.environ.get("FACEBOOK_APP_SECRET", "")
FACEBOOK_VERIFY_TOKEN = os.environ.get("FACEBOOK_VERIFY_TOKEN", "")
FACEBOOK_GRAPH_URL = graph_url(
    os.environ.get("FACEBOOK_GRAPH_URL", "https://graph.facebook.com/v25.0")
)
# Seconds after which a contact's name and avatar are fetched again.
FACEBOOK_PROFILE_MAX_AGE = int(
    os.environ.get("FACEBOOK_PROFILE_MAX_AGE", str(7 * 24 * 3600))
)

# The worker: how many batches of conversations one process works on at
# once, how long a claim on a conversation lasts, how often an idle worker
# sweeps, and how delivery retries back off.
WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "16"))
WORKER_CLAIM_SECONDS = float(os.environ.get("WORKER_CLAIM_SECONDS", "30"))
WORKER_SWEEP_SECONDS = float(os.environ.get("WORKER_SWEEP_SECONDS", "5"))
DELIVERY_MAX_ATTEMPTS = int(os.environ.get("DELIVERY_MAX_ATTEMPTS", "8"))
DELIVERY_BACKOFF_BASE = float(os.environ.get("DELIVERY_BACKOFF_BASE", "1"))
DELIVERY_BACKOFF_CAP = float(os.environ.get("DELIVERY_BACKOFF_CAP", "300"))

# Logging never carries a client address or user agent: Daphne's access log
# is written without the address, every handler drops Twisted's access lines
# and redacts IP addresses (adapters.web.privacy), and the gateway's own
# loggers log reasons and internal ids only.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {
        "visitor_privacy": {"()": "adapters.web.privacy.PrivacyFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["visitor_privacy"],
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.server": {"handlers": [], "propagate": False},
        "daphne.access": {"handlers": [], "propagate": False},
        "django.channels.server": {"handlers": [], "propagate": False},
        "django.request": {"level": "ERROR"},
    },
}

# The channel adapters the pipeline delivers through, one per channel.
CHANNEL_ADAPTERS: list[str] = [
    "adapters.web.channel.WebAdapter",
    "adapters.facebook.channel.FacebookAdapter",
]
# The embedded default runs the worker inside the web process; tests that
# drive their own workers turn it off.
EMBEDDED_WORKER = env_flag("EMBEDDED_WORKER", True)
