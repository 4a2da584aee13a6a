"""Fixtures shared by every test directory: the fake upstreams and the keychain backends."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.ollama_fixtures", "tests.keyring_fixtures"]
