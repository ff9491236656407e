"""Running the stage over a source: a whole video file, or a live stream until stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from walkout.events import KeypointFrame
from walkout.perception.backends import create_backend
from walkout.perception.config import PerceptionConfig
from walkout.perception.sources import SourceError, StreamSource, read_video, video_info
from walkout.perception.stage import FrameGovernor, PerceptionStage
from walkout.store.model import Camera


@dataclass(frozen=True, slots=True)
class RunResult:
    frames: list[KeypointFrame]  # empty when the run was told not to keep them
    stats: dict[str, object]


def _behind_s(start: float, t: float, speed: float) -> float:
    """How far the wall clock has run past frame time ``t`` of a replay begun at ``start``."""
    return time.perf_counter() - (start + t / speed)


def perceive_video(
    video: Path, camera_id: str, camera: Camera | None, config: PerceptionConfig, *,
    realtime: bool = False, limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    sink: Callable[[KeypointFrame], None] | None = None, keep: bool = True,
    stop: threading.Event | None = None,
) -> RunResult:
    """Keypoint frames of a video file; ``realtime`` replays it at its frame rate and lets the
    governor skip frames evenly when reading and inference cannot keep up (as a live camera
    would): a frame whose time has passed is still released, and the governor, told what each
    frame costs to read and to infer, takes the fraction that keeps the run on the video's
    clock. How far it fell behind is reported (``lag_s`` at the end, ``lag_max_s``).

    A video that ends before the frame count its container lists (truncated, or unreadable
    from some point on) is a :class:`SourceError`, not a silently shorter recording.

    ``sink`` gets each frame as it is made (a live publisher); without ``keep`` the frames
    are not collected (memory stays flat however long the run). ``stop`` (Ctrl-C) ends the
    run early with what it made (``stats["stopped"]``)."""
    info = video_info(video)
    backend = create_backend(config)
    gov = FrameGovernor(fps=info.fps or 10.0) if realtime else None
    stage = PerceptionStage(backend, camera_id, camera, undistort=config.undistort, governor=gov)
    frames = iter(read_video(video, limit=limit))
    out = []
    start = time.perf_counter()
    lag = lag_max = 0.0
    stopped = False
    while True:
        if stop is not None and stop.is_set():
            stopped = True
            break
        r0 = time.perf_counter()
        got = next(frames, None)
        if got is None:
            break
        t, img = got
        if gov is not None:
            gov.observe_overhead(time.perf_counter() - r0)
            lag = _behind_s(start, t, 1.0)
            if lag < 0:
                time.sleep(-lag)
            lag_max = max(lag_max, lag)
        f = stage.process(t, img)
        del img, got  # the frame is dropped here: only keypoints leave
        if f is not None:
            if keep:
                out.append(f)
            if sink:
                sink(f)
        if progress:
            progress(stage.stats.frames_in)
    n = stage.stats.frames_in
    if (not stopped and info.frames > 0 and (limit is None or n < limit)
            and n < info.frames - max(2, info.frames // 100)):
        raise SourceError(f"{video}: ends at frame {n} of the {info.frames} its container "
                          "lists (truncated, or unreadable from there on)")
    stats: dict[str, object] = {
        "backend": backend.name, "video": str(video), "camera": camera_id,
        "fps_in": info.fps, "size": [info.width, info.height], "realtime": realtime,
        **stage.stats.as_dict(),
    }
    if stopped:
        stats["stopped"] = True
    if realtime:
        stats |= {"lag_s": round(max(lag, 0.0), 3), "lag_max_s": round(lag_max, 3)}
    return RunResult(out, stats)


def perceive_stream(
    url: str, camera_id: str, camera: Camera | None, config: PerceptionConfig, *,
    duration_s: float | None = None, max_frames: int | None = None,
    sink: Callable[[KeypointFrame], None] | None = None, give_up_s: float | None = None,
    connect_s: float | None = 30.0, stop: threading.Event | None = None,
    started: Callable[[], None] | None = None, keep: bool = True,
    on_origin: Callable[[float], None] | None = None,
) -> RunResult:
    """Keypoints of a live stream (RTSP, HTTP, file), reconnecting on loss, until
    ``duration_s``/``max_frames``, until ``stop`` is set (Ctrl-C), or until the source ends (a
    file) or gives up (``give_up_s`` down). ``stats["ended"]`` says which.

    A stream that delivers no frame within ``connect_s`` is a :class:`SourceError` naming it.
    ``started`` is called once the model is loaded and the source is reading. ``sink`` gets
    each frame as it is made; without ``keep`` the frames are not collected (a camera that
    runs all day would hold them all, ~1 KB each). ``on_origin`` gets the wall-clock time of
    the stream's t = 0 once it is open.
    ``dropped_behind`` counts every frame grabbed but not handed to the stage (the camera
    outran inference), so ``grabbed = frames_in + dropped_behind``."""
    backend = create_backend(config)
    stage = PerceptionStage(backend, camera_id, camera, undistort=config.undistort)
    out: list[KeypointFrame] = []
    made = 0
    t_end = None if duration_s is None else time.monotonic() + duration_s
    ended = "stopped"
    with StreamSource(url, give_up_s=give_up_s, connect_s=connect_s) as src:
        if on_origin:  # a publisher puts its frames on the wall clock (docs/mqtt.md)
            on_origin(src.origin)
        if started:
            started()
        while True:
            if stop is not None and stop.is_set():
                break
            if t_end is not None and time.monotonic() >= t_end:
                ended = "duration"
                break
            got = src.read(0.25)
            if got is None:
                if src.finished:
                    ended = "gave_up" if src.error else "source_ended"
                    break
                continue
            t, img = got
            f = stage.process(t, img)
            del img, got
            if f is not None:
                made += 1
                if keep:
                    out.append(f)
                if sink:
                    sink(f)
            if max_frames is not None and made >= max_frames:
                ended = "max_frames"
                break
    s = src.stats  # read after close: the frame it found unread is counted
    if src.error and s.grabbed == 0:
        raise SourceError(src.error)
    stats: dict[str, object] = {
        "backend": backend.name, "url": url, "camera": camera_id, **stage.stats.as_dict(),
        "grabbed": s.grabbed, "dropped_behind": s.overwritten, "reconnects": s.reconnects,
        "open_failures": s.failures, "outages_s": [round(g, 2) for g in s.gaps_s],
        "ended": ended,
    }
    return RunResult(out, stats)
