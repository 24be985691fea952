"""Settings for the test suite: the production settings, with test secrets."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")

from gateway.settings import *  # noqa: E402, F403
