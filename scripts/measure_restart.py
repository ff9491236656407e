"""How long the sensor network's engine takes to come back (docs/mqtt.md, "Restart time and
snapshot size"): a simulated small store fed chunk by chunk through ``MqttRunner._step`` (the
broker left out), a snapshot, five minutes of journal after it (the worst case of
``snapshot_every_s`` = 300), then a new runner's ``_restore``.

    .venv/bin/python scripts/measure_restart.py [--shoppers 90] [--gap 3.5] [--db URL]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from walkout.cart.sessions import SessionState
from walkout.engine import Engine
from walkout.service import live_state
from walkout.service.db import make_engine, upgrade
from walkout.service.models import EngineSnapshot, StreamChunk
from walkout.service.mqtt_runner import MqttRunner
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources.recording import Sensors
from walkout.store import load_store


class _Quiet:
    """Stands in for the result publisher."""

    def publish_receipt(self, *a: Any) -> None:
        pass

    def publish_alert(self, *a: Any) -> None:
        pass

    def flush(self, timeout: float) -> None:
        pass


def _inside(eng: Engine) -> int:
    return sum(1 for s in eng.book.sessions.values()
               if s.state == SessionState.OPEN and not s.staff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=90)
    ap.add_argument("--gap", type=float, default=3.5, help="mean seconds between arrivals")
    ap.add_argument("--db", default=None, help="an empty database (default: a SQLite file)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    from walkout.service.testing import make_svc

    store = load_store("small")
    cfg = SimConfig(shoppers=ShopperConfig(mean_arrival_gap_s=args.gap))
    chunks = list(Sensors.from_session(simulate(store, args.shoppers, 11, config=cfg))
                  .chunks(5.0))
    db = make_engine(args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'walkout.db'}")
    upgrade(db)
    d = make_svc(db).deps
    runner = MqttRunner("mqtt://127.0.0.1:1/m", store, snapshot_every_s=1e12)
    eng, seen = runner._restore(d)
    runner._origin = 0.0
    snap_at, peak = len(chunks) - 61, 0
    for i, chunk in enumerate(chunks):
        runner._step(d, eng, seen, chunk, committed=-1, pub=_Quiet())  # type: ignore[arg-type]
        runner._t_start = runner._t_start or chunk[3]
        peak = max(peak, _inside(eng))
        if i == snap_at:
            t0 = time.perf_counter()
            runner._snapshot(d, eng, seen)
            took = time.perf_counter() - t0
            with d.sessions() as s:
                size = s.scalar(select(func.length(EngineSnapshot.payload)))
            print(f"snapshot after chunk {i} ({_inside(eng)} inside): {size / 1e6:.1f} MB "
                  f"in {took:.2f} s")
    with d.sessions() as s:
        n, size = s.execute(select(func.count(), func.sum(func.length(StreamChunk.payload)))
                            ).one()
    print(f"{args.shoppers} shoppers, {len(chunks)} chunks, {peak} inside at the peak; "
          f"journal: {n} chunks, {size / 1e6:.0f} MB")
    again = MqttRunner("mqtt://127.0.0.1:1/m", store)
    t0 = time.perf_counter()
    stream = live_state.open_stream(d, again.stream_prefix, store)
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng2, _ = again._restore(d)
    total = time.perf_counter() - t0
    assert stream is not None
    print(f"restart: read and unpickled {read:.1f} s, in all {total:.1f} s "
          f"({len(stream.chunks)} chunks replayed)")
    same = (repr(eng2.decisions) == repr(eng.decisions)
            and repr(eng2.issued) == repr(eng.issued))
    print("the restored engine decided as the uninterrupted one:", same)


if __name__ == "__main__":
    main()
