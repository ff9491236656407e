"""Big stores: ``walkout store generate`` and ``walkout bench scale``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from walkout.commands import ForceOpt, JsonOpt, finite, output_file_problem, print_json
from walkout.commands.say import dim, error, say

console = Console()


def register(app: Any, bench_app: Any, store_app: Any, aifi_app: Any) -> None:
    store_app.command("generate")(store_generate)
    bench_app.command("scale")(bench_scale)


def store_generate(
    out: Annotated[Path, typer.Option("--out", help="store YAML to write")],
    area: Annotated[float, typer.Option(min=20, max=50_000, callback=finite,
                                        help="floor area, m²")] = 1000.0,
    cameras: Annotated[int, typer.Option(min=1, help="ceiling cameras")] = 40,
    plates: Annotated[int, typer.Option(
        min=1, help="weighing plates (16 per gondola unit)")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="random seed of the planogram")] = 1,
    name: Annotated[str | None, typer.Option(help="store name (default from the sizes)")]
    = None,
    force: ForceOpt = False,
) -> None:
    """Generate a store of any size: aisles of island gondolas, ceiling cameras covering the
    floor, entry and exit gates, a planogram of the shipped catalogue (docs/store-format.md)."""
    from walkout.store.bigstore import StoreSizeError, coverage, generate_store
    from walkout.store.loader import StoreFileError, dump_store, load_store

    problem = output_file_problem(out, force)
    if problem:
        error(f"--out {out}: {problem}")
        raise typer.Exit(2)
    try:
        st = generate_store(area, cameras, plates, seed, name)
    except StoreSizeError as e:
        error(str(e))
        raise typer.Exit(2) from e
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        dump_store(st, out)
    except OSError as e:
        error(f"--out {out}: {e.strerror or e}")
        raise typer.Exit(2) from e
    try:
        back = load_store(out)  # what was written passes the strict loader
    except StoreFileError as e:  # a bug here, never the user's input
        error(f"the generated store does not load back: {e}")
        raise typer.Exit(1) from e
    cov = coverage(back, spacing_m=1.0)
    console.print(
        f"wrote {out}: '{back.name}', {len(back.gondolas)} gondola units, {len(back.plates):,} "
        f"plates, {len(back.catalogue)} products, {len(back.cameras)} cameras; floor at hand "
        f"height seen by >= 2 cameras: {cov['seen_2']:.0%} (mean {cov['mean_views']:.1f} views)")


def bench_scale(
    area: Annotated[list[float] | None, typer.Option(
        "--area", help="store sizes in m² (repeatable; default 100 300 1000 3000)")] = None,
    shoppers: Annotated[list[int] | None, typer.Option(
        "--shoppers", help="shopper counts (repeatable; default 10 50)")] = None,
    seed: Annotated[int, typer.Option(min=0, help="random seed of stores and simulations")] = 1,
    window: Annotated[float, typer.Option(help="store seconds processed per point")] = 90.0,
    arrive: Annotated[float, typer.Option(help="shoppers arrive within this many seconds")]
    = 20.0,
    mqtt: Annotated[str | None, typer.Option(
        help="broker for the MQTT figures, mqtt://HOST:PORT (default: a private Mosquitto)")]
    = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="skip the MQTT figures")] = False,
    profile: Annotated[bool, typer.Option(
        help="also profile each point (cProfile): seconds per engine stage")] = False,
    repeats: Annotated[int, typer.Option(
        help="engine runs per point; the median CPU time is reported")] = 3,
    plot: Annotated[Path | None, typer.Option(help="PNG of the curve to write")] = None,
    json_path: JsonOpt = None,
) -> None:
    """Engine throughput (real-time factor) against store size and shoppers, single process,
    and the MQTT path's throughput; JSON {"runs": [...], "mqtt": {...}}."""
    from walkout.bench.scale import DEFAULT_AREAS, DEFAULT_SHOPPERS, run_scale
    from walkout.bench.scale import plot as draw
    from walkout.sources.mqtt import split_url
    from walkout.store.bigstore import StoreSizeError

    areas, counts = area or list(DEFAULT_AREAS), shoppers or list(DEFAULT_SHOPPERS)
    bad = [a for a in areas if not 40 <= a <= 50_000] + [n for n in counts if n < 1]
    if mqtt is not None and not no_mqtt:
        try:
            split_url(mqtt)
        except ValueError as e:
            error(f"--mqtt: {e}")
            raise typer.Exit(2) from e
    if bad or not 0 < window < 86400 or not 0 < arrive < 86400 or repeats < 1:
        got = bad or [window, arrive, repeats]
        error("--area must be 40-50,000 m², --shoppers >= 1, --window and "
              f"--arrive > 0, --repeats >= 1 (got {got})")
        raise typer.Exit(2)
    try:
        figures = run_scale(areas, counts, seed, window, arrive, mqtt_url=mqtt,
                            mqtt=not no_mqtt, profile=profile, repeats=repeats,
                            progress=lambda m: dim(str(m)))
    except StoreSizeError as e:
        error(str(e))
        raise typer.Exit(2) from e
    print_json(figures, json_path)
    if plot:
        draw(figures, plot)
        say(f"plot written to {plot}")
