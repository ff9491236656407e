"""Run walkout's shelf → attribution → cart path on one AiFi AutoCheckout test case.

The AiFi cases come with the shoppers already tracked (``full_targets.json``): each target id is
one shopper and its track is used as is, so no camera tracker is involved. The store is built
from the case's parent ``store_meta`` and the case's own products and planogram; the plates
stream through :class:`~walkout.shelf.ShelfStage` in one-second blocks, as a live store would
feed them; every settled event is attributed to the target whose wrists came nearest to its
plates (:func:`walkout.attribution.attribute`), its best hypothesis is folded into a
:class:`~walkout.cart.CartLedger`, and the plate inventory follows each decision.

Output: the competition's receipts, one per target that ends up holding something.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from walkout.attribution import AttributionConfig, attribute
from walkout.cart import CartLedger
from walkout.events import Alert, Attribution, CartEntry, PlateBlock, ShelfEvent
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose
from walkout.sources.aifi import AifiCase, load_case, require_dir
from walkout.store.import_aifi import import_aifi_store
from walkout.store.model import Store


@dataclass(frozen=True, slots=True)
class AifiReceipt:
    """What one AiFi target leaves with: ``(barcode, quantity)`` pairs, quantity > 0."""

    target_id: str
    products: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class AifiDecision:
    """What was concluded about one shelf event."""

    event: ShelfEvent
    attribution: Attribution
    target_id: str | None
    items: tuple[tuple[str, int], ...]  # signed: + taken, - put back
    needs_review: bool


@dataclass(frozen=True, slots=True)
class AifiRunResult:
    receipts: tuple[AifiReceipt, ...]
    decisions: tuple[AifiDecision, ...]
    alerts: tuple[Alert, ...]


def run_case(
    case_dir: Path,
    meta_dir: Path | None = None,
    *,
    shelf: ShelfConfig | None = None,
    attribution: AttributionConfig | None = None,
    block_s: float = 1.0,
) -> AifiRunResult:
    """Receipts of the AiFi test case in ``case_dir`` (``meta_dir``: ``../store_meta``)."""
    require_dir(case_dir, "AiFi test case directory")  # before its default ../store_meta
    meta = meta_dir if meta_dir is not None else case_dir.parent / "store_meta"
    if meta_dir is None:
        require_dir(meta, "store_meta directory", " beside the case: give its place with --meta")
    store = import_aifi_store(meta, case_dir)
    case = load_case(case_dir, store.plate_ids)
    return run_loaded(store, case, shelf=shelf, attribution=attribution, block_s=block_s)


def run_loaded(
    store: Store,
    case: AifiCase,
    *,
    shelf: ShelfConfig | None = None,
    attribution: AttributionConfig | None = None,
    block_s: float = 1.0,
) -> AifiRunResult:
    """:func:`run_case` on an already loaded store and case."""
    stage = ShelfStage(store, shelf)
    att_cfg = attribution or AttributionConfig()
    candidates = {case.target_ids[tr.track_id]: [tr] for tr in case.tracks}
    ledger = CartLedger()
    decisions: list[AifiDecision] = []

    def decide(events: Sequence[ShelfEvent]) -> None:
        for ev in sorted(events, key=lambda e: (e.t_start, e.event_id)):
            boxes = store.plate_boxes[[store.plate_index[p] for p in ev.plate_ids]]
            att = attribute(ev, candidates, boxes, att_cfg)
            decisions.append(_decide(ev, att, stage, ledger))

    pb = case.plates
    edges = np.searchsorted(pb.t, np.arange(pb.t[0], pb.t[-1] + block_s, block_s))
    edges = np.unique(np.append(edges, pb.t.shape[0]))
    for a, b in itertools.pairwise(edges):
        if b > a:
            decide(stage.process(PlateBlock(pb.t[a:b], pb.grams[a:b], pb.plate_ids)))
    decide(stage.flush())

    receipts = []
    for tid in sorted(candidates):
        held = ledger.contents(tid)
        lines = tuple(sorted((p, q) for p, q in held.items() if q > 0))
        if lines:
            receipts.append(AifiReceipt(tid, lines))
    return AifiRunResult(tuple(receipts), tuple(decisions), tuple(stage.alerts))


def _decide(
    ev: ShelfEvent, att: Attribution, stage: ShelfStage, ledger: CartLedger
) -> AifiDecision:
    """The engine's rule (:func:`walkout.shelf.decide.choose`); the inventory follows."""
    sid = att.session_id
    held = ledger.held(sid) if ev.kind == "put" and sid is not None else None
    choice = choose(ev, stage.store, stage.config, held)
    if choice.hypothesis is None:
        return AifiDecision(ev, att, sid, (), True)
    chosen = choice.hypothesis
    review = att.needs_review or choice.needs_review
    sign = 1 if ev.kind == "pick" else -1
    items = tuple((p, sign * q) for p, q in chosen.items)
    conf = min(att.confidence, chosen.probability)
    for pid, q in items:
        stage.apply(ev.event_id, pid, -q)
        if sid is not None:
            ledger.append(CartEntry(sid, pid, q, ev.t_end, ev.event_id, conf, (ev.event_id,)))
    return AifiDecision(ev, att, sid, items, review)


def receipts_json(result: AifiRunResult) -> dict[str, Any]:
    """The competition's output format."""
    return {
        "receipts": [
            {
                "target_id": r.target_id,
                "products": [{"barcode": p, "quantity": q} for p, q in r.products],
            }
            for r in result.receipts
        ]
    }
