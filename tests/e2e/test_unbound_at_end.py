"""An unbound person still inside when the stream ends, holding goods: their receipt (charged
to nobody) is issued as at an exit, with ``unbound_left_with_goods``, as for one seen leaving."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def test_a_tailgater_still_inside_at_the_end_of_the_stream_is_alerted_with_their_goods(
) -> None:
    store = load_store("small")
    session = simulate(store, 0, 4, scenarios=["tailgating"])
    full = Sensors.from_session(session)
    eng = Engine(store)
    eng.run(full)
    [left] = [a for a in eng.alerts if a.kind == "unbound_left_with_goods"]
    exit_t = next(s.exited_at for s in eng.book.sessions.values() if s.session_id == left.subject)
    assert exit_t is not None
    # the same stream cut before the tailgater's exit, after their pick
    cut = Engine(store)
    for block, frames, gates, now in full.chunks(cut.config.chunk_s):
        if now > exit_t - 5.0:
            break
        cut.step(block, frames, gates, now)
    assert +cut.ledger.contents(left.subject), "the cut must come after their pick"
    cut.finish()
    [alert] = [a for a in cut.alerts if a.kind == "unbound_left_with_goods"]
    assert alert.subject == left.subject and "left with" in alert.message
    assert left.subject in cut.receipts and cut.receipts[left.subject].lines
