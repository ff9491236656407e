"""A recording on disk: the sensor streams of a period, with ground truth kept apart.

Layout of a recording directory::

    recording.json     format, version, store name and hash, seed, duration
    store.yaml         the store the recording was made in (replay is self-contained)
    plates.npz         t (n,), grams (n, plates), plate_ids (plates,)
    keypoints.npz      camera (frames,), t (frames,), offsets (frames+1,),
                       keypoints (people, 17, 3), camera_ids (cameras,)
    gates.jsonl        one GateEvent per line
    store_modes.jsonl  optional: the store marked closed (restock mode) or open again, one
                       change a line, ``{"t": 120.0, "mode": "closed"}`` (``"open"``), in time
                       order; absent: open throughout. Written only when there is a change, and
                       then the recording is version 2, so that a reader that knows no store
                       modes refuses it rather than replaying the store as open
    truth/             receipts.json, events.jsonl, paths.npz — for scoring only; the engine's
                       loader (`load_sensors`) never opens this folder

A store-mode change at time ``t`` reaches the engine as an operator's change reaches the
service's engine worker: at the start of the first chunk that starts at or after ``t``, at that
chunk's start time (:meth:`Sensors.mode_steps`).

`load_sensors` checks every file against the store and itself; what it can put right (readings
out of time order, repeated readings and gate scans) it does and says in ``Sensors.notes``,
anything else is a :class:`RecordingError` naming the file and the line, row or frame. That
includes a reading or store-mode change stamped more than a minute (``SPAN_SLACK_S``) before 0
or after ``duration_s``: a wrong clock, not a reading of the period.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from walkout.events import N_JOINTS, GateEvent, KeypointFrame, PlateBlock, StoreModeChange
from walkout.sim.cameras import PersonPath
from walkout.sim.session import SimSession, Truth
from walkout.sim.shoppers import TrueEvent
from walkout.store.loader import dump_store, load_store
from walkout.store.model import Store

FORMAT = "walkout-recording"
#: the longest recording read (a week): longer is a damaged or hand-made recording.json
MAX_DURATION_S = 7 * 86400.0
VERSION = 1
#: the version of a recording with store-mode changes (``store_modes.jsonl``): older readers
#: refuse it instead of replaying a closed store as open
MODES_VERSION = 2
SUPPORTED_VERSIONS = (VERSION, MODES_VERSION)
MODES_FILE = "store_modes.jsonl"
MAX_PARTY = 20  # the largest party one scan admits: the service's own bound
#: how far before 0 or past ``duration_s`` a reading or store-mode change may be stamped (clock
#: jitter, a device that kept sending a moment): further is a wrong clock or a bad edit, and one
#: such stamp would make replay cut millions of empty chunks (or run out of memory doing so)
SPAN_SLACK_S = 60.0


class RecordingError(ValueError):
    """A recording directory that is missing, incomplete or corrupt."""


def store_digest(store: Store) -> str:
    """The store's fingerprint; optional fields left unset (a store without tax rates) do not
    count, so recordings made before such a field existed still match their store file."""
    return hashlib.sha256(store.model_dump_json(exclude_none=True).encode()).hexdigest()[:16]


def write_recording(session: SimSession, out: Path) -> None:
    """Write sensors and truth of a simulated session to ``out``, which must not exist or be
    empty (a recording is never written over).

    Everything goes to a hidden sibling folder first, is checked the way :func:`load_sensors`
    checks it, and is renamed into place at the end: an interrupted or failed write (Ctrl-C,
    a full disk) never leaves ``out`` looking like a complete recording."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RecordingError(f"{out}: exists and is not empty; use a new --out (a recording "
                             "is never written over)")
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_session(session, tmp)
        if store_digest(load_store(tmp / "store.yaml")) != read_meta(tmp)["store_sha256"]:
            raise RecordingError(f"{out}: the store file did not come out as recorded "
                                 "(interrupted while writing?); nothing was written")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_session(session: SimSession, out: Path) -> None:
    dump_store(session.store, out / "store.yaml")
    meta = {
        "format": FORMAT,
        "version": MODES_VERSION if session.modes else VERSION,
        "store": session.store.name,
        "store_sha256": store_digest(session.store),
        "seed": session.seed,
        "duration_s": session.duration_s,
        "shoppers": len(session.truth.receipts),
    }
    (out / "recording.json").write_text(json.dumps(meta, indent=2) + "\n")
    p = session.plates
    np.savez(out / "plates.npz", t=p.t, grams=p.grams, plate_ids=np.array(p.plate_ids))
    cam_ids = [c.id for c in session.store.cameras]
    cam_index = {c: i for i, c in enumerate(cam_ids)}
    frames = session.frames
    counts = np.array([f.keypoints.shape[0] for f in frames], dtype=np.int64)
    kp = (
        np.concatenate([f.keypoints for f in frames]).astype(np.float32)
        if frames
        else np.zeros((0, 17, 3), np.float32)
    )
    np.savez(
        out / "keypoints.npz",
        camera=np.array([cam_index[f.camera_id] for f in frames], dtype=np.int16),
        t=np.array([f.t for f in frames], dtype=np.float64),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        keypoints=kp,
        camera_ids=np.array(cam_ids),
    )
    with (out / "gates.jsonl").open("w") as fh:
        for g in session.gates:
            fh.write(json.dumps(asdict(g)) + "\n")
    if session.modes:
        with (out / MODES_FILE).open("w") as fh:
            for m in session.modes:
                fh.write(json.dumps({"t": m.t, "mode": m.mode}) + "\n")
    _write_truth(session.truth, out / "truth")


def _write_truth(truth: Truth, out: Path) -> None:
    out.mkdir(exist_ok=True)
    receipts = {c: dict(sorted(r.items())) for c, r in sorted(truth.receipts.items())}
    (out / "receipts.json").write_text(json.dumps(receipts, indent=1) + "\n")
    with (out / "events.jsonl").open("w") as fh:
        for e in truth.events:
            fh.write(json.dumps(asdict(e)) + "\n")
    ids = [p.person_id for p in truth.paths]
    lengths = [len(p.t) for p in truth.paths]
    np.savez(
        out / "paths.npz",
        person_id=np.array(ids, dtype=np.int64),
        credential=np.array([truth.credentials[i] for i in ids]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        t=np.concatenate([p.t for p in truth.paths]) if ids else np.zeros(0),
        joints=np.concatenate([p.joints for p in truth.paths]) if ids else np.zeros((0, 17, 3)),
    )


class Sensors:
    """What the engine may read from a recording: store, plate block, frames, gate events,
    and the operator's store-mode changes (restock mode)."""

    def __init__(
        self, store: Store, plates: PlateBlock, frames: list[KeypointFrame],
        gates: list[GateEvent], duration_s: float, notes: tuple[str, ...] = (),
        modes: tuple[StoreModeChange, ...] = (),
    ) -> None:
        self.store, self.plates, self.frames = store, plates, frames
        self.gates, self.duration_s = gates, duration_s
        #: what loading had to put right (readings out of time order, repeated readings)
        self.notes = notes
        #: the store marked closed or open again, in time order (none: open throughout)
        self.modes = modes

    @classmethod
    def from_session(cls, s: SimSession) -> Sensors:
        return cls(s.store, s.plates, s.frames, s.gates, s.duration_s, modes=s.modes)

    def mode_steps(self, chunk_s: float) -> list[list[tuple[float, bool]]]:
        """Per chunk of :meth:`chunks`, the ``(t, closed)`` changes to give
        ``Engine.set_store_mode`` before that chunk's step.

        As the service's engine worker applies an operator's change (at the start of the
        next chunk it processes, stamped with that chunk's start): a change at ``t`` applies
        before the first chunk starting at or after ``t``, at that start; one at or before the
        first chunk's start, before it at its own time. One after the last chunk's start
        changes nothing the engine still decides and is left out."""
        edges = self.edges(chunk_s)
        n = len(edges) - 1
        steps: list[list[tuple[float, bool]]] = [[] for _ in range(n)]
        for m in self.modes:
            i = int(np.searchsorted(edges[:-1], m.t, side="left"))
            if i == 0:
                steps[0].append((m.t, m.closed))
            elif i < n:
                steps[i].append((float(edges[i]), m.closed))
        return steps

    def edges(self, chunk_s: float) -> np.ndarray:
        """The :func:`chunk_edges` of this recording: from its earliest reading to its duration,
        and past its last reading should one be stamped later (clock jitter)."""
        ts = [*self.plates.t[:1], *self.plates.t[-1:], *(f.t for f in self.frames[:1]),
              *(f.t for f in self.frames[-1:]), *(g.t for g in self.gates)]
        if not ts:
            return chunk_edges(0.0, self.duration_s, chunk_s)
        return chunk_edges(float(min(ts)), self.duration_s, chunk_s, last_t=float(max(ts)))

    def chunks(self, chunk_s: float) -> Iterator[tuple[PlateBlock, list[KeypointFrame],
                                                       list[GateEvent], float]]:
        """The recording as ``Engine.step``'s arguments, cut at :func:`chunk_edges` (the same
        cut the MQTT source makes of the same readings, so live and replay agree)."""
        frame_t = np.array([f.t for f in self.frames])
        gate_t = np.array([g.t for g in self.gates])
        edges = self.edges(chunk_s)
        for a, b in pairwise(edges):
            i0, i1 = np.searchsorted(self.plates.t, [a, b])
            f0, f1 = np.searchsorted(frame_t, [a, b])
            g0, g1 = np.searchsorted(gate_t, [a, b])
            block = PlateBlock(self.plates.t[i0:i1], self.plates.grams[i0:i1],
                               self.plates.plate_ids)
            yield block, self.frames[f0:f1], self.gates[g0:g1], float(b)


def chunk_edges(first_t: float, end_t: float, chunk_s: float,
                last_t: float = -math.inf) -> np.ndarray:
    """Edges of the half-open chunks ``[a, b)`` that cover ``[first_t, end_t)`` and every
    reading up to ``last_t`` inclusive, aligned to multiples of ``chunk_s``. A camera whose clock
    reads a hair before 0 (timestamp jitter) gets a chunk of its own rather than being dropped."""
    origin = math.floor(first_t / chunk_s) * chunk_s
    n = max(math.ceil((end_t - origin) / chunk_s), 1)
    if math.isfinite(last_t):
        n = max(n, math.floor((last_t - origin) / chunk_s) + 1)
    return origin + chunk_s * np.arange(n + 1, dtype=np.float64)


def _npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise RecordingError(f"{path}: missing arrays {missing}")
            return {k: z[k] for k in keys}
    except FileNotFoundError as e:
        raise RecordingError(f"{path}: file missing from the recording") from e
    except RecordingError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # a truncated copy (disk full, interrupted transfer) fails in the zip layer, not numpy
        raise RecordingError(f"{path}: corrupt or not a numpy archive ({e})") from e


def read_meta(rec: Path) -> dict[str, Any]:
    """``recording.json`` of ``rec``, checked for this format and version."""
    meta_path = rec / "recording.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, NotADirectoryError) as e:
        raise RecordingError(f"{rec}: not a walkout recording (no recording.json)") from e
    except OSError as e:  # a directory named recording.json, no permission
        raise RecordingError(f"{meta_path}: cannot read: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"{meta_path}: invalid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise RecordingError(f"{meta_path}: not a JSON object but {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") not in SUPPORTED_VERSIONS:
        raise RecordingError(
            f"{meta_path}: unsupported recording format {meta.get('format')!r} "
            f"version {meta.get('version')!r} (expected {FORMAT!r} version "
            f"{' or '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    d = meta.get("duration_s")
    if not _finite_number(d) or d < 0:
        raise RecordingError(f"{meta_path}: duration_s must be a number of seconds >= 0, "
                             f"got {d!r}")
    if d > MAX_DURATION_S:  # the engine cuts it into chunks up front: 1e12 s is terabytes
        raise RecordingError(f"{meta_path}: duration_s {d:g} is more than a week; a "
                             "recording holds one shopping period")
    return meta


def _finite_number(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


def _outside(t: np.ndarray, duration_s: float) -> np.ndarray:
    """Indices of the finite times in ``t`` outside ``[-SPAN_SLACK_S, duration_s +
    SPAN_SLACK_S]`` (a non-finite time is refused by its own, clearer check)."""
    t = np.asarray(t, float)
    return np.flatnonzero(np.isfinite(t) & ((t < -SPAN_SLACK_S)
                                            | (t > duration_s + SPAN_SLACK_S)))


def _span_error(where: str, what: str, t: float, duration_s: float, more: int = 0) -> str:
    also = f" ({more} more like it)" if more else ""
    return (f"{where}: {what} stamped t={t:g} s, outside the recording's {duration_s:g} s "
            f"(expected {-SPAN_SLACK_S:g} to {duration_s + SPAN_SLACK_S:g} s; a wrong clock or "
            f"a bad edit?){also}")


def _time_order(path: Path, what: str, t: np.ndarray,
                key: np.ndarray | None = None) -> tuple[np.ndarray, str | None]:
    """Row indices that put ``t`` in time order with repeats dropped (the first kept), and a
    note naming what that changed (None: nothing). ``key`` (e.g. the camera) makes a repeat
    the same time *and* key. The engine's chunk cut relies on readings in time order; a
    recording written by walkout always is, so disorder means a damaged or hand-made file."""
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise RecordingError(f"{path}: {bad.size} {what} stamped with a time that is not "
                             f"finite (first at row {int(bad[0])})")
    k = np.zeros(len(t), np.int64) if key is None else key.astype(np.int64)
    moved = int(np.count_nonzero(np.diff(t) < 0))
    order = np.argsort(t, kind="stable") if moved else np.arange(len(t))
    by = np.lexsort((np.arange(len(t)), k, t))  # time, key, row: a repeat after its first
    repeats = by[1:][(np.diff(t[by]) == 0) & (np.diff(k[by]) == 0)]
    if not moved and not repeats.size:
        return order, None
    fixed = [f"{moved} {what} out of time order put back in order"] if moved else []
    fixed += [f"{repeats.size} repeated {what} dropped"] if repeats.size else []
    return order[~np.isin(order, repeats)], f"{path}: {'; '.join(fixed)}"


def load_keypoints(path: Path, store: Store) -> list[KeypointFrame]:
    """The frames of a ``keypoints.npz``, checked against ``store``'s cameras and themselves."""
    k = _npz(path, ("camera", "t", "offsets", "keypoints", "camera_ids"))
    cam_ids = [str(c) for c in k["camera_ids"]]
    unknown = set(cam_ids) - set(store.cameras_by_id)
    if unknown:
        raise RecordingError(f"{path}: unknown cameras {sorted(unknown)}")
    cam, t, off, kp = k["camera"], k["t"], k["offsets"], k["keypoints"]
    if kp.ndim != 3 or kp.shape[1:] != (N_JOINTS, 3) or kp.dtype.kind not in "fiu":
        raise RecordingError(f"{path}: keypoints of shape {kp.shape} ({kp.dtype}), expected "
                             f"(people, {N_JOINTS}, 3) numbers")
    if (cam.ndim != 1 or t.ndim != 1 or off.ndim != 1 or len(cam) != len(t)
            or cam.dtype.kind not in "iu" or off.dtype.kind not in "iu" or t.dtype.kind != "f"):
        raise RecordingError(f"{path}: camera (integers), t (floats) and offsets (integers) "
                             "must be flat arrays with one camera and one time per frame")
    bad = np.flatnonzero((cam < 0) | (cam >= len(cam_ids)))
    if bad.size:
        raise RecordingError(f"{path}: {bad.size} frames name a camera index outside the "
                             f"{len(cam_ids)} cameras of the file (first at frame "
                             f"{int(bad[0])}: {int(cam[bad[0]])})")
    if len(off) != len(t) + 1 or off[0] != 0 or off[-1] != len(kp):
        raise RecordingError(f"{path}: frame offsets do not match keypoints")
    back = np.flatnonzero(np.diff(off) < 0)
    if back.size:  # each frame's people are keypoints[offsets[i]:offsets[i + 1]]
        raise RecordingError(f"{path}: frame offsets decrease at frame {int(back[0])} "
                             f"({int(off[back[0]])} then {int(off[back[0] + 1])})")
    _finite_keypoints(path, kp, off, cam, t, cam_ids)
    return [
        KeypointFrame(camera_id=cam_ids[int(c)], t=float(ti), keypoints=kp[a:b])
        for c, ti, a, b in zip(cam, t, off[:-1], off[1:], strict=True)
    ]


def _finite_keypoints(path: Path, kp: np.ndarray, off: np.ndarray, cam: np.ndarray,
                      t: np.ndarray, cam_ids: list[str]) -> None:
    """Refuse NaN or infinity anywhere in the keypoints, as the MQTT decoder refuses them
    live (replay and live must agree): the tracker's geometry has no use for them, and a
    missing joint is written as confidence 0 at (0, 0), never as NaN."""
    bad = np.argwhere(~np.isfinite(kp)) if kp.dtype.kind == "f" else np.zeros((0, 3), int)
    if not bad.size:
        return
    row, joint, col = (int(x) for x in bad[0])
    frame = int(np.searchsorted(off, row, side="right")) - 1  # off[frame] <= row < off[frame+1]
    what = ("x", "y", "confidence")[col]
    raise RecordingError(
        f"{path}: {len(bad)} keypoint values are not finite (first in frame {frame}: camera "
        f"{cam_ids[int(cam[frame])]!r}, t={float(t[frame]):.3f} s, person "
        f"{row - int(off[frame])}, joint {joint} {what} = {float(kp[row, joint, col])}); a "
        "missing joint is confidence 0, not NaN")


def _frames_in_order(path: Path, frames: list[KeypointFrame],
                     store: Store) -> tuple[list[KeypointFrame], str | None]:
    index = {c.id: i for i, c in enumerate(store.cameras)}
    keep, note = _time_order(path, "frames", np.array([f.t for f in frames], float),
                             np.array([index[f.camera_id] for f in frames], np.int64))
    return (frames if note is None else [frames[i] for i in keep]), note


def load_sensors(rec: Path) -> Sensors:
    """Load the sensor side of a recording, checking it is complete and consistent."""
    meta = read_meta(rec)
    store = load_store(rec / "store.yaml")
    if store_digest(store) != meta.get("store_sha256"):
        raise RecordingError(f"{rec / 'store.yaml'}: does not match the hash in recording.json")
    p = _npz(rec / "plates.npz", ("t", "grams", "plate_ids"))
    plate_ids = tuple(str(x) for x in p["plate_ids"])
    if plate_ids != store.plate_ids:
        raise RecordingError(f"{rec / 'plates.npz'}: plate columns differ from the store's plates")
    notes: list[str] = []
    t, grams = p["t"], p["grams"]
    if t.dtype.kind not in "fiu" or grams.dtype.kind not in "fiu":
        raise RecordingError(f"{rec / 'plates.npz'}: t and grams must be numbers, got "
                             f"{t.dtype} and {grams.dtype}")
    t = np.asarray(t, float)
    inf = np.argwhere(np.isinf(grams)) if grams.ndim == 2 else np.zeros((0, 2), int)
    if inf.size:  # NaN is "no reading"; an infinite weight means nothing
        r, c = (int(x) for x in inf[0])
        plate = plate_ids[c] if c < len(plate_ids) else f"column {c}"
        raise RecordingError(f"{rec / 'plates.npz'}: {len(inf)} plate weights are infinite "
                             f"(first at row {r}, plate {plate})")
    duration = float(meta["duration_s"])
    far = _outside(t, duration) if t.ndim == 1 else np.zeros(0, int)
    if far.size:
        r = int(far[0])
        raise RecordingError(_span_error(f"{rec / 'plates.npz'}: row {r}", "plate sample",
                                         float(t[r]), duration, far.size - 1))
    if t.ndim == 1 and grams.ndim == 2 and len(grams) == len(t):  # else PlateBlock says why
        keep, note = _time_order(rec / "plates.npz", "plate samples", t)
        if note:
            t, grams = t[keep], grams[keep]
            notes.append(note)
    try:
        plates = PlateBlock(t=t, grams=grams, plate_ids=plate_ids)
    except ValueError as e:
        raise RecordingError(f"{rec / 'plates.npz'}: {e}") from e
    loaded = load_keypoints(rec / "keypoints.npz", store)
    far = _outside(np.array([f.t for f in loaded], float), duration)
    if far.size:
        f = loaded[int(far[0])]
        raise RecordingError(_span_error(
            f"{rec / 'keypoints.npz'}: frame {int(far[0])} (camera {f.camera_id!r})", "frame",
            f.t, duration, far.size - 1))
    frames, note = _frames_in_order(rec / "keypoints.npz", loaded, store)
    notes += [note] if note else []
    gates: list[GateEvent] = []
    seen: set[tuple[float, str, str, str]] = set()
    repeats: list[int] = []
    gpath = rec / "gates.jsonl"
    try:
        lines = gpath.read_text().splitlines()
    except FileNotFoundError as e:
        raise RecordingError(f"{gpath}: file missing from the recording") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordingError(f"{gpath}:{n}: not a gate event: {e}") from e
        g = _gate_event(obj, store, f"{gpath}:{n}")
        if _outside(np.array([g.t]), duration).size:
            raise RecordingError(_span_error(f"{gpath}:{n}", "gate event", g.t, duration))
        key = (g.t, g.gate_id, g.kind, g.credential)  # the MQTT source's repeat, per gate
        if key in seen:  # a repeated scan: kept, it would open a phantom second session
            repeats.append(n)
            continue
        seen.add(key)
        gates.append(g)
    late = sum(b.t < a.t for a, b in pairwise(gates))
    if late:
        gates.sort(key=lambda g: g.t)
        notes.append(f"{gpath}: {late} gate events out of time order put back in order")
    if repeats:
        notes.append(f"{gpath}: {len(repeats)} repeated gate events dropped (same t, gate, "
                     f"kind and credential as an earlier line; first at line {repeats[0]})")
    modes, note = load_modes(rec / MODES_FILE, duration)
    notes += [note] if note else []
    return Sensors(store, plates, frames, gates, duration, tuple(notes), tuple(modes))


def load_modes(path: Path, duration_s: float) -> tuple[list[StoreModeChange], str | None]:
    """The store-mode changes of ``store_modes.jsonl`` (none when the file is absent: a
    recording made before the file existed, or in a store never closed), and a note naming
    those after the recording's end (never applied).

    Unlike readings, changes out of time order are refused, not sorted: each says what the
    store is from then on, so a swapped pair means another closed period than the one the
    file's writer meant (the service and the simulator always write them in order)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordingError(f"{path}: cannot read: {e}") from e
    modes: list[StoreModeChange] = []
    after: list[int] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordingError(f"{where}: not a store-mode change: {e}") from e
        m = _mode_change(obj, where)
        if _outside(np.array([m.t]), duration_s).size:
            raise RecordingError(_span_error(where, "store-mode change", m.t, duration_s))
        if modes and m.t < modes[-1].t:
            raise RecordingError(f"{where}: store-mode change at t={m.t:g} s comes before the "
                                 f"one above it (t={modes[-1].t:g} s); the changes must be in "
                                 "time order")
        if m.t > duration_s:
            after.append(n)
        modes.append(m)
    note = None
    if after:
        note = (f"{path}:{after[0]}: {len(after)} store-mode change(s) after the recording's "
                f"end ({duration_s:g} s) change nothing")
    return modes, note


def _mode_change(obj: object, where: str) -> StoreModeChange:
    """A line of ``store_modes.jsonl``: ``{"t": seconds, "mode": "closed" | "open"}``."""
    if not isinstance(obj, dict) or obj.keys() != {"t", "mode"}:
        raise RecordingError(f"{where}: not a store-mode change (an object with t and mode, "
                             f"nothing else): {obj!r:.200}")
    t, mode = obj["t"], obj["mode"]
    if not _finite_number(t):
        raise RecordingError(f"{where}: store-mode change time t={t!r} is not a finite number")
    if mode not in ("open", "closed"):
        raise RecordingError(f"{where}: unknown store mode {mode!r} (open or closed)")
    return StoreModeChange(float(t), mode == "closed")


def _gate_event(obj: object, store: Store, where: str) -> GateEvent:
    """A line of ``gates.jsonl``, checked as the MQTT gate decoder checks a scan: a string time
    or an unknown gate would otherwise fail deep in the engine, or not at all."""
    fields = {"t", "gate_id", "kind", "credential", "party_size"}
    if not isinstance(obj, dict) or not {"t", "gate_id", "kind"} <= obj.keys() <= fields:
        raise RecordingError(f"{where}: not a gate event (an object with t, gate_id, kind and "
                             f"optionally credential, party_size): {obj!r:.200}")
    t, gate, kind = obj["t"], obj["gate_id"], obj["kind"]
    cred, party = obj.get("credential", ""), obj.get("party_size", 1)
    kinds = {g.id: g.kind for g in store.gates}
    if not _finite_number(t):
        raise RecordingError(f"{where}: gate event time t={t!r} is not a finite number")
    if gate not in kinds:
        raise RecordingError(f"{where}: gate {gate!r} is not one of the store's "
                             f"{sorted(kinds)}")
    if kind != kinds[gate]:
        raise RecordingError(f"{where}: kind {kind!r} on the {kinds[gate]} gate {gate!r}")
    if not isinstance(cred, str):
        raise RecordingError(f"{where}: credential {cred!r} is not a string")
    if isinstance(party, bool) or not isinstance(party, int) or not 1 <= party <= MAX_PARTY:
        raise RecordingError(f"{where}: party_size {party!r} is not a whole number in "
                             f"1..{MAX_PARTY}")
    return GateEvent(float(t), gate, kind, cred, party)


def load_truth(rec: Path) -> Truth:
    """Ground truth of a recording, for scoring (never used by the engine)."""
    d = rec / "truth"
    try:
        receipts = json.loads((d / "receipts.json").read_text())
        events = [TrueEvent(**{**json.loads(x), "plates": tuple(json.loads(x)["plates"])})
                  for x in (d / "events.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise RecordingError(f"{d}: ground truth missing or corrupt: {e}") from e
    z = _npz(d / "paths.npz", ("person_id", "credential", "offsets", "t", "joints"))
    paths, creds = [], {}
    for i, (pid, cred) in enumerate(zip(z["person_id"], z["credential"], strict=True)):
        a, b = z["offsets"][i], z["offsets"][i + 1]
        paths.append(PersonPath(person_id=int(pid), t=z["t"][a:b], joints=z["joints"][a:b]))
        creds[int(pid)] = str(cred)
    return Truth(
        receipts={c: Counter(r) for c, r in receipts.items()}, events=events, paths=paths,
        credentials=creds,
    )
