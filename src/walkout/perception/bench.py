"""`walkout bench perception`: frames per second of each backend on the real AiFi footage
(one stream; several streams at once), keypoint agreement between backends, and whether a GPU
was used.

Two clocks are reported because the box may be shared: ``fps_wall`` is what this run saw;
``cpu_ms_per_frame`` is the process CPU time per frame (all threads), which other load on the
machine barely changes. ``fps_cpu`` = 1 / CPU seconds per frame is the rate of one stream on
ONE otherwise idle core (a floor: a second thread can only add to it); for several independent
streams ``fps_cpu_total`` = cores / CPU seconds per frame (the streams fill every core).
Decoding is timed apart from inference.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from walkout.perception.backends import PoseBackend, Poses, create_backend
from walkout.perception.config import PerceptionConfig
from walkout.perception.sources import read_video

CPS_TEST_01 = tuple(f"cps-test-01-nodepth-cam{c}.mp4" for c in (1, 3, 5, 7))


def _frames(videos: Sequence[Path], n: int) -> tuple[list[list[np.ndarray]], float]:
    t0 = time.perf_counter()
    out = [[img for _, img in read_video(v, limit=n)] for v in videos]
    total = sum(len(f) for f in out)
    return out, (time.perf_counter() - t0) / max(total, 1)


def _time(backend: PoseBackend, frames: list[np.ndarray]) -> tuple[float, float, list[Poses]]:
    backend.infer(frames[0])  # warm-up (allocations, first-call compilation)
    c0, w0 = time.process_time(), time.perf_counter()
    poses = [backend.infer(f) for f in frames]
    return time.perf_counter() - w0, time.process_time() - c0, poses


def _agreement(a: list[Poses], b: list[Poses], min_conf: float = 0.3) -> dict[str, Any]:
    """People matched by hip centre; joint distance over torso length (PCK-style)."""
    rel: list[float] = []
    same_count = 0
    for pa, pb in zip(a, b, strict=True):
        same_count += pa.keypoints.shape[0] == pb.keypoints.shape[0]
        for ka in pa.keypoints:
            if pb.keypoints.shape[0] == 0:
                break
            hips_a = ka[[11, 12], :2].mean(0)
            d = [np.linalg.norm(kb[[11, 12], :2].mean(0) - hips_a) for kb in pb.keypoints]
            kb = pb.keypoints[int(np.argmin(d))]
            torso = np.linalg.norm(ka[[5, 6], :2].mean(0) - hips_a)
            if torso < 10 or min(d) > torso:
                continue
            both = (ka[:, 2] >= min_conf) & (kb[:, 2] >= min_conf)
            rel += list(np.linalg.norm(ka[both, :2] - kb[both, :2], axis=1) / torso)
    r = np.array(rel)
    return {
        "frames": len(a), "same_people_count": round(same_count / max(len(a), 1), 3),
        "joints_compared": len(rel),
        "median_dist_over_torso": round(float(np.median(r)), 3) if len(r) else None,
        "pck_0_2": round(float((r < 0.2).mean()), 3) if len(r) else None,
        "pck_0_5": round(float((r < 0.5).mean()), 3) if len(r) else None,
    }


def run_perception_bench(
    videos_dir: Path, models_dir: Path, frames: int = 100,
    backends: Sequence[str] = ("movenet", "openvino-hpe"), streams: int = 4,
    onnx_model: str = "", progress: Any = None,
) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    videos = [videos_dir / v for v in CPS_TEST_01]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"AiFi cps-test-01 videos missing: {', '.join(missing)}")
    say("decoding")
    per_video, decode_s = _frames(videos[:max(streams, 1)], frames)
    single = per_video[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {"cpu_cores": cores, "processor": platform.processor() or platform.machine(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "video": f"{CPS_TEST_01[0]} ({single[0].shape[1]}x{single[0].shape[0]})",
        "frames_per_stream": len(single),
        "decode_ms_per_frame": round(1000 * decode_s, 2),
        "backends": {},
    }
    names = list(backends) + (["onnx"] if onnx_model else [])
    results: dict[str, list[Poses]] = {}
    for name in names:
        say(f"{name}: one stream")
        cfg = PerceptionConfig(backend=name, models_dir=models_dir, threads=cores or 1,  # type: ignore[arg-type]
                               onnx={"path": onnx_model or "unset.onnx"})
        backend = create_backend(cfg)
        wall, cpu, poses = _time(backend, single)
        results[name] = poses
        n = len(single)
        fig: dict[str, Any] = {
            "threads": cfg.threads,
            "single_stream": {
                "fps_wall": round(n / wall, 1),
                "cpu_ms_per_frame": round(1000 * cpu / n, 2),
                "fps_cpu": round(n / max(cpu, 1e-9), 1),
                "people_per_frame": round(sum(p.keypoints.shape[0] for p in poses) / n, 2),
            },
        }
        if hasattr(backend, "providers"):
            fig["providers"] = list(backend.providers)
        if streams > 1:
            say(f"{name}: {streams} streams")
            one = cfg.model_copy(update={"threads": 1})
            stream_backends = [create_backend(one) for _ in range(streams)]
            for b, fr in zip(stream_backends, per_video, strict=False):
                b.infer(fr[0])
            c0, w0 = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(streams) as pool:
                list(pool.map(lambda bf: [bf[0].infer(f) for f in bf[1]],
                              zip(stream_backends, per_video, strict=False)))
            wall_m, cpu_m = time.perf_counter() - w0, time.process_time() - c0
            total = sum(len(f) for f in per_video[:streams])
            fig["multi_stream"] = {
                "streams": min(streams, len(per_video)), "threads_per_stream": 1,
                "fps_wall_total": round(total / wall_m, 1),
                "cpu_ms_per_frame": round(1000 * cpu_m / total, 2),
                "fps_cpu_total": round(total * (cores or 1) / max(cpu_m, 1e-9), 1),
            }
        out["backends"][name] = fig
    if "movenet" in results and "openvino-hpe" in results:
        out["agreement_movenet_vs_openvino_hpe"] = _agreement(
            results["movenet"], results["openvino-hpe"])
    try:
        import onnxruntime as ort

        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        gpu = False
    out["gpu"] = ("CUDA EP available: run with --onnx-model for GPU figures" if gpu
                  else "none on this machine (no GPU figures)")
    out["goal_30fps_one_stream_default_backend"] = (
        out["backends"].get("movenet", {}).get("single_stream", {}).get("fps_cpu", 0) >= 30)
    return out
