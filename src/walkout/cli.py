"""The `walkout` command line: demo, sim, replay, bench, store."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from walkout.commands import (
    ForceOpt,
    JsonOpt,
    finite,
    output_file_problem,
    print_json,
    register_all,
)
from walkout.commands.say import dim, err, error, say, warning
from walkout.store import StoreFileError, builtin_stores, load_store
from walkout.store.model import Store

if TYPE_CHECKING:
    from walkout.engine import EngineResult
    from walkout.sources.recording import Sensors

app = typer.Typer(no_args_is_help=True, help="walkout: an open checkout-free store platform.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON.")
store_app = typer.Typer(no_args_is_help=True, help="Store descriptions.")
app.add_typer(bench_app, name="bench")
app.add_typer(store_app, name="store")
console = Console()

StoreOpt = Annotated[str, typer.Option("--store", help="shipped store name or a store YAML path")]
ScenarioOpt = Annotated[
    list[str] | None,
    typer.Option("--scenario", help="add a named scenario (repeatable); see `walkout scenarios`"),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="random seed of the simulation")]


def _store(name: str) -> Store:
    try:
        return load_store(name)
    except StoreFileError as e:
        error(str(e))
        raise typer.Exit(2) from e


RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="run the engine's stages on the Ray cluster at this address (host:port of "
    "its head); same receipts as in one process (docs/scale-out.md)")]


def _engine(st: Store, ray: str | None) -> Any:
    """The engine: in this process, or with its stages on the Ray cluster at ``ray``."""
    from walkout.distributed import RayError, make_engine

    try:
        return make_engine(st, ray_address=ray)
    except RayError as e:
        error(f"--ray: {e}")
        raise typer.Exit(2) from e


def _dir_problem(path: Path) -> str | None:
    """Why files cannot be made in directory ``path`` (created if missing), or None.

    Asked before a long run, so that a typo or a read-only place is said at once, with the path
    the user gave, rather than as a traceback (or a hidden temporary's name) at the end."""
    try:
        if path.exists():
            if not path.is_dir():
                return "exists and is not a directory"
            if not os.access(path, os.W_OK | os.X_OK):
                return "is not writable (permission denied)"
            return None
        there = next(p for p in path.parents if p.exists())  # "/" exists
    except OSError as e:  # a folder on the way that may not be searched
        return f"cannot be reached: {e.strerror or e}"
    if not there.is_dir():
        return f"cannot be created: {there} is not a directory"
    if not os.access(there, os.W_OK | os.X_OK):
        return f"cannot be created: {there} is not writable (permission denied)"
    return None


def _writable_dir(path: Path, flag: str) -> None:
    """Exit 2 with a one-line error naming ``flag`` and ``path`` when :func:`_dir_problem`."""
    problem = _dir_problem(path)
    if problem:
        error(f"{flag} {path}: {problem}")
        raise typer.Exit(2)


def _check_scenarios(names: list[str]) -> None:
    from walkout.sim.scenarios import SCENARIOS

    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
        raise typer.Exit(2)


def _simulate(st: Store, shoppers: int, seed: int, scenarios: list[str] | None) -> Any:
    from walkout.sim.session import simulate

    _check_scenarios(list(scenarios or []))
    return simulate(st, shoppers, seed, scenarios=scenarios or ())


@contextmanager
def _progress(total: float, label: str) -> Iterator[Any]:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=err, transient=False,
    ) as p:
        task = p.add_task(label, total=total)
        yield lambda now: p.update(task, completed=min(now, total))


def _receipts_json(result: Any) -> dict[str, Any]:
    from walkout.checkout.tax import rate_str, tax_json

    return {
        "receipts": [
            {
                "session": r.session_id,
                "credential": r.credential,
                "currency": r.currency,
                "total": str(r.total),
                "needs_review": r.needs_review,
                "exited_at": r.exited_at,
                "lines": [
                    {"product": ln.product_id, "name": ln.name, "quantity": ln.quantity,
                     "unit_price": str(ln.unit_price), "amount": str(ln.amount),
                     "events": list(ln.events), "tax_class": ln.tax_class,
                     "tax_rate": None if ln.tax_rate is None else rate_str(ln.tax_rate)}
                    for ln in r.lines
                ],
                # included in the total, per rate; empty where the store itemises no tax
                "tax": tax_json(r.tax, r.currency),
            }
            for r in result.receipts
        ],
        "alerts": [{"t": a.t, "kind": a.kind, "message": a.message, "subject": a.subject}
                   for a in result.alerts],
        # what waits for a person: `walkout evidence` cuts clips around each
        "review_cases": [{"case_id": c.case_id, "t": c.event.t_end, "t_start": c.event.t_start,
                          "plates": list(c.event.plate_ids), "reasons": list(c.reasons),
                          "sessions": list(c.sessions), "open": c.open}
                         for c in result.cases.values()],
    }


@app.command()
def demo(
    store: StoreOpt = "small",
    shoppers: Annotated[int, typer.Option(min=0, help="number of shoppers")] = 20,
    seed: SeedOpt = 1,
    scenario: ScenarioOpt = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="open the web dashboard on the simulated store running live")] = False,
    host: Annotated[str, typer.Option(help="address to listen on (--serve)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on (--serve)")]
    = 8000,
    speed: Annotated[float, typer.Option(min=0, callback=finite,
                                         help="--serve: 1 = real time")] = 1.0,
) -> None:
    """Simulate a shopping period, run the engine, and show receipts beside the truth
    (--serve: run it live behind the dashboard, shopper app and kiosk instead)."""
    from walkout.bench.accuracy import predicted_receipts, true_receipts
    from walkout.bench.metrics import score_receipts
    from walkout.engine import Engine
    from walkout.sources.recording import Sensors

    st = _store(store)
    t0 = time.perf_counter()
    with console.status(f"simulating {shoppers} shoppers in '{st.name}'..."):
        session = _simulate(st, shoppers, seed, scenario)
    if serve:
        from walkout.commands.web import demo_serve

        demo_serve(Sensors.from_session(session), f"demo:{store}:{shoppers}:{seed}", host, port,
                   speed, console.print)
        return
    console.print(
        f"simulated {session.duration_s:.0f} s: {len(session.frames):,} camera frames, "
        f"{session.plates.grams.size:,} plate samples, {len(session.truth.events)} shelf events",
        markup=False)
    with _progress(session.duration_s, "engine") as tick:
        result = Engine(st).run(Sensors.from_session(session), tick)
    pred, true = predicted_receipts(result), true_receipts(session.truth)
    table = Table(title="Receipts (engine vs ground truth)", show_lines=True)
    for col in ("shopper", "engine receipt", "ground truth", ""):
        table.add_column(col)
    names = st.products
    for cred, truth in sorted(true.items()):
        got = pred.get(cred, Counter())

        def fmt(c: Counter[str]) -> str:
            return "\n".join(f"{q} × {names[p].name[:34]}" for p, q in sorted(c.items())) or "—"

        ok = Counter({k: v for k, v in got.items() if v > 0}) == truth
        table.add_row(cred, fmt(got), fmt(truth), "[green]✓[/]" if ok else "[red]✗[/]")
    console.print(table)
    _print_review_and_alerts(result)
    s = score_receipts(pred, true)
    console.print(
        f"[bold]exact receipts[/] {s.exact_receipt_rate:.1%}  [bold]precision[/] {s.precision:.4f}"
        f"  [bold]recall[/] {s.recall:.4f}  [bold]F1[/] {s.f1:.4f}  events {len(result.events)}"
        f"  to review {len(result.review_queue)}  alerts {len(result.alerts)}"
        f"  ({time.perf_counter() - t0:.1f} s)"
    )


def _print_review_and_alerts(result: EngineResult) -> None:
    """What an operator would have to act on: the cases waiting for a person, and the alerts.

    A count alone ("alerts 1") says nothing the operator can check; each row names the plate or
    person and the reason, in store time."""
    if result.review_queue:
        table = Table(title="Waiting for review (receipts held)")
        for col in ("t (s)", "event", "plates", "change", "why", "receipts held"):
            table.add_column(col, overflow="fold")
        for d in result.review_queue:
            ev = d.attribution.event
            case = result.cases.get(ev.event_id)
            held = ", ".join(case.sessions if case else d.takers) or "—"
            on_shelf = bool(ev.plate_ids)  # a hand to the floor has no plate and no weight
            table.add_row(f"{ev.t_start:.1f}", ev.event_id,
                          ", ".join(ev.plate_ids) if on_shelf else "—",
                          f"{ev.delta_g:+.0f} g" if on_shelf else "—",
                          "; ".join(d.reasons) or "low confidence", held)
        console.print(table)
    if result.alerts:
        table = Table(title="Alerts")
        for col in ("t (s)", "kind", "subject", "message"):
            table.add_column(col)
        for a in sorted(result.alerts, key=lambda a: a.t):
            table.add_row(f"{a.t:.1f}", a.kind, a.subject or "—", a.message)
        console.print(table)


@app.command()
def sim(
    out: Annotated[Path | None, typer.Option("--out", help="recording directory to write")]
    = None,
    store: StoreOpt = "small",
    shoppers: Annotated[int, typer.Option(min=0, help="number of shoppers")] = 20,
    seed: SeedOpt = 1,
    scenario: ScenarioOpt = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", help="play the period onto an MQTT broker, mqtt://HOST:PORT/STORE "
        "(STORE: the store's name on the wire; default its own)")] = None,
    speed: Annotated[float, typer.Option(
        min=0, callback=finite, help="--publish pace: 1 = real time, 10 = ten times faster, "
        "0 = as fast as the broker acknowledges")] = 1.0,
) -> None:
    """Simulate a period: record its sensor streams and ground truth to disk (--out), and/or
    play them onto an MQTT broker as the store's devices would send them (--publish)."""
    from walkout.sources.recording import RecordingError, write_recording

    if out is None and publish is None:
        error("give --out DIR (a recording) or --publish mqtt://HOST:PORT")
        raise typer.Exit(2)
    if speed < 0:
        error(f"--speed must be >= 0, got {speed}")
        raise typer.Exit(2)
    target: tuple[str, str | None] | None = None
    if publish is not None:
        from walkout.sources.mqtt import split_url

        try:
            target = split_url(publish)
        except ValueError as e:
            error(f"--publish: {e}")
            raise typer.Exit(2) from e
    st = _store(store)
    if out is not None:
        _check_recording_out(out)
    with console.status(f"simulating {shoppers} shoppers..."):
        session = _simulate(st, shoppers, seed, scenario)
        if out is not None:
            try:
                write_recording(session, out)
            except RecordingError as e:
                error(f"writing the recording: {e}")
                raise typer.Exit(2) from e
            except OSError as e:  # named by the --out given, not the hidden folder written
                error(f"--out {out}: cannot write the "
                      f"recording: {e.strerror or e}")
                raise typer.Exit(2) from e
    if out is not None:
        console.print(f"recorded {session.duration_s:.0f} s of '{st.name}' to {out}",
                      markup=False)
    if target is not None:
        from walkout.sources.mqtt import PublishRefused, publish_session

        if session.modes:  # an operator's input, not a device's: no topic carries it
            warning("the store is marked closed and opened again in this "
                    "period; MQTT carries no store mode: set it on the engine's service "
                    "(POST /v1/store-mode) or replay a recording (--out)")
        url, name = target
        pace = f"{speed:g}× real time" if speed else "as fast as the broker takes it"
        with console.status(f"publishing {session.duration_s:.0f} s to {url} ({pace})..."):
            try:
                sent = publish_session(session, url, name or st.name, speed=speed or None)
            except (OSError, TimeoutError, PublishRefused) as e:
                error(f"publishing to {url}: {e}")
                raise typer.Exit(1) from e
        console.print(f"published {sent['messages']:,} messages of {len(sent['devices'])} devices "
                      f"of '{name or st.name}' to {url} in {sent['seconds']:.1f} s", markup=False)


def _check_recording_out(out: Path) -> None:
    """Exit 2 unless a recording can be written at ``out``: checked before the simulation,
    never over anything (a recording is written beside ``out`` and renamed into place, so its
    folder must take new files)."""
    try:
        taken = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as e:  # a folder on the way that may not be searched or read
        error(f"--out {out}: cannot be reached: "
              f"{e.strerror or e}")
        raise typer.Exit(2) from e
    if taken:
        error(f"--out {out}: exists and is not empty; a "
              "recording is never written over")
        raise typer.Exit(2)
    problem = _dir_problem(out.parent)
    if problem:
        error(f"--out {out}: its folder {out.parent} {problem}")
        raise typer.Exit(2)


def _load_recording(recording: Path) -> Sensors:
    """The recording's sensors, or a one-line error (exit 2); what loading put right (readings
    out of time order, repeats) is printed as warnings, so a damaged file is never silent."""
    from walkout.sources.recording import RecordingError, load_sensors

    try:
        sensors = load_sensors(recording)
    except (RecordingError, StoreFileError) as e:
        error(str(e))
        raise typer.Exit(2) from e
    for note in sensors.notes:
        warning(str(note))
    return sensors


@app.command()
def replay(
    recording: Annotated[Path, typer.Argument(help="recording directory")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="receipts JSON to write (default: RECORDING/receipts.json)")] = None,
    ray: RayOpt = None,
) -> None:
    """Run the engine on a recording and write its receipts (deterministic)."""
    sensors = _load_recording(recording)
    target = out or recording / "receipts.json"
    if target.is_dir() or not target.parent.is_dir():  # said now, not after the engine's run
        error(f"--out {target}: "
              + ("is a directory" if target.is_dir() else "its folder does not exist"))
        raise typer.Exit(2)
    engine = _engine(sensors.store, ray)  # a Ray cluster that cannot be joined: said first
    for m in sensors.modes:  # applied by Engine.run where the service's worker applies them
        console.print(f"store marked {m.mode} at {m.t:.1f} s "
                      f"({recording / 'store_modes.jsonl'})", markup=False)
    with _progress(sensors.duration_s, "engine") as tick:
        result = engine.run(sensors, tick)
    try:
        target.write_text(json.dumps(_receipts_json(result), indent=1) + "\n")
    except OSError as e:
        error(f"--out {target}: {e.strerror or e}")
        raise typer.Exit(2) from e
    console.print(f"{len(result.receipts)} receipts written to {target}", markup=False)


@bench_app.command("accuracy")
def bench_accuracy(
    store: StoreOpt = "small",
    shoppers: Annotated[int, typer.Option(min=0, help="number of shoppers")] = 200,
    seed: SeedOpt = 1,
    json_path: JsonOpt = None,
    suite: Annotated[
        str, typer.Option(help="standard: the standard mix; hard: every scenario, --repeats times")
    ] = "standard",
    repeats: Annotated[int, typer.Option(help="instances of each scenario (hard suite)")] = 3,
    scenario: ScenarioOpt = None,
) -> None:
    """Receipt accuracy of the engine on a simulated period (AiFi item metric)."""
    from walkout.bench.accuracy import run_accuracy
    from walkout.sim.scenarios import hard_suite

    st = _store(store)
    if suite not in ("standard", "hard"):
        error(f"unknown suite {suite!r}: use standard or hard")
        raise typer.Exit(2)
    names = list(scenario or [])
    if suite == "hard":
        names += [n for _ in range(repeats) for n in hard_suite()]
    _check_scenarios(names)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=err) as p:
        task = p.add_task("simulate", total=1.0)

        def tick(stage: str, now: float, total: float) -> None:
            p.update(task, description=stage, completed=now / max(total, 1e-9))

        figures, _, _ = run_accuracy(st, shoppers, seed, tick, names)
    figures["suite"] = suite
    print_json(figures, json_path)


@store_app.command("list")
def store_list() -> None:
    """Shipped stores."""
    for name in builtin_stores():
        s = load_store(name)
        console.print(
            f"{name}: {len(s.gondolas)} gondolas, {len(s.plates)} plates, "
            f"{len(s.catalogue)} products, {len(s.cameras)} cameras", markup=False)


@store_app.command("validate")
def store_validate(path: Annotated[Path, typer.Argument(help="store YAML file")]) -> None:
    """Check a store file; errors name the file, line and field."""
    s = _store(str(path))
    console.print(f"{path}: valid store '{s.name}' ({len(s.plates)} plates)", markup=False)


@store_app.command("import-aifi")
def store_import_aifi(
    meta: Annotated[Path, typer.Option(help="AiFi store_meta directory")],
    case: Annotated[Path, typer.Option(help="AiFi test case directory (products, planogram)")],
    out: Annotated[Path, typer.Option(help="store YAML to write")],
    force: ForceOpt = False,
) -> None:
    """Build a store file from the AiFi AutoCheckout format."""
    from walkout.sources.aifi import AifiDataError
    from walkout.store.import_aifi import import_aifi_store
    from walkout.store.loader import dump_store

    problem = output_file_problem(out, force)
    if problem:
        error(f"--out {out}: {problem}")
        raise typer.Exit(2)
    try:
        s = import_aifi_store(meta, case)
        dump_store(s, out)
    except (AifiDataError, OSError) as e:
        error(str(e))
        raise typer.Exit(2) from e
    console.print(f"wrote {out}: {len(s.plates)} plates, {len(s.cameras)} cameras", markup=False)


@bench_app.command("shelf-pcp")
def bench_shelf_pcp(
    data: Annotated[Path, typer.Option(help="Shelf benchmark directory (calibration, detection)")],
    out: Annotated[Path | None, typer.Option(help="write per-frame 3D poses here (JSONL)")] = None,
    json_path: JsonOpt = None,
    frames: Annotated[int | None, typer.Option(min=1, help="only the first N frames")] = None,
) -> None:
    """Multi-view 3D pose tracking on Shelf: strict PCP, fps, and skel.txt's PCP beside it."""
    from walkout.bench.shelf_pcp import run_shelf_pcp
    from walkout.sources.shelf_dataset import ShelfDataError

    try:
        figures = run_shelf_pcp(data, out, frames)
    except (OSError, ShelfDataError) as e:
        error(str(e))
        raise typer.Exit(2) from e
    print_json(figures, json_path)


# ---- AiFi test cases and the shelf benchmark (appended; existing commands unchanged) --------

aifi_app = typer.Typer(no_args_is_help=True, help="AiFi AutoCheckout test cases.")
app.add_typer(aifi_app, name="aifi")


@aifi_app.command("run")
def aifi_run(
    case: Annotated[Path, typer.Argument(help="AiFi test case directory (e.g. BENCHMARK-1)")],
    out: Annotated[Path, typer.Option("--out", help="receipts JSON to write")] = Path(
        "receipts.json"
    ),
    meta: Annotated[
        Path | None, typer.Option("--meta", help="store_meta directory (default: ../store_meta)")
    ] = None,
) -> None:
    """Shelf → attribution → cart on an AiFi case; writes the competition receipts JSON."""
    from walkout.sources.aifi import AifiDataError
    from walkout.sources.aifi_run import receipts_json, run_case

    problem = output_file_problem(out, force=True)  # said before the case is run
    if problem:
        error(f"--out {out}: {problem}")
        raise typer.Exit(2)
    try:
        result = run_case(case, meta)
    except AifiDataError as e:
        error(str(e))
        raise typer.Exit(2) from e
    data = receipts_json(result)
    print(json.dumps(data))  # first: a failed write below loses nothing
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
    except OSError as e:
        error(f"--out {out}: cannot write: {e.strerror or e} "
              "(the receipts are printed above)")
        raise typer.Exit(2) from e
    kinds = Counter(a.kind for a in result.alerts)
    say(
        f"{len(result.decisions)} shelf events, {sum(d.needs_review for d in result.decisions)} "
        f"to review, alerts {dict(sorted(kinds.items()))}; receipts written to {out}"
    )


#: ``walkout.bench.shelf.MIN_DURATION_S``, here so that the CLI does not import the bench to
#: declare its option (tests/bench/test_shelf_bench.py checks the two agree)
SHELF_MIN_DURATION_S = 60.0


@bench_app.command("shelf")
def bench_shelf(
    seed: SeedOpt = 1,
    duration: Annotated[float, typer.Option(min=SHELF_MIN_DURATION_S, max=86400, callback=finite,
                                            help="simulated seconds")] = 1200.0,
    json_path: JsonOpt = None,
) -> None:
    """Shelf-stage precision/recall/item accuracy on simulated hard cases and faults."""
    from walkout.bench.shelf import run_shelf_bench

    figures = run_shelf_bench(seed, duration, progress=lambda s: dim(f"{s}..."))
    print_json(figures, json_path)



@bench_app.command("memory")
def bench_memory(
    store: StoreOpt = "small",
    shoppers: Annotated[int, typer.Option(min=1, help="number of shoppers")] = 300,
    seed: SeedOpt = 1,
    every: Annotated[float, typer.Option(min=5, callback=finite,
                                         help="stream seconds between samples")] = 300.0,
    keep: Annotated[float, typer.Option(min=1, callback=finite,
                                        help="track_history_s of the bounded run")] = 300.0,
    forget: Annotated[float, typer.Option(min=1, callback=finite,
                                          help="forget_visits_s of the third run")] = 300.0,
    json_path: JsonOpt = None,
) -> None:
    """What the engine holds as the period goes on (a live store's memory and snapshot size),
    keeping every skeleton sample, keeping track_history_s, and also letting visits settled
    forget_visits_s ago go; all must hand out the same, chunk by chunk."""
    from walkout.bench.memory import run_memory_bench

    figures = run_memory_bench(_store(store), shoppers, seed, every, keep, forget,
                               progress=lambda s: dim(f"{s}..."))
    print_json(figures, json_path)
    if not figures["same_outputs"]:
        say("the bounded engine decided differently", "red")
        raise typer.Exit(1)


@app.command("scenarios")
def scenarios_list() -> None:
    """Named hard-case scenarios of the simulator."""
    from walkout.sim.scenarios import SCENARIOS

    for sc in SCENARIOS.values():
        console.print(f"[bold]{sc.name}[/]: {sc.title}")


@bench_app.command("tracking")
def bench_tracking(
    store: StoreOpt = "small",
    shoppers: Annotated[int, typer.Option(min=0, help="number of shoppers")] = 50,
    seed: SeedOpt = 1,
    json_path: JsonOpt = None,
) -> None:
    """Multi-camera 3D tracking on a simulated period: MOTA, IDF1, switches, wrist error, fps."""
    from walkout.sim.session import simulate
    from walkout.tracking import Tracker
    from walkout.tracking.evaluate import evaluate_tracking

    st = _store(store)
    with console.status(f"simulating {shoppers} shoppers..."):
        session = simulate(st, shoppers, seed)
    tracker = Tracker(st)
    t0 = time.perf_counter()
    alerts = tracker.process(session.frames) + tracker.finish()
    seconds = time.perf_counter() - t0
    ev = evaluate_tracking(session, tracker.tracks, alerts)
    figures = {
        "store": st.name, "seed": seed, "shoppers": shoppers, "cameras": len(st.cameras),
        **{k: v for k, v in ev.items() if k != "persons"},
        "wrist_median_cm": round(100 * ev["wrist_median_m"], 2),
        "camera_frames": len(session.frames),
        "fps": round(len(session.frames) / seconds, 1),
        "real_time_factor": round(session.duration_s / seconds, 1),
        "seconds": round(seconds, 2),
    }
    print_json(figures, json_path)


@app.command()
def serve(
    db: Annotated[str | None, typer.Option("--db", help="database URL (env WALKOUT_DB_URL; "
                                           "default sqlite:///walkout.db)")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="shipped store name or store YAML path (env WALKOUT_STORE; default "
        "small)")] = None,
    source: Annotated[str, typer.Option(
        help="sim: simulated shoppers; recording: --recording; mqtt://HOST:PORT/STORE: the "
        "store's sensor network through a broker (docs/mqtt.md)")] = "sim",
    recording: Annotated[Path | None, typer.Option(help="recording directory (--source "
                                                   "recording)")] = None,
    shoppers: Annotated[int, typer.Option(min=0, help="simulated shoppers (--source sim)")] = 20,
    seed: SeedOpt = 1,
    speed: Annotated[float, typer.Option(min=0, callback=finite,
                                         help="1 = real time; 0 = as fast as possible")] = 1.0,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
    ray: RayOpt = None,
    accept_end: Annotated[bool, typer.Option(
        "--accept-end", help="mqtt:// source: finish on the stream's end-of-stream message "
        "(a replay, `walkout sim --publish`); off for a live store, whose engine nobody must "
        "be able to stop by publishing one")] = False,
) -> None:
    """Run the store service (FastAPI) with the engine live on a source."""
    import uvicorn
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from walkout.perception.config import first_error
    from walkout.service.app import create_app
    from walkout.service.runner import LiveRunner, WorkerProcess
    from walkout.service.settings import ServiceSettings
    from walkout.sources.recording import Sensors

    overrides = {k: v for k, v in (("db_url", db), ("store", store)) if v}
    try:  # a command-line value wins over the environment, which wins over the default
        settings = ServiceSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:  # no field named: the environment as a whole (a misspelt name)
        what = "setting " if e.errors()[0]["loc"] else ""
        error(f"invalid {what}{first_error(e, 'settings')}")
        raise typer.Exit(2) from e
    store = settings.store
    runner: LiveRunner
    if source == "recording":
        if recording is None:
            error("--source recording needs --recording DIR")
            raise typer.Exit(2)
        sensors = _load_recording(recording)
        runner = LiveRunner(sensors, f"recording:{recording.resolve().name}",
                            speed=speed or None)
    elif source == "sim":
        sensors = Sensors.from_session(_simulate(_store(store), shoppers, seed, None))
        runner = LiveRunner(sensors, f"sim:{store}:{shoppers}:{seed}", speed=speed or None)
    elif source.startswith("mqtt://"):  # paced by the devices: --speed does not apply
        from walkout.service.mqtt_runner import MqttRunner

        try:
            runner = MqttRunner(source, _store(store), accept_end=accept_end)
        except ValueError as e:
            error(f"--source: {e}")
            raise typer.Exit(2) from e
    else:
        error(f"unknown source {source!r}: use sim, recording or "
              "mqtt://HOST:PORT/STORE")
        raise typer.Exit(2)
    runner.ray_address = ray  # the engine's stages on a Ray cluster (docs/scale-out.md)
    # the engine (and the receipt e-mails) run in a worker process beside the API: their CPU
    # never holds the API's GIL
    try:  # opens the database and brings its schema up to date
        api = create_app(settings, store=runner.store,
                         background=WorkerProcess(runner, settings), mail_in_api=False)
    except DBAPIError as e:
        where = make_url(settings.db_url).render_as_string(hide_password=True)
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        error(f"cannot open the database {where}: {reason}")
        raise typer.Exit(2) from e
    uvicorn.run(api, host=host, port=port, log_level="info")


def _check_bench_db(db: str | None) -> None:
    """Exit 2 unless ``db`` (a bench's --db) is a SQLite or PostgreSQL URL: said before any
    database or folder is made, not as a missing driver deep in SQLAlchemy."""
    from walkout.service.settings import check_database_url

    if db is not None:
        try:
            check_database_url(db)
        except ValueError as e:
            error(f"--db: {e}")
            raise typer.Exit(2) from e


@bench_app.command("durability")
def bench_durability(
    kills: Annotated[int, typer.Option(
        min=1, help="SIGKILLs of the service at random moments")] = 20,
    seed: SeedOpt = 1,
    shoppers: Annotated[int, typer.Option(min=0, help="simulated shoppers")] = 5,
    store: StoreOpt = "small",
    db: Annotated[str | None, typer.Option(
        "--db", help="PostgreSQL server URL (two fresh databases are made there); default: "
        "SQLite files in --workdir")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="where databases and service logs go (default: a temporary directory)")] = None,
    json_path: JsonOpt = None,
) -> None:
    """Kill `walkout serve` (SIGKILL) N times mid-stream, restart it, compare with a clean run."""
    import tempfile

    from walkout.bench.durability import DurabilityError, run_durability

    def say(msg: str) -> None:
        dim(str(msg))

    _check_bench_db(db)
    if workdir is not None:
        _writable_dir(workdir, "--workdir")
    try:
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="walkout-durability-") as tmp:
                figures = run_durability(kills, seed, shoppers, Path(tmp), db, store, say)
        else:
            figures = run_durability(kills, seed, shoppers, workdir, db, store, say, keep=True)
    except DurabilityError as e:
        error(str(e))
        raise typer.Exit(1) from e
    except (OSError, StoreFileError) as e:  # the workdir, the store: named before any run
        error(str(e))
        raise typer.Exit(2) from e
    print_json(figures, json_path)


@bench_app.command("service")
def bench_service(
    shoppers: Annotated[int, typer.Option(min=0, help="concurrent shoppers through the API")] = 200,
    seed: SeedOpt = 1,
    store: StoreOpt = "small",
    db: Annotated[str | None, typer.Option(
        "--db", help="PostgreSQL server URL (a fresh database is made there); default: a "
        "SQLite file in --workdir")] = None,
    engine_shoppers: Annotated[int, typer.Option(
        help="simulated shoppers the service's engine runs live (real time) meanwhile")] = 20,
    ramp: Annotated[float, typer.Option(
        min=0, callback=finite, help="arrivals spread over this many seconds (the default "
        "profile has everybody in the store at once: visits last longer than the arrivals "
        "take)")] = 20.0,
    think: Annotated[float, typer.Option(
        min=0, callback=finite, help="mean pause between a shopper's picks (s); --ramp 5 "
        "--think 0.5 is a burst stress test, ~150 requests/s")] = 15.0,
    workdir: Annotated[Path | None, typer.Option(
        help="where the database and the service log go (default: a temporary directory)")]
    = None,
    json_path: JsonOpt = None,
) -> None:
    """Concurrent shoppers through a live `walkout serve`: latency per endpoint, exit→receipt."""
    import tempfile

    from walkout.bench.service import ServiceBenchError, run_service_bench

    def go(wd: Path) -> dict[str, Any]:
        return run_service_bench(shoppers, wd, db, seed, store, engine_shoppers, ramp, think,
                                 lambda m: dim(str(m)))

    _check_bench_db(db)
    if workdir is not None:
        _writable_dir(workdir, "--workdir")
    try:
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="walkout-service-bench-") as tmp:
                figures = go(Path(tmp))
        else:
            figures = go(workdir)
    except ServiceBenchError as e:
        error(str(e))
        raise typer.Exit(1) from e
    except (OSError, StoreFileError) as e:  # the workdir (a database left there), the store
        error(str(e))
        raise typer.Exit(2) from e
    print_json(figures, json_path)


register_all(app, bench_app, store_app, aifi_app)

if __name__ == "__main__":
    app()
