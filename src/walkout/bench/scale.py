"""Scale benchmark: engine throughput (real-time factor) against store size and shoppers.

For each store size a store is generated (:mod:`walkout.store.bigstore`: 1 camera per 25 m²,
at least 12; 2 plates per m², or as many as the floor holds) and, for each shopper count, a
period is simulated with the shoppers arriving within about ``arrive_s`` (as fast as the one
entry gate lets them) on long visits, so that they are in the store together; the engine then
runs from the opening up to the end of the busiest ``window_s`` seconds and only that window is
timed (every camera frame at 15 fps, every plate sample at 60 Hz; the row says how many were in
the store): the real-time factor is the window's store time over the engine's CPU time. CPU
time, not wall time: the figure is the engine's cost, whatever else the (shared) machine runs
meanwhile; the wall time is reported beside it.

``profile`` adds where the time goes: the engine run again, its window under cProfile, the
cumulative time of each stage's entry point (shelf, tracking and its parts, attribution,
hand-overs, checkout).
"""

from __future__ import annotations

import cProfile
import json
import pickle
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from walkout.events import PlateBlock
from walkout.sim.session import SimConfig, SimSession, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources.recording import Sensors
from walkout.store.bigstore import generate_store, max_plates
from walkout.store.model import Store

#: the default grid: every store size with every shopper count (kept to what a 2-core machine
#: runs in about ten minutes; `walkout bench scale --area ... --shoppers ...` for others)
DEFAULT_AREAS = (100, 300, 1000, 3000)
DEFAULT_SHOPPERS = (10, 50)
VISIT_STOPS = 6  # mean plates a bench shopper visits

#: stage entry points whose cumulative time the profile reports (file suffix, function name)
STAGES: dict[str, tuple[str, str]] = {
    "shelf": ("shelf/stage.py", "process"),
    "tracking": ("tracking/tracker.py", "process"),
    "attribution": ("walkout/engine.py", "_attribute_ready"),
    "hand_overs": ("walkout/engine.py", "_hand_overs"),
    "checkout": ("walkout/engine.py", "_close_ready"),
    "exits": ("walkout/engine.py", "_track_exits"),
    "evidence": ("walkout/engine.py", "_keep"),
}


@dataclass(frozen=True)
class Size:
    area_m2: float
    cameras: int
    plates: int


def size_for(area_m2: float, cameras: int | None = None, plates: int | None = None) -> Size:
    """The sensors of a store of ``area_m2``: 1 camera per 25 m² (at least 12) and 2 plates
    per m² (at most what the floor holds), unless given."""
    return Size(area_m2, cameras or max(12, round(area_m2 / 25)),
                plates or min(round(2 * area_m2), max_plates(area_m2)))


def bench_session(store: Store, shoppers: int, seed: int, arrive_s: float) -> SimSession:
    """A period with ``shoppers`` arriving about ``arrive_s`` seconds apart in all (as fast as
    the entry gate lets them), one visit of ``VISIT_STOPS`` stops on average each, no
    re-planning of close passes."""
    gap = arrive_s / max(shoppers, 1)
    cfg = SimConfig(shoppers=ShopperConfig(
        mean_arrival_gap_s=gap, gate_gap_s=min(4.0, gap / 2), replan_tries=1,
        # longer visits: one entry gate lets a person in every ~2 s, so the shoppers are in
        # the store together only if each stays for a while
        mean_stops=VISIT_STOPS, max_stops=2 * VISIT_STOPS))
    return simulate(store, shoppers, seed, cfg)


def start_of(session: SimSession, window_s: float) -> float:
    """Where the window holds the most people (1 s steps): the busiest stretch of the period,
    not the store filling up or emptying."""
    ts = np.arange(0.0, session.duration_s, 1.0)
    inside = np.zeros(len(ts))
    for path in session.truth.paths:
        inside += (ts >= path.t[0]) & (ts <= path.t[-1])
    w = max(1, min(len(ts), round(window_s)))
    sums = np.convolve(inside, np.ones(w), "valid")
    return float(ts[int(np.argmax(sums))]) if len(sums) else 0.0


def cut(session: SimSession, start: float, window_s: float) -> Sensors:
    """The sensors of ``window_s`` seconds from ``start`` (less where the period ends first),
    on a clock that starts there."""
    end = min(start + window_s, session.duration_s)
    p = session.plates
    i0, i1 = np.searchsorted(p.t, [start, end])
    return Sensors(
        session.store, PlateBlock(p.t[i0:i1] - start, p.grams[i0:i1], p.plate_ids),
        [replace(f, t=f.t - start) for f in session.frames if start <= f.t < end],
        [replace(g, t=g.t - start) for g in session.gates if start <= g.t < end], end - start)


def concurrency(session: SimSession, start: float, window_s: float) -> tuple[int, float]:
    """Peak and mean number of people in the store over the window (1 s steps)."""
    ts = np.arange(start, min(start + window_s, session.duration_s), 1.0)
    inside = np.zeros(len(ts))
    for path in session.truth.paths:
        inside += (ts >= path.t[0]) & (ts <= path.t[-1])
    return (int(inside.max()) if len(ts) else 0), (float(inside.mean()) if len(ts) else 0.0)


def stage_seconds(prof: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each stage's entry point in a profile of the engine."""
    st = pstats.Stats(prof)
    out = dict.fromkeys(STAGES, 0.0)
    for (file, _, func), (_, _, _, cum, _) in st.stats.items():  # type: ignore[attr-defined]
        for name, (suffix, fn) in STAGES.items():
            if func == fn and file.endswith(suffix):
                out[name] += cum
    # the profiler runs only while the engine does (the timed window), whatever it was in
    out["total"] = st.total_tt  # type: ignore[attr-defined]
    return {k: round(v, 3) for k, v in out.items()}


def run_one(store: Store, shoppers: int, seed: int, window_s: float, arrive_s: float,
            profile: bool = False, repeats: int = 3) -> dict[str, Any]:
    """One point of the curve: simulate, then time the engine on the busiest window.

    The engine is run ``repeats`` times on the same sensors (the same results each time) in a
    process of its own, as a live engine runs (:func:`timed_apart`), and the median CPU time
    is the figure, every run's listed: CPU time on a shared or virtual machine still moves by
    tens of per cent with what its neighbours do.

    The engine runs from the opening of the store, as a live one would, so that everybody in
    the window was tracked from the entry gate; only the window's chunks are timed (and
    profiled). Starting cold in the middle of the period would measure a store in which every
    shopper is an unbound stranger, which is neither the steady state nor cheap.
    """
    t0 = time.perf_counter()
    session = bench_session(store, shoppers, seed, arrive_s)
    sim_s = time.perf_counter() - t0
    start = start_of(session, window_s)
    sensors = cut(session, 0.0, start + window_s)
    peak, mean = concurrency(session, start, window_s)
    row: dict[str, Any] = {
        "area_m2": store_area(store), "shoppers": shoppers, "cameras": len(store.cameras),
        "plates": len(store.plates), "engine": "single",
    }
    runs = sorted(timed_apart(store, sensors, start, max(1, repeats)), key=lambda r: r.cpu_s)
    timed = runs[len(runs) // 2]
    window = sensors.duration_s - timed.from_s
    row |= {
        "real_time_factor": round(window / timed.cpu_s, 2),
        "events": timed.events, "seconds": round(timed.cpu_s, 2),
        "seconds_each_run": [round(r.cpu_s, 2) for r in runs],
        "wall_seconds": round(timed.wall_s, 2), "store_seconds": round(window, 1),
        "warm_up_store_seconds": round(timed.from_s, 1),
        "camera_frames": sum(1 for f in sensors.frames if f.t >= timed.from_s),
        "plate_samples": int(np.sum(sensors.plates.t >= timed.from_s))
        * len(sensors.plates.plate_ids),
        "peak_in_store": peak, "mean_in_store": round(mean, 1),
        "receipts": timed.receipts, "tracks": timed.tracks,
        "simulate_seconds": round(sim_s, 1),
    }
    if profile:
        prof = cProfile.Profile()
        _timed_window(store, sensors, start, prof)
        row["stages_s"] = stage_seconds(prof)
    return row


@dataclass
class _Timed:
    from_s: float = 0.0  # store time where the timed part starts (a chunk edge)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    events: int = 0
    receipts: int = 0
    tracks: int = 0


def timed_apart(store: Store, sensors: Sensors, start: float, repeats: int) -> list[_Timed]:
    """:func:`_timed_window` ``repeats`` times in a fresh Python process.

    The bench's own process holds the whole simulated period (its frames, paths and truth:
    hundreds of thousands of objects and a fragmented heap) that a live engine never has;
    timed there the same window cost up to 30 % more, and varied more, than in a process of
    its own. The window goes to the child as a pickle file.
    """
    with tempfile.TemporaryDirectory(prefix="walkout-scale-") as d:
        src = Path(d) / "window.pkl"
        with src.open("wb") as f:
            pickle.dump((store, sensors, start, repeats), f, protocol=pickle.HIGHEST_PROTOCOL)
        code = "import sys; from walkout.bench.scale import _child; _child(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True,
                              text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the timed engine process failed: {done.stderr.strip()[-2000:]}")
    return [_Timed(**r) for r in json.loads(done.stdout)]


def _child(path: str) -> None:
    """The child of :func:`timed_apart`: time the window, print the runs as JSON."""
    with open(path, "rb") as f:
        store, sensors, start, repeats = pickle.load(f)  # our own file, written just now
    runs = [_timed_window(store, sensors, start) for _ in range(repeats)]
    print(json.dumps([asdict(r) for r in runs]))


def _timed_window(store: Store, sensors: Sensors, start: float,
                  prof: cProfile.Profile | None = None) -> _Timed:
    """Run the engine over ``sensors``; CPU and wall time of the chunks from ``start`` on
    (and the end of the stream), optionally under ``prof``."""
    from walkout.engine import Engine

    out = _Timed()
    marks: dict[str, float] = {}
    events_before = [0]
    engine = Engine(store)

    def tick(b: float) -> None:
        # called after each chunk: start the clocks at the last chunk edge before the window
        if "cpu" not in marks and b + engine.config.chunk_s > start:
            out.from_s = b
            events_before[0] = len(engine.events)
            marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()

    tick(0.0)  # the window may start in the first chunk
    result = engine.run(sensors, progress=tick)
    if prof is not None:
        prof.disable()
    out.cpu_s = time.process_time() - marks["cpu"]
    out.wall_s = time.perf_counter() - marks["wall"]
    out.events = len(result.events) - events_before[0]
    out.receipts, out.tracks = len(result.receipts), len(result.tracks)
    return out


def store_area(store: Store) -> float:
    """Floor area of a store's outline (shoelace formula), m²."""
    xy = np.asarray(store.floor.outline, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return round(float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2), 1)


def run_scale(
    areas: Sequence[float] = DEFAULT_AREAS, shoppers: Sequence[int] = DEFAULT_SHOPPERS,
    seed: int = 1, window_s: float = 90.0, arrive_s: float = 20.0, *,
    mqtt_url: str | None = None, mqtt: bool = True, profile: bool = False,
    progress: Callable[[str], None] | None = None, repeats: int = 3,
) -> dict[str, Any]:
    """Every store size × shopper count, single process; then the MQTT path's throughput
    (through ``mqtt_url``, or a private Mosquitto when none is given and one is installed)."""
    say = progress or (lambda _m: None)
    runs = []
    for area in areas:
        size = size_for(area)
        store = generate_store(size.area_m2, size.cameras, size.plates, seed)
        for n in shoppers:
            say(f"{area:g} m², {size.cameras} cameras, {size.plates} plates, {n} shoppers")
            row = run_one(store, n, seed, window_s, arrive_s, profile, repeats)
            say(f"  real-time factor {row['real_time_factor']}x ({row['seconds']} s CPU for "
                f"{row['store_seconds']} s, peak {row['peak_in_store']} in store)")
            runs.append(row)
    out: dict[str, Any] = {"runs": runs, "window_s": window_s, "arrive_s": arrive_s,
                           "seed": seed, "repeats": repeats, "mqtt": None}
    if mqtt:
        say("MQTT path throughput")
        out["mqtt"] = mqtt_figures(mqtt_url)
    return out


def mqtt_figures(url: str | None, seconds: float = 5.0) -> dict[str, Any]:
    """The MQTT path's sustained throughput (:func:`walkout.sources.mqtt.measure_throughput`);
    ``{"skipped": why}`` when no broker can be had."""
    from walkout.sources.mqtt import LocalMosquitto, measure_throughput

    def figures(u: str) -> dict[str, Any]:
        r = measure_throughput(u, seconds=seconds)
        return {"plate_samples_per_s": round(r["plate_samples_per_s"]),
                "keypoint_frames_per_s": round(r["keypoint_frames_per_s"]), "lost": r["lost"],
                "broker": u}

    if url:
        return figures(url)
    try:
        with LocalMosquitto() as broker:
            return figures(broker.url)
    except FileNotFoundError as e:
        return {"skipped": str(e)}


def plot(figures: dict[str, Any], path: Path, goal: float = 20.0) -> None:
    """Real-time factor against shoppers (one line per store size and engine) and against
    store size (one line per shopper count), log scales, the goal drawn across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    runs = figures["runs"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (area, engine) in sorted({(r["area_m2"], r["engine"]) for r in runs}):
        rs = sorted((r for r in runs if r["area_m2"] == area and r["engine"] == engine),
                    key=lambda r: r["shoppers"])
        ax1.plot([r["shoppers"] for r in rs], [r["real_time_factor"] for r in rs], "o-",
                 label=f"{area:,.0f} m², {rs[0]['cameras']} cam, {rs[0]['plates']:,} plates"
                 + ("" if engine == "single" else f" ({engine})"))
    for (n, engine) in sorted({(r["shoppers"], r["engine"]) for r in runs}):
        rs = sorted((r for r in runs if r["shoppers"] == n and r["engine"] == engine),
                    key=lambda r: r["area_m2"])
        ax2.plot([r["area_m2"] for r in rs], [r["real_time_factor"] for r in rs], "s-",
                 label=f"{n} shoppers" + ("" if engine == "single" else f" ({engine})"))
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 20, not 2×10¹
    for ax, xl, xs in ((ax1, "shoppers in the store", [r["shoppers"] for r in runs]),
                       (ax2, "store area (m²)", [r["area_m2"] for r in runs])):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(set(xs)))  # the measured sizes, labelled plainly
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.axhline(goal, color="grey", ls="--", lw=1)
        ax.text(0.99, goal * 1.04, f"goal {goal:g}×", color="grey", fontsize=8, ha="right",
                transform=ax.get_yaxis_transform())
        ax.set_xlabel(xl)
        ax.set_ylabel("real-time factor (store s / engine CPU s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"walkout engine throughput, single process ({figures['window_s']:g} s of "
                 "store time per point; cameras 15 fps, plates 60 Hz)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
