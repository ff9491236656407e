"""The live engine's snapshot (``walkout.service.live_state`` pickles the engine every few
minutes): an engine restored from one at any chunk decides what the uninterrupted one does,
and the snapshot holds each skeleton sample once."""

from __future__ import annotations

import pickle

from walkout.engine import Engine, EngineConfig
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

from .test_long_running import LOOKING_BACK, _outputs


def test_an_engine_restored_at_every_chunk_decides_as_the_uninterrupted_one() -> None:
    store = load_store("small")
    sensors = Sensors.from_session(simulate(store, 8, 1, scenarios=LOOKING_BACK))
    cfg = EngineConfig(track_history_s=20.0)  # forgetting goes on across the restores
    ref = Engine(store, cfg)
    r_ref = ref.run(sensors)
    eng = Engine(store, cfg)
    for block, frames, gates, now in sensors.chunks(cfg.chunk_s):
        eng = pickle.loads(pickle.dumps(eng, protocol=pickle.HIGHEST_PROTOCOL))
        eng.step(block, frames, gates, now)
    eng.finish()
    assert _outputs(eng.result()) == _outputs(r_ref)


def test_a_snapshot_holds_each_skeleton_sample_once() -> None:
    """Each track's samples live in buffers with room to grow, and the track handed out last
    is cached as views of them: pickled as they were, the samples went in two and a half
    times over (a 20-shopper snapshot of 26 MB, 12 MB now)."""
    store = load_store("small")
    sensors = Sensors.from_session(simulate(store, 6, 2))
    eng = Engine(store)
    for block, frames, gates, now in sensors.chunks(eng.config.chunk_s):
        eng.step(block, frames, gates, now)
        _ = eng.tracker.tracks  # as every step's readers do: the tracks are cached
    states = eng.tracker._tracks
    samples = sum(s.hist.t[:s.hist.n].nbytes + s.hist.X[:s.hist.n].nbytes
                  + s.hist.S[:s.hist.n].nbytes for s in states)
    size = len(pickle.dumps(eng.tracker, protocol=pickle.HIGHEST_PROTOCOL))
    assert samples > 1_000_000 and size < 1.1 * samples, (size, samples)
    back = pickle.loads(pickle.dumps(eng.tracker, protocol=pickle.HIGHEST_PROTOCOL))
    assert repr(back.tracks) == repr(eng.tracker.tracks)
