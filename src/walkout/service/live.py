"""What the web pages show of the live engine, written by the engine worker to the event log.

The engine runs in a worker process beside the API (:class:`~walkout.service.runner.
WorkerProcess`), so nothing of its memory reaches the API but the database. Each chunk the
runner calls :func:`publish`, which appends to ``engine_events`` (unique per source and seq,
so a replay after a restart writes nothing twice):

- ``<source>/live`` (one row per chunk): every tracked person's floor positions at
  ``TRACK_HZ`` over the chunk, their engine session, credential and cart size — the map;
- ``<source>/alerts``: the engine's alerts as they are raised;
- ``<source>/evidence``: each review case's evidence in full (weight trace, hypotheses, the
  skeletons near the plate), what the review page plots and replays;
- ``<source>/health`` (one row per chunk): plates and cameras with their state, the inventory
  and the products picks proved on plates not listing them (``learned``): a new stream whose
  predecessor's engine state was lost continues the shelves from its last one;
- ``<source>/staff`` (one row per staff session, when it opens): the engine session id (``ref``)
  and the badge's credential ``staff:<account>``, so that the dashboard names the associate
  whose hands moved stock (the decisions and alerts name only the session). Shoppers' sessions
  get no such row: the dashboard names no shopper.

A live network source's device alerts are written between chunks too (:func:`publish_alerts`).

It also applies the operators' verdicts (:func:`apply_verdicts`): the API records them in
``review_verdicts`` with its case's stream, the worker hands each of its own stream's to
``Engine.resolve`` once its case is open.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import false, select, update

from walkout.cart.sessions import is_staff_credential
from walkout.engine import Engine
from walkout.review import Verdict
from walkout.service.checkout import insert_ignore
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent, ReviewVerdict

log = logging.getLogger("walkout.service.live")

#: position samples per second on the map
TRACK_HZ = 2.0
#: skeleton frames per second in a review case's replay
REPLAY_HZ = 10.0
#: a plate footprint holding this many items or fewer of a product is low on stock
LOW_STOCK = 2
#: a camera with no frame for this long is dead; one below half its rate is noisy
CAMERA_DEAD_S = 3.0
HIPS = (11, 12)


@dataclass
class LiveState:
    """How far a runner has published (kept on the runner; a restart begins again at 0 and
    replays its source: chunks committed before it move this state on without writing rows,
    see :func:`publish`'s ``write``)."""

    t: float = 0.0
    alerts: int = 0
    evidence: set[str] = field(default_factory=set)
    camera_last: dict[str, float] = field(default_factory=dict)
    frame_t: np.ndarray | None = None
    staff: list[str] = field(default_factory=list)  # staff sessions published, in order


def state_of(runner: Any) -> LiveState:
    st = runner.__dict__.get("_live_state")
    if st is None:
        st = runner.__dict__["_live_state"] = LiveState()
    return st


def _plain(o: Any) -> Any:
    """numpy scalars and arrays as JSON (the engine's numbers are often numpy's)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _r(x: float, nd: int = 2) -> float | None:
    return None if not math.isfinite(x) else round(float(x), nd)


def _floor_xy(joints: np.ndarray) -> np.ndarray:
    """(n, 17, 3) skeletons → (n, 2) floor positions: mid-hips, else any joint seen."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        hips = np.nanmean(joints[:, list(HIPS), :2], axis=1)
        allj = np.nanmean(joints[:, :, :2], axis=1)
    return np.where(np.isnan(hips), allj, hips)


def positions(eng: Engine, t0: float, t1: float) -> list[dict[str, Any]]:
    """Every person tracked within (t0, t1]: positions at ``TRACK_HZ``, session, cart size."""
    people = []
    step = 1.0 / TRACK_HZ
    alerted = _named(eng)
    for tr in eng.tracker.tracks:
        if len(tr.t) == 0 or tr.t[-1] <= t0 or tr.t[0] > t1:
            continue
        i0, i1 = np.searchsorted(tr.t, [t0, t1], side="right")
        ts = tr.t[i0:i1]
        if not len(ts):
            continue
        bins = np.floor(ts / step)
        keep = np.concatenate([[True], bins[1:] != bins[:-1]])
        xy = _floor_xy(tr.joints[i0:i1][keep])
        pts = [[round(float(t), 2), _r(x), _r(y)] for t, (x, y) in zip(ts[keep], xy, strict=True)
               if math.isfinite(x) and math.isfinite(y)]
        if not pts:
            continue
        sid = eng.book.by_track.get(tr.track_id)
        sess = eng.book.sessions.get(sid) if sid else None
        cart = sum(q for q in eng.ledger.contents(sid).values() if q > 0) if sid else 0
        people.append({
            "track": tr.track_id, "session": sid,
            "credential": sess.credential if sess else None,
            "staff": bool(sess and sess.staff), "cart": cart,
            "left": tr.ended_at is not None and tr.t[-1] <= t1,
            "alert": sid is None or sid in alerted or f"track:{tr.track_id}" in alerted,
            "pts": pts})
    return people


#: alerts whose subject lists tracker track ids (comma-separated), not sessions
TRACK_ALERTS = frozenset({"identity_lost", "identity_recovered", "identity_ambiguous"})


def _named(eng: Engine) -> set[str]:
    """Who the alerts so far name: session ids, and ``track:<id>`` for the tracker's identity
    alerts. A subject may name several (a hand-over: ``"s00002,s00003"``)."""
    out: set[str] = set()
    for a in eng.alerts:
        parts = [x for x in a.subject.split(",") if x]
        if a.kind in TRACK_ALERTS:
            parts = [f"track:{x}" for x in parts]
        out.update(parts)
    return out


def evidence(eng: Engine, case_id: str) -> dict[str, Any]:
    """A review case's evidence as the review page draws it (JSON, rounded)."""
    c = eng.cases[case_id]
    ev = c.event
    w = c.evidence.weights
    t0, t1 = ev.t_start - eng.config.evidence_pad_s, ev.t_end + eng.config.evidence_pad_s
    weights = None
    if w is not None and w.t.shape[0]:
        every = max(1, int(w.t.shape[0] // 240))  # ≤ 240 points a line is plenty for a plot
        weights = {"plates": list(w.plate_ids),
                   "t": [round(float(x), 3) for x in w.t[::every]],
                   "grams": [[_r(g, 1) for g in row] for row in w.grams[::every]]}
    skeletons: dict[str, list[list[Any]]] = {}
    step = 1.0 / REPLAY_HZ
    for sid in c.sessions:
        sess = eng.book.sessions.get(sid)
        frames: list[list[Any]] = []
        for tid in sess.track_ids if sess else []:
            tr = next((x for x in eng.tracker.tracks if x.track_id == tid), None)
            if tr is None:
                continue
            ts, js = tr.window(t0, t1)
            last = -math.inf
            for t, j in zip(ts, js, strict=True):
                if t - last < step:
                    continue
                last = float(t)
                frames.append([round(float(t), 2),
                               [[_r(v) for v in joint] for joint in j.tolist()]])
        skeletons[sid] = frames
    plates = eng.store.plates
    boxes = {p: [plates[p].box.min, plates[p].box.max] for p in ev.plate_ids if p in plates}
    return {
        "case_id": c.case_id, "t0": t0, "t1": t1, "reasons": list(c.reasons),
        "event": {"kind": ev.kind, "plates": list(ev.plate_ids), "delta_g": _r(ev.delta_g, 1),
                  "t_start": ev.t_start, "t_end": ev.t_end},
        "decided": {k: [list(i) for i in v] for k, v in c.decided.items()},
        "sessions": list(c.sessions),
        "credentials": {s: eng.book.sessions[s].credential for s in c.sessions
                        if s in eng.book.sessions},
        "hypotheses": [{"items": [list(i) for i in h.items], "probability": h.probability}
                       for h in ev.hypotheses[:6]],
        "hands": [{"session_id": h.session_id, "probability": h.probability,
                   "reach_m": _r(h.reach_m, 3)} for h in c.evidence.hands],
        "weights": weights, "skeletons": skeletons, "plate_boxes": boxes,
    }


def health(eng: Engine, camera_last: dict[str, float], camera_rate: dict[str, float],
           t: float, ended: bool = False, inputs: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Plates (alive / noisy / dead), cameras (alive / noisy / dead), the inventory, and
    ``inputs``: what the source did with the sensor data it got (the MQTT counters of
    duplicates, late and rejected messages; what loading a recording put right), so that
    bad input is seen by the operator, not only in a log.
    ``ended``: the source (a recording, a simulation) has no more frames; its cameras are
    then ``idle``, not dead, unless a device alert said otherwise.

    States are what the device is now, not whether it ever failed: a plate is dead from its
    fault alert until its ``plate_recovered``, noisy while spike alerts keep coming; a
    camera is dead while no frame came after its ``device_silent`` (devices named as the
    network source names them: ``cameras/<id>``, ``plates/<gondola>``)."""
    store = eng.store
    plates = _plate_states(eng, t)
    silent_at: dict[str, float] = {}
    for a in eng.alerts:
        if a.kind == "device_silent":
            cam = a.subject.removeprefix("cameras/")
            silent_at[cam] = max(a.t, silent_at.get(cam, -math.inf))
    cams = {}
    for cam in store.cameras:
        last = camera_last.get(cam.id)
        silent = cam.id in silent_at and (last is None or last <= silent_at[cam.id])
        if ended and not silent:
            cams[cam.id] = "idle"
        elif silent or last is None or t - last > CAMERA_DEAD_S:
            cams[cam.id] = "dead"
        elif camera_rate.get(cam.id, cam.fps) < 0.5 * cam.fps:
            cams[cam.id] = "noisy"
        else:
            cams[cam.id] = "alive"
    return {"t": t, "plates": plates, "cameras": cams, "inventory": _inventory(eng),
            "learned": _learned(eng), "inputs": inputs or {}}


#: shelf alerts that put a plate out of service until its ``plate_recovered``
PLATE_FAULTS = frozenset({"plate_dead", "plate_stuck"})


def _plate_states(eng: Engine, t: float) -> dict[str, str]:
    """Each plate's state at ``t``, from the alerts in the order they were raised."""
    store = eng.store
    gondola_plates = {f"plates/{g.id}": [p.id for s in g.shelves for p in s.plates]
                      for g in store.gondolas}
    dead: set[str] = set()
    #: gondolas whose device fell silent and has not sent again: their plates are dead too.
    #: Apart from the plates' own faults: when the whole store falls silent no data flows, so
    #: the shelf never sees a plate fail or recover; the source's ``device_back`` clears it
    silent: set[str] = set()
    spikes: dict[str, float] = {}
    for a in eng.alerts:
        if a.kind in PLATE_FAULTS:
            dead.add(a.subject)
        elif a.kind == "plate_recovered":
            dead.discard(a.subject)
        elif a.kind == "device_silent" and a.subject in gondola_plates:
            silent.add(a.subject)
        elif a.kind == "device_back":
            silent.discard(a.subject)
        elif a.kind == "plate_spikes":
            spikes[a.subject] = a.t
    for g in silent:
        dead.update(gondola_plates[g])
    # spikes that go on are alerted again every alert_repeat_s: two silent periods, gone
    quiet_after = 2.0 * eng.config.shelf.alert_repeat_s
    return {pid: "dead" if pid in dead
            else "noisy" if t - spikes.get(pid, -math.inf) <= quiet_after else "alive"
            for pid in store.plate_ids}


def _inventory(eng: Engine) -> list[dict[str, Any]]:
    """What each footprint holds, flagged ``low`` (at most its planogram entry's
    ``reorder_at`` left, ``LOW_STOCK`` by default; none at all included: an empty facing is
    the first to restock) or ``misplaced`` (a product its planogram does not list there)."""
    store = eng.store
    listed: dict[str, set[str]] = {}
    for e in store.planogram:
        for p in e.plates:
            listed.setdefault(p, set()).add(e.product)
    snap = eng.shelf.inventory.snapshot()
    index = store.plate_index
    reorder: dict[tuple[tuple[str, ...], str], int] = {}
    for e in store.planogram:  # a facing sold out is no longer in the snapshot
        fp = tuple(sorted(set(e.plates), key=index.__getitem__))
        snap.setdefault(fp, {}).setdefault(e.product, 0)
        reorder[fp, e.product] = LOW_STOCK if e.reorder_at is None else e.reorder_at
    inventory = []
    for footprint, counts in sorted(snap.items(), key=lambda kv: [index[p] for p in kv[0]]):
        fp = list(footprint)
        for product, n in sorted(counts.items()):
            misplaced = not any(product in listed.get(p, ()) for p in fp)
            if n <= 0 and misplaced:
                continue
            at = reorder.get((footprint, product), LOW_STOCK)
            inventory.append({"plates": fp, "product": product, "count": max(n, 0),
                              "low": n <= at and not misplaced, "reorder_at": at,
                              "misplaced": misplaced})
    return inventory


def _learned(eng: Engine) -> dict[str, list[str]]:
    """Plate → the products decided picks proved it holds though its planogram does not list
    them (``ShelfStage.learned``): with the inventory, what a new stream needs to go on with
    the shelves of one whose engine state was lost (``Engine.restock``)."""
    index = eng.store.plate_index
    learned = getattr(eng.shelf, "learned", {})
    return {p: sorted(learned[p]) for p in sorted(learned, key=index.__getitem__) if learned[p]}


def publish(d: Deps, eng: Engine, runner: Any, source: str, chunk: int, t: float,
            write: bool = True) -> None:
    """Append this chunk's live rows (see the module docstring). ``write`` False: a chunk
    replayed after a restart, whose rows were committed before it: only the runner's state
    moves on (rows purged or erased since are not brought back)."""
    st = state_of(runner)
    if not write:
        st.alerts = len(eng.alerts)
        st.evidence.update(eng.cases)
        _staff_rows(eng, st, source, None)
        _camera_rates(runner, st, st.t, t)
        st.t = max(st.t, t)
        return
    now = d.clock.now()
    rows: list[dict[str, Any]] = []

    def row(kind: str, seq: int, at: float, payload: Any, ref: str | None = None,
            sub: str = "live") -> None:
        rows.append({"source": f"{source}/{sub}", "seq": seq, "kind": kind, "t": at,
                     "payload": json.dumps(payload, separators=(",", ":"), default=_plain),
                     "recorded_at": now,
                     "ref": ref})

    if t > st.t:
        row("positions", chunk, t, {"t0": st.t, "t1": t, "people": positions(eng, st.t, t)})
    rows += _staff_rows(eng, st, source, now)
    rows += _alert_rows(eng, st, source, now)
    for k, cid in enumerate(eng.cases):
        if cid not in st.evidence:
            row("case_evidence", k, eng.cases[cid].event.t_end, evidence(eng, cid), cid,
                "evidence")
            st.evidence.add(cid)
    rate = _camera_rates(runner, st, st.t, t)
    if t > st.t:
        # a finished recording or simulation: its cameras fell quiet, they did not die
        ended = t > getattr(getattr(runner, "sensors", None), "duration_s", math.inf)
        row("health", chunk, t, health(eng, st.camera_last, rate, t, ended,
                                       runner.input_stats()), None, "health")
        st.t = t
    with d.sessions.begin() as s:
        insert_ignore(s, EngineEvent, rows, ["source", "seq"])


def _staff_rows(eng: Engine, st: LiveState, source: str, now: Any) -> list[dict[str, Any]]:
    """The event-log rows of the staff sessions opened since the last call (seq: their order of
    opening, the same on a replay): a staff session's id and its badge's credential. The
    closed store's pseudo-session (``store``, no credential) names nobody and gets none."""
    seen = set(st.staff)
    new = [s for s in eng.book.sessions.values()
           if s.staff and is_staff_credential(s.credential) and s.session_id not in seen]
    rows = [{"source": f"{source}/staff", "seq": k, "kind": "staff_session", "t": s.entered_at,
             "payload": json.dumps({"session_id": s.session_id, "credential": s.credential},
                                   separators=(",", ":")),
             "recorded_at": now, "ref": s.session_id}
            for k, s in enumerate(new, start=len(st.staff))]
    st.staff += [s.session_id for s in new]
    return rows


def _alert_rows(eng: Engine, st: LiveState, source: str, now: Any) -> list[dict[str, Any]]:
    """The event-log rows of the alerts raised since the last call (seq: the alert's index)."""
    rows = [{"source": f"{source}/alerts", "seq": k, "kind": a.kind, "t": a.t,
             "payload": json.dumps({"t": a.t, "kind": a.kind, "message": a.message,
                                    "subject": a.subject}, separators=(",", ":"),
                                   default=_plain),
             "recorded_at": now, "ref": a.subject[:64] or None}
            for k, a in enumerate(eng.alerts[st.alerts:], start=st.alerts)]
    st.alerts = len(eng.alerts)
    return rows


def publish_alerts(d: Deps, eng: Engine, runner: Any, source: str) -> None:
    """Append the alerts raised since the last publish now, between chunks (a live source's
    device alerts: a store whose devices fell silent may release no chunk to carry them)."""
    rows = _alert_rows(eng, state_of(runner), source, d.clock.now())
    if rows:
        with d.sessions.begin() as s:
            insert_ignore(s, EngineEvent, rows, ["source", "seq"])


def _camera_rates(runner: Any, st: LiveState, t0: float, t1: float) -> dict[str, float]:
    """Frames per second of each camera over (t0, t1]: from the runner's recorded frames, or
    for a live network source (no recording) the frames of the chunk it persists
    (``chunk_frames``)."""
    if t1 <= t0:
        return {}
    chunk = getattr(runner, "chunk_frames", None)
    if chunk is not None:
        seen = chunk
    else:
        frames = getattr(getattr(runner, "sensors", None), "frames", None)
        if not frames:
            return {}
        if st.frame_t is None:
            st.frame_t = np.array([f.t for f in frames])
        i0, i1 = np.searchsorted(st.frame_t, [t0, t1], side="right")
        seen = frames[i0:i1]
    n = Counter(f.camera_id for f in seen)
    for f in seen:
        st.camera_last[f.camera_id] = max(f.t, st.camera_last.get(f.camera_id, -math.inf))
    return {c: k / (t1 - t0) for c, k in n.items()}


def apply_verdicts(d: Deps, eng: Engine, source: str, chunk: int | None = None,
                   fresh: bool = True) -> int:
    """Hand the operators' verdicts on open cases of stream ``source`` to the engine; returns
    how many applied.

    A verdict names its case's stream: another stream may have a case of the same id (a
    recording's clock starts at 0 each time it is served), and that one is not this engine's.
    A verdict is an input of the engine like a gate event, so a replay must meet it where the
    first run did: the first application stamps the row with ``chunk`` (the chunk after whose
    step it came), and a replayed chunk (``fresh`` False: processed before a restart) applies
    only the verdicts stamped with it or earlier. A fresh chunk also takes the verdicts not
    applied yet. (Applying every verdict as soon as its case reopened, as before, met it
    chunks earlier than the first run when the shopper's exit came between: the replay issued
    other receipt revisions and moved the plates at another moment.) Rows applied before
    stamps existed are applied as soon as their case is open, as then. Verdicts due together
    go in the order they were decided.

    A verdict naming a session or product the engine does not know is logged and marked
    applied (the API checks both before it records one, so this is a stale row)."""
    open_ids = [cid for cid, c in eng.cases.items() if c.open]
    if not open_ids:
        return 0
    legacy = ReviewVerdict.applied_chunk.is_(None) & ReviewVerdict.applied_at.is_not(None)
    due = legacy | (ReviewVerdict.applied_chunk.is_(None) if fresh else false())
    if chunk is not None:
        due = due | (ReviewVerdict.applied_chunk <= chunk)
    with d.sessions() as s:
        found = list(s.scalars(select(ReviewVerdict).where(
            ReviewVerdict.source == source, ReviewVerdict.case_id.in_(open_ids), due)
            .order_by(ReviewVerdict.decided_at, ReviewVerdict.case_id)))
    done = 0
    for v in found:
        shares = {sid: tuple((str(p), int(q)) for p, q in items)
                  for sid, items in json.loads(v.shares).items()}
        try:
            eng.resolve(v.case_id, Verdict(shares, reviewer=v.decided_by, note=v.note or ""))
            done += 1
        except (KeyError, ValueError) as e:
            log.warning("verdict on case %s of %s not applied: %s", v.case_id, source, e)
        if v.applied_chunk is None:
            stamp: dict[str, Any] = {"applied_chunk": chunk}
            if v.applied_at is None:
                stamp["applied_at"] = d.clock.now()
            with d.sessions.begin() as s:
                s.execute(update(ReviewVerdict).where(ReviewVerdict.source == source,
                                                      ReviewVerdict.case_id == v.case_id,
                                                      ReviewVerdict.applied_chunk.is_(None))
                          .values(**stamp))
    return done
