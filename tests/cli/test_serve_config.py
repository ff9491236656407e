"""`walkout serve` with a wrong database setting: a one-line error naming it, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from walkout.cli import app
from walkout.service.settings import ServiceSettings

runner = CliRunner()


@pytest.mark.parametrize(("url", "why"), [
    ("notaurl", "not a database URL"),
    ("mysql://shop@127.0.0.1/walkout", "mysql databases are not supported"),
])
def test_settings_refuse_a_database_the_service_cannot_use(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        ServiceSettings(db_url=url)


@pytest.mark.parametrize("url", ["sqlite:///walkout.db", "postgresql://shop@db:5432/walkout",
                                 "postgresql+psycopg://shop@db/walkout"])
def test_settings_take_sqlite_and_postgresql(url: str) -> None:
    assert ServiceSettings(db_url=url).db_url == url


def test_serve_with_a_malformed_database_url_says_which_setting() -> None:
    res = runner.invoke(app, ["serve", "--db", "notaurl"])
    assert res.exit_code == 2
    assert "invalid setting db_url: not a database URL" in res.output
    assert "Traceback" not in res.output


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_an_unreachable_database_names_it_without_its_password(
        tmp_path: Path) -> None:
    url = f"postgresql://shop:s3cret@127.0.0.1:{_closed_port()}/walkout"
    res = runner.invoke(app, ["serve", "--db", url, "--shoppers", "1"])
    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert "cannot open the database postgresql://shop:***@127.0.0.1" in out
    assert "s3cret" not in out and "Traceback" not in out


def test_ctrl_c_stops_the_service_and_its_engine_worker_cleanly(tmp_path: Path) -> None:
    """Ctrl-C at a terminal reaches the whole process group. The engine worker used to die
    on a KeyboardInterrupt mid-chunk (a traceback) and the service did not exit."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    env = {**os.environ, "WALKOUT_DB_URL": f"sqlite:///{tmp_path / 'w.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "walkout.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        # the engine worker is running the simulated store once its first chunk is committed
        # (its first chunk compiles the tracker's kernels: long on a cold numba cache, and a
        # stop waits for the chunk in hand)
        import sqlite3

        while time.monotonic() < deadline + 90:
            try:
                with sqlite3.connect(tmp_path / "w.db") as db:
                    if db.execute("select count(*) from runner_checkpoints").fetchone()[0]:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "Application shutdown complete" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_takes_the_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """WALKOUT_STORE was silently replaced by the option's default."""
    monkeypatch.setenv("WALKOUT_STORE", "nosuch")
    r = CliRunner().invoke(app, ["serve", "--port", str(_free_port())])
    assert r.exit_code != 0 and "no store named 'nosuch'" in r.output, r.output
