"""An entry scan with no credential names nobody to charge: it opens no session, so the person
who walks in on it is an unbound person (alerted), not a shopper bound to no payer."""

from __future__ import annotations

import numpy as np

from walkout.cart.sessions import SessionBook
from walkout.events import GateEvent, Track


def _track(track_id: int, t0: float) -> Track:
    t = np.arange(t0, t0 + 5.0, 0.5)
    joints = np.zeros((len(t), 17, 3))
    joints[:, :, 0] = np.linspace(0.0, 4.0, len(t))[:, None]
    return Track(track_id, t, joints, np.full((len(t), 17), 0.05), born_at="entry")


def _book(cred: str) -> tuple[SessionBook, list]:  # type: ignore[type-arg]
    book = SessionBook()
    alerts = book.scan(GateEvent(10.0, "entry", "entry", cred))
    tr = _track(7, 10.5)
    book.born(tr)
    alerts += book.resolve(60.0, [tr])
    return book, alerts


def test_a_scan_with_a_credential_binds_its_person() -> None:
    book, alerts = _book("qr-1")
    assert alerts == [] and book.by_track[7] == "s00001"
    assert book.sessions["s00001"].bound and book.sessions["s00001"].credential == "qr-1"


def test_a_scan_with_an_empty_credential_binds_nobody_and_its_person_is_alerted() -> None:
    book, alerts = _book("")
    assert [a.kind for a in alerts] == ["unbound_person"]
    assert book.by_track[7] == "unbound-7"
    assert not book.sessions["unbound-7"].bound
    assert all(s.credential or not s.bound for s in book.sessions.values())
