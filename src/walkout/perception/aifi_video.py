"""`walkout aifi video`: the AiFi cps-test-01 case from its four ceiling videos alone.

Perception on each video (cams 1, 3, 5, 7 of ``aifi-nanostore``), the multi-camera tracker,
then hand-in-shelf interactions: a wrist inside the reach zone of a shelf (the shelf's
height band, the gondola's width, from ``reach_m`` in front of it to its back) for at least
``min_dwell_s``. The footage starts with the shopper already inside and has no gate events, so
the tracker is given one entry area covering the whole floor (anyone seen may be born).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.events import WRISTS, KeypointFrame, Track
from walkout.perception.camera_file import load_camera_file, with_cameras
from walkout.perception.config import PerceptionConfig
from walkout.perception.run import perceive_video
from walkout.store import load_store
from walkout.store.model import Box, Gate, Store
from walkout.tracking import Tracker, TrackerConfig

VIDEO_CAMERAS = {"cam1": "cps-test-01-nodepth-cam1.mp4", "cam3": "cps-test-01-nodepth-cam3.mp4",
                 "cam5": "cps-test-01-nodepth-cam5.mp4", "cam7": "cps-test-01-nodepth-cam7.mp4"}
#: The cps-test-01 cameras recalibrated on the footage (``walkout aifi calibrate``), used by
#: default when shipped: the store file's cameras are the April 2020 calibration, which does
#: not fit the January footage.
DEFAULT_CAMERAS = Path(__file__).parent / "aifi_calibration" / "cps-test-01-cameras.json"


class AifiVideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_track_s: float = Field(2.0, gt=0, description="shorter tracks are not counted as shoppers")
    reach_m: float = Field(0.35, gt=0, description="depth of the reach zone in front of a shelf")
    min_dwell_s: float = Field(0.3, gt=0, description="a wrist must stay this long in one zone")
    merge_gap_s: float = Field(1.5, ge=0, description="visits of one zone closer than this merge")
    tracker: TrackerConfig = TrackerConfig(
        pair_max_residual_m=0.4, outlier_px=60.0, assoc_gate_m=0.6, claim_gate_m=0.8,
        max_jump_m=1.0, reacquire_gate_max_m=1.4, pair_radius_m=2.0)


@dataclass(frozen=True, slots=True)
class Interaction:
    t: float
    gondola: int
    shelf: int
    track: int


def _floor_entry(store: Store) -> Store:
    xs = [p[0] for p in store.floor.outline]
    ys = [p[1] for p in store.floor.outline]
    gates = [Gate(id="floor", kind="entry",
                  area=Box(min=(min(xs), min(ys), 0.0), max=(max(xs), max(ys), 2.0))),
             *[g for g in store.gates if g.kind == "exit"]]
    return store.model_copy(update={"gates": gates})


def _zones(store: Store, reach: float) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(gondola, shelf, lo, hi) boxes of the reach zones of each shelf: from ``reach`` in front
    of its front edge to its back. A hand taking an item is in the shelf: the wrist, 8-10 cm
    behind the fingertips, sits 0.15-0.25 m behind the front edge when the fingers close on an
    item one or two facings deep, so a zone ending just behind the front edge misses the very
    moment of the pick; nothing but a hand gets behind a shelf's front edge, so the shelf's
    whole depth (the plates' extent) belongs to the zone."""
    out = []
    for gi, g in enumerate(store.gondolas, start=1):
        fx, fy = g.front
        for si, sh in enumerate(g.shelves, start=1):
            lo = np.min([p.box.min for p in sh.plates], axis=0).astype(float)
            hi = np.max([p.box.max for p in sh.plates], axis=0).astype(float)
            if fy < 0:
                lo[1] -= reach
            elif fy > 0:
                hi[1] += reach
            elif fx < 0:
                lo[0] -= reach
            else:
                hi[0] += reach
            out.append((gi, si, lo, hi))
    return out


def interactions(tracks: list[Track], store: Store, cfg: AifiVideoConfig) -> list[Interaction]:
    zones = _zones(store, cfg.reach_m)
    found: list[Interaction] = []
    for tr in tracks:
        for w in WRISTS:
            P = tr.joints[:, w]
            runs: list[tuple[int, int, float, float]] = []  # gondola, shelf, t0, t1
            for gi, si, lo, hi in zones:
                inside = np.all((lo <= P) & (hi >= P), axis=1)
                idx = np.flatnonzero(inside)
                if not idx.size:
                    continue
                splits = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
                for s in splits:
                    runs.append((gi, si, float(tr.t[s[0]]), float(tr.t[s[-1]])))
            runs.sort(key=lambda r: r[2])
            merged: list[list[Any]] = []
            for gi, si, t0, t1 in runs:
                if merged and merged[-1][:2] == [gi, si] and t0 - merged[-1][3] <= cfg.merge_gap_s:
                    merged[-1][3] = max(merged[-1][3], t1)
                else:
                    merged.append([gi, si, t0, t1])
            found += [Interaction(round((t0 + t1) / 2, 2), gi, si, tr.track_id)
                      for gi, si, t0, t1 in merged if t1 - t0 >= cfg.min_dwell_s]
    # both wrists in one zone at once are one interaction
    found.sort(key=lambda i: i.t)
    out: list[Interaction] = []
    for i in found:
        if out and (out[-1].gondola, out[-1].shelf, out[-1].track) == (
                i.gondola, i.shelf, i.track) and i.t - out[-1].t <= cfg.merge_gap_s:
            continue
        out.append(i)
    return out


def run_aifi_video(
    videos_dir: Path, perception: PerceptionConfig, cfg: AifiVideoConfig | None = None,
    limit: int | None = None, progress: Any = None, cameras: Path | None = None,
) -> tuple[dict[str, Any], list[Track], list[KeypointFrame], Store]:
    """``cameras``: a camera file to use instead of the store's cameras; by default
    :data:`DEFAULT_CAMERAS` when it exists. The report names the cameras used."""
    cfg = cfg or AifiVideoConfig()
    say = progress or (lambda _m: None)
    store = load_store("aifi-nanostore")
    if cameras is None and DEFAULT_CAMERAS.is_file():
        cameras = DEFAULT_CAMERAS
    source = "aifi-nanostore store file (April 2020 calibration)"
    if cameras is not None:
        store = with_cameras(store, load_camera_file(cameras).cameras, str(cameras))
        source = str(cameras)
    say(f"cameras: {source}")
    frames: list[KeypointFrame] = []
    stats = {}
    for cam, name in VIDEO_CAMERAS.items():
        say(f"perception {cam}")
        res = perceive_video(videos_dir / name, cam, store.cameras_by_id[cam], perception,
                             limit=limit)
        frames += res.frames
        stats[cam] = res.stats
    frames.sort(key=lambda f: (f.t, f.camera_id))
    say("tracking")
    tracker = Tracker(_floor_entry(store), cfg.tracker)
    tracker.process(frames)
    tracker.finish()
    tracks = [t for t in tracker.tracks if t.t.size and t.t[-1] - t.t[0] >= cfg.min_track_s]
    inter = interactions(tracks, store, cfg)
    report = {
        "cameras": source,
        "shoppers": len(tracks),
        "interactions": [{"t": i.t, "gondola": i.gondola, "shelf": i.shelf, "track": i.track}
                         for i in inter],
    }
    return report, tracks, frames, store


def write_track(tracks: list[Track], path: Path) -> None:
    """The 3D tracks as JSON: per track, times and COCO-17 joints in metres (null: unseen)."""
    data = [{"track": t.track_id, "t": np.round(t.t, 3).tolist(),
             "joints": np.where(np.isnan(t.joints), None, np.round(t.joints, 3)).tolist()}
            for t in tracks]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"units": "m", "joints": "COCO-17", "tracks": data}) + "\n")


def draw_plan(store: Store, tracks: list[Track], inter: list[dict[str, Any]], path: Path,
              px_per_m: int = 120) -> None:
    """The store plan from above: gondolas, cameras, each track's hip path and its wrists'
    interactions, as a PNG."""
    xs = [p[0] for p in store.floor.outline]
    ys = [p[1] for p in store.floor.outline]
    x0, y0, x1, y1 = min(xs) - 0.3, min(ys) - 0.3, max(xs) + 0.3, max(ys) + 0.3
    w, h = int((x1 - x0) * px_per_m), int((y1 - y0) * px_per_m)
    img = np.full((h, w, 3), 255, np.uint8)

    def px(x: float, y: float) -> tuple[int, int]:
        return int((x - x0) * px_per_m), int((y1 - y) * px_per_m)

    cv2.polylines(img, [np.array([px(x, y) for x, y in store.floor.outline])], True,
                  (120, 120, 120), 2)
    for gi, g in enumerate(store.gondolas, start=1):
        cv2.rectangle(img, px(g.box.min[0], g.box.max[1]), px(g.box.max[0], g.box.min[1]),
                      (180, 200, 230), -1)
        cv2.putText(img, f"G{gi}", px(g.box.min[0] + 0.05, g.box.center[1]), 0, 0.5,
                    (60, 60, 60), 1, cv2.LINE_AA)
    for c in store.cameras:
        cv2.circle(img, px(*c.center[:2]), 5, (0, 0, 0), -1)
        cv2.putText(img, c.id, px(c.center[0] + 0.05, c.center[1] - 0.12), 0, 0.4, (0, 0, 0), 1)
    for tr in tracks:
        hip = np.nanmean(tr.joints[:, [11, 12], :2], axis=1)
        ok = ~np.isnan(hip[:, 0])
        pts = [px(*p) for p in hip[ok]]
        tt = tr.t[ok]
        for (a, b), t in zip(itertools.pairwise(pts), tt, strict=False):
            f = (t - tt[0]) / max(tt[-1] - tt[0], 1e-9)
            cv2.line(img, a, b, (int(255 * (1 - f)), 80, int(255 * f)), 2, cv2.LINE_AA)
        if pts:
            cv2.putText(img, f"track {tr.track_id} t={tt[0]:.1f}s", pts[0], 0, 0.45,
                        (0, 0, 0), 1, cv2.LINE_AA)
    for i in inter:
        tr = next(t for t in tracks if t.track_id == i["track"])
        k = int(np.argmin(np.abs(tr.t - i["t"])))
        wr = tr.joints[k, list(WRISTS), :2]
        wr = wr[~np.isnan(wr[:, 0])]
        if len(wr):
            p = px(*wr.mean(axis=0))
            cv2.drawMarker(img, p, (0, 0, 200), cv2.MARKER_STAR, 16, 2)
            cv2.putText(img, f"{i['t']:.1f}s G{i['gondola']}S{i['shelf']}", (p[0] + 6, p[1] - 6),
                        0, 0.45, (0, 0, 200), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
