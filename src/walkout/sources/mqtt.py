"""MQTT adapter: a store's sensor network in, receipts and alerts out, through a real broker.

Entry points:

- :func:`publish_session` plays a simulated session (or a recording's :class:`Sensors`) onto
  the broker in source-time order, in real time or as fast as the broker takes it;
- :class:`MqttSource` subscribes (QoS 1, persistent session) and yields time chunks
  ``(PlateBlock, frames, gates, now)`` exactly as :meth:`walkout.engine.Engine.step` takes them;
- :class:`MqttPublisher` publishes receipts and alerts on the result topics;
- :func:`measure_throughput` measures what the path sustains with no loss.

The consumer turns a real network's mess into the ordered stream the engine needs: bounded
reordering by source time, duplicates dropped, per-device clock skew corrected, implausible
times and bad payloads rejected and counted, silent devices alerted; no message can raise out
of it or end a live stream. Topics and payloads: :mod:`walkout.sources.wire`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from walkout.checkout import Receipt
from walkout.events import Alert, GateEvent, KeypointFrame, PlateBlock
from walkout.sim.session import SimSession
from walkout.sources import wire
from walkout.sources.recording import Sensors, chunk_edges
from walkout.store.model import Store

log = logging.getLogger(__name__)

#: what :class:`MqttSource` yields: the arguments of ``Engine.step(block, frames, gates, now)``
Chunk = tuple[PlateBlock, list[KeypointFrame], list[GateEvent], float]

_PERIODIC = ("plates", "cameras")  # device kinds that send all the time (silence = a fault)


def parse_url(url: str) -> tuple[str, int]:
    """``mqtt://host[:port]`` → (host, port)."""
    u = urlparse(url)
    if u.scheme != "mqtt" or not u.hostname:
        raise ValueError(f"not an MQTT URL (mqtt://host:port): {url!r}")
    return u.hostname, u.port or 1883


def split_url(url: str) -> tuple[str, str | None]:
    """``mqtt://host:port[/store]`` → (``mqtt://host:port``, the store's name on the wire or
    None): the CLI's way of naming a store on a shared broker."""
    host, port = parse_url(url)
    u = urlparse(url)
    name = u.path.strip("/")
    if "/" in name or "+" in name or u.fragment or u.query or "#" in url:
        raise ValueError(f"the path of {url!r} must be one store name (no '/', '+' or '#')")
    return f"mqtt://{host}:{port}", name or None


def _client(client_id: str, manual_ack: bool = False) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5, manual_ack=manual_ack)
    c.reconnect_delay_set(1, 2)  # a restarted broker is back within a second or two
    c.max_inflight_messages_set(1000)  # QoS 1 throughput is bound by acks in flight
    c.max_queued_messages_set(0)  # never drop: publishes wait in memory while disconnected
    return c


# ---- publishing -----------------------------------------------------------------------------


class PublishRefused(RuntimeError):
    """The broker answered messages with a failure reason code (an ACL's "Not authorized", a
    quota): they reached nobody, although the broker acknowledged them."""


_NO_ANSWER = object()


class MqttPublisher:
    """A QoS 1 publisher whose messages survive a broker restart (paho re-sends the unacked
    ones on reconnect); :meth:`flush` waits until the broker acknowledged every one, and raises
    :class:`PublishRefused` when it refused some (a refusal is also logged with its topic at
    once: a receipt that reached nobody must not look delivered)."""

    def __init__(self, url: str, client_id: str | None = None, qos: int = 1) -> None:
        host, port = parse_url(url)
        self.qos = qos
        self._sent = 0
        self._acked = 0
        #: messages the broker refused, and the latest (topic, reason) of them
        self.refused = 0
        self.refusals: deque[tuple[str, str]] = deque(maxlen=100)
        self._reported = 0  # refusals flush() already raised for
        self._topics: dict[int, str] = {}  # mid → topic until the broker answers
        self._early: dict[int, Any] = {}  # answers that beat publish() to noting their mid
        self._cv = threading.Condition()
        self.client = _client(client_id or f"walkout-pub-{uuid.uuid4().hex[:8]}")
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cv:
            self._acked += 1
            topic = self._topics.pop(mid, None)
            if topic is None:
                self._early[mid] = rc
            else:
                self._settle(topic, rc)
            self._cv.notify_all()

    def _settle(self, topic: str, rc: Any) -> None:
        if getattr(rc, "is_failure", False):
            self.refused += 1
            self.refusals.append((topic, str(rc)))
            if self.refused <= 10 or self.refused % 1000 == 0:  # a broker refusing all: no flood
                log.error("the broker refused the message on %s: %s (%d refused so far)",
                          topic, rc, self.refused)

    def publish(self, topic: str, payload: bytes) -> None:
        # not under self._cv: paho answers (on_publish) holding its own lock, which publish()
        # takes too
        info = self.client.publish(topic, payload, qos=self.qos)  # queued when disconnected
        with self._cv:
            self._sent += 1
            rc = self._early.pop(info.mid, _NO_ANSWER)
            if rc is _NO_ANSWER:
                self._topics[info.mid] = topic
            else:
                self._settle(topic, rc)

    @property
    def unacked(self) -> int:
        """Messages published that the broker has not answered yet (all of them are lost if
        the publisher closes before it does)."""
        with self._cv:
            return self._sent - self._acked if self.qos else 0

    def flush(self, timeout: float = 120.0) -> None:
        """Wait until the broker answered every message (QoS ≥ 1); raise :class:`TimeoutError`
        after ``timeout``, :class:`PublishRefused` if it refused any since the last flush."""
        if self.qos == 0:
            return
        end = time.monotonic() + timeout
        with self._cv:
            while self._acked < self._sent:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._sent - self._acked} of {self._sent} messages "
                                       "not acknowledged by the broker")
                self._cv.wait(min(left, 0.5))
            new, self._reported = self.refused - self._reported, self.refused
            if new:
                topic, reason = self.refusals[-1]
                raise PublishRefused(f"the broker refused {new} of {self._sent} messages "
                                     f"(the last on {topic}: {reason}); they reached nobody")

    def publish_receipt(self, store: str, receipt: Receipt) -> None:
        """Receipt ready (or re-issued): ``walkout/{store}/receipts/{session}``, not retained,
        QoS 1 JSON, for the store's other systems."""
        self.publish(wire.receipt_topic(store, receipt.session_id), wire.encode_receipt(receipt))

    def publish_alert(self, store: str, alert: Alert) -> None:
        self.publish(wire.alerts_topic(store), wire.encode_alert(alert))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Out:
    t_send: float  # source time at which the device would send it
    topic: str
    payload: bytes


def session_messages(
    sensors: Sensors | SimSession, store_name: str, batch_s: float = 0.1,
) -> tuple[list[_Out], dict[str, int]]:
    """A session as the store's devices would send it, in send order, and the count per device.

    Each gondola sends its plates' samples every ``batch_s`` (sent when the batch's last sample
    is taken), each camera one message per frame, each gate one per scan."""
    store, p = sensors.store, sensors.plates
    out: list[_Out] = []
    sent: Counter[str] = Counter()
    if p.t.shape[0] > 1:
        rate = round(1.0 / float(np.median(np.diff(p.t))), 6)
        cols = {pid: j for j, pid in enumerate(p.plate_ids)}
        cuts = np.searchsorted(p.t, np.arange(0.0, p.t[-1] + batch_s, batch_s))
        cuts = np.append(cuts, p.t.shape[0])
        bounds = [(int(a), int(b)) for a, b in pairwise(cuts) if b > a]
        for g in store.gondolas:
            ids = tuple(pl.id for s in g.shelves for pl in s.plates if pl.id in cols)
            if not ids:
                continue
            idx = [cols[i] for i in ids]
            sub = p.grams[:, idx]
            topic = wire.plates_topic(store_name, g.id)
            for a, b in bounds:
                seq = sent[f"plates/{g.id}"]
                out.append(_Out(float(p.t[b - 1]), topic, wire.encode_plates(
                    g.id, seq, float(p.t[a]), rate, ids, sub[a:b])))
                sent[f"plates/{g.id}"] += 1
    for f in sensors.frames:
        dev = f"cameras/{f.camera_id}"
        out.append(_Out(f.t, wire.keypoints_topic(store_name, f.camera_id),
                        wire.encode_keypoints(sent[dev], f.t, f.keypoints)))
        sent[dev] += 1
    for gt in sensors.gates:
        dev = f"gates/{gt.gate_id}"
        out.append(_Out(gt.t, wire.gate_topic(store_name, gt.gate_id),
                        wire.encode_gate(sent[dev], gt)))
        sent[dev] += 1
    out.sort(key=lambda m: m.t_send)  # stable: equal times keep plates, frames, gates order
    return out, dict(sent)


def publish_session(
    sensors_or_session: Sensors | SimSession, url: str, store_name: str,
    speed: float | None = None, *, batch_s: float = 0.1, end: bool = True,
) -> dict[str, Any]:
    """Play a session onto the broker as its devices would send it.

    ``speed`` None sends as fast as the broker acknowledges, 1.0 in real time, 10.0 ten times
    faster. With ``end`` a final message on ``walkout/{store}/control/end`` gives the duration
    and the count each device sent, so a consumer made with ``accept_end`` knows when it has
    everything. Returns
    ``{"messages", "seconds", "devices"}`` once the broker acknowledged every message.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (None: as fast as possible)")
    msgs, sent = session_messages(sensors_or_session, store_name, batch_s)
    t_start = time.monotonic()
    with MqttPublisher(url) as pub:
        for m in msgs:
            if speed is not None:
                delay = t_start + m.t_send / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.publish(m.topic, m.payload)
        if end:
            pub.publish(wire.end_topic(store_name),
                        wire.encode_end(float(sensors_or_session.duration_s), sent))
        pub.flush()
    return {"messages": len(msgs), "seconds": time.monotonic() - t_start, "devices": sent}


# ---- consuming ------------------------------------------------------------------------------


class ClockSkew:
    """Per-device clock offsets from one-way delays, and the correction to apply.

    ``receive − source`` time is the device's clock offset plus a network delay that only ever
    adds, so the lowest observation over a stretch of time estimates the offset (NTP's clock
    filter does the same). Devices are compared **bin by bin** of receive time (``bin_s``): a
    device's skew is the median, over its last ``bins`` bins, of its lowest offset in the bin
    minus the consensus of that same bin (the median of the periodic devices' lowest offsets in
    it). What the whole path adds at a moment (the consumer falling behind, a broker queueing,
    a replay published faster or slower than real time) is common to every device in the bin
    and cancels; a device's own clock offset stays. The previous estimator took each device's
    lowest over its last 128 messages, 8.5 s of a 15 fps camera but 12.8 s of a plate gondola:
    while the path delay rose the plates kept an older, lower minimum, were "corrected" by up
    to seconds and their samples dropped as late (tests/sources/test_mqtt_input.py, the
    stalled-consumer case). The median over bins ignores one glitched timestamp and follows a
    real step of a device's clock once half its bins have it. A device's first bin holds only a
    part of it and is not kept; until a device has a whole bin, the bin in progress is compared
    as far as it goes (a device's first messages, a gate's first scans).

    Outliers are judged per device, as before: an observation more than ``jump_s`` below the
    lowest of its last ``window`` offsets that ``agree`` of them (itself included) lie within
    ``agree_s`` of is a timestamp far ahead of its device's clock (:meth:`outlier`).

    A device further than ``tolerance_s`` from the consensus is corrected by the difference;
    nearer ones are trusted as they are, so that NTP-synced devices keep their exact timestamps
    instead of picking up jitter from the estimate.
    """

    def __init__(self, window: int = 128, min_obs: int = 10, tolerance_s: float = 0.25,
                 agree: int = 3, agree_s: float = 0.5, jump_s: float = 2.0,
                 bin_s: float = 0.5, bins: int = 20) -> None:
        if not 1 <= min_obs <= window:
            raise ValueError(f"skew_min_obs must be between 1 and the clock estimator's window "
                             f"({window} messages), got {min_obs}: a device's clock would never "
                             "be known and its messages would wait forever")
        if not (1 <= agree <= window and agree_s > 0 and jump_s > 0 and tolerance_s >= 0
                and bin_s > 0 and bins >= 1):
            raise ValueError("ClockSkew: agree must be in 1..window, agree_s, jump_s and bin_s "
                             "> 0, bins >= 1, tolerance_s >= 0")
        self.window, self.min_obs, self.tolerance_s = window, min_obs, tolerance_s
        self.agree, self.agree_s, self.jump_s = agree, agree_s, jump_s
        self.bin_s, self.bins = bin_s, bins
        self._obs: dict[str, deque[float]] = {}  # device → its last ``window`` offsets
        self._est: dict[str, float] = {}  # device → lowest agreed offset (for outliers)
        self._count: dict[str, int] = {}  # observations since the device was (re)set
        self._bin: int | None = None  # receive-time bin in progress
        self._cur: dict[str, list[float]] = {}  # device → its offsets in the bin in progress
        self._fresh: set[str] = set()  # devices whose first bin is in progress (a part of it)
        self._mins: dict[str, deque[tuple[int, float]]] = {}  # device → (bin, lowest) finished
        self._cons: dict[int, float] = {}  # finished bin → consensus (median of voters' lowest)
        self.voters: set[str] = set()  # periodic devices that are not silent

    def observe(self, device: str, offset: float, recv: float) -> None:
        """Take one message's ``offset`` (receive − source time), received at ``recv``."""
        d = self._obs.get(device)
        if d is None:
            d = self._obs[device] = deque(maxlen=self.window)
        d.append(offset)
        self._est[device] = self._lowest_agreed(d)
        self._count[device] = self._count.get(device, 0) + 1
        if self._count[device] == 1:
            self._fresh.add(device)
        b = math.floor(recv / self.bin_s)
        if self._bin is None:
            self._bin = b
        elif b > self._bin:  # (a receive time out of order stays in the bin in progress)
            self._close_bin()
            self._bin = b
        self._cur.setdefault(device, []).append(offset)

    def _close_bin(self) -> None:
        """The bin in progress is finished: keep each device's lowest and their consensus."""
        assert self._bin is not None
        lows = {dev: min(offs) for dev, offs in self._cur.items()
                if offs and dev not in self._fresh}  # a device's first bin: only a part of it
        self._fresh.clear()
        for dev, low in lows.items():
            m = self._mins.get(dev)
            if m is None:
                m = self._mins[dev] = deque(maxlen=self.bins)
            m.append((self._bin, low))
        voted = [low for dev, low in lows.items() if dev in self.voters]
        if voted:
            self._cons[self._bin] = statistics.median(voted)
            if len(self._cons) > _KEEP_BINS:  # a gate's bins live as long as its last scans
                del self._cons[next(iter(self._cons))]
        self._cur = {}

    def forget_last(self, device: str) -> None:
        """Take back the latest observation (its message was refused: it must not count)."""
        d = self._obs.get(device)
        if not d:
            return
        d.pop()
        self._count[device] -= 1
        cur = self._cur.get(device)
        if cur:
            cur.pop()
        if d:
            self._est[device] = self._lowest_agreed(d)
        else:
            self.reset(device)

    def _lowest_agreed(self, d: deque[float]) -> float:
        a = np.sort(np.fromiter(d, np.float64, len(d)))
        if a.size >= self.agree:
            n = (np.searchsorted(a, a + self.agree_s, "right")
                 - np.searchsorted(a, a - self.agree_s, "left"))
            ok = np.flatnonzero(n >= self.agree)
            if ok.size:
                return float(a[ok[0]])
        return float(a[0])

    def outlier(self, device: str, offset: float) -> bool:
        """A timestamp more than ``jump_s`` further ahead of its receive time than the device's
        estimate says: a glitch, unless ``agree`` observations confirm a step of its clock."""
        est = self._est.get(device)
        return est is not None and offset < est - self.jump_s

    def stepped(self, device: str) -> None:
        """The device's clock stepped ahead (its outliers were confirmed): its finished bins and
        what the bin in progress holds of the old clock no longer describe it."""
        est = self._est.get(device)
        self._mins.pop(device, None)
        cur = self._cur.get(device)
        if cur and est is not None:
            self._cur[device] = [o for o in cur if o <= est + self.jump_s]
        self._fresh.add(device)

    def reset(self, device: str) -> None:
        """Forget a device's offsets (it came back after a silence: maybe a new clock)."""
        for d in (self._obs, self._est, self._count, self._cur, self._mins):
            d.pop(device, None)
        self._fresh.discard(device)

    def established(self, device: str) -> bool:
        return self._count.get(device, 0) >= self.min_obs

    def skew(self, device: str) -> float:
        """Estimated offset of the device's clock from the consensus (s, + = behind)."""
        diffs = [low - self._cons[b] for b, low in self._mins.get(device, ())
                 if b in self._cons]
        if diffs:
            return statistics.median(diffs)
        cur = self._cur.get(device)  # no whole bin yet: the bin in progress, as far as it goes
        voted = [min(offs) for dev, offs in self._cur.items() if dev in self.voters and offs]
        if not cur or not voted:
            return 0.0
        return min(cur) - statistics.median(voted)

    def correction(self, device: str) -> float:
        """Seconds to add to the device's timestamps (0 inside the tolerance)."""
        if not self.established(device):
            return 0.0
        s = self.skew(device)
        return s if abs(s) > self.tolerance_s else 0.0


#: finished bins whose consensus is kept (an hour of 1 s bins): a rare gate's skew is judged
#: against the bins of its last scans
_KEEP_BINS = 3600


@dataclass
class SourceStats:
    """What the consumer saw; every message is either accepted or counted under a reason."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    late: int = 0  # messages (or plate batches with samples) behind the released time
    #: messages the broker delivered again (a restart or reconnection before they were
    #: acknowledged) behind the released time: taken in before, not late
    redelivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason → count
    connects: int = 0
    #: reconnections on which the broker had no session for us: what it would have queued
    #: meanwhile is gone (a broker restarted without persistence, an expired session)
    sessions_lost: int = 0
    missing: int = 0  # messages the end-of-stream message announced but never came
    corrections_s: dict[str, float] = field(default_factory=dict)  # device → last correction


class _Seen:
    """Recently seen keys of one device, in bounded memory. Keys are what the reading is (its
    time, and for a gate the scan), not the sequence number: a device that restarts counting
    and re-sends what it had buffered must not be read twice."""

    def __init__(self, keep: int = 8192) -> None:
        self.keys: set[tuple[Any, ...]] = set()
        self.order: deque[tuple[Any, ...]] = deque()
        self.keep = keep
        self.unique = 0

    def add(self, key: tuple[Any, ...]) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        self.order.append(key)
        self.unique += 1
        if len(self.order) > self.keep:
            self.keys.discard(self.order.popleft())
        return True


class _Samples:
    """Which of a plate device's recent samples (by index on its own clock) were taken, in a
    fixed ``size``-bit window behind the newest: 512 bytes a gondola, whatever the store's
    size. A sample further back than the window is not known here: it is long released, and
    the late count takes it."""

    def __init__(self, size: int = 4096) -> None:
        self.size, self.hi = size, -(1 << 62)
        self.bits = np.zeros(size, bool)

    def taken(self, ks: np.ndarray) -> np.ndarray:
        """Per index in ``ks``: taken before."""
        inside = (ks <= self.hi) & (ks > self.hi - self.size)
        out = np.zeros(ks.shape, bool)
        out[inside] = self.bits[ks[inside] % self.size]
        return out

    def take(self, ks: np.ndarray) -> None:
        top = int(ks.max())
        if top > self.hi:
            if top - self.hi >= self.size:
                self.bits[:] = False
            else:  # the slots the window moves over are cleared
                self.bits[np.arange(self.hi + 1, top + 1) % self.size] = False
            self.hi = top
        ks = ks[ks > self.hi - self.size]
        self.bits[ks % self.size] = True


_Msg = wire.PlateMessage | wire.KeypointMessage | wire.GateMessage


class _Ack:
    """A received QoS 1 message's acknowledgement, sent once what it carries is safe: ``t``
    the newest time of its data the stream took in (-inf: none, it was dropped or refused),
    ``open`` while it still waits to be taken in or refused (its device's clock)."""

    __slots__ = ("epoch", "mid", "open", "t")

    def __init__(self, mid: int, epoch: int = 0) -> None:
        self.mid, self.t, self.open, self.epoch = mid, -math.inf, False, epoch


class _Held(NamedTuple):
    """A decoded message waiting (for its device's clock, or for the stream's first chunk)."""

    m: _Msg
    t_src: float  # its source time (the last sample of a plate batch)
    recv: float  # monotonic time it arrived
    ack: _Ack | None = None  # with ``manual_ack``: its acknowledgement
    dup: bool = False  # the broker delivered it before (MQTT's DUP flag)


_MAX_HELD = 1000  # gate scans kept per gate before the stream's first chunk is placed


class MqttSource:
    """Consume a store's sensors from MQTT as the ordered chunks the engine steps on.

    QoS 1 on a persistent session (``clean_start`` False, session expiry): when the broker or
    this consumer restarts, the broker keeps what was published meanwhile and delivers it on
    reconnect; subscriptions are renewed on every connect. Messages are held until the newest
    source time is ``reorder_window_s`` past a chunk's end, then released in time order; a
    message behind the released time is late: counted, logged, dropped. A periodic device's
    first ``skew_min_obs`` messages wait until its clock offset is known, so a skewed clock
    never reaches the engine uncorrected. A message stamped more than ``max_jump_s`` ahead of
    the stream (plus the real time since it last advanced), or behind it before the first chunk,
    is refused as ``implausible_time``: one glitched clock cannot move the chunk clock.

    Nothing a message carries raises out of :meth:`poll`: a message is accepted or counted under
    a reason in :attr:`stats`. The end-of-stream message is obeyed only with ``accept_end``
    (replays, simulations, benchmarks); a live store takes none, so that nobody can stop its
    engine by publishing one. Received messages wait in a queue of at most ``max_inbox``; when
    it is full the network thread waits up to ``inbox_wait_s`` (the broker keeps the rest), then
    drops and counts (``rejected["overflow"]``).

    Use :meth:`start` (or ``with``), then iterate (ends after an accepted end-of-stream
    message) or call :meth:`poll`. Alerts (``device_silent``, also for a camera or gondola never
    heard from) collect in :attr:`alerts`.
    """

    #: how long the network thread waits for room in a full input queue before it drops
    #: (well under the 30 s keep-alive: the broker must not think us dead meanwhile)
    inbox_wait_s = 5.0
    #: acknowledgements that may wait in order (``manual_ack``) before the ready ones go out
    #: of order: half the 65,535 the broker delivers unacknowledged. Only a message stamped
    #: far ahead of the stream (a gate scan, up to ``max_jump_s``) holds the others back
    #: for long, and in a busy store they would fill the broker's window before the stream
    #: reached it: it stops delivering, and the stream never does
    ack_budget = 32_768

    def __init__(
        self, url: str, store: Store, store_name: str | None = None, *,
        client_id: str = "walkout-engine", chunk_s: float = 5.0, reorder_window_s: float = 0.5,
        silent_after_s: float = 10.0, skew_tolerance_s: float = 0.25, skew_min_obs: int = 10,
        session_expiry_s: int = 3600, end_grace_s: float = 10.0, accept_end: bool = False,
        max_jump_s: float = 30.0, max_inbox: int = 100_000, manual_ack: bool = False,
    ) -> None:
        for name, value, positive in (
            ("chunk_s", chunk_s, True), ("reorder_window_s", reorder_window_s, False),
            ("silent_after_s", silent_after_s, True), ("max_jump_s", max_jump_s, True),
            ("skew_tolerance_s", skew_tolerance_s, False), ("end_grace_s", end_grace_s, False),
        ):  # a wrong setting is refused here, not found out as a stream that never moves
            if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
                raise ValueError(f"MqttSource: {name} must be a finite number "
                                 f"{'> 0' if positive else '>= 0'}, got {value!r}")
        if session_expiry_s < 0 or max_inbox < 1:
            raise ValueError("MqttSource: session_expiry_s must be >= 0 and max_inbox >= 1")
        self.host, self.port = parse_url(url)
        self.store = store
        self.store_name = store_name or store.name
        self.client_id = client_id
        self.chunk_s, self.window_s = chunk_s, reorder_window_s
        self.silent_after_s, self.end_grace_s = silent_after_s, end_grace_s
        self.session_expiry_s = session_expiry_s
        self.accept_end, self.max_jump_s = accept_end, max_jump_s
        self.skew = ClockSkew(min_obs=skew_min_obs, tolerance_s=skew_tolerance_s)
        self.stats = SourceStats()
        self.alerts: list[Alert] = []
        self.finished = False
        self._plate_ids = store.plate_ids
        self._plate_index = store.plate_index
        self._plate_gondola = {p: g.id for p, g in store.plate_gondola.items()}
        self._cam_order = {c.id: i for i, c in enumerate(store.cameras)}
        self._gate_kind = {g.id: g.kind for g in store.gates}
        #: the devices that must send all the time: silent when never heard from as well
        self._periodic = [f"cameras/{c.id}" for c in store.cameras] + [
            f"plates/{g}" for g in dict.fromkeys(self._plate_gondola.values())]
        self._inbox: queue.Queue[tuple[str, bytes, float, int, bool, int]] = queue.Queue(
            max_inbox)
        #: acknowledge a message only once what it carries is safe (:meth:`acknowledge`), not
        #: on receipt: a consumer that dies loses nothing the broker delivered
        self.manual_ack = manual_ack
        self._acks: deque[_Ack] = deque()  # in the order received: acknowledged in that order
        self._over_budget = False  # more than ack_budget waited at the last acknowledge
        self._cur: _Ack | None = None  # the message being handled
        #: the UNSUBSCRIBE whose answer :meth:`_sync_acks` waits for
        self._sync_mid: tuple[int, threading.Event] | None = None
        self._dup = False  # ... was delivered before
        #: broker sessions begun (the one the messages arriving now belong to)
        self._epoch = 0
        self._resumed = False  # continuing a stream: the broker should have kept a session
        self._overflow = 0  # written by the network thread only
        self._overflow_counted = 0
        self._closing = False
        self._subscribed = threading.Event()
        self._client: mqtt.Client | None = None
        self._seen: dict[str, _Seen] = {}
        self._held: dict[str, list[_Held]] = {}  # device → waiting for its clock / first chunk
        self._suspects: dict[str, list[_Held]] = {}  # device → outliers awaiting confirmation
        self._heard: dict[str, float] = {}  # device → monotonic time of its last message
        self._never: set[str] = set()  # expected devices not heard from yet
        self._watch_since: float | None = None
        self._silent: set[str] = set()
        #: periodic device → (its messages in a row refused as far ahead, the latest's time)
        self._ahead: dict[str, tuple[int, float]] = {}
        self._cols: dict[tuple[tuple[str, ...], str], np.ndarray] = {}
        #: plate sample time → (grams, written) over all plates: the first write of a sample
        #: stands, as a recording's loader keeps the first of a repeated reading
        self._rows: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        #: plate device → the source indices (its own clock) of its samples taken, and the
        #: newest sample index one went to: a sample is told new by its own clock
        self._plate_src: dict[str, _Samples] = {}
        self._plate_end: dict[str, int] = {}
        self._frames: list[tuple[float, int, KeypointFrame]] = []
        self._gate_events: list[GateEvent] = []
        self._watermark = -math.inf  # newest (corrected) source time of a periodic device
        self._wm_recv = 0.0  # when (monotonic) it last advanced
        self._origin: float | None = None  # start of the first chunk
        self._first = math.inf  # earliest buffered time before the first chunk is released
        self._ready: list[Chunk] = []
        self._k = 0  # chunks released
        self._end: wire.EndMessage | None = None
        self._end_at = 0.0

    # -- connection ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> MqttSource:
        """Connect and subscribe; returns once the broker confirmed the subscriptions."""
        c = self._client = _client(self.client_id, self.manual_ack)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        if self.manual_ack:  # up to a chunk's messages wait for their acknowledgement
            props.ReceiveMaximum = 65535
        self._closing = False
        c.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        c.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no subscription confirmed by mqtt://{self.host}:{self.port}")
        self._watch()
        return self

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if rc.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", self.host, self.port, rc)
            return
        self.stats.connects += 1
        if self.stats.connects > 1:
            log.warning("reconnected to the broker (session present: %s); resubscribing",
                        flags.session_present)
        if not flags.session_present:
            # packet ids are the session's: those of the messages still waiting now name the
            # new session's, which must not be acknowledged by them (:meth:`acknowledge`)
            self._epoch += 1
            if self.stats.connects > 1 or self._resumed:  # a continued stream expects one too
                self.stats.sessions_lost += 1
                log.error("the broker kept no session for %s: whatever it received while we "
                          "were disconnected is lost (broker restarted without persistence, or "
                          "the session expired)", self.client_id)
        opts = SubscribeOptions(qos=1)
        client.subscribe([(t, opts) for t in wire.input_topics(self.store_name)])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # the network thread only stamps and queues: decoding happens in the consumer's thread.
        # A full queue first pushes back (the broker holds what it cannot deliver), bounded so
        # that keep-alives still go out
        mid = msg.mid if self.manual_ack and msg.qos else 0  # QoS 0 needs no acknowledgement
        item = (msg.topic, msg.payload, time.monotonic(), mid, bool(msg.dup), self._epoch)
        try:
            self._inbox.put(item, timeout=0.0 if self._closing else self.inbox_wait_s)
        except queue.Full:
            self._overflow += 1
            if self._overflow == 1 or self._overflow % 1000 == 0:
                log.error("input queue full (%d messages): %d messages dropped so far; the "
                          "engine does not keep up", self._inbox.maxsize, self._overflow)

    def close(self) -> None:
        """Disconnect; the broker keeps the session (and queues for it) until it expires."""
        if self._client is not None:
            self._closing = True
            if self.manual_ack:
                self._sync_acks()
            self._client.disconnect()
            # let the network thread write the DISCONNECT (it closes the socket then) before
            # stopping it
            end = time.monotonic() + 5.0
            while self._client.socket() is not None and time.monotonic() < end:
                time.sleep(0.01)
            self._client.loop_stop()
            self._client = None

    def _sync_acks(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has taken every acknowledgement sent so far.

        Writing them is not enough: paho closes the socket right after the DISCONNECT, and
        with the broker's next messages unread in it the kernel resets the connection, and
        the broker drops what it had not read yet, acknowledgements included (a loaded
        machine's restart was sent everything again). An UNSUBSCRIBE queued behind them is a
        barrier: the broker answers packets of a connection in order, so its UNSUBACK says
        that the acknowledgements before it were taken."""
        c = self._client
        if c is None or not c.is_connected():
            return False
        done = threading.Event()
        rc, mid = c.unsubscribe(wire.sync_topic(self.store_name, uuid.uuid4().hex))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self._sync_mid = (mid, done)
        ok = done.wait(timeout)
        if not ok:
            log.warning("the broker did not confirm the last acknowledgements within %.0f s: "
                        "it may send their messages again", timeout)
        return ok

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, rcs: Any,
                        props: Any) -> None:
        want = self._sync_mid
        if want is not None and want[0] == mid:
            want[1].set()

    def __enter__(self) -> MqttSource:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the stream ---------------------------------------------------------------------------

    @property
    def origin(self) -> float | None:
        """Start of the stream's first chunk (None until the earliest data placed it)."""
        return self._origin

    def resume(self, origin: float, chunks: int, idle_s: float = 0.0) -> None:
        """Continue a stream of which a previous consumer released ``chunks`` chunks from
        ``origin`` (its engine's state was restored, ``walkout.service.live_state``): the
        chunks go on from there and what arrives for time already released is late.
        ``idle_s``: the real time since that consumer's last chunk, so that the first data
        after the gap is not refused as a jump of the stream's clock."""
        if self._origin is not None:
            raise RuntimeError("MqttSource.resume: the stream has started already")
        self._origin, self._k, self._first = origin, chunks, origin
        self._resumed = True
        self._watermark = self._edge(chunks)
        self._wm_recv = time.monotonic() - max(0.0, idle_s)

    def __iter__(self) -> Iterator[Chunk]:
        while not self.finished:
            yield from self.poll(0.2)

    def poll(self, timeout: float = 0.1, max_messages: int = 20000) -> list[Chunk]:
        """Handle what arrived (waiting up to ``timeout`` for the first) and return the chunks
        now complete, oldest first."""
        try:
            item: tuple[str, bytes, float, int, bool, int] | None = self._inbox.get(
                timeout=timeout)
        except queue.Empty:
            item = None
        n = 0
        while item is not None:
            self._handle(*item)
            n += 1
            if n >= max_messages:
                break
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None
        dropped = self._overflow - self._overflow_counted
        if dropped:  # counted here: the stats belong to this thread
            self._overflow_counted += dropped
            self.stats.received += dropped
            self.stats.rejected["overflow"] += dropped
        self._check_silence()
        if self._end is not None and not self.finished and self._end_complete():
            try:
                self._finish(self._end.t)
            except Exception:  # a bug must not loop: end the stream, say why
                log.exception("error at the end of the stream")
                self.finished = True
        out, self._ready = self._ready, []
        return out

    def acknowledge(self, upto: float) -> int:
        """Acknowledge, in the order received, the messages whose data is all before ``upto``
        (the end of the last chunk the caller made safe, e.g. journaled) or that carried
        nothing the stream took in; stops at the first that must wait. With ``manual_ack``
        only; returns how many were acknowledged. What stays unacknowledged, the broker
        delivers again to the next consumer of the session."""
        n = 0
        client = self._client
        while self._acks and not self._acks[0].open and self._acks[0].t < upto:
            a = self._acks.popleft()
            if client is not None and a.epoch == self._epoch:  # else: its session is gone
                client.ack(a.mid, 1)
            n += 1
        if len(self._acks) > self.ack_budget:  # one far ahead holds the rest back
            if not self._over_budget:
                head = self._acks[0]
                why = ("waiting to be taken in" if head.open
                       else f"whose data is {head.t - upto:.1f} s ahead of the stream")
                log.warning("%d acknowledgements wait behind a message %s: the ready ones go "
                            "out of order, so that the broker does not stop delivering",
                            len(self._acks), why)
            self._over_budget = True
            left: deque[_Ack] = deque()
            for a in self._acks:
                if a.open or a.t >= upto:
                    left.append(a)
                    continue
                if client is not None and a.epoch == self._epoch:
                    client.ack(a.mid, 1)
                n += 1
            self._acks = left
        else:
            self._over_budget = False
        return n

    def take_alerts(self) -> list[Alert]:
        out, self.alerts = self.alerts, []
        return out

    # -- message handling ---------------------------------------------------------------------

    def _reject(self, where: str, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected message on %s: %s (%s)", where, reason, detail)

    def _handle(self, topic: str, payload: bytes, recv: float, mid: int = 0,
                dup: bool = False, epoch: int = 0) -> None:
        """One message: accepted, held, or counted under a reason; never an exception.
        ``dup``: the broker delivered it before; ``epoch``: the broker session it came in."""
        self.stats.received += 1
        self._cur = None
        self._dup = dup
        if self.manual_ack and mid:
            self._cur = _Ack(mid, epoch)
            self._acks.append(self._cur)
        try:
            self._dispatch(topic, payload, recv)
        except wire.WireError as e:
            self._reject(topic, e.reason, str(e))
        except Exception as e:  # a bug must not stop the store: count it, log it, go on
            log.exception("unexpected error handling a message on %s", topic)
            self._reject(topic, "error", repr(e))

    def _dispatch(self, topic: str, payload: bytes, recv: float) -> None:
        store, kind, name = wire.parse_topic(topic)
        if store != self.store_name:
            raise wire.WireError("unknown_topic", f"store {store!r}")
        if kind == "end":
            self._on_end(wire.decode_end(payload), recv)
            return
        m: _Msg
        key: tuple[Any, ...]
        if kind == "plates":
            m = wire.decode_plates(payload)
            self._columns(m.plate_ids, name)
            dev, t_src, key = f"plates/{name}", m.t_last, (m.t0, m.grams.shape[0])
        elif kind == "keypoints":
            if name not in self._cam_order:
                raise wire.WireError("unknown_device", f"camera {name!r}")
            m = wire.decode_keypoints(payload)
            dev, t_src, key = f"cameras/{name}", m.t, (m.t,)
        elif kind == "gates":
            if name not in self._gate_kind:
                raise wire.WireError("unknown_device", f"gate {name!r}")
            m = wire.decode_gate(payload, name)
            e = m.event
            if e.kind != self._gate_kind[name]:
                raise wire.WireError("wrong_gate_kind", f"{e.kind} scan on the "
                                     f"{self._gate_kind[name]} gate {name!r}")
            dev, t_src, key = f"gates/{name}", e.t, (e.t, e.kind, e.credential)
        else:
            raise wire.WireError("unknown_topic", topic)
        seen = self._seen.get(dev)
        if seen is None:
            seen = self._seen[dev] = _Seen()
        if not seen.add(key):
            self.stats.duplicates += 1
            log.debug("duplicate %s seq %d (t=%.3f) dropped", dev, m.seq, t_src)
            return
        if dev in self._silent:
            self._silent.discard(dev)
            self.skew.reset(dev)  # it may have rebooted with another clock
            self._plate_end.pop(dev, None)
            self._plate_src.pop(dev, None)
            for sus in self._suspects.pop(dev, []):
                _close(sus)
            log.warning("device %s is sending again", dev)
            gone = recv - self._heard[dev] if dev in self._heard else None
            t = self._watermark if math.isfinite(self._watermark) else 0.0
            self.alerts.append(Alert(t, "device_back", f"{dev} is sending again" + (
                f" after {gone:.1f} s of silence" if gone is not None else ""), dev))
        self._never.discard(dev)
        self._heard[dev] = recv
        h = _Held(m, t_src, recv, self._cur, self._dup)
        if self._cur is not None:
            self._cur.open = True  # until it is taken in or refused
        if dev.startswith(_PERIODIC):
            self._periodic_message(dev, h)
        elif self._origin is None:  # a gate scan is placed once the first chunk is
            held = self._held.setdefault(dev, [])
            if len(held) >= _MAX_HELD:
                raise wire.WireError("overflow", f"{len(held)} scans of {dev} already wait "
                                     "for the first camera or plate data")
            held.append(h)
        else:
            self._admit_safe(dev, h)

    def _periodic_message(self, dev: str, h: _Held) -> None:
        """Observe the device's clock; hold an outlier until its clock's step is confirmed (or
        refuse it once the device is back to its old clock); hold the rest until the clock is
        known; then admit in arrival order."""
        self.skew.voters.add(dev)
        offset = h.recv - h.t_src
        self.skew.observe(dev, offset, h.recv)
        if self.skew.outlier(dev, offset):
            sus = self._suspects.setdefault(dev, [])
            sus.append(h)
            if len(sus) > self.skew.agree:  # glitches that never agree: give up the oldest
                self._implausible(dev, sus.pop(0), "its device's clock never confirmed it")
            return
        held = self._held.setdefault(dev, [])
        stepped = False
        for s in self._suspects.pop(dev, []):
            if self.skew.outlier(dev, s.recv - s.t_src):
                self._implausible(dev, s, "an isolated jump of its device's clock")
            else:
                held.append(s)  # confirmed: a real step of the device's clock
                stepped = True
        if stepped:
            self.skew.stepped(dev)
        held.append(h)
        if self.skew.established(dev):
            self._admit_held(dev)

    def _implausible(self, dev: str, h: _Held, why: str) -> None:
        _close(h)
        self._reject(dev, "implausible_time", f"seq {h.m.seq} stamped t={h.t_src:.3f} s "
                     f"{h.t_src - h.recv:+.1f} s from its arrival: {why}")

    def _admit_held(self, dev: str) -> None:
        periodic = dev.startswith(_PERIODIC)
        for h in self._held.pop(dev, []):
            if periodic and self.skew.outlier(dev, h.recv - h.t_src):  # judged before the
                self._implausible(dev, h, "an isolated jump of its device's clock")  # clock was
                continue  # known
            self._admit_safe(dev, h)

    def _admit_safe(self, dev: str, h: _Held) -> None:
        """:meth:`_admit`, with whatever it refuses counted (it is this message's only count)."""
        _close(h)
        try:
            self._admit(dev, h)
        except wire.WireError as e:
            if not dev.startswith(_PERIODIC):
                self.skew.forget_last(dev)  # a refused scan must not steer the gate's clock
            self._reject(dev, e.reason, str(e))
        except Exception as e:
            log.exception("unexpected error admitting a message of %s", dev)
            self._reject(dev, "error", repr(e))

    def _columns(self, plate_ids: tuple[str, ...], gondola: str) -> np.ndarray:
        key = (plate_ids, gondola)
        cols = self._cols.get(key)
        if cols is None:
            bad = [p for p in plate_ids if self._plate_gondola.get(p) != gondola]
            if bad:
                raise wire.WireError("unknown_plate", f"{bad[:3]} not on gondola {gondola!r}")
            cols = self._cols[key] = np.array([self._plate_index[p] for p in plate_ids])
        return cols

    def _check_time(self, t_lo: float, t_hi: float, recv: float, dev: str | None = None) -> None:
        """Refuse a time the stream cannot have reached: further ahead of its newest time than
        ``max_jump_s`` plus the real time since that advanced (a store's clock runs no faster
        than real time, a replay's advances in small steps), unless most periodic devices
        agree on it (:meth:`_jumped`: a hole in the data); or, before the first chunk is
        placed, that far behind it (it would place the chunk clock). ``dev``: the periodic
        device that sent it."""
        if t_hi - t_lo > self.max_jump_s:
            raise wire.WireError("implausible_time", f"one batch spans {t_hi - t_lo:.0f} s")
        wm = self._watermark
        if not math.isfinite(wm):
            return
        ahead = t_hi - wm - max(0.0, recv - self._wm_recv)
        if ahead > self.max_jump_s:
            if dev is None or not self._jumped(dev, t_lo):
                raise wire.WireError("implausible_time", f"t={t_hi:.3f} s is {ahead:.1f} s "
                                     f"ahead of the stream (newest t={wm:.3f} s)")
        elif dev is not None:
            self._ahead.pop(dev, None)
        if self._origin is None and t_lo < wm - self.max_jump_s:
            raise wire.WireError("implausible_time", f"t={t_lo:.3f} s is {wm - t_lo:.1f} s "
                                 f"behind the stream (newest t={wm:.3f} s)")

    def _jumped(self, dev: str, t: float) -> bool:
        """Whether the stream's time jumped to about ``t``: more than half of the periodic
        devices sending (:attr:`ClockSkew.voters`) had ``agree`` messages in a row refused as
        that far ahead, within ``max_jump_s`` of each other. Then what the devices sent in
        between never arrived (the broker's queue was full while this consumer was down or
        behind, or its session expired): the stream goes on from there, and says so. The
        real-time allowance cannot tell: a backlog delivered in a burst just moved the stream,
        and every later message was refused for good. One device's clock jumping is still
        refused (and its clock estimate corrects it)."""
        n, _ = self._ahead.get(dev, (0, t))
        self._ahead[dev] = (n + 1, t)
        voters = self.skew.voters
        sure = [tt for d, (k, tt) in self._ahead.items() if k >= self.skew.agree and d in voters]
        if 2 * len(sure) <= len(voters) or max(sure) - min(sure) > self.max_jump_s:
            return False
        self._ahead.clear()
        wm = self._watermark
        msg = (f"the sensor data jumped {t - wm:.0f} s ahead (t={wm:.1f} s to {t:.1f} s), "
               f"{len(sure)} of {len(voters)} devices agreeing: what they sent in between never "
               "arrived (the broker's queue was full while the engine was down or behind, or "
               "its session expired); the stream goes on from there")
        log.error("%s", msg)
        self.alerts.append(Alert(wm, "stream_gap", msg, ""))
        return True

    def _admit(self, dev: str, h: _Held) -> None:
        """Correct the clock, refuse an implausible time, drop what is late or a repeat, buffer
        the rest."""
        m = h.m
        periodic = dev.startswith(_PERIODIC)
        if not periodic:
            self.skew.observe(dev, h.recv - h.t_src, h.recv)
        c = self.skew.correction(dev)
        voter = dev if periodic else None
        if isinstance(m, wire.PlateMessage):
            self._check_time(m.t0 + c, m.t_last + c, h.recv, voter)
        else:
            self._check_time(h.t_src + c, h.t_src + c, h.recv, voter)
        if c:
            self.stats.corrections_s[dev] = c
        released = self._released_until()
        if isinstance(m, wire.PlateMessage):
            n = m.grams.shape[0]
            cols = self._columns(m.plate_ids, dev.split("/", 1)[1])
            # a sample is told new by the device's own clock (its source index), not by where
            # the correction puts it: a correction that steps back (an estimate crossing the
            # tolerance as the path delay changes) put a new batch on samples already in,
            # and it was dropped as a repeat (the fresh-clone CI lost two batches so, under
            # load). What the device sent before is a repeat (a batch re-sent whole or in
            # other pieces, in or out of order); a new sample whose place holds one of the
            # device's own goes after the device's newest instead, so nothing is lost and its
            # timeline never runs backwards (the step back is held, as NTP slews rather than
            # steps a clock back; a step forward leaves a gap, as before)
            src = round(m.t0 * m.rate_hz) + np.arange(n)
            had = self._plate_src.setdefault(dev, _Samples())
            src_keep = ~had.taken(src)
            if not src_keep.any():
                self.stats.duplicates += 1
                log.debug("plate batch of %s (seq %d) repeats samples already in", dev, m.seq)
                return
            k0 = round((m.t0 + c) * m.rate_hz)
            first = int(np.argmax(src_keep))
            newest = self._plate_end.get(dev)
            if newest is not None and k0 + first <= newest and any(
                    (row := self._rows.get((k0 + i) / m.rate_hz)) is not None
                    and row[1][cols].any() for i in np.flatnonzero(src_keep).tolist()):
                k0 = newest + 1 - first
            ts = (k0 + np.arange(n)) / m.rate_hz
            keep = (ts >= released) & src_keep
            if (src_keep & ~keep).any():
                self._late(dev, m.seq, float(ts[src_keep][0]), released, h.dup)
            if not keep.any():
                return
            fresh = repeated = 0
            for t, g in zip(ts[keep].tolist(), m.grams[keep], strict=True):
                row = self._rows.get(t)
                if row is None:
                    row = self._rows[t] = (np.full(len(self._plate_ids), np.nan, np.float32),
                                           np.zeros(len(self._plate_ids), bool))
                new = ~row[1][cols]
                row[0][cols[new]] = g[new]
                row[1][cols[new]] = True
                fresh += int(new.any())
                repeated += int(not new.all())
            if not fresh:  # every sample already in: a re-sent batch
                self.stats.duplicates += 1
                log.debug("plate batch of %s (seq %d) repeats samples already in", dev, m.seq)
                return
            if repeated:
                log.info("plate batch of %s (seq %d): %d samples already in kept as first "
                         "received", dev, m.seq, repeated)
            t_first, t_new = float(ts[keep][0]), float(ts[-1])
            had.take(src[keep])
            self._plate_end[dev] = max(self._plate_end.get(dev, -1 << 62), k0 + n - 1)
            if h.ack is not None:
                h.ack.t = t_new
        else:
            t = h.t_src + c
            if t < released:
                self._late(dev, m.seq, t, released, h.dup)
                return
            if isinstance(m, wire.KeypointMessage):
                cam = dev.split("/", 1)[1]
                self._frames.append((t, self._cam_order[cam], KeypointFrame(cam, t, m.keypoints)))
            else:
                e = m.event
                self._gate_events.append(
                    GateEvent(t, e.gate_id, e.kind, e.credential, e.party_size) if c else e)
            t_first = t_new = t
            if h.ack is not None:
                h.ack.t = t
        self.stats.accepted += 1
        if periodic:  # event-only devices are too rare to date the stream or place its chunks
            self._first = min(self._first, t_first)
            if t_new > self._watermark:
                self._watermark, self._wm_recv = t_new, h.recv
                self._release_upto(t_new - self.window_s)

    def _late(self, dev: str, seq: int, t: float, released: float, dup: bool = False) -> None:
        if dup:  # sent again after a restart: its data went into a chunk before
            self.stats.redelivered += 1
            if self.stats.redelivered == 1:
                log.info("messages delivered again (a restart or reconnection before they were "
                         "acknowledged) for time already released are dropped, counted as "
                         "redelivered")
            return
        self.stats.late += 1
        log.warning("late message from %s (seq %d, t=%.3f s) dropped: the stream was already "
                    "released up to t=%.3f s (reordering window %.2f s)",
                    dev, seq, t, released, self.window_s)

    def _on_end(self, end: wire.EndMessage, recv: float) -> None:
        """Obeyed only with ``accept_end`` and at a time the stream can end at: a live store's
        engine must not stop on a message anybody may publish."""
        if not self.accept_end:
            raise wire.WireError("end_not_accepted", "this consumer takes no end-of-stream "
                                 "message (a live store; accept_end=False)")
        wm = self._watermark
        if math.isfinite(wm):
            if end.t < wm - self.window_s:
                raise wire.WireError("implausible_time", f"end of stream at t={end.t:.3f} s, "
                                     f"before the newest time received ({wm:.3f} s)")
            self._check_time(end.t, end.t, recv)
        log.info("end of stream announced at t=%.3f s", end.t)
        self._end, self._end_at = end, time.monotonic()

    def _watch(self) -> None:
        """Start the silence watch: every camera and gondola must be heard from."""
        if self._watch_since is None:
            self._watch_since = now = time.monotonic()
            for dev in self._periodic:
                if dev not in self._heard:
                    self._heard[dev] = now
                    self._never.add(dev)

    def _check_silence(self) -> None:
        if self._end is not None:
            return
        self._watch()
        now = time.monotonic()
        for dev, last in self._heard.items():
            if dev in self._silent or not dev.startswith(_PERIODIC):
                continue
            if now - last > self.silent_after_s:
                self._silent.add(dev)
                self.skew.voters.discard(dev)
                t = self._watermark if math.isfinite(self._watermark) else 0.0
                msg = (f"{dev} has sent nothing since this consumer started, "
                       f"{now - last:.1f} s ago" if dev in self._never
                       else f"{dev} sent nothing for {now - last:.1f} s")
                log.warning("device silent: %s", msg)
                self.alerts.append(Alert(t, "device_silent", msg, dev))
                self._settle(dev)

    def _settle(self, dev: str) -> None:
        """A device fell silent: nothing more will confirm its clock, so what of it waited for
        that is decided now, as at the end of a stream. Left waiting, a device that died after
        a few messages (or on a glitched timestamp) held every later acknowledgement back
        (``manual_ack`` acknowledges in order): the broker stops delivering at the Receive
        Maximum, and a restart is sent everything since again."""
        for s in self._suspects.pop(dev, []):
            self._implausible(dev, s, "its device fell silent before its clock confirmed it")
        if dev in self._held:
            self._admit_held(dev)

    # -- release ------------------------------------------------------------------------------

    def _edge(self, k: int) -> float:
        assert self._origin is not None
        return self._origin + k * self.chunk_s  # as chunk_edges

    def _released_until(self) -> float:
        return -math.inf if self._origin is None else self._edge(self._k)

    def _place(self, origin: float) -> None:
        """Fix the first chunk's start; the gate scans that waited for it are judged now."""
        self._origin = origin
        for dev in [d for d in self._held if not d.startswith(_PERIODIC)]:
            self._admit_held(dev)

    def _release_upto(self, upto: float) -> None:
        """Release every chunk that ends at or before ``upto``: nothing for it can still come
        in time. Checked after each message, so what is late does not depend on batching."""
        if self._origin is None:
            if not math.isfinite(self._first):
                return
            origin = math.floor(self._first / self.chunk_s) * self.chunk_s
            if origin + self.chunk_s > upto:
                return  # decide the origin only once the earliest data is surely in
            self._place(origin)
        while self._edge(self._k + 1) <= upto:
            self._ready.append(self._chunk())

    def _finish(self, t_end: float) -> None:
        """End of stream: everything still held or buffered goes out, in the chunks
        ``Sensors.chunks`` cuts from the same readings (:func:`chunk_edges` to the announced
        duration, and past a reading stamped later)."""
        for dev, sus in list(self._suspects.items()):  # nothing more will confirm them
            for s in sus:
                self._implausible(dev, s, "its device's clock never confirmed it")
        self._suspects.clear()
        for dev in [d for d in self._held if d.startswith(_PERIODIC)]:
            self._admit_held(dev)  # nothing more will come to settle their clocks
        if self._origin is None and math.isfinite(self._first):
            self._place(math.floor(self._first / self.chunk_s) * self.chunk_s)
        for dev in list(self._held):  # gate scans with no camera or plate data to date them
            for h in self._held.pop(dev):
                _close(h)
                self._late(dev, h.m.seq, h.t_src, math.inf)
        if self._origin is None:
            self.finished = True
            return
        if t_end > self._watermark + self.max_jump_s:  # accepted before any data was in
            log.warning("end of stream at t=%.3f s is far past the newest data (t=%.3f s): "
                        "ending at the data", t_end, self._watermark)
            t_end = self._watermark
        last = max([-math.inf, *self._rows, *(f[0] for f in self._frames),
                    *(g.t for g in self._gate_events)])
        n_edges = len(chunk_edges(self._origin, t_end, self.chunk_s, last_t=last))
        while self._k + 1 < n_edges:
            self._ready.append(self._chunk())
        self.finished = True

    def _end_complete(self) -> bool:
        assert self._end is not None
        missing = {d: n - (self._seen[d].unique if d in self._seen else 0)
                   for d, n in self._end.sent.items()}
        missing = {d: n for d, n in missing.items() if n > 0}
        if not missing:
            return True
        if time.monotonic() - self._end_at < self.end_grace_s:
            return False
        self.stats.missing = sum(missing.values())
        log.error("end of stream: %d announced messages never arrived: %s",
                  self.stats.missing, dict(sorted(missing.items())[:10]))
        return True

    def _chunk(self) -> Chunk:
        b = self._edge(self._k + 1)
        self._k += 1
        ts = sorted(t for t in self._rows if t < b)
        n_p = len(self._plate_ids)
        grams = (np.stack([self._rows.pop(t)[0] for t in ts]) if ts
                 else np.zeros((0, n_p), np.float32))
        block = PlateBlock(np.array(ts, dtype=np.float64), grams, self._plate_ids)
        self._frames.sort(key=lambda f: (f[0], f[1]))
        i = next((i for i, f in enumerate(self._frames) if f[0] >= b), len(self._frames))
        frames = [f[2] for f in self._frames[:i]]
        del self._frames[:i]
        self._gate_events.sort(key=lambda g: g.t)
        gates = [g for g in self._gate_events if g.t < b]
        self._gate_events = [g for g in self._gate_events if g.t >= b]
        return block, frames, gates, float(b)


def _close(h: _Held) -> None:
    """The held message is decided (taken in, late or refused): its acknowledgement may go
    once the data it gave, if any, is safe."""
    if h.ack is not None:
        h.ack.open = False


# ---- a private broker (tests, benchmarks) -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalMosquitto:
    """A private Mosquitto on 127.0.0.1 in its own temporary directory, stopped by its PID.

    ``persistence`` keeps sessions and queued messages on disk across :meth:`restart`, which is
    what a store's broker must do for a restart to lose nothing. ``acl``: the text of an ACL
    file (``topic read #`` …), to see how clients fare with a broker that refuses them."""

    def __init__(self, port: int = 0, persistence: bool = False, acl: str | None = None) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed (bash scripts/services.sh "
                                    "start mosquitto installs it)")
        self.exe = exe
        self.port = port or _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="walkout-mq."))
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:  # mosquitto drops to its own user: it must own its directory
            shutil.chown(self.dir, "mosquitto", "mosquitto")
        conf = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                "max_queued_messages 1000000", "max_inflight_messages 1000",
                "log_dest stderr", f"persistence {'true' if persistence else 'false'}"]
        if persistence:
            conf += [f"persistence_location {self.dir}/", "autosave_interval 1"]
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            os.chmod(self.dir / "acl", 0o644)
            conf.append(f"acl_file {self.dir}/acl")
        (self.dir / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        log_fh = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=log_fh, stderr=log_fh)
        log_fh.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: "
                                   + (self.dir / "mosquitto.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """SIGTERM (mosquitto writes its persistence file on the way out) and wait."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# ---- throughput -----------------------------------------------------------------------------


def _drain(src: MqttSource, total: int, timeout: float) -> float:
    """Poll until ``total`` messages were accepted; the time the last one was handled."""
    end = time.monotonic() + timeout
    while src.stats.accepted + src.stats.late < total and time.monotonic() < end:
        src.poll(0.05)
    return time.monotonic()


def measure_throughput(
    url: str, store: Store | None = None, seconds: float = 2.0, people: int = 2,
) -> dict[str, Any]:
    """Plate samples/s and keypoint frames/s through the broker and :class:`MqttSource`
    (decode, dedupe, clock and reorder included), each stream sent as fast as the broker
    acknowledges: ``seconds`` of the store's source time per stream.

    Plates go as one message per gondola per 100 ms of 60 Hz samples; frames one per message
    with ``people`` skeletons. ``lost`` counts messages sent but not delivered (must be 0).
    """
    from walkout.store.loader import load_store

    st = store or load_store("small")
    name = f"bench{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(0)
    rate, batch = 60.0, 6
    gondolas = [(g.id, tuple(p.id for s in g.shelves for p in s.plates)) for g in st.gondolas]
    n_batches = max(1, round(seconds * rate / batch))
    plate_msgs = [(wire.plates_topic(name, gid), wire.encode_plates(
        gid, k, k * batch / rate, rate, ids,
        rng.normal(500, 1, (batch, len(ids))).astype(np.float32)))
        for k in range(n_batches) for gid, ids in gondolas]
    plate_samples = n_batches * batch * sum(len(ids) for _, ids in gondolas)
    cams = [c.id for c in st.cameras]
    kp = (rng.random((people, 17, 3)) * 100).astype(np.float32)
    n_frames = max(1, round(seconds * 15))
    frame_msgs = [(wire.keypoints_topic(name, c), wire.encode_keypoints(k, k / 15, kp))
                  for k in range(n_frames) for c in cams]
    out: dict[str, Any] = {"lost": 0}
    for label, msgs, unit in (("plate_samples_per_s", plate_msgs, plate_samples),
                              ("keypoint_frames_per_s", frame_msgs, len(frame_msgs))):
        src = MqttSource(url, st, name, client_id=f"walkout-bench-{uuid.uuid4().hex[:8]}",
                         chunk_s=1.0, skew_min_obs=1).start()
        try:
            with MqttPublisher(url) as pub:
                t0 = time.monotonic()
                for topic, payload in msgs:
                    pub.publish(topic, payload)
                pub.flush()
                t1 = _drain(src, len(msgs), 60.0)
            got = src.stats.accepted + src.stats.late + src.stats.duplicates
            out["lost"] += len(msgs) - (src.stats.accepted + src.stats.late)
            out[label] = unit * (got / len(msgs)) / (t1 - t0)
            out[label.replace("_per_s", "_messages")] = len(msgs)
        finally:
            src.close()
            drop_session(url, src.client_id)
    return out


def drop_session(url: str, client_id: str) -> None:
    """Drop a consumer's persistent session (and what the broker queued for it)."""
    host, port = parse_url(url)
    c = _client(client_id)
    gone = threading.Event()
    c.on_disconnect = lambda *_: gone.set()
    try:
        c.connect(host, port, clean_start=True)
        c.loop_start()
        # the broker must have taken the connection, and then its end, before the next
        # connection of this client id: else that one takes the live session over and finds
        # it present (a race a loaded machine lost after a fixed 50 ms wait)
        end = time.monotonic() + 10.0
        while not c.is_connected() and time.monotonic() < end:
            time.sleep(0.01)
        c.disconnect()
        gone.wait(max(0.0, end - time.monotonic()))
        c.loop_stop()
    except OSError:
        pass
