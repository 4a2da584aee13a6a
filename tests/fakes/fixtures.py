"""Pytest fixtures for the fake upstreams: `fake_openai` and `fake_anthropic`, each started on 127.0.0.1 with a
free port before the test and closed after it.

Use them from any test module with `pytest_plugins = ["tests.fakes.fixtures"]` in the top-level conftest, or
import the two names into a module. The expected keys are `DEFAULT_OPENAI_KEY` / `DEFAULT_ANTHROPIC_KEY`
(also `fake.api_key`).
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest_asyncio

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest_asyncio.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
