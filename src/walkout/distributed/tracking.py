"""Tracking split by floor area: the per-camera and per-track work of every slot runs on one
Ray actor per area; the slot's bookkeeping stays with the engine's tracker.

Why not independent trackers per area with hand-over: the tracker's identities depend on
store-wide state (a birth is refused next to any observed track, a lost track is resumed by
whichever candidate appears within reach, two tracks swap back after a close encounter), so
areas run on their own would disagree with the single tracker near every border, and the
receipts would no longer be the same. Instead each slot (one camera period) is cut where the
work is independent:

1. association: every frame of a slot is matched against the same snapshot of the live
   tracks, so frames are processed by the area owning their camera (undistortion, per-camera
   assignment, claims); each area's detection columns come back and are merged in the slot's
   frame order;
2. triangulation: each observed track is triangulated from its views alone (the compiled
   kernel's result for a group depends on nothing else), so tracks are dealt out to the
   areas in contiguous runs (the same arithmetic, bit for bit);
3. the rest of the slot (filters, births, identities, time-outs) is cheap, order-dependent
   bookkeeping and runs in the engine's process.

Each actor holds a full :class:`Tracker` of the store and runs its very methods, so the two
distributed phases compute exactly what the single tracker computes. The price is two round
trips per slot (see docs/scale-out.md for what they cost).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from walkout.distributed.partition import floor_areas
from walkout.events import KeypointFrame
from walkout.store.model import Store
from walkout.tracking import Tracker, TrackerConfig
from walkout.tracking.associate import Detection
from walkout.tracking.tracker import Association, SlotDetections

Motion = tuple[np.ndarray, np.ndarray, np.ndarray]


class AreaWorker:
    """One floor area's share of every slot (a Ray actor)."""

    def __init__(self, store: Store, config: TrackerConfig) -> None:
        self.tracker = Tracker(store, config)

    def associate(
        self, frames: list[KeypointFrame], motion: Motion | None
    ) -> tuple[Association, float]:
        """What the tracker's own association gives for these frames; and the time it took."""
        c0 = time.thread_time()
        out = self.tracker._associate(frames, motion)
        return out, time.thread_time() - c0

    def cpu_s(self) -> float:
        """CPU seconds this actor's process has used (work, serialisation, Ray's threads)."""
        return time.process_time()

    def triangulate(
        self, groups: list[list[Detection]], velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        c0 = time.thread_time()
        X, S = self.tracker._triangulate_views(groups, velocities, t_ref)
        return X, S, time.thread_time() - c0


class PartitionedTracker(Tracker):
    """The engine's tracker with both parallel phases of each slot on area actors."""

    def __init__(self, ray: Any, store: Store, config: TrackerConfig | None, areas: int,
                 min_groups: int = 2, workers: list[Any] | None = None) -> None:
        super().__init__(store, config)
        self.ray = ray
        self.areas = floor_areas(store, areas)
        if workers is None:
            actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(AreaWorker)
            workers = [actor.remote(store, self.config) for _ in self.areas]
        elif len(workers) != len(self.areas):
            raise ValueError(f"{len(workers)} area workers for {len(self.areas)} floor areas")
        self.actors = workers
        self._area_of = {c: a.index for a in self.areas for c in a.cameras}
        self.min_groups = min_groups  # fewer observed tracks than this: triangulate here
        self.busy_s = {"associate": [0.0] * len(self.areas),
                       "triangulate": [0.0] * len(self.areas)}
        self.wall_s = {"associate": 0.0, "triangulate": 0.0}
        self.calls = {"associate": 0, "triangulate": 0}

    def fresh(self) -> PartitionedTracker:
        """A tracker for the store's next stream (``Engine.successor``): no tracks, no
        candidates, nothing of this stream's people, on the same area actors. They keep no
        state between calls (each slot brings its frames and the tracks' snapshot), so they
        serve the next stream as they are, and a rollover starts no actors."""
        return PartitionedTracker(self.ray, self._store, self.config, len(self.areas),
                                  self.min_groups, workers=self.actors)

    def _associate(self, frames: list[KeypointFrame], motion: Motion | None) -> Association:
        parts: list[list[int]] = [[] for _ in self.areas]
        for i, f in enumerate(frames):
            if f.camera_id not in self._cam_index:
                raise ValueError(f"frame from unknown camera {f.camera_id!r}")
            parts[self._area_of[self._cam_index[f.camera_id]]].append(i)
        w0 = time.perf_counter()
        m = self.ray.put(motion)
        calls = [(a, idx, self.actors[a].associate.remote([frames[i] for i in idx], m))
                 for a, idx in enumerate(parts) if idx]
        got = self.ray.get([r for _, _, r in calls])
        self.wall_s["associate"] += time.perf_counter() - w0
        self.calls["associate"] += 1
        for (a, _, _), (_, busy) in zip(calls, got, strict=True):
            self.busy_s["associate"][a] += busy
        return _merge([(idx, res) for (_, idx, _), (res, _) in zip(calls, got, strict=True)],
                      len(frames))

    def _triangulate_block(
        self, dets: SlotDetections, rows: np.ndarray, off: np.ndarray,
        velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        groups = [[dets.detection(int(r)) for r in rows[off[g]:off[g + 1]]]
                  for g in range(len(off) - 1)]
        return self._triangulate_views(groups, velocities, t_ref)

    def _triangulate_views(
        self, groups: list[list[Detection]], velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(groups) < self.min_groups:
            return super()._triangulate_views(groups, velocities, t_ref)
        w0 = time.perf_counter()
        cuts = np.array_split(np.arange(len(groups)), min(len(self.actors), len(groups)))
        refs = [self.actors[a].triangulate.remote(
                    [groups[i] for i in c], [velocities[i] for i in c], t_ref)
                for a, c in enumerate(cuts)]
        got = self.ray.get(refs)
        self.wall_s["triangulate"] += time.perf_counter() - w0
        self.calls["triangulate"] += 1
        for a, (_, _, busy) in enumerate(got):
            self.busy_s["triangulate"][a] += busy
        return np.concatenate([X for X, _, _ in got]), np.concatenate([S for _, S, _ in got])


def _merge(parts: list[tuple[list[int], Association]], n_frames: int) -> Association:
    """One slot's association from its areas' (each over the frames ``idx`` of the slot):
    the detections in the slot's frame order, as the single tracker has them."""
    if not parts:
        return Association(
            SlotDetections(np.zeros(n_frames + 1, dtype=np.int64), np.zeros((0, 17, 2)),
                           np.zeros((0, 17)), np.zeros(0, dtype=np.int64), np.zeros(0)),
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    frame = np.concatenate([
        np.repeat(np.asarray(idx), np.diff(res.dets.off)) for idx, res in parts])
    order = np.argsort(frame, kind="stable")
    cat = [res for _, res in parts]

    def col(get: Any) -> np.ndarray:
        return np.concatenate([get(r) for r in cat])[order]

    off = np.zeros(n_frames + 1, dtype=np.int64)
    off[1:] = np.cumsum(np.bincount(frame, minlength=n_frames))
    dets = SlotDetections(off, col(lambda r: r.dets.xn), col(lambda r: r.dets.conf),
                          col(lambda r: r.dets.cam), col(lambda r: r.dets.t))
    return Association(dets, col(lambda r: r.match), col(lambda r: r.claimed))
