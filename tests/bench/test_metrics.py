"""AiFi item metric: product and shopper must both be right."""

from __future__ import annotations

import pytest

from walkout.bench.metrics import score_receipts


def test_perfect() -> None:
    t = {"a": {"x": 2}, "b": {"y": 1}}
    s = score_receipts(t, t)
    assert (s.precision, s.recall, s.f1, s.exact_receipt_rate) == (1.0, 1.0, 1.0, 1.0)


def test_right_product_wrong_shopper_is_wrong_twice() -> None:
    s = score_receipts({"a": {}, "b": {"x": 1}}, {"a": {"x": 1}, "b": {}})
    assert s.correct_items == 0 and s.precision == 0.0 and s.recall == 0.0
    assert s.exact_receipts == 0


def test_quantities_count_per_item() -> None:
    s = score_receipts({"a": {"x": 3}}, {"a": {"x": 2, "y": 1}})
    assert s.correct_items == 2
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)


def test_empty_receipt_exact_when_nothing_bought() -> None:
    s = score_receipts({"a": {}}, {"a": {}})
    assert s.exact_receipt_rate == 1.0 and s.f1 == 1.0
