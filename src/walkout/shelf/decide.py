"""Which hypothesis of a shelf event to act on, and whether a person must look at it.

One rule for everything that charges or counts items (engine, AiFi runner, shelf bench), so
that a benchmark measures what the store would do:

- a put-back comes from somebody holding the product: among what the putter holds, the item
  whose weight fits best is chosen, even when the event's own hypotheses (planogram-first) did
  not list it - a shopper dropping a foreign item on a plate is the very case to get right;
  nothing held fitting means the attribution or the shopper's cart is wrong: review;
- a pick goes to review when its product probability is low, or when another product explains
  the weight about as well (same-weight products on one plate: only the priors chose, and a
  misplaced item of that weight would look the same) - weight alone cannot tell them apart;
- a pick no product listed for the plate explains (a wrong planogram entry) is decided like any
  other from the catalogue's candidates: charged when one product explains it clearly and
  uniquely, else reviewed - the engine charges nothing for it until a person says what it was;
  so is a pick only a rare count of a listed product explains (5 identical items in one grab)
  when one unlisted item explains it as well: the store does not charge 5 items on a prior.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from walkout.events import Hypothesis, ShelfEvent
from walkout.shelf.config import ShelfConfig
from walkout.store.model import Store


@dataclass(frozen=True, slots=True)
class Choice:
    """The hypothesis acted on (None: nothing fits) and why it must be reviewed, if it must."""

    hypothesis: Hypothesis | None
    reasons: tuple[str, ...] = ()

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons)


def choose(
    event: ShelfEvent,
    store: Store,
    config: ShelfConfig,
    held: Mapping[str, int] | None = None,
) -> Choice:
    """Decide ``event``. ``held``: what its (putting) shopper holds, product → count; None
    when the putter is unknown."""
    if event.kind == "put" and held is not None:
        return _put_back(event, store, config, held)
    if not event.hypotheses:
        return Choice(None, ("no product fits the weight",))
    best = event.hypotheses[0]
    reasons: list[str] = []
    if best.probability < config.review_below:
        reasons.append(f"product confidence {best.probability:.2f}")
    ambiguous = event.kind == "pick" and weight_ambiguous(event, best, config.ambiguous_loglik)
    listed = {p for plate in event.plate_ids for p in store.plate_products.get(plate, ())}
    if (event.unlisted and all(p in listed for p, _ in best.items)
            and best.quantity >= config.rare_quantity):
        reasons.append("only a rare count of the listed product fits the weight, and one item "
                       "of a product not listed here fits it as well")
    elif event.unlisted and (reasons or ambiguous):
        reasons.append("no product listed for this plate fits the weight")
    elif ambiguous:
        reasons.append("another product weighs the same")
    return Choice(best, tuple(reasons))


def weight_ambiguous(event: ShelfEvent, chosen: Hypothesis, margin: float) -> bool:
    """Another set of products explains the weight within ``margin`` log-likelihood units."""
    mine = {p for p, _ in chosen.items}
    return any(
        {p for p, _ in h.items} != mine and h.log_likelihood >= chosen.log_likelihood - margin
        for h in event.hypotheses
        if h is not chosen
    )


def _put_back(
    event: ShelfEvent, store: Store, config: ShelfConfig, held: Mapping[str, int]
) -> Choice:
    fits = {h.items: h.log_likelihood for h in event.hypotheses
            if all(held.get(p, 0) >= q for p, q in h.items)}
    # what the shopper holds but the planogram-first hypotheses left out, scored on weight
    var0 = event.noise_var_g2
    for pid, n in sorted(held.items()):
        prod = store.products.get(pid)
        if prod is None or n <= 0:
            continue
        for q in range(1, min(n, config.max_quantity) + 1):
            var = q * prod.weight_sd_g**2 + var0
            z = (event.delta_g - q * prod.weight_g) / math.sqrt(var)
            if abs(z) <= config.held_fit_z:
                ll = -0.5 * (math.log(2.0 * math.pi * var) + z * z)
                fits.setdefault(((pid, q),), ll)
    if not fits:
        best = event.hypotheses[0] if event.hypotheses else None
        return Choice(best, ("nothing the shopper holds fits the weight",))
    # prefer fewer items at equal fit: one of two held same-weight items, not both halves
    ranked = sorted(fits.items(), key=lambda kv: (-kv[1], sum(q for _, q in kv[0]), kv[0]))
    items, ll = ranked[0]
    total = math.fsum(math.exp(v - ll) for _, v in ranked)
    hyp = Hypothesis(items, ll, 1.0 / total)  # probability among what the shopper holds
    reasons = []
    rivals = [k for k, v in ranked[1:] if v >= ll - config.ambiguous_loglik
              and {p for p, _ in k} != {p for p, _ in items}]
    if rivals:
        reasons.append("the shopper holds another product of the same weight")
    return Choice(hyp, tuple(reasons))


def choose_stock(
    event: ShelfEvent,
    store: Store,
    config: ShelfConfig,
    present: Mapping[str, int],
    learned: Mapping[str, set[str]] | None = None,
) -> Choice:
    """Decide a weight change made by staff hands (or on a closed store): a restock (the plate
    gained) or a removal (it lost) of so many items of one product the plate lists or holds.

    ``max_quantity`` bounds a shopper's grab, not a tray of stock: the count is the weight
    over the unit weight, any count up to ``max_stock_quantity``, accepted when it fits within
    ``listed_fit_z`` σ of the same noise model the shopper hypotheses use (``q`` items spread
    ``q·sd²`` on top of the plates' noise). Nothing fitting, or another product or count
    fitting about as well (``ambiguous_loglik``), is an inventory case for a person; never a
    guess. ``present``: what the inventory says is on the plates; ``learned``: plate →
    products picks proved it holds (see :class:`walkout.shelf.infer.Explainer`)."""
    listed: list[str] = []
    for plate in event.plate_ids:
        for pid in (*store.plate_products.get(plate, ()),
                    *sorted((learned or {}).get(plate, ()))):
            if pid not in listed:
                listed.append(pid)
    listed += sorted(p for p, n in present.items() if n > 0 and p not in listed)
    size = abs(event.delta_g)
    var0 = event.noise_var_g2
    fits: list[tuple[float, str, int]] = []
    for pid in listed:
        prod = store.products.get(pid)
        if prod is None or prod.weight_g <= 0:
            continue
        q0 = round(size / prod.weight_g)
        for q in (q0 - 1, q0, q0 + 1):
            if not 1 <= q <= config.max_stock_quantity:
                continue
            var = q * prod.weight_sd_g**2 + var0
            z = (size - q * prod.weight_g) / math.sqrt(var)
            if abs(z) <= config.listed_fit_z:
                fits.append((-0.5 * (math.log(2.0 * math.pi * var) + z * z), pid, q))
    what = "restock" if event.kind == "put" else "removal"
    if not fits:
        return Choice(None, (f"staff {what}: no product listed for this plate fits the weight "
                             f"({event.delta_g:+.0f} g)",))
    fits.sort(key=lambda f: (-f[0], f[2], f[1]))
    ll, pid, q = fits[0]
    total = math.fsum(math.exp(v - ll) for v, _, _ in fits)
    hyp = Hypothesis(((pid, q),), ll, 1.0 / total)
    rivals = [(p, n) for v, p, n in fits[1:] if v >= ll - config.ambiguous_loglik]
    if rivals:
        alt = ", ".join(f"{n} × {p}" for p, n in rivals[:3])
        return Choice(hyp, (f"staff {what}: {q} × {pid} fits the weight, but so does {alt}",))
    return Choice(hyp)
