"""`walkout bench accuracy`: simulate a period, run the engine, score its receipts.

Receipts are scored as the engine issues them at exit, before any review: a line under review
counts as what the engine provisionally charged (a line it keeps charged while its case is open,
e.g. an item maybe left on the floor, is a false positive if the item was not bought), and the
case counts in the review rate - the price paid for it. ``after_review`` scores the same
receipts once every open case is settled by a reviewer who sees what really happened (the
simulator's truth stands in for the video): what the store ends up charging.

Staff restocks and removals (scenario ``restock``) are no sale: staff have no true receipt, and
``inventory`` compares the engine's count of every restocked or emptied footprint with what
is really on it at the end of the period.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from walkout.bench.metrics import score_receipts
from walkout.engine import Decision, Engine, EngineConfig, EngineResult
from walkout.review import Verdict
from walkout.sim.session import SimSession, Truth, simulate
from walkout.sources.recording import Sensors
from walkout.store.model import Store

UNBOUND = "(unbound)"


def predicted_receipts(result: EngineResult) -> dict[str, Counter[str]]:
    """Credential → product → quantity, merging a credential's sessions.

    What the engine put on unbound people's sessions (no credential) is pooled under
    ``UNBOUND``: scored against what unbound people really took, so an item charged to nobody's
    account when a scanned shopper took it counts against both precision and recall.
    """
    out: dict[str, Counter[str]] = {}
    for r in result.receipts:
        out.setdefault(r.credential or UNBOUND, Counter()).update(r.counts())
    return out


def true_receipts(truth: Truth) -> dict[str, Counter[str]]:
    """Truth keyed like ``predicted_receipts``: unbound visitors pooled under ``UNBOUND``."""
    out: dict[str, Counter[str]] = {}
    for cred, r in truth.receipts.items():
        out.setdefault(UNBOUND if cred.startswith("unbound:") else cred, Counter()).update(r)
    return out


def run_accuracy(
    store: Store, shoppers: int, seed: int,
    progress: Callable[[str, float, float], None] | None = None,
    scenarios: Sequence[str] = (),
    config: EngineConfig | None = None,
) -> tuple[dict[str, Any], SimSession, EngineResult]:
    """Simulate (standard mix plus named scenarios), run the engine, return JSON-ready figures."""
    t0 = time.perf_counter()
    session = simulate(store, shoppers, seed, scenarios=scenarios)
    t_sim = time.perf_counter() - t0
    if progress:
        progress("simulated", session.duration_s, session.duration_s)
    t1 = time.perf_counter()
    engine = Engine(store, config or EngineConfig())
    result = engine.run(
        Sensors.from_session(session),
        (lambda now: progress("engine", now, session.duration_s)) if progress else None,
    )
    t_engine = time.perf_counter() - t1
    s = score_receipts(predicted_receipts(result), true_receipts(session.truth))
    figures: dict[str, Any] = {
        "store": store.name,
        "seed": seed,
        "shoppers": len(session.truth.paths),
        "f1": round(s.f1, 6),
        "precision": round(s.precision, 6),
        "recall": round(s.recall, 6),
        "exact_receipt_rate": round(s.exact_receipt_rate, 6),
        "true_items": s.true_items,
        "predicted_items": s.predicted_items,
        "events": len(result.events),
        "true_events": len(session.truth.events),
        "events_to_review": len(result.review_queue),
        "review_rate": round(len(result.review_queue) / max(len(result.decisions), 1), 6),
        "alerts": dict(sorted(Counter(a.kind for a in result.alerts).items())),
        "simulated_seconds": round(session.duration_s, 1),
        "seconds": round(t_sim + t_engine, 2),
        "engine_seconds": round(t_engine, 2),
        "real_time_factor": round(session.duration_s / max(t_engine, 1e-9), 1),
    }
    stock = inventory_check(engine, session)
    if stock["footprints"]:  # only periods where staff moved stock (keeps other runs' JSON)
        figures["inventory"] = stock
    per = per_scenario(session, result) if scenarios else {}
    # ``result`` stays what was issued at exit; verdicts go to the engine's own cases
    result = replace(result, cases={k: copy.copy(c) for k, c in result.cases.items()})
    settled = settle_by_truth(engine, session.truth)
    reviewed = engine.result()
    s2 = score_receipts(predicted_receipts(reviewed), true_receipts(session.truth))
    figures["after_review"] = {"cases": settled, "f1": round(s2.f1, 6),
                               "exact_receipt_rate": round(s2.exact_receipt_rate, 6)}
    if scenarios:
        figures["scenarios"] = list(scenarios)
        for name, row in per_scenario(session, reviewed).items():
            per[name]["f1_after_review"] = row["f1"]
            per[name]["exact_after_review"] = row["exact_receipt_rate"]
        figures["per_scenario"] = per
    return figures, session, result


def settle_by_truth(engine: Engine, truth: Truth) -> int:
    """Settle every open review case as a reviewer watching the video would; returns how many.

    The verdict is what really happened at the case's plates at its moment (the true events
    changing their weight then; for a hand to the floor, the items that shopper really left
    there). People without a credential cannot be named, so what the engine gave their
    pseudo-sessions stands.
    """
    sessions = engine.book.sessions
    by_cred: dict[str, str] = {}
    for sid in sorted(sessions):
        if sessions[sid].credential:
            by_cred.setdefault(sessions[sid].credential, sid)
    n = 0
    used: set[int] = set()
    for case in list(engine.cases.values()):
        if not case.open:
            continue
        ev = case.event
        shares: dict[str, Counter[str]] = {
            sid: Counter(dict(items)) for sid, items in case.decided.items()
            if not sessions[sid].credential
        }
        creds = {sessions[sid].credential for sid in case.sessions}
        for k, te in enumerate(truth.events):
            if k in used:  # one true change settles one case (an event split in two: once)
                continue
            if ev.plate_ids:  # the load cells lag the change a little: a second's slack
                hit = (_PLATE_KIND.get(te.kind, te.kind) == ev.kind
                       and bool(set(te.plates) & set(ev.plate_ids))
                       and ev.t_start - 1.5 <= te.t_change <= ev.t_end + 1.0
                       and te.t_in <= ev.t_end + 0.5 and ev.t_start - 0.5 <= te.t_out)
            else:  # a hand to the floor: did that shopper leave something there?
                hit = (te.kind == "drop" and te.shopper in creds
                       and ev.t_start - 2.0 <= te.t_change <= ev.t_end + 2.0)
            sid = by_cred.get(te.shopper)
            if hit and sid is not None:
                shares.setdefault(sid, Counter())[te.product_id] += te.quantity
                used.add(k)
        engine.resolve(case.case_id, Verdict(
            {sid: tuple(sorted(c.items())) for sid, c in shares.items() if +c},
            reviewer="bench", note="settled from the simulator's truth"))
        n += 1
    return n


#: what staff stock moves are to a plate
_PLATE_KIND = {"restock": "put", "remove": "pick"}


def inventory_check(engine: Engine, session: SimSession) -> dict[str, Any]:
    """The engine's inventory of each footprint staff restocked or emptied against the truth
    (opening stock plus every true pick, put-back, restock and removal there)."""
    store, truth = session.store, session.truth
    moved = sorted({(tuple(te.plates), te.product_id) for te in truth.events
                    if te.kind in _PLATE_KIND})
    rows = []
    for plates, pid in moved:
        n = sum(e.stock for e in store.planogram
                if tuple(e.plates) == plates and e.product == pid)
        for te in truth.events:
            if tuple(te.plates) == plates and te.product_id == pid:
                n += te.quantity if te.kind in ("put", "restock") else -te.quantity
        have = engine.shelf.inventory.count(plates, pid)
        rows.append({"plates": list(plates), "product": pid, "true": n, "engine": have})
    return {"footprints": len(rows), "exact": sum(r["true"] == r["engine"] for r in rows),
            "rows": rows}


def _scenario_of_decision(d: Decision, truth: Truth, result: EngineResult) -> str:
    """The scenario of the true event a decision is about (same plates, overlapping time);
    a decision about no plate (a hand to the floor) is its shopper's scenario."""
    ev = d.attribution.event
    if not ev.plate_ids:
        s = result.sessions.get(d.attribution.session_id or "")
        return truth.scenario_of.get(s.credential, "standard") if s else "standard"
    best, best_dt = "standard", 3.0
    for te in truth.events:
        if not set(te.plates) & set(ev.plate_ids):
            continue
        dt = max(ev.t_start - te.t_out, te.t_in - ev.t_end, 0.0)
        if dt < best_dt:
            best, best_dt = truth.scenario_of.get(te.shopper, "standard"), dt
    return best


def per_scenario(session: SimSession, result: EngineResult) -> dict[str, dict[str, Any]]:
    """F1, exact-receipt rate and review rate of each scenario (and of the standard mix)."""
    truth = session.truth
    pred = predicted_receipts(result)
    true = true_receipts(truth)
    groups: dict[str, list[str]] = {}
    for cred in true:
        name = "standard"
        if cred == UNBOUND:
            name = "tailgating"
        elif cred in truth.scenario_of:
            name = truth.scenario_of[cred]
        groups.setdefault(name, []).append(cred)
    reviews: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    for d in result.decisions:
        name = _scenario_of_decision(d, truth, result)
        decided[name] += 1
        reviews[name] += d.needs_review
    out: dict[str, dict[str, Any]] = {}
    for name, creds in sorted(groups.items()):
        s = score_receipts({c: pred.get(c, Counter()) for c in creds}, {c: true[c] for c in creds})
        out[name] = {
            "receipts": len(creds),
            "f1": round(s.f1, 6),
            "exact_receipt_rate": round(s.exact_receipt_rate, 6),
            "events": decided[name],
            "review_rate": round(reviews[name] / decided[name], 6) if decided[name] else 0.0,
        }
    return out
