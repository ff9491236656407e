"""How a recording is cut into the engine's chunks: every reading lands in exactly one chunk,
including a camera frame stamped a hair before 0 by clock jitter and one after the duration."""

from __future__ import annotations

import numpy as np

from walkout.events import GateEvent, KeypointFrame, PlateBlock
from walkout.sources.recording import Sensors, chunk_edges
from walkout.store.loader import load_store


def _frame(t: float) -> KeypointFrame:
    return KeypointFrame("cam1", t, np.zeros((0, 17, 3), np.float32))


def test_edges_cover_both_ends_and_stay_aligned() -> None:
    assert chunk_edges(0.0, 111.5, 5.0).tolist() == [5.0 * k for k in range(24)]
    assert chunk_edges(0.0, 110.0, 5.0)[-1] == 110.0  # readings are before the duration
    # ... but one stamped exactly there or later still gets a chunk: chunks are [a, b)
    assert chunk_edges(0.0, 110.0, 5.0, last_t=110.0)[-1] == 115.0
    assert chunk_edges(-0.001, 4.0, 5.0).tolist() == [-5.0, 0.0, 5.0]
    assert chunk_edges(1000.2, 1003.0, 5.0).tolist() == [1000.0, 1005.0]


def test_every_reading_is_in_exactly_one_chunk() -> None:
    store = load_store("small")
    ids = ("G1-S1-P1", "G1-S1-P2")
    t = np.arange(0.0, 10.0, 0.5)
    plates = PlateBlock(t, np.ones((t.size, len(ids)), np.float32), ids)
    frames = [_frame(-0.0006), _frame(4.9999), _frame(5.0), _frame(10.0003)]
    gates = [GateEvent(0.2, "g", "entry", "qr"), GateEvent(9.9, "g", "exit")]
    sensors = Sensors(store, plates, frames, gates, duration_s=10.0)
    chunks = list(sensors.chunks(5.0))
    assert [now for *_, now in chunks] == [0.0, 5.0, 10.0, 15.0]
    assert [f.t for _, fs, _, _ in chunks for f in fs] == [f.t for f in frames]
    assert np.concatenate([b.t for b, *_ in chunks]).tolist() == t.tolist()
    assert [g for _, _, gs, _ in chunks for g in gs] == gates
    for block, fs, gs, now in chunks:  # nothing stamped at or after the chunk's end
        assert all(x < now for x in [*block.t, *(f.t for f in fs), *(g.t for g in gs)])
