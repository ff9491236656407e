"""`walkout bench accuracy`: simulate a period, run the engine, score its receipts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from walkout.bench.metrics import score_receipts
from walkout.engine import Engine, EngineResult
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
) -> tuple[dict[str, Any], SimSession, EngineResult]:
    """Simulate, run the engine and return the benchmark's JSON-ready figures."""
    t0 = time.perf_counter()
    session = simulate(store, shoppers, seed)
    t_sim = time.perf_counter() - t0
    if progress:
        progress("simulated", session.duration_s, session.duration_s)
    t1 = time.perf_counter()
    engine = Engine(store)
    result = engine.run(
        Sensors.from_session(session),
        (lambda now: progress("engine", now, session.duration_s)) if progress else None,
    )
    t_engine = time.perf_counter() - t1
    s = score_receipts(predicted_receipts(result), true_receipts(session.truth))
    figures: dict[str, Any] = {
        "store": store.name,
        "seed": seed,
        "shoppers": shoppers,
        "f1": round(s.f1, 6),
        "precision": round(s.precision, 6),
        "recall": round(s.recall, 6),
        "exact_receipt_rate": round(s.exact_receipt_rate, 6),
        "true_items": s.true_items,
        "predicted_items": s.predicted_items,
        "events": len(result.events),
        "true_events": len(session.truth.events),
        "events_to_review": len(result.review_queue),
        "alerts": dict(sorted(Counter(a.kind for a in result.alerts).items())),
        "simulated_seconds": round(session.duration_s, 1),
        "seconds": round(t_sim + t_engine, 2),
        "engine_seconds": round(t_engine, 2),
        "real_time_factor": round(session.duration_s / max(t_engine, 1e-9), 1),
    }
    return figures, session, result
