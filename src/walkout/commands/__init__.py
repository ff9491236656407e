"""Command groups that live outside ``walkout.cli``: one module per area, each with
``register(app, bench_app, store_app, aifi_app)`` adding its commands to the main CLI.

``walkout.cli`` keeps the core commands (demo, sim, replay, the core benches); areas that grew
their own dependencies (web pages, Ray, perception) register here so that importing the CLI
stays cheap and each area's commands sit beside nothing else."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from walkout.commands.say import error

#: modules under walkout.commands, registered in this order
MODULES: tuple[str, ...] = ("perception", "distributed", "scale", "aifi_calibrate", "db")


def register_all(app: Any, bench_app: Any, store_app: Any, aifi_app: Any) -> None:
    for name in MODULES:
        importlib.import_module(f"walkout.commands.{name}").register(
            app, bench_app, store_app, aifi_app)


def finite(value: float | None) -> float | None:
    """Option callback: a float option must be a number (``nan`` and ``inf`` pass click's
    ranges, and end deep in numpy or in an endless loop)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


#: ``--force`` of the commands that write a file the user names (store generate, import-aifi)
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")]


def _folder_problem(out: Path) -> str | None:
    """Why no file can be made at ``out`` because of what lies on its way: a folder on the way
    that is a file (a missing folder is made by the writers)."""
    for parent in out.parents:
        if parent.exists():
            return None if parent.is_dir() else f"is under {parent}, which is a file"
    return None


def output_file_problem(out: Path, force: bool) -> str | None:
    """Why the file ``out`` may not be written, or None: an existing file is only replaced
    with ``--force`` (as ``sim --out`` never writes over a recording, a store file someone
    edited by hand is never lost to a repeated command)."""
    try:
        if out.is_dir():
            return "is a directory"
        if out.exists() and not force:
            return "exists; use --force to overwrite it"
        return _folder_problem(out)
    except OSError as e:  # a folder on the way that may not be searched
        return f"cannot be reached: {e.strerror or e}"


def json_path_checked(path: Path | None) -> Path | None:
    """Option callback of a bench's ``--json``: a directory there, or a file on the way, is
    said before the bench runs (minutes of work), not as a traceback after it."""
    if path is not None:
        problem = output_file_problem(path, force=True)  # figures are rewritten each run
        if problem:
            raise typer.BadParameter(f"{path} {problem}")
    return path


#: ``--json`` of the benches: checked before the bench runs
JsonOpt = Annotated[Path | None, typer.Option("--json", help="also write JSON here",
                                              callback=json_path_checked)]


def print_json(figures: dict[str, Any], path: Path | None) -> None:
    """A benchmark's figures: printed (benches print JSON, docs/benchmarks.md), and written to
    ``path`` when given. A write that fails (a full disk, a path made a folder meanwhile) is a
    one-line error and exit 2; the figures were printed first, so nothing is lost."""
    text = json.dumps(figures, indent=2)
    print(text)
    if path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
        except OSError as e:
            error(f"--json {path}: cannot write: {e.strerror or e} (the figures are printed "
                  "above)")
            raise typer.Exit(2) from e
