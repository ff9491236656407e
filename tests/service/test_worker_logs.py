"""The engine worker is a spawned process of its own: its logs are scrubbed like the API's."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from walkout.service.runner import WorkerProcess
from walkout.service.settings import ServiceSettings
from walkout.store import load_store

#: what the receipt outbox logs when a mail server rejects a recipient
LINE = ("receipt %s not e-mailed: %s", "r1",
        "550 5.1.1 <ann.smith@example.org>: recipient rejected (card tok_ann_card)")


class LoggingRunner:
    """Stands in for the live runner inside the worker: logs one line as the outbox does."""

    def __init__(self) -> None:
        self.store = load_store("small")

    def __call__(self, d: Any, stop: Any) -> None:
        logging.getLogger("walkout.service.receipts").warning(*LINE)
        for h in logging.getLogger().handlers:
            h.flush()
        os._exit(0)


def test_the_engine_worker_scrubs_personal_data_from_its_log(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the spawned worker unpickles LoggingRunner from this module (spawn hands the child
    # this process's sys.path): it must find `tests`
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    settings = ServiceSettings(db_url=f"sqlite:///{tmp_path / 'w.db'}",
                               entry_secret=SecretStr("k" * 32))
    stop = threading.Event()
    t = threading.Thread(target=WorkerProcess(LoggingRunner(), settings, grace_s=5, mail=False),
                         args=(None, stop))
    t.start()
    t.join(120)
    stop.set()
    err = capfd.readouterr().err
    assert "[engine] receipt r1 not e-mailed" in err  # the worker's line, in its format
    assert "ann.smith@example.org" not in err and "tok_ann_card" not in err
    assert "[email]" in err and "[secret]" in err
