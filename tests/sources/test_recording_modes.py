"""Store-mode changes in a recording (``store_modes.jsonl``): written when the simulated store
was closed for restocking, loaded and checked like the other streams (a damaged line is a
RecordingError naming the file and the line), and applied at the chunk where the service's
engine worker applies an operator's change. Recordings without the file load as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from walkout.engine import Engine
from walkout.events import PlateBlock, StoreModeChange
from walkout.sim.session import simulate
from walkout.sources.recording import (
    MODES_FILE,
    MODES_VERSION,
    VERSION,
    RecordingError,
    Sensors,
    load_sensors,
    read_meta,
    write_recording,
)
from walkout.store import load_store


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of the ``closed-restock`` scenario: closed at 1 s, open again at 31 s."""
    out = tmp_path_factory.mktemp("rec") / "closed"
    write_recording(simulate(load_store("small"), 0, 1, scenarios=["closed-restock"]), out)
    return out


def _copy(rec: Path, tmp_path: Path) -> Path:
    shutil.copytree(rec, tmp_path / "rec")
    return tmp_path / "rec"


def test_a_closed_period_is_written_and_loaded_back(closed: Path) -> None:
    lines = [json.loads(x) for x in (closed / MODES_FILE).read_text().splitlines()]
    assert lines == [{"t": 1.0, "mode": "closed"}, {"t": 31.0, "mode": "open"}]
    # a reader that knows no store modes refuses it instead of replaying the store as open
    assert read_meta(closed)["version"] == MODES_VERSION
    assert load_sensors(closed).modes == (StoreModeChange(1.0, True), StoreModeChange(31.0, False))


def test_a_recording_of_a_store_never_closed_is_as_before(tmp_path: Path) -> None:
    out = tmp_path / "open"
    write_recording(simulate(load_store("small"), 1, 2), out)
    assert not (out / MODES_FILE).exists() and read_meta(out)["version"] == VERSION
    assert load_sensors(out).modes == ()


def test_the_replay_books_the_closed_stores_changes_as_stock(closed: Path,
                                                            tmp_path: Path) -> None:
    """What the file changes: with it the two changes no hand made are a restock and a
    removal on the store's pseudo-session; without it (the store open) two review cases."""
    sensors = load_sensors(closed)
    stock = [d for d in Engine(sensors.store).run(sensors).decisions if d.stock]
    assert [(d.attribution.session_id, d.needs_review, len(d.items)) for d in stock] == [
        (None, False, 1), (None, False, 1)]
    assert stock[0].items[0][1] < 0 < stock[1].items[0][1]  # put on the plate, taken off
    tmp = _copy(closed, tmp_path)
    (tmp / MODES_FILE).unlink()
    opened = Engine(sensors.store).run(load_sensors(tmp))
    assert not any(d.stock for d in opened.decisions)
    assert sum(d.needs_review for d in opened.decisions) == 2


def _sensors(modes: list[tuple[float, bool]], duration_s: float = 20.0) -> Sensors:
    store = load_store("small")
    block = PlateBlock(np.zeros(0), np.zeros((0, len(store.plate_ids))), store.plate_ids)
    return Sensors(store, block, [], [], duration_s,
                   modes=tuple(StoreModeChange(t, c) for t, c in modes))


def test_a_change_applies_at_the_start_of_the_first_chunk_starting_at_or_after_it() -> None:
    """As the engine worker applies an operator's change: at the start of its next chunk,
    stamped with that start (chunks of 5 s: 0, 5, 10, 15 → 20)."""
    s = _sensors([(-1.0, True), (0.0, False), (3.0, True), (5.0, False), (12.5, True),
                  (16.0, False)])
    assert s.mode_steps(5.0) == [[(-1.0, True), (0.0, False)], [(5.0, True), (5.0, False)],
                                 [], [(15.0, True)]]  # 16 s: after the last start, no effect
    assert len(s.mode_steps(5.0)) == len(list(s.chunks(5.0)))
    assert _sensors([]).mode_steps(5.0) == [[], [], [], []]


def test_the_engine_run_is_given_them_there() -> None:
    eng = Engine(load_store("small"))
    eng.run(_sensors([(3.0, True), (12.5, False)]))
    assert eng.store_modes == [(5.0, True), (15.0, False)]
    assert [(a.kind, a.t) for a in eng.alerts] == [("store_closed", 5.0), ("store_opened", 15.0)]


def _write_modes(rec: Path, text: str) -> None:
    (rec / MODES_FILE).write_text(text)


@pytest.mark.parametrize(("text", "line", "said"), [
    ('{"t": 1.0, "mode": "closed"}\n{"t": 5.0, "mode": "shut"}\n', 2,
     "unknown store mode 'shut' (open or closed)"),
    ('{"t": NaN, "mode": "closed"}\n', 1, "time t=nan is not a finite number"),
    ('{"t": Infinity, "mode": "closed"}\n', 1, "time t=inf is not a finite number"),
    ('{"t": "1.0", "mode": "closed"}\n', 1, "time t='1.0' is not a finite number"),
    ('{"t": true, "mode": "closed"}\n', 1, "time t=True is not a finite number"),
    ('{"t": 1.0, "closed": true}\n', 1, "not a store-mode change (an object with t and mode"),
    ('{"t": 1.0, "mode": "closed", "by": "x"}\n', 1, "not a store-mode change"),
    ('[1.0, "closed"]\n', 1, "not a store-mode change"),
    ('{"t": 1.0, "mode": "closed"}\n\n{"t": 1.0, "mode": "open"\n', 3,
     "not a store-mode change: "),
    ('{"t": 20.0, "mode": "closed"}\n{"t": 10.0, "mode": "open"}\n', 2,
     "t=10 s comes before the one above it (t=20 s); the changes must be in time order"),
])
def test_a_damaged_line_is_refused_naming_the_file_and_the_line(
        closed: Path, tmp_path: Path, text: str, line: int, said: str) -> None:
    rec = _copy(closed, tmp_path)
    _write_modes(rec, text)
    with pytest.raises(RecordingError) as e:
        load_sensors(rec)
    assert f"{rec / MODES_FILE}:{line}: " in str(e.value)
    assert said in str(e.value)


def test_a_change_after_the_end_is_said(closed: Path, tmp_path: Path) -> None:
    rec = _copy(closed, tmp_path)
    end = read_meta(rec)["duration_s"]
    _write_modes(rec, f'{{"t": 1.0, "mode": "closed"}}\n{{"t": {end + 60}, "mode": "open"}}\n')
    sensors = load_sensors(rec)
    assert len(sensors.modes) == 2
    (note,) = sensors.notes
    assert note.startswith(f"{rec / MODES_FILE}:2: 1 store-mode change(s) after the "
                           "recording's end")


def test_an_empty_file_is_a_store_never_closed(closed: Path, tmp_path: Path) -> None:
    rec = _copy(closed, tmp_path)
    _write_modes(rec, "\n")
    assert load_sensors(rec).modes == ()


def test_an_unknown_version_is_still_refused(closed: Path, tmp_path: Path) -> None:
    rec = _copy(closed, tmp_path)
    meta = json.loads((rec / "recording.json").read_text())
    (rec / "recording.json").write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(RecordingError, match=r"version 3 .*version 1 or 2"):
        load_sensors(rec)
