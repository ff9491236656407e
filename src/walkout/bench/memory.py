"""How much an engine holds as a store's period goes on: what a live store's box keeps in
memory and writes into each snapshot of its stream (``walkout.service.live_state``).

The same simulated period runs twice, once keeping every skeleton sample of every track
(``track_history_s`` None, as before it was bounded) and once with the given bound; both must
issue the same receipts, decisions and alerts (the bound is behind everything still open).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

from walkout.engine import Engine, EngineConfig
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store.model import Store


def run_memory_bench(store: Store, shoppers: int, seed: int, every_s: float = 300.0,
                     keep_s: float = 300.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Engine size (pickled, MB) and skeleton samples held every ``every_s`` of the period,
    keeping all samples and keeping ``keep_s``; JSON-ready."""
    session = simulate(store, shoppers, seed)
    sensors = Sensors.from_session(session)
    runs: dict[str, Any] = {}
    outputs = []
    for label, keep in (("keep_all", None), (f"keep_{keep_s:g}s", keep_s)):
        if progress:
            progress(f"engine, {label}")
        eng = Engine(store, EngineConfig(track_history_s=keep))
        rows, next_t, t_engine, t_pickle = [], every_s, 0.0, 0.0
        for block, frames, gates, now in sensors.chunks(eng.config.chunk_s):
            t0 = time.perf_counter()
            eng.step(block, frames, gates, now)
            t_engine += time.perf_counter() - t0
            if now >= next_t:
                t0 = time.perf_counter()
                size = len(pickle.dumps(eng, protocol=pickle.HIGHEST_PROTOCOL))
                t_pickle = time.perf_counter() - t0
                inside = sum(1 for s in eng.book.sessions.values() if s.state == "open")
                rows.append({"t": round(now), "engine_mb": round(size / 1e6, 1),
                             "pickle_ms": round(t_pickle * 1e3), "open_sessions": inside,
                             "skeleton_samples": sum(s.hist.n for s in eng.tracker._tracks)})
                next_t += every_s
        eng.finish()
        r = eng.result()
        outputs.append((repr(r.receipts), repr([(d.attribution.event.event_id, d.items,
                                                 d.needs_review) for d in r.decisions]),
                        repr(r.alerts)))
        runs[label] = {"samples": rows, "engine_seconds": round(t_engine, 1),
                       "real_time_factor": round(session.duration_s / max(t_engine, 1e-9), 1)}
    return {"store": store.name, "shoppers": shoppers, "seed": seed,
            "simulated_seconds": round(session.duration_s, 1), "every_s": every_s, **runs,
            "same_outputs": outputs[0] == outputs[1]}
