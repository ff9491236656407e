"""The MQTT wire format: topics and versioned payloads of walkout's sensor network.

High-rate streams (plate weights, keypoint frames) travel as compact little-endian binary with
a fixed header and float32 arrays, because JSON would cost 5-10× the bytes and the decode time
at 60 Hz × thousands of plates; low-rate ones (gate scans, receipts, alerts, end of stream) are
JSON that any tool can read. Every payload carries the schema version, so a device on a newer
firmware is rejected with a reason instead of being misread. See docs/mqtt.md.

Decoders never trust the payload: every size, count and number is checked, and any problem
raises :class:`WireError` with a short machine-readable ``reason`` the consumer counts.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from walkout.checkout import Receipt
from walkout.checkout.tax import tax_json
from walkout.events import N_JOINTS, Alert, GateEvent

SCHEMA_VERSION = 1
MAGIC = b"WO"
KIND_PLATES = 1
KIND_KEYPOINTS = 2

#: magic, version, kind, seq, t (source time of the first sample / of the frame)
_COMMON = struct.Struct("<2sBBQd")
#: rate_hz, samples, plates, device-id bytes, plate-id bytes
_PLATES = struct.Struct("<dHHBH")
_PEOPLE = struct.Struct("<H")
MAX_PEOPLE = 1000  # per frame; more is a corrupt count, not a crowd
#: the plate sample rates a device may send: 1 Hz..10 kHz. Outside, ``k / rate_hz`` would either
#: spread one batch over hours (a wrong rate silently moves the stream's clock) or overflow
MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 10_000.0
#: a source time further from 0 than this (s, ~30,000 years) is corrupt, not a clock
MAX_ABS_T = 1e12
#: the largest party one scan admits: the service's own bound (visits.party_size ≤ 20)
MAX_PARTY = 20
#: what a gate event's credential may be: the API's own pattern for the credential it hands the
#: gate (``walkout.service.schemas``), which fits the visits' 128-character column
CREDENTIAL_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

TopicKind = Literal["plates", "gates", "keypoints", "end", "receipts", "alerts"]


class WireError(ValueError):
    """A payload or topic that cannot be accepted; ``reason`` is a short code for the stats."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---- topics ---------------------------------------------------------------------------------


def plates_topic(store: str, gondola: str) -> str:
    return f"walkout/{store}/plates/{gondola}"


def gate_topic(store: str, gate: str) -> str:
    return f"walkout/{store}/gates/{gate}"


def keypoints_topic(store: str, camera: str) -> str:
    return f"walkout/{store}/cameras/{camera}/keypoints"


def end_topic(store: str) -> str:
    return f"walkout/{store}/control/end"


def sync_topic(store: str, token: str) -> str:
    """A topic nobody publishes on: a consumer unsubscribes from it to learn, from the answer,
    that the broker has taken what it sent before (``MqttSource.close``)."""
    return f"walkout/{store}/control/sync-{token}"


def receipt_topic(store: str, session: str) -> str:
    return f"walkout/{store}/receipts/{session}"


def alerts_topic(store: str) -> str:
    return f"walkout/{store}/alerts"


def input_topics(store: str) -> list[str]:
    """Subscriptions of a consumer of ``store``'s sensors (result topics excluded)."""
    return [f"walkout/{store}/plates/+", f"walkout/{store}/gates/+",
            f"walkout/{store}/cameras/+/keypoints", end_topic(store)]


def parse_topic(topic: str) -> tuple[str, TopicKind, str]:
    """``(store, kind, device)`` of a walkout topic; the device is the gondola, gate or camera."""
    p = topic.split("/")
    if len(p) >= 3 and p[0] == "walkout" and p[1]:
        store, rest = p[1], p[2:]
        if len(rest) == 2 and rest[0] == "plates" and rest[1]:
            return store, "plates", rest[1]
        if len(rest) == 2 and rest[0] == "gates" and rest[1]:
            return store, "gates", rest[1]
        if len(rest) == 3 and rest[0] == "cameras" and rest[1] and rest[2] == "keypoints":
            return store, "keypoints", rest[1]
        if rest == ["control", "end"]:
            return store, "end", ""
        if len(rest) == 2 and rest[0] == "receipts" and rest[1]:
            return store, "receipts", rest[1]
        if rest == ["alerts"]:
            return store, "alerts", ""
    raise WireError("unknown_topic", topic)


# ---- binary: plates and keypoints ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlateMessage:
    """``grams[i, j]``: plate ``plate_ids[j]`` at source time ``t0 + i / rate_hz``."""

    device_id: str
    seq: int
    t0: float
    rate_hz: float
    plate_ids: tuple[str, ...]
    grams: np.ndarray  # (samples, plates) float32

    @property
    def t_last(self) -> float:
        return self.t0 + (self.grams.shape[0] - 1) / self.rate_hz


@dataclass(frozen=True, slots=True)
class KeypointMessage:
    seq: int
    t: float
    keypoints: np.ndarray  # (people, 17, 3) float32


def encode_plates(
    device_id: str, seq: int, t0: float, rate_hz: float, plate_ids: tuple[str, ...],
    grams: np.ndarray,
) -> bytes:
    """A batch of one gondola's samples. The sample period travels as its inverse (the rate)
    so that a consumer's grid ``k / rate_hz`` reproduces the device's timestamps exactly."""
    g = np.ascontiguousarray(grams, dtype="<f4")
    dev = device_id.encode()
    ids = "\n".join(plate_ids).encode()
    if g.ndim != 2 or g.shape[1] != len(plate_ids) or not 0 < g.shape[0] < 65536:
        raise ValueError(f"grams of shape {g.shape} do not fit {len(plate_ids)} plate ids")
    if len(dev) > 255 or len(ids) > 65535 or len(plate_ids) > 65535:
        raise ValueError("device id or plate id list too long for the wire header")
    return b"".join((
        _COMMON.pack(MAGIC, SCHEMA_VERSION, KIND_PLATES, seq, t0),
        _PLATES.pack(rate_hz, g.shape[0], g.shape[1], len(dev), len(ids)), dev, ids, g.tobytes(),
    ))


def encode_keypoints(seq: int, t: float, keypoints: np.ndarray) -> bytes:
    """One camera frame; the camera is named by the topic."""
    k = np.ascontiguousarray(keypoints, dtype="<f4")
    if k.ndim != 3 or k.shape[1:] != (N_JOINTS, 3) or k.shape[0] > MAX_PEOPLE:
        raise ValueError(f"keypoints of shape {k.shape}, expected (people, {N_JOINTS}, 3)")
    return b"".join((_COMMON.pack(MAGIC, SCHEMA_VERSION, KIND_KEYPOINTS, seq, t),
                     _PEOPLE.pack(k.shape[0]), k.tobytes()))


def _header(payload: bytes, kind: int) -> tuple[int, float]:
    if len(payload) < _COMMON.size:
        raise WireError("truncated", f"{len(payload)} bytes, header needs {_COMMON.size}")
    magic, version, k, seq, t = _COMMON.unpack_from(payload)
    if magic != MAGIC:
        raise WireError("bad_magic", repr(magic))
    if version != SCHEMA_VERSION:
        raise WireError("unknown_version", f"schema version {version}, this build reads "
                        f"{SCHEMA_VERSION}")
    if k != kind:
        raise WireError("wrong_kind", f"payload kind {k} on a topic for kind {kind}")
    if not (math.isfinite(t) and abs(t) < MAX_ABS_T):
        raise WireError("bad_timestamp", repr(t))
    return seq, t


def decode_plates(payload: bytes) -> PlateMessage:
    seq, t0 = _header(payload, KIND_PLATES)
    off = _COMMON.size
    if len(payload) < off + _PLATES.size:
        raise WireError("truncated", "plate header")
    rate, n, m, ldev, lids = _PLATES.unpack_from(payload, off)
    off += _PLATES.size
    if not (math.isfinite(rate) and MIN_RATE_HZ <= rate <= MAX_RATE_HZ) or n == 0 or m == 0:
        raise WireError("bad_header", f"rate {rate} Hz (allowed {MIN_RATE_HZ:g}-"
                        f"{MAX_RATE_HZ:g}), {n} samples, {m} plates")
    if len(payload) != off + ldev + lids + 4 * n * m:
        raise WireError("bad_length", f"{len(payload)} bytes for {n}×{m} samples")
    try:
        dev = payload[off : off + ldev].decode()
        ids = tuple(payload[off + ldev : off + ldev + lids].decode().split("\n"))
    except UnicodeDecodeError as e:
        raise WireError("bad_text", str(e)) from e
    if len(ids) != m or len(set(ids)) != m or "" in ids:
        raise WireError("bad_plate_ids", f"{len(ids)} ids for {m} plate columns")
    grams = np.frombuffer(payload, "<f4", n * m, off + ldev + lids).reshape(n, m)
    if np.isinf(grams).any():  # NaN is "no reading"; an infinite weight means nothing
        raise WireError("bad_value", f"{int(np.isinf(grams).sum())} infinite weights")
    return PlateMessage(dev, seq, t0, rate, ids, grams.astype(np.float32))


def decode_keypoints(payload: bytes) -> KeypointMessage:
    seq, t = _header(payload, KIND_KEYPOINTS)
    off = _COMMON.size
    if len(payload) < off + _PEOPLE.size:
        raise WireError("truncated", "keypoint header")
    (n,) = _PEOPLE.unpack_from(payload, off)
    off += _PEOPLE.size
    if n > MAX_PEOPLE or len(payload) != off + 4 * n * N_JOINTS * 3:
        raise WireError("bad_length", f"{len(payload)} bytes for {n} people")
    kp = np.frombuffer(payload, "<f4", n * N_JOINTS * 3, off).reshape(n, N_JOINTS, 3)
    if not np.isfinite(kp).all():  # the tracker's geometry has no use for NaN or inf
        raise WireError("bad_value", f"{int((~np.isfinite(kp)).sum())} non-finite coordinates")
    return KeypointMessage(seq, t, kp.astype(np.float32))


# ---- JSON: gates, end of stream, results ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateMessage:
    seq: int
    event: GateEvent


@dataclass(frozen=True, slots=True)
class EndMessage:
    """End of a replayed stream: its duration and how many messages each device sent, so the
    consumer can tell "all delivered" from "some still in flight"."""

    t: float
    sent: dict[str, int]


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps({"v": SCHEMA_VERSION, **obj}, separators=(",", ":")).encode()


def _loads(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError("bad_json", str(e)) from e
    if not isinstance(obj, dict):
        raise WireError("bad_json", "not an object")
    if "v" not in obj:
        raise WireError("missing_version")
    if obj["v"] != SCHEMA_VERSION:
        raise WireError("unknown_version", f"schema version {obj['v']!r}")
    return obj


def _num(obj: dict[str, Any], key: str) -> float:
    """A finite number no further from 0 than :data:`MAX_ABS_T` (every JSON number is a time)."""
    x = obj.get(key)
    if (isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x)
            or abs(x) >= MAX_ABS_T):
        raise WireError("bad_field", f"{key}={x!r}")
    return float(x)


def _int(obj: dict[str, Any], key: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    x = obj.get(key)
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        raise WireError("bad_field", f"{key}={x!r}")
    return x


def encode_gate(seq: int, g: GateEvent) -> bytes:
    return _dumps({"seq": seq, "t": g.t, "gate": g.gate_id, "kind": g.kind,
                   "credential": g.credential, "party_size": g.party_size})


def is_credential(cred: str) -> bool:
    """Whether ``cred`` is a credential the service can have handed a gate
    (:data:`CREDENTIAL_RE`)."""
    return CREDENTIAL_RE.fullmatch(cred) is not None


def decode_gate(payload: bytes, gate: str) -> GateMessage:
    """A gate scan; the gate named in the payload must be the topic's. An entry's credential
    must be :data:`CREDENTIAL_RE` (an exit's is empty or the same)."""
    o = _loads(payload)
    kind, cred = o.get("kind"), o.get("credential", "")
    if kind not in ("entry", "exit"):
        raise WireError("bad_field", f"kind={kind!r}")
    if not isinstance(cred, str):
        raise WireError("bad_field", f"credential of type {type(cred).__name__}")
    # an entry names its payer (or staff badge); an empty one bound its person to nobody, a
    # longer one than the visits' column stopped the engine at its admission, at every restart
    if (kind == "entry" or cred) and not is_credential(cred):
        raise WireError("bad_field", f"credential ({len(cred)} characters): an entry needs "
                        "1-128 of A-Z a-z 0-9 . _ : -")
    if o.get("gate") != gate:
        raise WireError("bad_field", f"gate {o.get('gate')!r} on the topic of gate {gate!r}")
    return GateMessage(_int(o, "seq"), GateEvent(_num(o, "t"), gate, kind, cred,
                                                 _int(o, "party_size", 1, MAX_PARTY)))


def encode_end(t: float, sent: dict[str, int]) -> bytes:
    return _dumps({"t": t, "sent": sent})


def decode_end(payload: bytes) -> EndMessage:
    o = _loads(payload)
    sent = o.get("sent")
    if not isinstance(sent, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in sent.items()
    ):
        raise WireError("bad_field", "sent")
    return EndMessage(_num(o, "t"), sent)


def _money(x: Decimal) -> str:
    return str(x)  # a string: JSON numbers are floats to most readers


def encode_receipt(r: Receipt) -> bytes:
    """A receipt ready (or re-issued after a review): what a store's other systems need."""
    return _dumps({
        "session": r.session_id, "credential": r.credential, "revision": r.revision,
        "currency": r.currency, "total": _money(r.total), "needs_review": r.needs_review,
        "entered_at": r.entered_at, "exited_at": r.exited_at,
        "lines": [{"product": ln.product_id, "name": ln.name, "quantity": ln.quantity,
                   "unit_price": _money(ln.unit_price), "amount": _money(ln.amount)}
                  for ln in r.lines],
        "tax": tax_json(r.tax, r.currency),  # included in the total, per rate
    })


def encode_alert(a: Alert) -> bytes:
    return _dumps({"t": a.t, "kind": a.kind, "message": a.message, "subject": a.subject})


def decode_result(payload: bytes) -> dict[str, Any]:
    """A receipt or alert payload as a dict (for subscribers and tests)."""
    return _loads(payload)
