"""Commands of the Ray scale-out (issue 8): `walkout bench ray`.

`walkout replay --ray` and `walkout serve --ray` live in walkout.cli beside their commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from walkout.commands import JsonOpt, print_json
from walkout.commands.say import dim, error


def register(app: Any, bench_app: Any, store_app: Any, aifi_app: Any) -> None:
    from walkout.cli import _store

    @bench_app.command("ray")
    def bench_ray(
        ray: Annotated[str, typer.Option("--ray", help="Ray cluster address (host:port)")],
        store: Annotated[str, typer.Option("--store", help="shipped store or store YAML")]
        = "small",
        shoppers: Annotated[int, typer.Option(min=0, help="simulated shoppers")] = 10,
        seed: Annotated[int, typer.Option(min=0, help="random seed of the simulation")] = 1,
        zones: Annotated[int | None, typer.Option(
            help="shelf zones (default: one per CPU of the cluster)")] = None,
        areas: Annotated[int | None, typer.Option(
            help="floor areas (default: one per CPU of the cluster)")] = None,
        json_path: JsonOpt = None,
    ) -> None:
        """One period through the single-process engine and on a Ray cluster: throughput,
        per-partition costs and the overhead per round trip and per event (JSON)."""
        from walkout.bench.distributed import run_ray_bench
        from walkout.distributed import RayError

        for name, v in (("--zones", zones), ("--areas", areas), ("--shoppers", shoppers)):
            if v is not None and v < 1:
                error(f"{name} must be at least 1, got {v}")
                raise typer.Exit(2)
        try:
            figures = run_ray_bench(_store(store), shoppers, seed, ray, zones, areas,
                                    lambda m: dim(f"{m}..."))
        except RayError as e:
            error(f"--ray: {e}")
            raise typer.Exit(2) from e
        print_json(figures, json_path)
