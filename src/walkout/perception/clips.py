"""Evidence clips for review cases, cut from a camera's video after the engine has run.

A reviewer deciding a case sometimes needs to see the moment, not only the skeletons. With
recorded video the engine runs after perception (``walkout perceive`` → ``walkout replay``),
so which moments matter is known only then: this cuts a short clip around each review case
from the camera's file, every frame blurred as it is read (:class:`EvidenceRecorder`), so no
sharp frame is ever written. Video time is engine time, as in ``walkout perceive``. The clips
go to the service's ``evidence_dir`` and are purged with the event log. Each is named by the
case's stream and id (:func:`~walkout.perception.evidence.case_clip_stem`): a recording served
twice, or two simulations, open cases of the same id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walkout.perception.evidence import EvidenceRecorder, person_boxes
from walkout.perception.sources import read_video, video_info


@dataclass(frozen=True, slots=True)
class ClipRequest:
    """A clip to cut: its file name (without suffix) and the moment it is centred on."""

    name: str
    t: float


def cut_clips(video: Path, requests: Sequence[ClipRequest], out_dir: Path, *,
              pre_s: float = 3.0, post_s: float = 3.0, mode: str = "frame",
              backend: Any = None) -> tuple[list[Path], list[str]]:
    """Write a blurred clip for each request the video covers; returns the clips written and
    the names of the requests it does not cover (before its start or after its end).

    ``mode`` "boxes" blurs only the people ``backend`` finds (a frame where it finds nobody is
    blurred all over); "frame" blurs every frame whole and needs no model. The video is read
    once, and only as far as the last clip needs."""
    if mode == "boxes" and backend is None:
        raise ValueError("mode 'boxes' needs a pose backend to find the people")
    info = video_info(video)
    rec = EvidenceRecorder(out_dir, info.fps or 10.0, pre_s, post_s, mode)
    todo = sorted(requests, key=lambda r: r.t)
    asked: set[str] = set()
    k = 0
    for t, img in read_video(video):
        while k < len(todo) and todo[k].t - pre_s <= t:
            if todo[k].t + post_s >= t:  # the video still covers part of its window
                rec.request(todo[k].name, todo[k].t)
                asked.add(todo[k].name)
            k += 1
        boxes = person_boxes(backend.infer(img).keypoints) if mode == "boxes" else None
        rec.push(t, img, boxes)
        del img  # only the blurred copy is kept
        if k == len(todo) and not rec.pending:
            break
    rec.flush()
    return rec.written, [r.name for r in todo if r.name not in asked]
