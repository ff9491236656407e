"""An unbound person (nobody's scan) leaving with goods: the engine's receipt for them names no
payer, so the engine raises ``unbound_left_with_goods`` with what and for how much, the same
on every run (it is one of the engine's outputs, as its receipts are)."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def test_an_unbound_person_leaving_with_goods_is_alerted_with_what_they_took() -> None:
    sn = Sensors.from_session(simulate(load_store("small"), 3, 1))
    scanned = next(g.credential for g in sn.gates if g.kind == "entry")
    tailgated = Sensors(sn.store, sn.plates, sn.frames,
                        [g for g in sn.gates if g.credential != scanned], sn.duration_s)
    runs = [Engine(sn.store).run(tailgated) for _ in range(2)]
    assert runs[0].alerts == runs[1].alerts
    res = runs[0]
    (free,) = [r for r in res.receipts if not r.credential]
    assert free.lines and free.total > 0
    gone = [a for a in res.alerts if a.kind == "unbound_left_with_goods"]
    assert [a.subject for a in gone] == [free.session_id]
    assert gone[0].t == free.exited_at
    for ln in free.lines:
        assert f"{ln.quantity} × {ln.product_id}" in gone[0].message
    assert f"{free.total} {free.currency}" in gone[0].message
    # a shopper's own exit raises none
    assert len(gone) == 1 and all(r.credential for r in res.receipts if r is not free)
