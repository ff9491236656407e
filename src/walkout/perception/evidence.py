"""Blurred evidence clips around an event, kept under the retention policy.

A reviewer deciding a disputed pick sometimes needs to see the moment, not only the skeleton.
The stage may therefore keep a short clip around an event, but never a recognisable face: every
frame is blurred *when it enters the buffer* (the whole frame, or the person boxes the pose
backend found), so no sharp frame outlives ``push``. Clips are plain video files named by event,
and :func:`purge_clips` deletes them after the same number of days as the engine's event log
(``retention_days``, see ``walkout.service.retention``): a clip links a body to a moment and a
place exactly as a hand trace does.

A review case is its engine stream and its id together: ids (``<plate>-<stream time>``) repeat
when recordings or simulations, whose clocks start at 0, are served into one database. So
`walkout evidence` names a case's clips by both (:func:`case_clip_stem`), and the functions
here that find a case's clips take its stream. Clips named by case id alone (earlier
versions, or cut without a stream) are still read, as the clips of the only stream with a
case of that id.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

#: (x0, y0, x1, y1) in pixels.
Box = tuple[float, float, float, float]

#: a clip's name without its suffix: what ``GET /v1/ops/clips/{name}`` serves (160 characters
#: with the suffix), and never a path
_STEM = re.compile(r"^[A-Za-z0-9_.-]{1,155}$")
#: WebM with VP8: royalty-free, written by OpenCV's own FFmpeg, and played by every browser
#: (the dashboard shows clips beside a review case); MPEG-4 Part 2 plays in none of them
CLIP_SUFFIX = ".webm"
CLIP_FOURCC = "VP80"
#: clips of earlier versions, still purged by the same rule
_OLD_SUFFIXES = (".mp4",)


def blur(img: np.ndarray, boxes: list[Box] | None = None, sigma_frac: float = 0.02,
         pad_frac: float = 0.15) -> np.ndarray:
    """A blurred copy of ``img``: the whole frame when ``boxes`` is None, else each person box
    grown by ``pad_frac`` of its size (hair and hands stick out of keypoint boxes).

    The Gaussian σ is ``sigma_frac`` of the longer image side (13 px at 640 wide): faces of
    people 2-4 m under a ceiling camera span 15-40 px there, so they lose their features while
    posture and a product in the hand stay readable.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    sigma = max(1.0, sigma_frac * max(h, w))
    if boxes is None:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    out = img.copy()
    for x0, y0, x1, y1 in boxes:
        px, py = pad_frac * (x1 - x0), pad_frac * (y1 - y0)
        a, b = max(0, int(x0 - px)), max(0, int(y0 - py))
        c, d = min(w, int(np.ceil(x1 + px))), min(h, int(np.ceil(y1 + py)))
        if c > a and d > b:
            out[b:d, a:c] = cv2.GaussianBlur(img[b:d, a:c], (0, 0), sigma)
    return out


def person_boxes(keypoints: np.ndarray, min_conf: float = 0.1) -> list[Box]:
    """Boxes around each detected person's confident keypoints (``(P, 17, 3)`` pixels, COCO).

    When none of the face keypoints (nose, eyes, ears) is confident the head may lie outside
    the body's keypoints (seen from above, in any direction), so the box grows by half its
    longer side all round: blurring too much is the safe side."""
    out: list[Box] = []
    for person in keypoints:
        ok = person[:, 2] > min_conf
        if ok.sum() >= 2:
            xy = person[ok, :2]
            x0, y0 = float(xy[:, 0].min()), float(xy[:, 1].min())
            x1, y1 = float(xy[:, 0].max()), float(xy[:, 1].max())
            if not ok[:5].any():
                g = 0.5 * max(x1 - x0, y1 - y0)
                x0, y0, x1, y1 = x0 - g, y0 - g, x1 + g, y1 + g
            out.append((x0, y0, x1, y1))
    return out


@dataclass
class _Request:
    event_id: str
    t: float
    frames: list[np.ndarray] = field(default_factory=list)


class EvidenceRecorder:
    """Keeps the last ``pre_s`` seconds of *blurred* frames and writes ``pre_s + post_s`` around
    each requested event to ``out_dir/<event_id>.webm``.

    ``push`` blurs on entry (whole frame, or only person boxes when ``boxes`` are given and
    ``mode == "boxes"``); the ring buffer is bounded by time, so memory stays at
    ``pre_s × fps`` frames whatever the event rate.
    """

    def __init__(self, out_dir: Path, fps: float, pre_s: float = 3.0, post_s: float = 3.0,
                 mode: str = "frame") -> None:
        if fps <= 0 or pre_s < 0 or post_s < 0:
            raise ValueError(f"fps must be > 0 and pre_s/post_s >= 0, got {fps}, {pre_s}, "
                             f"{post_s}")
        if mode not in ("frame", "boxes"):
            raise ValueError(f"mode must be 'frame' or 'boxes', got {mode!r}")
        self.out_dir, self.fps, self.pre_s, self.post_s, self.mode = (
            out_dir, fps, pre_s, post_s, mode)
        self._ring: deque[tuple[float, np.ndarray]] = deque()
        self._open: list[_Request] = []
        self.written: list[Path] = []

    def request(self, event_id: str, t: float) -> None:
        """Ask for a clip around time ``t`` (the buffer must still hold ``t - pre_s``)."""
        if not _STEM.match(event_id):
            raise ValueError(f"event id {event_id!r} is not a safe file name "
                             "(letters, digits, '_', '-', '.'; at most 155)")
        req = _Request(event_id, t)
        req.frames = [img for ft, img in self._ring if ft >= t - self.pre_s]
        self._open.append(req)

    def push(self, t: float, img: np.ndarray, boxes: list[Box] | None = None) -> list[Path]:
        """Add one camera frame; returns the clips completed by it."""
        # boxes mode without detections blurs everything: a person the backend missed in this
        # frame would otherwise be kept with a sharp face
        safe = blur(img, boxes if self.mode == "boxes" and boxes else None)
        del img
        self._ring.append((t, safe))
        while self._ring and self._ring[0][0] < t - self.pre_s:
            self._ring.popleft()
        done: list[Path] = []
        for req in list(self._open):
            if t > req.t + self.post_s:
                done.append(self._write(req))
                self._open.remove(req)
            elif t >= req.t - self.pre_s:
                req.frames.append(safe)
        return done

    @property
    def pending(self) -> int:
        """Clips requested and not written yet (they still wait for frames after the event)."""
        return len(self._open)

    def flush(self) -> list[Path]:
        """Write the clips still open (the source ended before their ``post_s``)."""
        done = [self._write(r) for r in self._open if r.frames]
        self._open.clear()
        return done

    def _write(self, req: _Request) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{req.event_id}{CLIP_SUFFIX}"
        h, w = req.frames[0].shape[:2]
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*CLIP_FOURCC), self.fps, (w, h))
        if not vw.isOpened():
            raise OSError(f"cannot open a video writer for {path}")
        for f in req.frames:
            vw.write(f)
        vw.release()
        self.written.append(path)
        return path


def stream_key(stream: str) -> str:
    """The stream's name as part of a file name: base32 of its UTF-8, lower case, unpadded.

    Stream names hold ':' and '/' (``recording:<folder>``, ``mqtt:<store>:<start>``); base32
    has neither, nor '.', which ends the key in a clip's name, nor two letters that differ
    only in case, so two streams never share a file on a case-insensitive file system."""
    if not stream:
        raise ValueError("a stream name is needed")
    return base64.b32encode(stream.encode()).decode().rstrip("=").lower()


def case_clip_stem(stream: str | None, case_id: str, camera: str) -> str:
    """The name (without suffix) of the clip of ``camera`` around the case ``case_id`` of
    ``stream``: ``<stream key>.<case id>-cam<camera>`` (:func:`stream_key`); with no stream,
    ``<case id>-cam<camera>`` as earlier versions named it. ValueError where that is no safe
    file name the clip route serves."""
    stem = f"{case_id}-cam{camera}" if stream is None else (
        f"{stream_key(stream)}.{case_id}-cam{camera}")
    if not _STEM.match(stem):
        raise ValueError(f"clip name {stem!r} of case {case_id!r}, camera {camera!r} is not a "
                         "safe file name (letters, digits, '_', '-', '.'; at most 155)")
    return stem


def _clip_stem(p: Path) -> str | None:
    """The name of clip file ``p`` without its suffix; None for anything that is no clip."""
    suffix = next((x for x in (CLIP_SUFFIX, *_OLD_SUFFIXES) if p.name.endswith(x)), None)
    if suffix is None or not p.is_file():
        return None
    return p.name[:-len(suffix)]


def _case_of(stem: str) -> str:
    """The case (or shelf event) id a clip's stem is about: ``<id>-cam<camera>`` or ``<id>``."""
    return stem.rsplit("-cam", 1)[0]


def clips_of_case(out_dir: Path, stream: str, case_id: str, *,
                  unqualified: bool = False) -> list[tuple[str, str]]:
    """The clips `walkout evidence` cut around case ``case_id`` of ``stream``, as (file name,
    camera), sorted by name. ``unqualified``: also those named by case id alone, for the
    caller to say when no other stream has a case of this id (whose clips they may be)."""
    if not out_dir.is_dir():
        return []
    prefixes = [f"{stream_key(stream)}.{case_id}-cam"] + ([f"{case_id}-cam"] if unqualified
                                                          else [])
    out = []
    for p in sorted(out_dir.iterdir()):
        if not p.name.endswith(CLIP_SUFFIX) or not p.is_file():
            continue
        pre = next((x for x in prefixes if p.name.startswith(x)), None)
        if pre is not None and len(p.name) > len(pre) + len(CLIP_SUFFIX):
            out.append((p.name, p.name[len(pre):-len(CLIP_SUFFIX)]))
    return out


def purge_clips(out_dir: Path, now: datetime, days: int = 30,
                keep: Collection[str | tuple[str, str]] = ()) -> int:
    """Delete evidence clips written before ``now - days`` (file time), except those of the
    shelf events or cases in ``keep`` (what an undecided dispute or chargeback still rests
    on): ``(stream, id)`` keeps that stream's clips of the id and those named by the id alone
    (``<id>.webm``, ``<id>-cam<n>.webm``: whose they are is not known, the claim may rest on
    them); a bare ``id``, where the stream is not known, keeps every stream's. Returns how
    many went.

    Same rule and default as the event log's purge, so a clip never outlives the events it
    illustrates."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    if not out_dir.is_dir():
        return 0
    anywhere = {k for k in keep if isinstance(k, str)}
    named = {k[1] for k in keep if not isinstance(k, str)} | anywhere
    keyed = {(stream_key(k[0]), k[1]) for k in keep if not isinstance(k, str)}
    cutoff = (now - timedelta(days=days)).timestamp()
    n = 0
    for p in out_dir.iterdir():
        stem = _clip_stem(p)
        if stem is None or p.stat().st_mtime >= cutoff:
            continue
        key, _, rest = stem.partition(".")  # a stream's clip: <stream key>.<id>[-cam<n>]
        if ({stem, _case_of(stem)} & named or (key, rest) in keyed
                or (key, _case_of(rest)) in keyed or {rest, _case_of(rest)} & anywhere):
            continue
        p.unlink(missing_ok=True)
        n += 1
    return n


def delete_case_clips(out_dir: Path, cases: Iterable[tuple[str, str]]) -> int:
    """Delete the clips of these review cases, each ``(stream, case id)``: the stream's
    (``<stream key>.<case id>-cam<camera>.webm`` as `walkout evidence` cuts them), not another
    stream's of the same id; and those named by the case id alone (``<case id>-cam<n>.webm``,
    ``<case id>.webm`` as :class:`EvidenceRecorder` writes them, or an earlier version's
    suffix), also where another stream has a case of the id: such a clip may show the person
    the caller erases, and nothing says whose it is. Returns how many went. Names are
    compared, never built from a case id, so no id reaches outside ``out_dir``."""
    keyed = {(stream_key(stream), cid) for stream, cid in cases}
    ids = {cid for _, cid in keyed}
    if not ids or not out_dir.is_dir():
        return 0
    n = 0
    for p in out_dir.iterdir():
        stem = _clip_stem(p)
        if stem is None:
            continue
        key, _, rest = stem.partition(".")
        if ({stem, _case_of(stem)} & ids or (key, rest) in keyed
                or (key, _case_of(rest)) in keyed):
            p.unlink(missing_ok=True)
            n += 1
    return n
