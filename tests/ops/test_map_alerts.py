"""The live map's red "!" (``walkout.service.live.positions``): every person an alert names is
flagged, also when the alert names two sessions (a hand-over between payers)."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.service.live import positions
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def test_both_payers_of_a_hand_over_are_flagged() -> None:
    store = load_store("small")
    session = simulate(store, 0, 1, scenarios=["hand-over"])
    eng = Engine(store)
    eng.run(Sensors.from_session(session))
    (alert,) = [a for a in eng.alerts if a.kind == "hand_over"]
    named = set(alert.subject.split(","))
    people = positions(eng, 0.0, session.duration_s)
    flagged = {p["session"] for p in people if p["alert"]}
    assert len(named) == 2 and named <= flagged
    assert flagged <= named  # the group's own hand-over is not reported, nor flagged
