"""The whole path: simulate → record → replay → receipts, through the CLI as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.bench.metrics import score_receipts
from walkout.cli import app

runner = CliRunner()
SHOPPERS = 12


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "small-12"
    res = runner.invoke(app, ["sim", "--store", "small", "--shoppers", str(SHOPPERS),
                              "--seed", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_recording_layout(recording: Path) -> None:
    for name in ("recording.json", "store.yaml", "plates.npz", "keypoints.npz", "gates.jsonl",
                 "truth/receipts.json", "truth/events.jsonl", "truth/paths.npz"):
        assert (recording / name).is_file(), name
    meta = json.loads((recording / "recording.json").read_text())
    assert meta["shoppers"] == SHOPPERS and meta["store"] == "small"


def test_replay_is_deterministic_and_never_reads_truth(recording: Path, tmp_path: Path) -> None:
    blind = tmp_path / "blind"
    shutil.copytree(recording, blind, ignore=shutil.ignore_patterns("truth"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out, rec in ((a, recording), (b, blind)):
        res = runner.invoke(app, ["replay", str(rec), "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    receipts = doc["receipts"]
    # the cases waiting for a person, each with the moment `walkout evidence` cuts a clip at
    flagged = {e for r in receipts if r["needs_review"] for ln in r["lines"] for e in ln["events"]}
    cases = {c["case_id"]: c for c in doc["review_cases"]}
    assert all(c["t_start"] <= c["t"] and c["sessions"] for c in cases.values())
    assert {c for c in cases if cases[c]["open"]} >= flagged & set(cases)
    truth = json.loads((recording / "truth" / "receipts.json").read_text())
    got = {r["credential"]: {ln["product"]: ln["quantity"] for ln in r["lines"]}
           for r in receipts if r["credential"]}
    s = score_receipts(got, truth)
    # the accuracy goal is the benchmark's job; here: the replayed engine really works
    assert s.f1 >= 0.9 and s.exact_receipts >= SHOPPERS * 2 // 3, (got, truth)


@pytest.mark.parametrize("name", ["plates.npz", "keypoints.npz"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_replay_of_a_broken_recording_names_the_problem(
        recording: Path, tmp_path: Path, name: str, damage: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(recording, broken)
    whole = (broken / name).read_bytes()
    # a truncated copy (disk full, interrupted transfer) fails in the zip layer, not in numpy
    (broken / name).write_bytes(b"not a numpy file" if damage == "garbage" else whole[:4096])
    res = runner.invoke(app, ["replay", str(broken)])
    assert res.exit_code == 2, res.output
    assert name in res.output and "corrupt" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a walkout recording" in res.output


def test_bench_accuracy_json(tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    res = runner.invoke(app, ["bench", "accuracy", "--shoppers", "6", "--seed", "2",
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    figures = json.loads(out.read_text())
    for key in ("shoppers", "f1", "precision", "recall", "exact_receipt_rate", "events",
                "events_to_review", "seconds"):
        assert key in figures
    assert figures["shoppers"] == 6 and figures["f1"] >= 0.9


def test_demo_prints_receipts_and_summary() -> None:
    res = runner.invoke(app, ["demo", "--shoppers", "4", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "Receipts (engine vs ground truth)" in res.output
    assert "F1" in res.output and "exact receipts" in res.output


def test_unknown_store_is_a_clear_error() -> None:
    res = runner.invoke(app, ["demo", "--store", "atlantis"])
    assert res.exit_code == 2 and "no store named 'atlantis'" in res.output


@pytest.mark.parametrize("name", ["item-left", "changing-clothes"])
def test_demo_runs_the_newest_hard_scenarios_by_name(name: str) -> None:
    res = runner.invoke(app, ["demo", "--shoppers", "0", "--seed", "4", "--scenario", name])
    assert res.exit_code == 0, res.output
    assert f"{name}-4-0-0" in res.output and "F1" in res.output


def test_demo_lists_what_waits_for_review_and_each_alert() -> None:
    """An operator gets the cases and alerts themselves, not only their counts."""
    res = runner.invoke(app, ["demo", "--shoppers", "0", "--seed", "4",
                              "--scenario", "item-left", "--scenario", "tailgating"])
    assert res.exit_code == 0, res.output
    review = res.output.split("Waiting for review (receipts held)")[1].split("Alerts")[0]
    assert "floor-s" in review and "s00001" in review  # the floor reach, the receipt it holds
    alerts = res.output.split("Alerts")[1]
    assert "possible_drop" in alerts and "unbound_person" in alerts
    assert "unbound_left_with_goods" in alerts  # the tailgater leaves with what they took
    summary = " ".join(res.output.split())  # rich wraps the summary line at the terminal width
    assert "to review 1 alerts 3" in summary


def test_demo_without_review_or_alerts_prints_neither_table() -> None:
    res = runner.invoke(app, ["demo", "--shoppers", "4", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "to review 0 alerts 0" in " ".join(res.output.split())
    assert "Waiting for review" not in res.output and "Alerts" not in res.output


def test_sim_never_writes_over_a_recording(recording: Path, tmp_path: Path) -> None:
    """`walkout sim --out` onto an existing recording used to replace its sensor files and
    leave the old receipts beside them."""
    before = {p.relative_to(recording): p.read_bytes() for p in recording.rglob("*")
              if p.is_file()}
    res = runner.invoke(app, ["sim", "--store", "small", "--shoppers", "1", "--seed", "7",
                              "--out", str(recording)])
    assert res.exit_code == 2 and "never written over" in res.output, res.output
    assert {p.relative_to(recording): p.read_bytes() for p in recording.rglob("*")
            if p.is_file()} == before
    fresh = tmp_path / "fresh"
    res = runner.invoke(app, ["sim", "--store", "small", "--shoppers", "1", "--out", str(fresh)])
    assert res.exit_code == 0, res.output
    assert (fresh / "recording.json").is_file()
    assert not list(tmp_path.glob(".*partial"))  # the work folder was renamed into place


def test_replay_of_a_file_instead_of_a_recording_says_so(tmp_path: Path) -> None:
    f = tmp_path / "receipts.json"
    f.write_text("{}")
    res = runner.invoke(app, ["replay", str(f)])
    assert res.exit_code == 2 and "not a walkout recording" in res.output, res.output


def test_replay_names_an_out_it_cannot_write_before_running(recording: Path,
                                                           tmp_path: Path) -> None:
    for out, why in ((tmp_path, "is a directory"),
                     (tmp_path / "no" / "r.json", "its folder does not exist")):
        res = runner.invoke(app, ["replay", str(recording), "--out", str(out)])
        assert res.exit_code == 2 and why in res.output, res.output
