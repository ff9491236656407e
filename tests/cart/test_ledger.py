"""Cart ledger, sessions binding, receipts."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from walkout.cart import CartLedger, SessionBook, fold
from walkout.checkout import build_receipt
from walkout.events import CartEntry, GateEvent, Track
from walkout.store import load_store


def _entry(sid: str, pid: str, q: int, ev: str) -> CartEntry:
    return CartEntry(sid, pid, q, 0.0, ev, 1.0)


def test_fold_is_order_independent_and_drops_zero_lines() -> None:
    es = [_entry("s", "x", 2, "e1"), _entry("s", "x", -1, "e2"), _entry("s", "y", 1, "e3"),
          _entry("s", "y", -1, "e4")]
    assert fold(es) == fold(list(reversed(es))) == {"s": {"x": 1}}


def test_ledger_holds_and_receipt_totals() -> None:
    store = load_store("small")
    a, b = store.catalogue[0], store.catalogue[1]
    led = CartLedger()
    led.append(_entry("s1", a.id, 2, "e1"))
    led.append(_entry("s1", b.id, 1, "e2"))
    led.append(_entry("s1", b.id, -1, "e3"))
    assert led.holds("s1", a.id) == 2 and led.holds("s1", b.id) == 0
    book = SessionBook()
    book.scan(GateEvent(0.0, "entry", "entry", "qr-1"))
    s = book.sessions["s00001"]
    r = build_receipt(s, led.entries("s1"), store)  # other session's entries: empty receipt
    assert r.lines == () and r.total == Decimal("0")
    s.session_id = "s1"
    r = build_receipt(s, led.entries("s1"), store)
    assert [(ln.product_id, ln.quantity) for ln in r.lines] == [(a.id, 2)]
    assert r.total == a.price * 2 and r.currency == "EUR"
    assert r.lines[0].events == ("e1",)


def _track(tid: int, t0: float, gate: str | None = "entry") -> Track:
    t = np.array([t0, t0 + 0.1])
    return Track(tid, t, np.zeros((2, 17, 3)), np.zeros((2, 17)), born_at=gate)


def test_binding_takes_the_first_birth_and_tailgater_raises_alert() -> None:
    book = SessionBook(bind_window_s=2.5)
    book.scan(GateEvent(10.0, "entry", "entry", "qr-a"))
    book.scan(GateEvent(11.0, "entry", "entry", "qr-b"))
    for tr in (_track(0, 9.8), _track(1, 10.9), _track(2, 11.5)):
        book.born(tr)
    alerts = book.resolve(now=40.0)
    creds = {book.sessions[book.by_track[i]].credential for i in (0, 1)}
    assert creds == {"qr-a", "qr-b"}
    assert book.sessions[book.by_track[0]].credential == "qr-a"
    assert [a.kind for a in alerts] == ["unbound_person"]
    assert not book.sessions[book.by_track[2]].bound


def test_a_missed_birth_does_not_shift_later_bindings() -> None:
    book = SessionBook(bind_window_s=2.5)
    for i, t in enumerate((10.0, 14.0, 18.0, 22.0)):
        book.scan(GateEvent(t, "entry", "entry", f"qr-{i}"))
    # the person scanning at 14 s was never tracked; the others were, ~0.5 s before scanning
    for tid, t in ((0, 9.5), (2, 17.5), (3, 21.5)):
        book.born(_track(tid, t))
    alerts = book.resolve(now=60.0)
    assert {book.sessions[book.by_track[t]].credential for t in (0, 2, 3)} == {
        "qr-0", "qr-2", "qr-3"}
    assert book.sessions[book.by_track[2]].credential == "qr-2"
    assert [a.kind for a in alerts] == ["scan_without_person"]


def test_party_scan_admits_several_tracks() -> None:
    book = SessionBook()
    book.scan(GateEvent(5.0, "entry", "entry", "qr-family", party_size=3))
    for i in range(3):
        book.born(_track(i, 5.2 + i))
    assert book.resolve(now=40.0) == []
    assert {book.by_track[i] for i in range(3)} == {"s00001"}


def test_scan_without_person_alerts() -> None:
    book = SessionBook(bind_window_s=3.0)
    book.scan(GateEvent(1.0, "entry", "entry", "qr-x"))
    assert [a.kind for a in book.resolve(now=10.0)] == ["scan_without_person"]


def test_tailgater_right_behind_the_scanner_stays_unbound() -> None:
    book = SessionBook(bind_window_s=2.5)
    book.scan(GateEvent(10.0, "entry", "entry", "qr-a"))
    book.born(_track(0, 9.4))  # the person at the scanner
    book.born(_track(1, 10.0))  # slipped in behind: nearer to the scan in time, but second
    alerts = book.resolve(now=40.0)
    assert book.sessions[book.by_track[0]].credential == "qr-a"
    assert not book.sessions[book.by_track[1]].bound
    assert [a.kind for a in alerts] == ["unbound_person"]


def _walk(tid: int, t0: float, path: list[tuple[float, float]]) -> Track:
    """A track born at the entry at ``t0``, its hips at ``path`` (one point per second)."""
    t = t0 + np.arange(len(path), dtype=float)
    joints = np.zeros((len(path), 17, 3))
    joints[:, :, :2] = np.asarray(path, dtype=float)[:, None, :]
    return Track(tid, t, joints, np.zeros((len(path), 17)), born_at="entry")


def test_the_scanner_is_the_one_clearly_ahead_when_identities_swapped_at_the_gate() -> None:
    """Scanner and tailgater pressed together at the gate were one skeleton for a moment: the
    first-born track went on with the one behind, the scanner (ahead) got a new track."""
    gate = {"entry": (0.8, 0.0, 2.2, 1.0)}
    book = SessionBook(bind_window_s=2.5, gate_areas=gate)
    book.scan(GateEvent(10.0, "entry", "entry", "qr-a"))
    behind = _walk(0, 9.4, [(1.4, 0.3), (1.5, 0.3), (1.7, 0.5), (1.9, 0.6), (1.9, 0.8)])
    ahead = _walk(1, 11.4, [(2.1, 1.7), (2.0, 2.8), (1.9, 3.9)])
    book.born(behind)
    book.born(ahead)
    alerts = book.resolve(now=13.5, tracks=[behind, ahead])
    assert book.sessions[book.by_track[1]].credential == "qr-a"
    alerts += book.resolve(now=40.0, tracks=[behind, ahead])
    assert not book.sessions[book.by_track[0]].bound
    assert [a.kind for a in alerts] == ["unbound_person"]


def test_side_by_side_at_the_gate_the_first_born_scanned() -> None:
    gate = {"entry": (0.8, 0.0, 2.2, 1.0)}
    book = SessionBook(bind_window_s=2.5, gate_areas=gate)
    book.scan(GateEvent(10.0, "entry", "entry", "qr-a"))
    first = _walk(0, 9.4, [(1.2, 0.2), (1.2, 0.3), (1.4, 1.2), (1.6, 2.0)])
    # when both were last seen (12.4 s) the second is 1.14 m from the gate, the first 1.0 m
    second = _walk(1, 9.9, [(1.9, 0.3), (2.1, 0.6), (2.9, 1.9), (3.0, 2.3)])
    book.born(first)
    book.born(second)
    book.resolve(now=12.6, tracks=[first, second])
    assert book.sessions[book.by_track[0]].credential == "qr-a"


def test_a_moment_long_duplicate_at_the_gate_does_not_take_a_party_members_place() -> None:
    """A party of three crowding the gate: the tracker saw one of them twice for 0.4 s (track
    2, then lost). The third member's own track (3) is born after it and must still be bound."""
    book = SessionBook(bind_window_s=2.5)
    book.scan(GateEvent(421.7, "entry", "entry", "qr-family", party_size=3))
    path = [(1.5, 0.3)] * 20
    tracks = [_walk(0, 421.0, path), _walk(1, 421.7, path),
              Track(2, np.array([423.1, 423.3, 423.5]), np.zeros((3, 17, 3)),
                    np.zeros((3, 17)), born_at="entry"),
              _walk(3, 423.4, path)]
    for tr in tracks:
        book.born(tr)
    alerts = book.resolve(now=450.0, tracks=tracks)
    assert {book.by_track[i] for i in (0, 1, 3)} == {"s00001"}
    assert not book.sessions[book.by_track[2]].bound  # still recorded, never silently dropped
    assert [a.kind for a in alerts] == ["unbound_person"]
    assert "seen at the entry for 0.4 s without a scan, then lost" in alerts[0].message
