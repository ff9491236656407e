"""Output paths and database URLs the commands cannot use: a one-line error naming the option,
the path and the reason, exit 2, said before any work, and nothing that was there is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.store import load_store


def _unprivileged() -> list[str] | None:
    """A command prefix under which permissions apply (root writes into 0555 folders): none
    for a normal user, ``unshare --user`` for root (its files are checked by their mode bits
    there, root holding no capability over them), None where neither works."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        return None
    ok = subprocess.run(["unshare", "--user", "true"], capture_output=True, check=False)
    return ["unshare", "--user"] if ok.returncode == 0 else None


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder holding one file, read-only (0555), and one that may not be searched (0000)."""
    ro, nox = tmp_path / "ro", tmp_path / "nox"
    for d in (ro, nox):
        d.mkdir()
        (d / "kept.txt").write_text("precious")
    ro.chmod(0o555)
    nox.chmod(0o000)
    yield tmp_path
    ro.chmod(0o755)
    nox.chmod(0o755)


def test_sim_out_under_a_regular_file_is_named_before_simulating(tmp_path: Path) -> None:
    """It was said after the simulation, naming a hidden '.rec.partial' folder."""
    f = tmp_path / "file"
    f.write_text("precious")
    out = f / "rec"
    r = CliRunner().invoke(app, ["sim", "--out", str(out), "--shoppers", "0"])
    assert r.exit_code == 2, r.output
    assert f"error: --out {out}: its folder {f} exists and is not a directory" in r.output
    assert "simulated" not in r.output and "partial" not in r.output
    assert f.read_text() == "precious"


@pytest.mark.parametrize(("where", "said"), [
    ("ro/rec", "its folder {tmp}/ro is not writable (permission denied)"),
    ("ro/sub/rec", "cannot be created: {tmp}/ro is not writable (permission denied)"),
    ("nox/rec", "cannot be reached: Permission denied")])  # this one was a traceback
def test_sim_out_in_a_read_only_folder_is_named(locked: Path, where: str, said: str) -> None:
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without `unshare --user`: root writes into any folder")
    out = locked / where
    r = subprocess.run([*prefix, sys.executable, "-m", "walkout.cli", "sim", "--out", str(out),
                        "--shoppers", "0"], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"error: --out {out}: " in r.stderr and said.format(tmp=locked) in r.stderr
    (locked / "nox").chmod(0o755)
    assert sorted(p.name for p in (locked / "ro").iterdir()) == ["kept.txt"]
    assert (locked / "nox" / "kept.txt").read_text() == "precious"


@pytest.mark.parametrize("bench", ["durability", "service"])
def test_a_bench_workdir_that_is_a_file_is_refused(tmp_path: Path, bench: str) -> None:
    """durability said '[Errno 17] File exists'; service ended in a FileExistsError traceback."""
    f = tmp_path / "workdir"
    f.write_text("precious")
    r = CliRunner().invoke(app, ["bench", bench, "--shoppers", "1", "--workdir", str(f)])
    assert r.exit_code == 2, r.output
    assert f"error: --workdir {f}: exists and is not a directory" in r.output
    assert f.read_text() == "precious" and sorted(tmp_path.iterdir()) == [f]


def test_bench_service_never_deletes_a_database_in_its_workdir(tmp_path: Path) -> None:
    """A database left in --workdir was a FileExistsError traceback (durability named it)."""
    (tmp_path / "service.db").write_text("precious")
    r = CliRunner().invoke(app, ["bench", "service", "--shoppers", "1", "--workdir",
                                 str(tmp_path)])
    assert r.exit_code == 2 and "service.db exists: give an empty --workdir" in r.output, r.output
    assert (tmp_path / "service.db").read_text() == "precious"


@pytest.mark.parametrize("bench", ["durability", "service"])
@pytest.mark.parametrize(("url", "said"), [
    ("mysql://walkout:s3cret@localhost/walkout", "--db: mysql databases are not supported: use "
     "SQLite or PostgreSQL"),
    ("garbage", "--db: not a database URL")])
def test_a_bench_database_of_another_kind_is_refused_by_name(
        tmp_path: Path, bench: str, url: str, said: str) -> None:
    """mysql:// ended in ModuleNotFoundError (its driver), garbage in an ArgumentError."""
    wd = tmp_path / "wd"
    r = CliRunner().invoke(app, ["bench", bench, "--shoppers", "1", "--db", url,
                                 "--workdir", str(wd)])
    assert r.exit_code == 2 and f"error: {said}" in r.output, r.output
    assert "s3cret" not in r.output  # a URL's password is never echoed
    assert not wd.exists()  # refused before anything was made


STORE_WRITERS = {
    "generate": ["store", "generate", "--area", "100", "--plates", "100", "--cameras", "12"],
    "import-aifi": ["store", "import-aifi", "--meta", "{tmp}/none", "--case", "{tmp}/none"],
}


@pytest.mark.parametrize("command", sorted(STORE_WRITERS))
def test_store_writers_never_overwrite_without_force(tmp_path: Path, command: str) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("# edited by hand\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in STORE_WRITERS[command]]
    r = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert f"error: --out {out}: exists; use --force to overwrite it" in r.output
    assert out.read_text() == "# edited by hand\n"


def test_store_generate_overwrites_with_force(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("# edited by hand\n")
    r = CliRunner().invoke(app, [*STORE_WRITERS["generate"], "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert load_store(out).name == "generated-100m2-12c-100p-s1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no temporary left


#: the commands whose --json is checked before they run (bench ray and bench scale live in
#: commands/distributed.py and commands/scale.py: their write is still caught, after the run)
JSON_WRITERS = [["bench", "accuracy"], ["bench", "shelf"], ["bench", "memory"],
                ["bench", "tracking"], ["bench", "durability"], ["bench", "service"],
                ["bench", "shelf-pcp"], ["bench", "perception"], ["aifi", "video", "videos"],
                ["aifi", "check-calibration", "videos"]]


def _flat(text: str) -> str:
    """``text`` without white space and the frame click's usage errors are drawn in."""
    return "".join(c for c in text if not c.isspace() and c not in "│╭╮╰╯─")


@pytest.mark.parametrize("where", ["dir", "under-file"])
@pytest.mark.parametrize("command", JSON_WRITERS, ids=lambda c: " ".join(c[:2]))
def test_a_bench_json_that_cannot_be_a_file_is_said_before_the_bench_runs(
        tmp_path: Path, command: list[str], where: str) -> None:
    """print_json wrote --json unchecked after the bench (minutes of work): a directory there
    was an IsADirectoryError traceback and the figures only on the screen."""
    (tmp_path / "file").write_text("precious")
    target = tmp_path if where == "dir" else tmp_path / "file" / "b.json"
    said = "is a directory" if where == "dir" else f"is under {tmp_path / 'file'}, which is a file"
    res = CliRunner().invoke(app, [*command[:2], "--json", str(target), *command[2:]])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "--json" in res.output and _flat(said) in _flat(res.output), res.output
    assert (tmp_path / "file").read_text() == "precious"


def test_a_bench_json_write_that_fails_is_one_line_and_the_figures_are_kept(
        tmp_path: Path) -> None:
    """A folder that takes no new file (procfs, even for root): found only when writing."""
    res = CliRunner().invoke(app, ["bench", "shelf", "--duration", "60", "--json",
                                   "/proc/walkout-bench.json"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "error: --json /proc/walkout-bench.json: cannot write:" in " ".join(
        res.output.split())
    assert '"event_precision"' in res.output  # printed before the write


def test_aifi_run_out_that_is_a_directory_is_said_before_the_case_runs(tmp_path: Path) -> None:
    """It was an IsADirectoryError traceback after the run; said first now, so even a case
    that is not there is not looked at."""
    res = CliRunner().invoke(app, ["aifi", "run", str(tmp_path / "no-case"), "--out",
                                   str(tmp_path)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert f"error: --out {tmp_path}: is a directory" in " ".join(res.output.split())


def test_a_path_with_brackets_is_said_as_it_is(tmp_path: Path) -> None:
    """Messages were printed as rich markup: a ``[...]`` in a path, URL or error text was
    taken for a style tag and vanished from the message (or broke the print)."""
    f = tmp_path / "[shop] 2026" / "file"
    f.parent.mkdir()
    f.write_text("precious")
    out = f / "rec"
    r = CliRunner().invoke(app, ["sim", "--out", str(out), "--shoppers", "0"])
    assert r.exit_code == 2, r.output
    assert f"error: --out {out}: its folder {f} exists and is not a directory" in r.output


def test_a_pose_runtime_that_is_not_installed_is_one_line_naming_the_extra(
        tmp_path: Path) -> None:
    """The runtimes are the ``perception`` extra: a box set up without it got a
    ModuleNotFoundError traceback from ``walkout perceive``."""
    video = tmp_path / "v.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(3):
        out.write(np.zeros((48, 64, 3), np.uint8))
    out.release()
    code = ("import sys; sys.modules['ai_edge_litert'] = None; "
            "from walkout.cli import app; app()")
    r = subprocess.run([sys.executable, "-c", code, "perceive", "--video", str(video),
                        "--camera", "cam1", "--store", "aifi-nanostore", "--out",
                        str(tmp_path / "rec")], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("error: the movenet backend needs ai_edge_litert, which is not installed: "
            "pip install 'walkout[perception]'") in r.stderr, r.stderr
    assert not (tmp_path / "rec").exists()
