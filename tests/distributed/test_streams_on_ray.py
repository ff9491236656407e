"""The engine on Ray over a live store's long life: its stream rolls over while the store is
empty (``Engine.successor``) and a stream never empty lets go of visits settled long ago
(``EngineConfig.forget_visits_s``); both decide what the single process decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from walkout.checkout.receipt import Receipt
from walkout.distributed import DistributedEngine
from walkout.engine import Engine, EngineConfig
from walkout.events import Alert
from walkout.review import Verdict
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources.recording import Sensors
from walkout.store import load_store

pytestmark = pytest.mark.slow

STORE = load_store("small")


@dataclass
class Run:
    """What a service would have taken from its engines' output logs, chunk by chunk."""

    receipts: list[list[Receipt]] = field(default_factory=lambda: [[]])  # per stream
    events: list[tuple[str, float]] = field(default_factory=list)
    alerts: list[list[Alert]] = field(default_factory=list)  # per stream
    rolled_at: float | None = None
    engines: list[Engine] = field(default_factory=list)  # each stream's
    zone_events: set[str] | None = None  # what the zones kept of events at the rollover
    _seen: tuple[int, int] = (0, 0)

    def take(self, eng: Engine) -> None:
        r, e = self._seen
        self.receipts[-1] += eng.issued[r:]
        self.events += [(ev.event_id, ev.delta_g) for ev in eng.events[e:]]
        self._seen = (len(eng.issued), len(eng.events))


def _engines(ray_address: str, config: EngineConfig) -> dict[str, Engine]:
    return {"single": Engine(STORE, config),
            "ray": DistributedEngine(STORE, config, ray_address=ray_address, shelf_zones=3,
                                     floor_areas=2)}


def _zone_events(eng: DistributedEngine) -> set[str]:
    """The event ids every zone actor's stage still keeps something of."""
    ray = eng.shelf.ray  # type: ignore[attr-defined]
    kept = ray.get([a.__ray_call__.remote(lambda z: {*z.stage._event_plates, *z.stage._event_t})
                    for a in eng.shelf.actors])  # type: ignore[attr-defined]
    return set().union(*kept)


def _actor_ids(eng: DistributedEngine) -> list[Any]:
    return [a._actor_id for a in (*eng.shelf.actors, *eng.tracker.actors)]  # type: ignore[attr-defined]


# ---- rollover ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rollover(ray_address: str) -> dict[str, Run]:
    # four shoppers a minute apart: the store is empty at ~75 s, three more come after
    sn = Sensors.from_session(simulate(
        STORE, 4, 3, config=SimConfig(shoppers=ShopperConfig(mean_arrival_gap_s=60.0))))
    out = {}
    for name, first in _engines(ray_address, EngineConfig()).items():
        run, eng = Run(), first
        for block, frames, gates, now in sn.chunks(first.config.chunk_s):
            eng.step(block, frames, gates, now)
            run.take(eng)
            if run.rolled_at is None and eng.issued and eng.idle(now, 5.0):
                nxt = eng.successor(now)
                run.take(eng)  # the receipts the old stream issued at its end
                run.alerts.append(list(eng.alerts))
                run.receipts.append([])
                run.engines.append(eng)
                run.rolled_at, run._seen, eng = now, (0, 0), nxt
                if isinstance(nxt, DistributedEngine):  # before the next stream's events
                    run.zone_events = _zone_events(nxt)
        eng.finish()
        run.take(eng)
        run.alerts.append(list(eng.alerts))
        run.engines.append(eng)
        out[name] = run
    return out


def test_the_next_stream_decides_as_the_single_process_does(rollover: dict[str, Run]) -> None:
    single, ray = rollover["single"], rollover["ray"]
    assert single.rolled_at is not None and ray.rolled_at == single.rolled_at
    # somebody is charged in each stream, or the comparison proves nothing
    assert all(any(r.lines for r in rs) for rs in single.receipts)
    assert ray.receipts == single.receipts
    assert ray.events == single.events
    assert ray.alerts == single.alerts


def test_the_next_stream_runs_on_the_same_actors_with_a_fresh_tracker(
    rollover: dict[str, Run],
) -> None:
    old, nxt = rollover["ray"].engines
    assert type(nxt) is DistributedEngine
    assert _actor_ids(nxt) == _actor_ids(old)  # no second set of actors, none left behind
    assert nxt.shelf is old.shelf
    assert nxt.tracker is not old.tracker and type(nxt.tracker) is type(old.tracker)
    # the next stream's people are numbered from one again, as in one process
    single_next = rollover["single"].engines[1]
    assert [t.track_id for t in nxt.tracker.tracks] == [
        t.track_id for t in single_next.tracker.tracks]
    assert nxt.tracker.tracks[0].track_id == 1


def test_the_old_streams_events_are_forgotten_by_the_shelf_and_every_zone(
    rollover: dict[str, Run],
) -> None:
    old, nxt = rollover["ray"].engines
    old_events = {e.event_id for e in old.events}
    assert old_events, "the first stream must have shelf events, or nothing is forgotten"
    assert rollover["ray"].zone_events == set()
    shelf = nxt.shelf
    assert not old_events & set(shelf._event_zone)  # type: ignore[attr-defined]
    assert not old_events & _zone_events(nxt)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown shelf event"):
        shelf.apply(next(iter(old_events)), STORE.catalogue[0].id, 1)


# ---- forgetting visits -------------------------------------------------------------------------

#: visits settled 3 s ago are let go, at every chunk: events are decided later than that after
#: they ended, so the zones are told to forget events whose decision is still on its way to them
FORGET = EngineConfig(forget_visits_s=3.0)
VERDICT_AT = 60.0  # the open case's event (t_end ~12 s) was kept through ten forgettings


@pytest.fixture(scope="module")
def forgetting(ray_address: str) -> dict[str, tuple[Run, Engine, set[str]]]:
    # a wrong planogram entry: a pick nobody can be charged for opens a case at ~15 s
    sn = Sensors.from_session(simulate(
        STORE, 3, 5, scenarios=("wrong-planogram-entry", "same-plate-same-moment")))
    out = {}
    for name, eng in _engines(ray_address, FORGET).items():
        run, zone_events = Run(), set()
        for block, frames, gates, now in sn.chunks(eng.config.chunk_s):
            eng.step(block, frames, gates, now)
            run.take(eng)
            if now == VERDICT_AT:
                if isinstance(eng, DistributedEngine):
                    zone_events = _zone_events(eng)
                (case,) = [c for c in eng.cases.values() if c.open]
                best = case.event.hypotheses[0].items
                eng.resolve(case.case_id, Verdict({case.sessions[0]: best}, reviewer="op"))
                run.take(eng)  # the corrected receipt; the plates follow with the next block
        eng.finish()
        run.take(eng)
        run.alerts.append(list(eng.alerts))
        out[name] = (run, eng, zone_events)
    return out


def test_forgetting_visits_on_ray_decides_as_the_single_process_does(
    forgetting: dict[str, tuple[Run, Engine, set[str]]],
) -> None:
    single, s_eng, _ = forgetting["single"]
    ray, r_eng, _ = forgetting["ray"]
    assert s_eng.issued.start > 0 and s_eng.events.start > 0, "nothing was forgotten"
    assert any(r.lines for r in single.receipts[0])
    assert ray.receipts == single.receipts
    assert ray.events == single.events
    assert ray.alerts == single.alerts
    assert [(c.case_id, c.open, c.verdict) for c in r_eng.cases.values()] == [
        (c.case_id, c.open, c.verdict) for c in s_eng.cases.values()]
    assert r_eng.result().entries == s_eng.result().entries


def test_the_zones_forget_the_old_events_and_keep_an_open_cases(
    forgetting: dict[str, tuple[Run, Engine, set[str]]],
) -> None:
    _, s_eng, _ = forgetting["single"]
    _, r_eng, zone_events = forgetting["ray"]
    case_id = next(iter(s_eng.cases))
    old = {e for e, _ in forgetting["single"][0].events} - {case_id}
    early = {e for e in old if float(e.rsplit("-", 1)[1]) < VERDICT_AT - 20.0}
    assert early, "the run must have events old enough to forget before the verdict"
    # at the verdict: the case's event is kept (its verdict moved the plates), the rest went
    assert case_id in zone_events and not early & zone_events
    # at the end: the driver and the zones agree, and keep what the single stage keeps (and
    # at most the events whose decision was still queued at the last forgetting)
    zones = _zone_events(r_eng)  # type: ignore[arg-type]
    assert set(r_eng.shelf._event_zone) == zones >= set(s_eng.shelf._event_t)  # type: ignore[attr-defined]
