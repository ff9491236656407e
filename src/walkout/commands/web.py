"""`walkout demo --serve`: the dashboard on a live simulated store, in one command.

A throw-away SQLite database in a temporary directory, an admin token made for this run and
handed to the browser in the URL fragment (which never reaches a server or a log), the engine
in its worker process at real-time pace, the receipt e-mails kept in memory."""

from __future__ import annotations

import secrets
import tempfile
import threading
import webbrowser
from pathlib import Path
from typing import Any

from pydantic import SecretStr


def demo_serve(sensors: Any, name: str, host: str, port: int, speed: float,
               say: Any = print) -> None:
    """Serve the three pages on a live run of ``sensors`` until interrupted."""
    import uvicorn

    from walkout.service.app import create_app
    from walkout.service.runner import LiveRunner, WorkerProcess
    from walkout.service.settings import ServiceSettings

    token = "wo_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="walkout-demo-") as tmp:
        settings = ServiceSettings(db_url=f"sqlite:///{Path(tmp) / 'walkout.db'}",
                                   bootstrap_admin_token=SecretStr(token),
                                   entry_secret=SecretStr(secrets.token_urlsafe(32)))
        runner = LiveRunner(sensors, name, speed=speed or None)
        api = create_app(settings, store=sensors.store,
                         background=WorkerProcess(runner, settings), mail_in_api=False)
        url = f"http://{host}:{port}"
        say(f"dashboard:    {url}/#token={token}")
        say(f"shopper app:  {url}/app     kiosk: {url}/kiosk (a kiosk token from "
            "POST /v1/admin/staff)")
        threading.Timer(1.5, webbrowser.open, args=(f"{url}/#token={token}",)).start()
        uvicorn.run(api, host=host, port=port, log_level="warning")


def register(app: Any, bench_app: Any, store_app: Any, aifi_app: Any) -> None:
    """Nothing of its own: `demo --serve` is an option of the core `demo` command."""
