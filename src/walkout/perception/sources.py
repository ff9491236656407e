"""Where frames come from: a video file read as fast as wanted, or a live stream (RTSP, HTTP,
or a file played at its frame rate) read continuously with reconnects.

Frames never leave perception: a source yields ``(t, image)`` pairs that the stage turns into
keypoints and then drops. Timestamps:

- video files: the container's presentation time (``CAP_PROP_POS_MSEC``), so a file with
  dropped or irregular frames keeps its true times;
- live streams: taken when the frame is grabbed (``time.time()`` at capture, as seconds since
  the source was opened), not when inference gets to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


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
    #: than the camera), and the one left unread at :meth:`StreamSource.close`; the consumer's
    #: own even skipping is counted by the stage. ``grabbed`` = frames read + ``overwritten``.
    overwritten: int = 0
    reconnects: int = 0
    failures: int = 0  # connection attempts that gave no frame
    gaps_s: list[float] = field(default_factory=list)  # lengths of outages


def _is_file(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _open_stream(url: str, open_timeout_s: float, read_timeout_s: float) -> cv2.VideoCapture:
    """FFmpeg capture with bounded waits: its defaults block 30 s on a camera that hangs with
    its socket open, and so hold up reconnecting and :meth:`StreamSource.close`."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, round(1000 * open_timeout_s)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, round(1000 * read_timeout_s))])
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open stream {url!r}")
    return cap


class StreamSource:
    """A live camera stream read on its own thread into a one-frame slot.

    The reader grabs continuously (so the decoder never falls behind the camera) and keeps only
    the newest frame; a slow consumer therefore skips frames instead of lagging, and each skip is
    counted. A camera silent for ``read_timeout_s`` counts as lost. A lost stream is reopened
    with exponential backoff (``retry_s`` doubling up to ``max_retry_s``; reset only by a
    session that lasted longer than ``max_retry_s``, so a camera that drops every connection is
    not redialled at full rate) until :meth:`close`, or until it has been down ``give_up_s``.
    A stream that has never delivered a frame gives up after ``connect_s`` and says why in
    :attr:`error`. Losses, returns and giving up are logged (``walkout.perception.sources``).

    A local file (a path or ``file://``) is played once at its own frame rate, as a camera would
    deliver it, and its end is the end of the stream.
    """

    def __init__(
        self,
        url: str,
        *,
        retry_s: float = 0.2,
        max_retry_s: float = 5.0,
        give_up_s: float | None = None,
        connect_s: float | None = 30.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        opener: Callable[[str], cv2.VideoCapture] | None = None,
    ) -> None:
        self.url = url
        self._file = _is_file(url)
        if self._file and not Path(url.removeprefix("file://")).is_file():
            raise SourceError(f"video file not found: {url}")
        self.stats = StreamStats()
        self.error: str | None = None  # why the reader gave up, if it did
        self._retry, self._max_retry, self._give_up = retry_s, max_retry_s, give_up_s
        self._connect = connect_s
        self._clock = clock
        self._opener = opener or (lambda u: _open_stream(u, open_timeout_s, read_timeout_s))
        self._t0 = clock()
        #: the clock's reading at stream time 0 (seconds since the epoch with the default
        #: clock): a frame's capture time on the wall is ``origin + t``
        self.origin = self._t0
        self._cond = threading.Condition()
        self._slot: tuple[float, np.ndarray] | None = None
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"stream:{url}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._reconnecting()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _reconnecting(self) -> None:
        delay = self._retry
        down_since = self._clock()  # start of the current outage (or of the first dial)
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            session_start = self._clock()
            got = 0
            try:
                cap = self._opener(self.url)
            except SourceError:
                cap = None
            if cap is not None:
                try:
                    got = self._pump(cap, down_since, attempts)
                finally:
                    cap.release()
            if self._stop.is_set():
                return
            if got:
                if self._file:
                    return  # the end of a file is the end of its stream
                attempts = 0
                down_since = self._clock()
                log.warning("stream %s lost after %d frames; reconnecting", self.url, got)
                if down_since - session_start > self._max_retry:
                    delay = self._retry
            else:
                self.stats.failures += 1
                if self._file:
                    self._fail(f"no frame could be read from {self.url} (corrupt or empty)")
                    return
                if attempts == 1 and self.stats.grabbed == 0:
                    log.warning("cannot open stream %s; retrying", self.url)
            limits = [x for x in (self._give_up, None if self.stats.grabbed else self._connect)
                      if x is not None]
            down = self._clock() - down_since
            if limits and down > min(limits):
                what = ("no frame from" if self.stats.grabbed == 0
                        else "gave up on lost stream")
                self._fail(f"{what} {self.url} in {down:.1f} s ({attempts} attempts: "
                           "connection refused, bad URL, unsupported format or a silent camera; "
                           "FFmpeg's messages above say which)")
                return
            self._stop.wait(delay)
            delay = min(2 * delay, self._max_retry)

    def _pump(self, cap: cv2.VideoCapture, down_since: float, attempts: int) -> int:
        """Grab until the stream ends, fails or :meth:`close`; returns frames grabbed."""
        got = 0
        fps = cap.get(cv2.CAP_PROP_FPS) if self._file else 0.0
        while not self._stop.is_set():
            if not cap.grab():
                break
            if self._file:  # play at the file's own rate
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                pts = ms / 1000.0 if ms > 0 or got == 0 or fps <= 0 else got / fps
                if self._stop.wait(max(0.0, self._t0 + pts - self._clock())):
                    break
            t = self._clock() - self._t0  # capture time, before the consumer sees it
            ok, img = cap.retrieve()
            if not ok:
                break
            if got == 0 and self.stats.grabbed:  # the first frame after an outage
                gap = self._clock() - down_since
                self.stats.reconnects += 1
                self.stats.gaps_s.append(gap)
                log.warning("stream %s back after %.1f s (%d attempts)", self.url, gap, attempts)
            got += 1
            with self._cond:
                if self._slot is not None:
                    self.stats.overwritten += 1
                self._slot = (t, img)
                self.stats.grabbed += 1
                self._cond.notify_all()
        return got

    def _fail(self, message: str) -> None:
        self.error = message
        if self.stats.grabbed:  # else the consumer raises it (perceive_stream does)
            log.error("%s", message)

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
        """Stop the reader and wait for it: a blocked read ends within ``read_timeout_s``
        (an open within ``open_timeout_s``). A frame left unread counts as dropped."""
        self._stop.set()
        self._thread.join()
        with self._cond:
            if self._slot is not None:
                self.stats.overwritten += 1
                self._slot = None

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
