"""Live MQTT runners for the restart tests: a SQLite service database, a runner whose stop can
be a kill (no snapshot on the way out), run in a thread, and a wait on its progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from walkout.service.db import make_engine, upgrade
from walkout.service.deps import Deps
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.testing import make_svc
from walkout.store.model import Store


def sqlite_deps(tmp_path: Path) -> Deps:
    db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
    upgrade(db)
    return make_svc(db).deps


class Killable(MqttRunner):
    """A runner whose stop can be a kill: no snapshot on the way out."""

    killed = False

    def _snapshot(self, d: Deps, eng: Any, seen: dict[str, int], *a: Any, **kw: Any) -> None:
        if not self.killed:
            super()._snapshot(d, eng, seen, *a, **kw)


def start_runner(d: Deps, url: str, name: str, store: Store, killed: bool = False,
                 cls: type[Killable] = Killable, **kw: Any
                 ) -> tuple[Killable, threading.Thread, threading.Event]:
    """``cls`` consuming ``url``/``name`` in a thread; set the event to stop it."""
    runner = cls(f"{url}/{name}", store, accept_end=True, **kw)
    runner.killed = killed
    stop = threading.Event()
    th = threading.Thread(target=runner.run, args=(d, stop), daemon=True)
    th.start()
    return runner, th, stop


def until(cond: Callable[[], bool], th: threading.Thread, timeout: float = 90.0) -> None:
    """Wait for ``cond`` while the runner's thread lives."""
    end = time.monotonic() + timeout
    while not cond():
        assert th.is_alive() and time.monotonic() < end, "runner gone or stuck"
        time.sleep(0.1)
