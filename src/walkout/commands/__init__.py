"""Command groups that live outside ``walkout.cli``: one module per area, each with
``register(app, bench_app, store_app, aifi_app)`` adding its commands to the main CLI.

``walkout.cli`` keeps the core commands (demo, sim, replay, the core benches); areas that grew
their own dependencies (web pages, Ray, perception) register here so that importing the CLI
stays cheap and each area's commands sit beside nothing else."""

from __future__ import annotations

import importlib
from typing import Any

#: modules under walkout.commands, registered in this order
MODULES: tuple[str, ...] = ("perception", "distributed", "scale", "aifi_calibrate")


def register_all(app: Any, bench_app: Any, store_app: Any, aifi_app: Any) -> None:
    for name in MODULES:
        importlib.import_module(f"walkout.commands.{name}").register(
            app, bench_app, store_app, aifi_app)
