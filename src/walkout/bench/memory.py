"""How much an engine holds as a store's period goes on: what a live store's box keeps in
memory and writes into each snapshot of its stream (``walkout.service.live_state``).

The same simulated period runs three times: keeping every skeleton sample of every track
(``track_history_s`` None, as before it was bounded), with the given bound, and with the bound
and past visits let go (``forget_visits_s``, what a store's service runs: a store that is never
empty keeps only its recent past). All three must hand out the same events, decisions, cart
lines, receipts and alerts, chunk by chunk, at the same positions (what the service reads).
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
                     keep_s: float = 300.0, forget_s: float = 300.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Engine size (pickled, MB), skeleton samples and visits held every ``every_s`` of the
    period, keeping all, keeping ``keep_s`` of skeletons, and also forgetting visits settled
    ``forget_s`` ago; JSON-ready."""
    session = simulate(store, shoppers, seed)
    sensors = Sensors.from_session(session)
    runs: dict[str, Any] = {}
    outputs = []
    for label, cfg in (("keep_all", EngineConfig(track_history_s=None)),
                       (f"keep_{keep_s:g}s", EngineConfig(track_history_s=keep_s)),
                       (f"keep_{keep_s:g}s_forget_visits_{forget_s:g}s",
                        EngineConfig(track_history_s=keep_s, forget_visits_s=forget_s))):
        if progress:
            progress(f"engine, {label}")
        eng = Engine(store, cfg)
        rows, next_t, t_engine, t_pickle = [], every_s, 0.0, 0.0
        handed: list[str] = []
        seen = [0, 0, 0, 0, 0]

        def take(eng: Engine = eng, seen: list[int] = seen, handed: list[str] = handed) -> None:
            handed.append(repr((eng.events[seen[0]:], [
                (d.attribution.event.event_id, d.items, d.needs_review)
                for d in eng.decisions[seen[1]:]], eng.ledger.since(seen[2]),
                eng.issued[seen[3]:], eng.alerts[seen[4]:])))
            seen[:] = [len(eng.events), len(eng.decisions), len(eng.ledger), len(eng.issued),
                       len(eng.alerts)]

        for block, frames, gates, now in sensors.chunks(eng.config.chunk_s):
            t0 = time.perf_counter()
            eng.step(block, frames, gates, now)
            t_engine += time.perf_counter() - t0
            take()
            if now >= next_t:
                t0 = time.perf_counter()
                size = len(pickle.dumps(eng, protocol=pickle.HIGHEST_PROTOCOL))
                t_pickle = time.perf_counter() - t0
                inside = sum(1 for s in eng.book.sessions.values() if s.state == "open")
                rows.append({"t": round(now), "engine_mb": round(size / 1e6, 2),
                             "pickle_ms": round(t_pickle * 1e3), "open_sessions": inside,
                             "sessions_held": len(eng.book.sessions),
                             "tracks_held": len(eng.tracker._tracks),
                             "skeleton_samples": sum(s.hist.n for s in eng.tracker._tracks)})
                next_t += every_s
        eng.finish()
        take()
        outputs.append(handed)
        runs[label] = {"samples": rows, "engine_seconds": round(t_engine, 1),
                       "real_time_factor": round(session.duration_s / max(t_engine, 1e-9), 1)}
    return {"store": store.name, "shoppers": shoppers, "seed": seed,
            "simulated_seconds": round(session.duration_s, 1), "every_s": every_s, **runs,
            "same_outputs": outputs[0] == outputs[1] == outputs[2]}
