"""Every command's --help renders: help texts are rich markup, and a stray ``[/...]`` in one
(an optional URL part, say) crashes the command's help instead of showing it."""

from __future__ import annotations

from pathlib import Path
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


@pytest.mark.parametrize(("args", "why"), [
    (["sim", "--out", "x", "--shoppers", "-1"], "greater than or equal to 0"),
    (["demo", "--seed", "-3"], "greater than or equal to 0"),
    (["bench", "accuracy", "--shoppers", "-5"], "greater than or equal to 0"),
    (["sim", "--out", "x", "--speed", "inf"], "not a finite number"),
    (["store", "generate", "--out", "x.yaml", "--area", "inf"], "--area"),
    (["bench", "durability", "--kills", "-1"], "greater than or equal to 1"),
    (["demo", "--serve", "--port", "99999"], "less than or equal to 65535")])
def test_out_of_range_values_are_refused_by_name(args: list[str], why: str) -> None:
    """They used to end in a numpy traceback, an endless loop or a run that exits 0."""
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and why in r.output, r.output


def test_bench_durability_never_deletes_a_database_in_its_workdir(tmp_path: Path) -> None:
    (tmp_path / "reference.db").write_text("precious")
    r = CliRunner().invoke(app, ["bench", "durability", "--kills", "1", "--shoppers", "1",
                                 "--workdir", str(tmp_path)])
    assert r.exit_code == 2 and "exists: give an empty --workdir" in r.output, r.output
    assert (tmp_path / "reference.db").read_text() == "precious"


@pytest.mark.parametrize("args", [
    ["store", "import-aifi", "--meta", "{tmp}/none", "--case", "{tmp}/none", "--out", "{tmp}/x"],
    ["store", "generate", "--area", "100", "--plates", "100", "--cameras", "12", "--out",
     "{tmp}"]])
def test_store_commands_name_bad_paths(args: list[str], tmp_path: Path) -> None:
    """A missing AiFi folder and a directory given as the YAML to write were tracebacks."""
    r = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize(("args", "said"), [
    (["bench", "scale", "--mqtt", "garbage"], "--mqtt: not an MQTT URL"),
    (["bench", "scale", "--area", "nan"], "(got [nan])")])
def test_bench_scale_names_bad_values(args: list[str], said: str) -> None:
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and said in r.output, r.output
