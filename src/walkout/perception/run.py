"""Running the stage over a source: a whole video file, or a live stream until stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from walkout.events import KeypointFrame
from walkout.perception.backends import create_backend
from walkout.perception.config import PerceptionConfig
from walkout.perception.sources import StreamSource, read_video, video_info
from walkout.perception.stage import FrameGovernor, PerceptionStage
from walkout.store.model import Camera


@dataclass(frozen=True, slots=True)
class RunResult:
    frames: list[KeypointFrame]
    stats: dict[str, object]


def _paced(frames: Iterable[tuple[float, np.ndarray]], speed: float) -> Iterable[
        tuple[float, np.ndarray]]:
    """Frames released on the wall clock at ``speed`` × their timestamps (a camera replay).

    A frame whose time has already passed is still released (the governor decides whether to
    skip it), so a slow consumer sees the camera run ahead, as it would live.
    """
    start = time.perf_counter()
    for t, img in frames:
        wait = start + t / speed - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield t, img


def perceive_video(
    video: Path, camera_id: str, camera: Camera | None, config: PerceptionConfig, *,
    realtime: bool = False, limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Keypoint frames of a video file; ``realtime`` replays it at its frame rate and lets the
    governor skip frames evenly when inference cannot keep up (as a live camera would)."""
    info = video_info(video)
    backend = create_backend(config)
    gov = FrameGovernor(fps=info.fps or 10.0) if realtime else None
    stage = PerceptionStage(backend, camera_id, camera, undistort=config.undistort, governor=gov)
    src: Iterable[tuple[float, np.ndarray]] = read_video(video, limit=limit)
    if realtime:
        src = _paced(src, 1.0)
    out = []
    for t, img in src:
        f = stage.process(t, img)
        del img  # the frame is dropped here: only keypoints leave
        if f is not None:
            out.append(f)
        if progress:
            progress(stage.stats.frames_in)
    stats: dict[str, object] = {
        "backend": backend.name, "video": str(video), "camera": camera_id,
        "fps_in": info.fps, "size": [info.width, info.height], "realtime": realtime,
        **stage.stats.as_dict(),
    }
    return RunResult(out, stats)


def perceive_stream(
    url: str, camera_id: str, camera: Camera | None, config: PerceptionConfig, *,
    duration_s: float | None = None, max_frames: int | None = None,
    sink: Callable[[KeypointFrame], None] | None = None, give_up_s: float | None = None,
) -> RunResult:
    """Keypoints of a live stream (RTSP, HTTP, file), reconnecting on loss, until
    ``duration_s``/``max_frames`` or until the source gives up (``give_up_s`` down)."""
    backend = create_backend(config)
    stage = PerceptionStage(backend, camera_id, camera, undistort=config.undistort)
    out: list[KeypointFrame] = []
    t_end = None if duration_s is None else time.monotonic() + duration_s
    with StreamSource(url, give_up_s=give_up_s) as src:
        while t_end is None or time.monotonic() < t_end:
            got = src.read(0.25)
            if got is None:
                if src.finished:
                    break
                continue
            t, img = got
            f = stage.process(t, img)
            del img, got
            if f is not None:
                out.append(f)
                if sink:
                    sink(f)
            if max_frames is not None and len(out) >= max_frames:
                break
        s = src.stats
        stats: dict[str, object] = {
            "backend": backend.name, "url": url, "camera": camera_id, **stage.stats.as_dict(),
            "grabbed": s.grabbed, "dropped_behind": s.overwritten, "reconnects": s.reconnects,
            "open_failures": s.failures, "outages_s": [round(g, 2) for g in s.gaps_s],
        }
    return RunResult(out, stats)
