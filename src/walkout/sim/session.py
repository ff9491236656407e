"""A simulated shopping period: every sensor stream plus the ground truth beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.cart.sessions import is_staff_credential
from walkout.events import GateEvent, KeypointFrame, PlateBlock, StoreModeChange
from walkout.sim.cameras import CameraSimConfig, PersonPath, render_keypoints
from walkout.sim.loadcell import simulate_plates
from walkout.sim.shoppers import ShopperConfig, ShopperSimulator, TrueEvent, TrueHandOver
from walkout.store.model import Store


class SimConfig(BaseModel):
    """Everything that shapes a simulated period besides the store and the seed."""

    model_config = ConfigDict(extra="forbid")

    shoppers: ShopperConfig = Field(default_factory=ShopperConfig)
    cameras: CameraSimConfig = Field(default_factory=CameraSimConfig)
    plate_rate_hz: float = Field(60.0, gt=0, description="load-cell sampling rate")
    tail_s: float = Field(5.0, ge=0, description="recording kept running after the last exit")
    scenario_gap_s: float = Field(60.0, gt=0, description="time between scenario instances")


@dataclass
class Truth:
    """Ground truth; written beside a recording and never read by the engine."""

    receipts: dict[str, Counter[str]]  # credential -> product -> quantity
    events: list[TrueEvent]
    paths: list[PersonPath]
    credentials: dict[int, str]  # person id -> credential
    scenario_of: dict[str, str] = field(default_factory=dict)  # credential -> scenario name
    handovers: list[TrueHandOver] = field(default_factory=list)  # items passed hand to hand


@dataclass
class SimSession:
    """Sensor streams of one simulated period (what the engine may read) and its truth."""

    store: Store
    seed: int
    duration_s: float
    plates: PlateBlock
    frames: list[KeypointFrame]
    gates: list[GateEvent]
    truth: Truth
    #: the store marked closed (restock mode) or open again, in time order: an input of the
    #: engine like the gates (a recording's ``store_modes.jsonl``); none: open throughout
    modes: tuple[StoreModeChange, ...] = ()


def simulate(
    store: Store, shoppers: int, seed: int, config: SimConfig | None = None,
    scenarios: Sequence[str] = (),
) -> SimSession:
    """Simulate ``shoppers`` standard-mix visits plus the named ``scenarios``.

    Scenario instances are spread over the period (one every ``scenario_gap_s``) and planned
    first, so that the standard mix works around them. Deterministic for given arguments.
    """
    from walkout.sim.scenarios import SCENARIOS, ScenarioContext

    cfg = config or SimConfig()
    unknown = [n for n in scenarios if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(sorted(SCENARIOS))}")
    root = np.random.SeedSequence(seed)
    rng_people, rng_plates, rng_cams, rng_scen = (np.random.default_rng(s) for s in root.spawn(4))
    sim = ShopperSimulator(store, cfg.shoppers, rng_people)
    results = []
    scenario_of: dict[str, str] = {}
    pid = 0
    for k, name in enumerate(scenarios):
        ctx = ScenarioContext(sim, 1.0 + k * cfg.scenario_gap_s, rng_scen, f"{name}-{seed}-{k}")
        unseen = len(sim.unseen)
        for plan in SCENARIOS[name].build(ctx):
            results.append(sim.execute(pid, plan))
            scenario_of[plan.credential] = name
            pid += 1
        for _, ev in sim.unseen[unseen:]:  # stock moved by no hand seen (from behind a shelf)
            scenario_of[ev.shopper] = name
    arrivals = np.cumsum(rng_people.exponential(cfg.shoppers.mean_arrival_gap_s, shoppers)) + 1.0
    for i, t in enumerate(arrivals):
        credential = f"qr-{seed:04d}-{i:05d}"
        results.append(sim.shopper(pid, credential, float(t)))
        pid += 1
    end = max([float(r.path.t[-1]) for r in results]
              + [ev.t_out for _, ev in sim.unseen], default=10.0)
    duration = float(end + cfg.tail_s)

    initial = np.zeros(len(store.plate_ids))
    for e in store.planogram:
        w = store.products[e.product].weight_g * e.stock / len(e.plates)
        for p in e.plates:
            initial[store.plate_index[p]] += w
    for plates_, _, w in sim.shelving.preloaded:  # stocking errors are on the shelf from the start
        for p in plates_:
            initial[store.plate_index[p]] += w / len(plates_)
    interactions = [x for r in results for x in r.interactions]
    interactions += [x for inter, _ in sim.unseen for x in inter]
    gondola_of = {g.id: i for i, g in enumerate(store.gondolas)}
    plates = simulate_plates(
        initial, interactions, duration, rng_plates, rate_hz=cfg.plate_rate_hz,
        plate_ids=store.plate_ids,  # per-plate noise drawn like the real AiFi plates
        groups=[gondola_of[store.plate_gondola[p].id] for p in store.plate_ids],  # shelf shake
    )
    paths = [r.path for r in results]
    frames = render_keypoints(store, paths, duration, rng_cams, cfg.cameras)
    gates = sorted((g for r in results for g in r.gates), key=lambda g: (g.t, g.gate_id))
    receipts: dict[str, Counter[str]] = {}
    for r in results:  # a group's members share one credential and one receipt
        if is_staff_credential(r.credential):
            continue  # staff buy nothing: what they move is stock (truth.events), no receipt
        receipts.setdefault(r.credential, Counter()).update(r.receipt)
    truth = Truth(
        receipts=receipts,
        events=sorted([*(e for r in results for e in r.events), *(e for _, e in sim.unseen)],
                      key=lambda e: e.t_change),
        paths=paths,
        credentials={r.path.person_id: r.credential for r in results},
        scenario_of=scenario_of,
        handovers=sorted((h for r in results for h in r.handovers), key=lambda h: h.t),
    )
    modes = tuple(sorted(sim.store_modes, key=lambda m: m.t))
    return SimSession(store, seed, duration, plates, frames, gates, truth, modes)
