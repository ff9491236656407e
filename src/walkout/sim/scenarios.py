"""Named, reproducible hard cases, each a function that writes visitors' plans.

A scenario is placed at a time ``t0`` in a shopping period (alone, or mixed into the standard
mix) and returns the plans of the people it involves; the shopper simulator carries them out
like any other visit, so everything downstream — sensors, truth — is the same machinery.
Run one by name: ``simulate(store, 0, seed, scenarios=["crossing-hands"])``.

The hard suite (``walkout bench accuracy --suite hard``) is :func:`hard_suite`: every scenario
registered with ``suite=True``. Scenarios outside it (``restock``, ``closed-restock``) run by
name only (``--scenario restock``): scenario instances are placed one every ``scenario_gap_s``
in suite order, so adding one to the suite would move every later instance and change its results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from walkout.cart.sessions import STAFF_PREFIX
from walkout.events import L_WRIST, R_WRIST
from walkout.sim.shoppers import (
    Drop,
    HandOver,
    Hide,
    Plan,
    PutBack,
    RemoveStock,
    Restock,
    ShopperSimulator,
    Take,
    TakeMisplaced,
)
from walkout.store.model import Store


@dataclass(frozen=True, slots=True)
class ScenarioContext:
    sim: ShopperSimulator
    t0: float
    rng: np.random.Generator
    tag: str  # unique prefix for this instance's credentials

    @property
    def store(self) -> Store:
        return self.sim.store

    def credential(self, i: int) -> str:
        return f"{self.tag}-{i}"


Builder = Callable[[ScenarioContext], list[Plan]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    build: Builder
    suite: bool = True  # part of the hard suite (else: run by name only)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, title: str, suite: bool = True) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        SCENARIOS[name] = Scenario(name, title, fn, suite)
        return fn

    return register


def hard_suite() -> list[str]:
    """The scenarios of ``--suite hard``, in registration order."""
    return [name for name, sc in SCENARIOS.items() if sc.suite]


# ---- where things are -----------------------------------------------------------------------


def _single_plate_entries(store: Store, stock: list[int], min_stock: int = 1) -> list[int]:
    return [i for i, e in enumerate(store.planogram)
            if len(e.plates) == 1 and len(store.plate_products[e.plates[0]]) == 1
            and stock[i] >= min_stock]


def _shelf_runs(ctx: ScenarioContext, length: int, min_stock: int = 1) -> list[list[int]]:
    """Runs of ``length`` planogram entries on neighbouring single plates of one shelf."""
    store = ctx.store
    by_plate = {store.planogram[i].plates[0]: i
                for i in _single_plate_entries(store, ctx.sim.shelving.stock, min_stock)}
    runs = []
    for g in store.gondolas:
        for shelf in g.shelves:
            ids = [by_plate.get(p.id) for p in shelf.plates]
            for k in range(len(ids) - length + 1):
                window = ids[k : k + length]
                if all(i is not None for i in window):
                    runs.append([int(i) for i in window if i is not None])
    if not runs:
        raise RuntimeError(f"store {store.name!r} has no {length} neighbouring stocked plates")
    return runs


def _pick(ctx: ScenarioContext, items: list) -> object:
    return items[int(ctx.rng.integers(len(items)))]


def _plate_width(ctx: ScenarioContext, entry: int) -> float:
    b = ctx.store.plates[ctx.store.planogram[entry].plates[0]].box
    g = ctx.store.plate_gondola[ctx.store.planogram[entry].plates[0]]
    along = 0 if abs(g.front[1]) > 0.5 else 1
    return b.max[along] - b.min[along]


# ---- the scenarios ----------------------------------------------------------------------------


@scenario("crossing-hands", "two shoppers crossing hands at one gondola")
def crossing_hands(ctx: ScenarioContext) -> list[Plan]:
    a, b = _pick(ctx, _shelf_runs(ctx, 2))
    w = _plate_width(ctx, a)
    t = ctx.t0 + 25.0
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(b, at=t, hold_s=1.5, stand_offset_m=-w),),
             wrist=R_WRIST),
        Plan(ctx.credential(1), ctx.t0 + 3.0, (Take(a, at=t, hold_s=1.5, stand_offset_m=w),),
             wrist=L_WRIST),
    ]


@scenario("same-plate-same-moment", "two shoppers take the same product from one plate at once")
def same_plate(ctx: ScenarioContext) -> list[Plan]:
    (e,) = _pick(ctx, _shelf_runs(ctx, 1, min_stock=2))
    w = _plate_width(ctx, e)
    t = ctx.t0 + 25.0
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(e, at=t, hold_s=1.5, stand_offset_m=-0.5 * w),)),
        Plan(ctx.credential(1), ctx.t0 + 3.0,
             (Take(e, at=t, hold_s=1.5, stand_offset_m=0.5 * w),)),
    ]


@scenario("same-shelf-same-moment", "two shoppers take different products from one shelf at once")
def same_shelf(ctx: ScenarioContext) -> list[Plan]:
    a, _, b = _pick(ctx, _shelf_runs(ctx, 3))
    t = ctx.t0 + 25.0
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(a, at=t, hold_s=1.2),)),
        Plan(ctx.credential(1), ctx.t0 + 3.0, (Take(b, at=t, hold_s=1.2),)),
    ]


@scenario("long-hold", "an item held in the hand above the shelf for a long time")
def long_hold(ctx: ScenarioContext) -> list[Plan]:
    (e,) = _pick(ctx, _shelf_runs(ctx, 1))
    (f,) = _pick(ctx, _shelf_runs(ctx, 1))
    hold = float(ctx.rng.uniform(8.0, 15.0))
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(e, hold_s=hold),)),
        # the same, but in the end the item goes back where it was
        Plan(ctx.credential(1), ctx.t0 + 4.0, (Take(f, hold_s=hold), PutBack(hold_s=1.0))),
    ]


@scenario("multi-grab", "several items in one grab; items taken one by one very fast")
def multi_grab(ctx: ScenarioContext) -> list[Plan]:
    (e,) = _pick(ctx, _shelf_runs(ctx, 1, min_stock=4))
    (f,) = _pick(ctx, _shelf_runs(ctx, 1, min_stock=4))
    fast = tuple(Take(f, hold_s=0.5, pause_s=0.3) for _ in range(3))
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(e, quantity=3),)),
        Plan(ctx.credential(1), ctx.t0 + 4.0, fast),
    ]


@scenario("shoulder-to-shoulder", "four shoppers shoulder to shoulder in one aisle")
def shoulder_to_shoulder(ctx: ScenarioContext) -> list[Plan]:
    run = _pick(ctx, _shelf_runs(ctx, 4))
    t = ctx.t0 + 45.0  # late enough for all four to have come through the gate
    return [
        Plan(ctx.credential(i), ctx.t0 + 4.0 * i,
             (Take(e, at=t + 0.6 * i, hold_s=1.5),))
        for i, e in enumerate(run)
    ]


@scenario("false-claim", "a shopper takes an item and later claims to have put it back")
def false_claim(ctx: ScenarioContext) -> list[Plan]:
    # The sensors see a pick and no put-back; the claim itself is a dispute (never a sensor
    # input), so the receipt must keep the line.
    (e,) = _pick(ctx, _shelf_runs(ctx, 1))
    return [Plan(ctx.credential(0), ctx.t0, (Take(e),))]


@scenario("group-entry", "a group entering on one code, a child taking items too")
def group_entry(ctx: ScenarioContext) -> list[Plan]:
    entries = [e for (e,) in _shelf_runs(ctx, 1)]
    picks = [int(x) for x in ctx.rng.choice(entries, size=3, replace=False)]
    cred = ctx.credential(0)
    return [
        Plan(cred, ctx.t0, (Take(picks[0]),), party_size=3),
        Plan(cred, ctx.t0 + 0.5, (Take(picks[1]),), scans=False),
        Plan(cred, ctx.t0 + 1.0, (Take(picks[2]),), scans=False),  # the child
    ]


@scenario("tailgating", "somebody slipping in behind another shopper without scanning")
def tailgating(ctx: ScenarioContext) -> list[Plan]:
    entries = [e for (e,) in _shelf_runs(ctx, 1)]
    a, b = (int(x) for x in ctx.rng.choice(entries, size=2, replace=False))
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(a),)),
        Plan(f"unbound:{ctx.tag}", ctx.t0 + 0.5, (Take(b),), scans=False),
    ]


@scenario("wrong-plate-put-back",
          "a put-back to the wrong plate (one of them a same-weight product's), taken later")
def wrong_plate_put_back(ctx: ScenarioContext) -> list[Plan]:
    store = ctx.store
    singles = [e for (e,) in _shelf_runs(ctx, 1)]
    a = int(_pick(ctx, singles))
    pa = store.products[store.planogram[a].product]

    def weight_gap(e: int) -> float:
        return abs(store.products[store.planogram[e].product].weight_g - pa.weight_g)

    others = [e for e in singles if e != a]
    # one instance in two goes onto the plate of the product nearest in weight (the hard one)
    b = (min(others, key=weight_gap) if ctx.rng.random() < 0.5
         else int(_pick(ctx, others)))
    wrong = tuple(store.planogram[b].plates)
    return [
        Plan(ctx.credential(0), ctx.t0, (Take(a), PutBack(plates=wrong, product_id=pa.id))),
        Plan(ctx.credential(1), ctx.t0 + 30.0, (TakeMisplaced(wrong, pa.id, at=ctx.t0 + 60.0),)),
    ]


@scenario("wrong-planogram-entry",
          "a product stocked on a plate its planogram does not list, taken from there")
def wrong_planogram_entry(ctx: ScenarioContext) -> list[Plan]:
    """Two items of product X lie on plate P from the start (P lists only Y); a shopper takes
    one. Nothing listed for P weighs that much: the engine must raise a planogram alert and
    send the pick to review with the catalogue's candidates, not charge a Y."""
    store = ctx.store
    singles = [e for (e,) in _shelf_runs(ctx, 1)]
    home = int(_pick(ctx, singles))
    plate = tuple(store.planogram[home].plates)
    wy = store.products[store.planogram[home].product].weight_g
    listed = set(store.plate_products[plate[0]])
    # X: clearly not a multiple of Y's weight, and not listed for P
    cands = sorted({e.product for e in store.planogram if e.product not in listed
                    and all(abs(store.products[e.product].weight_g - q * wy) > 0.25 * wy
                            for q in (1, 2, 3))})
    x = store.products[str(_pick(ctx, cands))]
    ctx.sim.shelving.preload(plate, x.id, [float(w) for w in
                                           ctx.rng.normal(x.weight_g, x.weight_sd_g, size=2)])
    return [Plan(ctx.credential(0), ctx.t0, (TakeMisplaced(plate, x.id),))]


def _meeting_spots(ctx: ScenarioContext) -> tuple[np.ndarray, np.ndarray, float]:
    """Two floor spots 0.8 m apart in open floor (≥ 0.6 m of free cells around both), away
    from the gates, and the heading from the first to the second."""
    from scipy.ndimage import distance_transform_edt

    fl = ctx.sim.floor
    room = distance_transform_edt(fl.free) * fl.res
    gates = [0.5 * (np.array(g.area.min[:2]) + np.array(g.area.max[:2]))
             for g in ctx.store.gates]
    ii, jj = np.nonzero(room >= 0.9)
    centres = fl.origin + (np.stack([ii, jj], 1) + 0.5) * fl.res
    far = np.array([min(np.hypot(*(c - g)) for g in gates) > 2.0 for c in centres])
    if not far.any():
        raise RuntimeError(f"store {ctx.store.name!r} has no open floor for a hand-over")
    c = centres[far][int(ctx.rng.integers(int(far.sum())))]
    ang = float(ctx.rng.uniform(0, 2 * np.pi))
    d = 0.4 * np.array([np.cos(ang), np.sin(ang)])
    return c - d, c + d, ang


@scenario("hand-over", "a shopper hands an item to another (same group, and strangers)")
def hand_over(ctx: ScenarioContext) -> list[Plan]:
    """Two hand-overs in open floor: within a group (one payer either way) and between
    strangers (the documented default: the shopper who took it off the shelf pays)."""
    entries = [e for (e,) in _shelf_runs(ctx, 1)]
    picks = [int(x) for x in ctx.rng.choice(entries, size=2, replace=False)]
    plans = []
    for k, group in enumerate((True, False)):
        a, b, ang = _meeting_spots(ctx)
        t = ctx.t0 + 50.0 + 40.0 * k
        giver = ctx.credential(2 * k)
        taker = giver if group else ctx.credential(2 * k + 1)
        plans += [
            Plan(giver, ctx.t0 + 40.0 * k,
                 (Take(picks[k]), HandOver(taker, True, t, (float(a[0]), float(a[1])), ang)),
                 party_size=2 if group else 1),
            Plan(taker, ctx.t0 + 40.0 * k + (0.5 if group else 6.0),
                 (HandOver(giver, False, t, (float(b[0]), float(b[1])), ang + np.pi),),
                 scans=not group),
        ]
    return plans


@scenario("item-left", "an item left on the floor or on another shelf")
def item_left(ctx: ScenarioContext) -> list[Plan]:
    """One shopper leaves an item on the floor in open floor (no plate sees it: only the
    bend down with a wrist near the floor while holding items); another leaves one on a plate
    of another shelf that does not list it (a put-back the weight sees). Neither item is bought.
    """
    store = ctx.store
    singles = [e for (e,) in _shelf_runs(ctx, 1)]
    a, b, c, d = (int(x) for x in ctx.rng.choice(singles, size=4, replace=False))
    spot_a, spot_b, ang = _meeting_spots(ctx)
    spot = 0.5 * (spot_a + spot_b)
    pc = store.products[store.planogram[c].product]
    shelf_c = store.plate_shelf[store.planogram[c].plates[0]]
    elsewhere = [e for e in singles if e not in (a, b, c, d)
                 and store.plate_shelf[store.planogram[e].plates[0]] != shelf_c
                 and pc.id not in store.plate_products[store.planogram[e].plates[0]]]
    wrong = tuple(store.planogram[int(_pick(ctx, elsewhere))].plates)
    dropped = store.planogram[b].product
    return [
        Plan(ctx.credential(0), ctx.t0,
             (Take(a), Take(b), Drop((float(spot[0]), float(spot[1])), ang, dropped))),
        Plan(ctx.credential(1), ctx.t0 + 6.0,
             (Take(c), Take(d), PutBack(plates=wrong, product_id=pc.id))),
    ]


@scenario("changing-clothes", "a shopper changing clothes where no camera sees")
def changing_clothes(ctx: ScenarioContext) -> list[Plan]:
    """A shopper takes an item, spends 20-60 s in a fitting room (a blind area of the store:
    no camera sees inside), comes out and shops on. Changed clothes leave no trace in the
    keypoints; the track is lost for the stay and must be found again at the room's door."""
    store = ctx.store
    if not store.blind_areas:
        raise RuntimeError(f"store {store.name!r} has no blind area (fitting room) to hide in")
    room = store.blind_areas[int(ctx.rng.integers(len(store.blind_areas)))].box
    area = (room.min[0], room.min[1], room.max[0], room.max[1])
    singles = [e for (e,) in _shelf_runs(ctx, 1)]
    a, b = (int(x) for x in ctx.rng.choice(singles, size=2, replace=False))
    stay = float(ctx.rng.uniform(20.0, 60.0))
    return [Plan(ctx.credential(0), ctx.t0, (Take(a), Hide(area, stay), Take(b)))]


@scenario("restock", "a staff member restocks plates with trays of items (more than a shopper's "
          "grab) and removes expired ones while shoppers shop", suite=False)
def restock(ctx: ScenarioContext) -> list[Plan]:
    """A staff badge at the gate (credential ``staff:...``); the associate puts 12-24 items on
    one plate and 8-15 on another, each in one go, and takes 2 off a third (expired). Two
    shoppers shop meanwhile, one of them taking from the restocked plate afterwards. Nothing
    the associate does is a sale; every plate's inventory must end as it really is."""
    singles = [e for (e,) in _shelf_runs(ctx, 1, min_stock=4)]
    a, b, c, d = (int(x) for x in ctx.rng.choice(singles, size=4, replace=False))
    n_a, n_b = int(ctx.rng.integers(12, 25)), int(ctx.rng.integers(8, 16))
    return [
        Plan(f"{STAFF_PREFIX}{ctx.tag}", ctx.t0,
             (Restock(a, n_a), Restock(b, n_b), RemoveStock(c, 2))),
        Plan(ctx.credential(0), ctx.t0 + 8.0, (Take(d),)),
        Plan(ctx.credential(1), ctx.t0 + 45.0, (Take(a, quantity=2),)),
    ]


@scenario("closed-restock", "the store closed for restocking: a cooler's shelves loaded from "
          "the back room (no hand in any camera's view) and expired items pulled, then opened "
          "again for a shopper", suite=False)
def closed_restock(ctx: ScenarioContext) -> list[Plan]:
    """The operator marks the store closed (restock mode) at ``t0``; 12-24 items go onto one
    plate and 2 come off another from behind the shelves, which only the load cells see; the
    store opens again at ``t0 + 30`` and a shopper takes 2 from the restocked plate. The
    closed period is an input of the engine (the recording's ``store_modes.jsonl``): without
    it both changes would be review cases. A shopper inside meanwhile (the standard mix, run
    with ``--shoppers`` above 0) makes the engine judge them as on an open store."""
    singles = [e for (e,) in _shelf_runs(ctx, 1, min_stock=4)]
    a, c = (int(x) for x in ctx.rng.choice(singles, size=2, replace=False))
    n_a = int(ctx.rng.integers(12, 25))
    behind = f"store:{ctx.tag}"  # whoever is in the back room: no credential, no receipt
    ctx.sim.set_store_mode(ctx.t0, True)
    ctx.sim.stock_from_behind(behind, a, n_a, ctx.t0 + 8.0, ctx.rng)
    ctx.sim.stock_from_behind(behind, c, 2, ctx.t0 + 18.0, ctx.rng, add=False)
    ctx.sim.set_store_mode(ctx.t0 + 30.0, False)
    return [Plan(ctx.credential(0), ctx.t0 + 32.0, (Take(a, quantity=2),))]
