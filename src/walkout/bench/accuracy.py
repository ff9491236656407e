"""`walkout bench accuracy`: simulate a period, run the engine, score its receipts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from walkout.bench.metrics import score_receipts
from walkout.engine import Decision, Engine, EngineConfig, EngineResult
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
    if scenarios:
        figures["scenarios"] = list(scenarios)
        figures["per_scenario"] = per_scenario(session, result)
    return figures, session, result


def _scenario_of_decision(d: Decision, truth: Truth) -> str:
    """The scenario of the true event a decision is about (same plates, overlapping time)."""
    ev = d.attribution.event
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
        name = _scenario_of_decision(d, truth)
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
