"""A store's engine runs for days: the tracks' past is forgotten without changing a decision."""

from __future__ import annotations

from walkout.engine import Engine, EngineConfig, EngineResult
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

#: the scenarios whose decisions look furthest back: an item held over the shelf for long,
#: a tailgater's binding decided ~20 s late, hand-overs, floor reaches, people out of sight
LOOKING_BACK = ["long-hold", "tailgating", "hand-over", "item-left", "shoulder-to-shoulder",
                "changing-clothes", "group-entry", "wrong-plate-put-back"]


def _run(sensors: Sensors, keep_s: float | None) -> tuple[Engine, EngineResult]:
    eng = Engine(sensors.store, EngineConfig(track_history_s=keep_s))
    return eng, eng.run(sensors)


def _outputs(r: EngineResult) -> list[str]:
    return [repr(r.receipts), repr(r.events), repr(r.alerts), repr(r.entries),
            repr([(d.attribution.session_id, d.attribution.scores, d.items, d.needs_review,
                   d.reasons) for d in r.decisions]),
            repr([(c.case_id, c.reasons, c.sessions, c.evidence.hands) for c in
                  r.cases.values()])]


def test_forgetting_the_tracks_past_changes_no_decision_and_bounds_memory() -> None:
    store = load_store("small")
    sensors = Sensors.from_session(simulate(store, 8, 1, scenarios=LOOKING_BACK))
    full, r_full = _run(sensors, None)
    short, r_short = _run(sensors, 1.0)  # far shorter than any lookback: the guards hold it
    assert _outputs(r_short) == _outputs(r_full)
    kept = sum(s.hist.n for s in short.tracker._tracks)
    every = sum(s.hist.n for s in full.tracker._tracks)
    assert kept < every / 5, (kept, every)
