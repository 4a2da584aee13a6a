"""Pytest fixture `fake_ollama`: a FakeOllama on 127.0.0.1 with a free port, closed after the test.

Use it with `pytest_plugins = ["tests.fakes.ollama_fixtures"]` in a conftest, or import the name into a test
module (`from tests.fakes.ollama_fixtures import fake_ollama  # noqa: F401`).
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest_asyncio

from tests.fakes.ollama_server import FakeOllama


@pytest_asyncio.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
