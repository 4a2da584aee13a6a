"""The persisted switch: atomic, evented, failing closed on a broken file."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import orjson
import pytest

from app.events import EventBus, PrivacyChanged
from app.privacy.state import PrivacyState, PrivacyStateError, read_mode


@pytest.fixture
def events() -> tuple[EventBus, list[PrivacyChanged]]:
    bus = EventBus()
    seen: list[PrivacyChanged] = []
    bus.subscribe(seen.append, PrivacyChanged)
    return bus, seen


def test_first_run_is_off_and_silent(tmp_path: Path, events) -> None:
    bus, seen = events
    state = PrivacyState(tmp_path / "privacy.json", bus)
    assert (state.enabled, state.mode, state.problem, seen) == (False, "off", None, [])


def test_set_persists_atomically_and_emits_on_change(tmp_path: Path, events) -> None:
    bus, seen = events
    path = tmp_path / "data" / "privacy.json"
    state = PrivacyState(path, bus)
    state.set(True, source="tray")
    state.set(True, source="tray")  # no change, no event
    state.set(False, source="cli")
    assert [(e.mode, e.source) for e in seen] == [("on", "tray"), ("off", "cli")]
    data = orjson.loads(path.read_bytes())
    assert (data["mode"], data["source"]) == ("off", "cli")
    assert sorted(p.name for p in path.parent.iterdir()) == ["privacy.json"]  # no temp files left
    assert PrivacyState(path).enabled is False


def test_state_survives_restart(tmp_path: Path) -> None:
    PrivacyState(tmp_path / "p.json").set(True, source="api")
    again = PrivacyState(tmp_path / "p.json")
    assert (again.enabled, again.source) == (True, "api")


@pytest.mark.parametrize("content", [b"{not json", b'{"mode": "maybe"}', b"[]", b"", b'{"mode": null}'])
def test_unusable_file_fails_closed_and_reports(tmp_path: Path, events, content: bytes) -> None:
    bus, seen = events
    path = tmp_path / "privacy.json"
    path.write_bytes(content)
    state = PrivacyState(path, bus)
    assert state.enabled is True and state.problem
    assert [(e.mode, e.source) for e in seen] == [("on", "state_error")]
    assert read_mode(path)[0] == "on"
    state.set(False, source="cli")  # setting it again repairs the file
    assert (state.enabled, state.problem, read_mode(path)) == (False, None, ("off", None))


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="permissions do not bind root")
def test_unreadable_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    path.write_bytes(b'{"mode": "off"}')
    path.chmod(0)
    try:
        assert PrivacyState(path).enabled is True
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_directory_in_the_way_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    path.mkdir()  # readable by nobody as a file, root included
    state = PrivacyState(path)
    assert state.enabled is True and "cannot read" in (state.problem or "")


def test_write_failure_keeps_on_on_and_off_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = PrivacyState(tmp_path / "privacy.json")

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.privacy.state.atomic_write", fail)
    with pytest.raises(PrivacyStateError) as e:
        state.set(True, source="api")
    assert state.enabled is True and "No space left" in e.value.message
    state.enabled = True
    with pytest.raises(PrivacyStateError):
        state.set(False, source="api")
    assert state.enabled is True  # off only once the file says so


def test_reload_picks_up_external_change(tmp_path: Path, events) -> None:
    bus, seen = events
    path = tmp_path / "privacy.json"
    state = PrivacyState(path, bus)
    PrivacyState(path).set(True, source="cli")  # e.g. the CLI while the server was down
    assert state.load() is True and [(e.mode, e.source) for e in seen] == [("on", "state_file")]
