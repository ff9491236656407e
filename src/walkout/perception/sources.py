"""Where frames come from: a video file read as fast as wanted, or a live stream (RTSP, HTTP,
a file being written) read continuously with reconnects.

Frames never leave perception: a source yields ``(t, image)`` pairs that the stage turns into
keypoints and then drops. Timestamps:

- video files: the container's presentation time (``CAP_PROP_POS_MSEC``), so a file with
  dropped or irregular frames keeps its true times;
- live streams: taken when the frame is grabbed (``time.time()`` at capture, as seconds since
  the source was opened), not when inference gets to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class SourceError(RuntimeError):
    """A video that cannot be opened or read."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int


def video_info(path: Path) -> VideoInfo:
    if not Path(path).is_file():
        raise SourceError(f"video file not found: {path}")
    cap = _open(str(path))
    try:
        return VideoInfo(
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(cap.get(cv2.CAP_PROP_FPS)) or 0.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
    finally:
        cap.release()


def _open(url: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(url)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open video {url!r} (missing file, bad URL or unknown codec)")
    return cap


def read_video(path: Path, stride: int = 1, limit: int | None = None) -> Iterator[
        tuple[float, np.ndarray]]:
    """``(t_s, bgr)`` of every ``stride``-th frame of a file; ``t`` from the container."""
    if not Path(path).is_file():
        raise SourceError(f"video file not found: {path}")
    cap = _open(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    try:
        i = 0
        n = 0
        while limit is None or n < limit:
            if not cap.grab():
                return
            if i % stride == 0:
                ok, img = cap.retrieve()
                if not ok:
                    return
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                # Some demuxers report 0 for every frame; fall back on the index then.
                t = ms / 1000.0 if ms > 0 or i == 0 or fps <= 0 else i / fps
                yield t, img
                n += 1
            i += 1
    finally:
        cap.release()


@dataclass(slots=True)
class StreamStats:
    """What a live source went through (read these while it runs: plain counters)."""

    grabbed: int = 0
    #: frames overwritten in the one-frame slot before the consumer took them (consumer slower
    #: than the camera); the consumer's own even skipping is counted by the stage
    overwritten: int = 0
    reconnects: int = 0
    failures: int = 0  # open attempts that failed
    gaps_s: list[float] = field(default_factory=list)  # lengths of outages


class StreamSource:
    """A live camera stream read on its own thread into a one-frame slot.

    The reader grabs continuously (so the decoder never falls behind the camera) and keeps only
    the newest frame; a slow consumer therefore skips frames instead of lagging, and each skip is
    counted. On end of stream or a read error it reopens the URL with exponential backoff
    (``retry_s`` doubling up to ``max_retry_s``) until :meth:`close` — or, for a finite file with
    ``loop=False``, stops once reopening yields nothing new after ``give_up_s``.
    """

    def __init__(
        self,
        url: str,
        *,
        retry_s: float = 0.2,
        max_retry_s: float = 5.0,
        give_up_s: float | None = None,
        clock: Callable[[], float] = time.time,
        opener: Callable[[str], cv2.VideoCapture] = _open,
    ) -> None:
        self.url = url
        self.stats = StreamStats()
        self._retry, self._max_retry, self._give_up = retry_s, max_retry_s, give_up_s
        self._clock, self._opener = clock, opener
        self._t0 = clock()
        self._cond = threading.Condition()
        self._slot: tuple[float, np.ndarray] | None = None
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"stream:{url}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self._retry
        down_since: float | None = None
        while not self._stop.is_set():
            try:
                cap = self._opener(self.url)
            except SourceError:
                self.stats.failures += 1
                down_since = down_since if down_since is not None else self._clock()
                if self._give_up is not None and self._clock() - down_since > self._give_up:
                    break
                self._stop.wait(delay)
                delay = min(2 * delay, self._max_retry)
                continue
            if down_since is not None:
                self.stats.reconnects += 1
                self.stats.gaps_s.append(self._clock() - down_since)
            got_any = False
            try:
                while not self._stop.is_set():
                    if not cap.grab():
                        break
                    t = self._clock() - self._t0  # capture time, before decoding
                    ok, img = cap.retrieve()
                    if not ok:
                        break
                    got_any = True
                    delay = self._retry
                    with self._cond:
                        if self._slot is not None:
                            self.stats.overwritten += 1
                        self._slot = (t, img)
                        self.stats.grabbed += 1
                        self._cond.notify_all()
            finally:
                cap.release()
            down_since = self._clock()
            if not got_any:
                self.stats.failures += 1
                if self._give_up is not None and self._clock() - down_since > self._give_up:
                    break
            self._stop.wait(delay)
            delay = min(2 * delay, self._max_retry)
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def read(self, timeout_s: float | None = None) -> tuple[float, np.ndarray] | None:
        """The newest frame not read yet; None once the source has given up (or timed out)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._slot is not None or self._done, timeout_s)
            if not ok or self._slot is None:
                return None
            frame, self._slot = self._slot, None
            return frame

    @property
    def finished(self) -> bool:
        """The reader has stopped (closed, or gave up reconnecting) and no frame is waiting."""
        with self._cond:
            return self._done and self._slot is None

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        while (f := self.read()) is not None:
            yield f

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
