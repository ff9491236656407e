"""Receipt scoring with the AiFi AutoCheckout competition's item metric.

A receipt line counts as a true positive only when both the product and the shopper are right:
per shopper and product, ``min(predicted, true)`` items are correct. Put-backs have already
cancelled earlier picks on both sides (receipts hold net quantities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReceiptScores:
    shoppers: int
    true_items: int
    predicted_items: int
    correct_items: int
    exact_receipts: int

    @property
    def precision(self) -> float:
        return self.correct_items / self.predicted_items if self.predicted_items else 1.0

    @property
    def recall(self) -> float:
        return self.correct_items / self.true_items if self.true_items else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def exact_receipt_rate(self) -> float:
        return self.exact_receipts / self.shoppers if self.shoppers else 1.0


def score_receipts(
    predicted: Mapping[str, Mapping[str, int]], truth: Mapping[str, Mapping[str, int]]
) -> ReceiptScores:
    """Score receipts keyed by shopper credential (unknown shoppers' items are all wrong)."""
    correct = exact = 0
    pred_items = sum(q for r in predicted.values() for q in r.values() if q > 0)
    true_items = sum(q for r in truth.values() for q in r.values() if q > 0)
    for shopper, t in truth.items():
        p = Counter({k: v for k, v in predicted.get(shopper, {}).items() if v > 0})
        tt = Counter({k: v for k, v in t.items() if v > 0})
        correct += sum(min(p[k], tt[k]) for k in tt)
        exact += p == tt
    return ReceiptScores(len(truth), true_items, pred_items, correct, exact)
