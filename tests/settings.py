"""Settings for the test suite: the production settings, with test secrets."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# Runs sharing one Redis must not hear each other's doorbells.
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"test{os.getpid()}")

from gateway.settings import *  # noqa: F403
from gateway.settings import CHANNEL_ADAPTERS

CHANNEL_ADAPTERS = [*CHANNEL_ADAPTERS, "tests.support.loopback.LoopbackAdapter"]

# Processes started by the tests must reach the test database, so SQLite
# tests use a file, not memory.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / f".test-{os.getpid()}.sqlite3")  # noqa: F405
    }

# The test process runs no worker of its own: tests that need one start a
# worker process, or a Daphne process with the embedded worker.
EMBEDDED_WORKER = False
