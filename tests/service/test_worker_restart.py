"""The engine worker that dies (an error in its runner, the kernel's OOM killer) is started
again: the live stream goes on from its journal and snapshot, instead of the service answering
at the door with no engine behind it until somebody restarts it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from walkout.service.runner import WorkerProcess
from walkout.service.settings import ServiceSettings
from walkout.store import load_store


class FailingOnce:
    """Stands in for the live runner inside the worker: its first run fails (a database
    gone for a moment), the next one runs until the service stops."""

    def __init__(self, marks: Path) -> None:
        self.store = load_store("small")
        self.marks = marks

    def __call__(self, d: Any, stop: Any) -> None:
        runs = len(list(self.marks.iterdir()))
        (self.marks / f"run{runs}").touch()
        if runs == 0:
            raise RuntimeError("database is locked")


def test_an_engine_worker_that_dies_is_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # spawn finds tests
    marks = tmp_path / "runs"
    marks.mkdir()
    settings = ServiceSettings(db_url=f"sqlite:///{tmp_path / 'w.db'}",
                               entry_secret=SecretStr("k" * 32))
    stop = threading.Event()
    worker = WorkerProcess(FailingOnce(marks), settings, grace_s=5, mail=False, restart_s=0.5)
    t = threading.Thread(target=worker, args=(None, stop))
    t.start()
    try:
        end = time.monotonic() + 90
        while len(list(marks.iterdir())) < 2 and time.monotonic() < end:
            time.sleep(0.2)
        assert sorted(p.name for p in marks.iterdir()) == ["run0", "run1"]
        assert worker.restarts == 1
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive() and worker.exitcode == 0  # stopped with the service, not failed
