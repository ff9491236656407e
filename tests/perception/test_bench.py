"""`walkout bench perception` on a few real frames: the JSON it promises."""

from __future__ import annotations

from pathlib import Path

from walkout.perception.bench import run_perception_bench


def test_bench_reports_both_backends_and_agreement(models_dir: Path, videos_dir: Path):
    f = run_perception_bench(videos_dir, models_dir, frames=6, streams=2)
    assert f["frames_per_stream"] == 6
    for name in ("movenet", "openvino-hpe"):
        b = f["backends"][name]
        assert b["single_stream"]["fps_wall"] > 0 and b["single_stream"]["cpu_ms_per_frame"] > 0
        assert b["multi_stream"]["streams"] == 2
    ag = f["agreement_movenet_vs_openvino_hpe"]
    assert ag["joints_compared"] > 0 and 0 <= ag["pck_0_2"] <= 1
    assert "gpu" in f
