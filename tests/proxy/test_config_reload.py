"""The config file is the single source of truth: edits reach the running proxy, broken edits do not."""

from __future__ import annotations

import asyncio

import openai
import pytest

from app.events import ConfigReloaded
from tests.proxy.conftest import TIERS


async def _wait_for(events, n, timeout=5.0):
    for _ in range(int(timeout / 0.05)):
        if len(events) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(events)} reload events")


async def test_edited_config_is_picked_up_and_a_broken_edit_keeps_the_last_good_one(proxy, tmp_path, fake_openai):
    p = await proxy()
    path = tmp_path / "config.yaml"
    path.write_text(TIERS.format(openai=fake_openai.base_url, anthropic="http://127.0.0.1:9",
                                 ollama="http://127.0.0.1:9"))
    p.core.config.path = str(path)
    p.core.config_poll_seconds = 0.05
    await p.core.restart_config_watch()
    seen: list[ConfigReloaded] = []
    p.core.bus.subscribe(seen.append, ConfigReloaded)
    await asyncio.sleep(0.2)  # the watcher has read the file's current state

    # an edit that adds a tier
    path.write_text(path.read_text().replace("model_name: coder", "model_name: coder2"))
    await _wait_for(seen, 1)
    assert seen[-1].ok
    r = await p.openai().chat.completions.create(model="coder2", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hi"

    # a broken edit: reported, and the last good config keeps serving
    path.write_text(path.read_text() + "\nrouter_settings: [this is: not valid\n")
    await _wait_for(seen, 2)
    assert not seen[-1].ok and "config.yaml" in seen[-1].error
    r = await p.openai().chat.completions.create(model="coder2", messages=[{"role": "user", "content": "again"}])
    assert r.choices[0].message.content == "again"
    with pytest.raises(openai.NotFoundError):
        await p.openai().chat.completions.create(model="coder", messages=[{"role": "user", "content": "x"}])
