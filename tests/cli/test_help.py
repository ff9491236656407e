"""Every command's --help renders: help texts are rich markup, and a stray ``[/...]`` in one
(an optional URL part, say) crashes the command's help instead of showing it."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from walkout.cli import app


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group's commands
        out += _paths(sub, (*prefix, name))
    return out


COMMANDS = _paths(typer.main.get_command(app))


def test_the_cli_has_its_command_groups() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"demo", "sim", "replay", "serve", "bench accuracy", "bench service",
            "store generate"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "walkout")
def test_help_renders(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(app, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


@pytest.mark.parametrize("args", [["sim", "--out", "x", "--shoppers", "-1"],
                                  ["demo", "--seed", "-3"],
                                  ["bench", "accuracy", "--shoppers", "-5"]])
def test_negative_counts_and_seeds_are_refused_by_name(args: list[str]) -> None:
    """They used to reach numpy and end in a traceback."""
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "greater than or equal to 0" in r.output, r.output
