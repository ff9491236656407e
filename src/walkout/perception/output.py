"""Keypoint frames from video written as a walkout recording, so that ``walkout replay`` and
``walkout serve --source recording`` run the engine on real footage.

The recording has the store, the keypoints and empty plate and gate streams (video carries
neither). Each camera is written by its own ``walkout perceive`` run: frames of other cameras
already in the directory are kept, so four runs build one four-camera recording.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from walkout.events import KeypointFrame
from walkout.sources.recording import (
    FORMAT,
    VERSION,
    RecordingError,
    load_keypoints,
    read_meta,
    store_digest,
)
from walkout.store.loader import dump_store
from walkout.store.model import Store


def _existing(out: Path, store: Store) -> list[KeypointFrame]:
    path = out / "keypoints.npz"
    if not path.exists() and not (out / "recording.json").exists():
        return []
    meta = read_meta(out)
    if meta.get("source") != "video":  # its plates and gates would be overwritten with nothing
        raise RecordingError(f"{out}: holds a recording with sensor data (not one made from "
                             "video by `walkout perceive`); use a new --out")
    if meta.get("store_sha256") != store_digest(store):
        raise RecordingError(f"{out}: holds a recording of another store; use a new --out")
    return load_keypoints(path, store) if path.exists() else []


def _perception_json(out: Path) -> dict[str, Any]:
    """The per-camera ``perception.json`` already in ``out`` ({} when none), read before anything
    is written so a damaged one stops the run with the recording as it was."""
    pj = out / "perception.json"
    if not pj.exists():
        return {}
    try:
        per = json.loads(pj.read_text())
    except OSError as e:
        raise RecordingError(f"{pj}: cannot read: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"{pj}: invalid JSON ({e}); it holds only the perception "
                             "settings of each camera: repair it or move it aside") from e
    if not isinstance(per, dict):
        raise RecordingError(f"{pj}: not a JSON object (camera -> perception settings) but "
                             f"{type(per).__name__}")
    return per


def _partial(path: Path) -> Path:
    """A hidden sibling of ``path`` to write first (same suffix: np.savez appends .npz)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def write_keypoint_recording(
    out: Path, store: Store, frames: list[KeypointFrame], perception: dict[str, Any]
) -> int:
    """Add ``frames`` (replacing earlier frames of their cameras) to the recording in ``out``.

    Returns the number of frames in the recording. ``perception`` (backend, counters) is kept
    per camera in ``perception.json``. Every file is written beside its place and renamed over
    it only once all are written: a failed write (a full disk, Ctrl-C) leaves the frames of
    cameras added by earlier runs whole. Runs writing the same directory at once (one per
    camera) take turns: each adds to what the one before it wrote.
    """
    if out.exists() and not out.is_dir():
        raise RecordingError(f"{out}: is a file, not a recording directory")
    mine = {f.camera_id for f in frames}
    unknown = mine - set(store.cameras_by_id)
    if unknown:
        raise RecordingError(f"cameras {sorted(unknown)} are not in store '{store.name}'")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        return _write(out, store, frames, mine, perception)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold a lock on the directory ``out`` (no file added to it): one camera's run at a time
    reads, merges and writes the recording. Four cameras started together with the same
    ``--duration`` end together, and each wrote the recording as it had read it: the last
    one's write dropped the cameras of the others."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise RecordingError(f"{out}: cannot open the directory: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed, or when the process dies
        yield
    finally:
        os.close(fd)


def _write(out: Path, store: Store, frames: list[KeypointFrame], mine: set[str],
           perception: dict[str, Any]) -> int:
    kept = [f for f in _existing(out, store) if f.camera_id not in mine]
    per = _perception_json(out) if out.is_dir() else {}
    for cam in sorted(mine):
        per[cam] = perception
    allf = sorted(kept + frames, key=lambda f: (f.t, f.camera_id))
    cam_ids = [c.id for c in store.cameras]
    index = {c: i for i, c in enumerate(cam_ids)}
    counts = np.array([f.keypoints.shape[0] for f in allf], dtype=np.int64)
    kp = (np.concatenate([f.keypoints for f in allf]).astype(np.float32) if allf
          else np.zeros((0, 17, 3), np.float32))
    duration = max((f.t for f in allf), default=0.0)
    meta = {"format": FORMAT, "version": VERSION, "store": store.name,
            "store_sha256": store_digest(store), "seed": 0, "duration_s": duration,
            "shoppers": 0, "source": "video"}
    # renamed in this order: recording.json, which says what the directory holds, last
    names = ("store.yaml", "plates.npz", "gates.jsonl", "keypoints.npz", "perception.json",
             "recording.json")
    tmp = {n: _partial(out / n) for n in names}
    try:
        dump_store(store, tmp["store.yaml"])
        np.savez(tmp["plates.npz"], t=np.zeros(0),
                 grams=np.zeros((0, len(store.plate_ids)), np.float32),
                 plate_ids=np.array(store.plate_ids))
        tmp["gates.jsonl"].write_text("")
        np.savez(
            tmp["keypoints.npz"],
            camera=np.array([index[f.camera_id] for f in allf], dtype=np.int16),
            t=np.array([f.t for f in allf], dtype=np.float64),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            keypoints=kp, camera_ids=np.array(cam_ids),
        )
        tmp["recording.json"].write_text(json.dumps(meta, indent=2) + "\n")
        tmp["perception.json"].write_text(json.dumps(per, indent=2) + "\n")
        for n in names:
            os.replace(tmp[n], out / n)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return len(allf)
