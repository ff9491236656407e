"""The live engine of ``walkout serve --source mqtt://...``: the store's sensor network in
through the broker, receipts and alerts back out on the result topics.

Same outputs as :class:`~walkout.service.runner.LiveRunner` (event log, cart lines, charges at
exit, all idempotent), fed by :class:`~walkout.sources.mqtt.MqttSource` chunk by chunk instead
of from a recording. Each receipt the engine issues (revisions included) is published on
``walkout/{store}/receipts/{session}``, each alert (the engine's and the source's
``device_silent``) on ``walkout/{store}/alerts`` (docs/mqtt.md); the source's alerts join the
engine's, so that the dashboard's alert stream and health page show them too.

A live store's runner ignores an end-of-stream message (counted as rejected
``end_not_accepted``): anybody who can publish on the broker could otherwise stop its engine.
``accept_end`` (``walkout serve --accept-end``) obeys it, for replays and simulations.

A live stream cannot be replayed from its beginning after a crash the way a recording can:
each start of the runner is a stream of its own (its event-log source carries the start time),
so a restart never mistakes its new events for the old run's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from walkout.engine import Engine, EngineConfig
from walkout.events import Alert, GateEvent, KeypointFrame
from walkout.service import live, store_mode
from walkout.service.deps import Deps
from walkout.service.runner import LiveRunner, _issued
from walkout.sources.mqtt import MqttPublisher, MqttSource, PublishRefused, split_url
from walkout.store.model import Store

log = logging.getLogger("walkout.service.mqtt_runner")


class MqttRunner(LiveRunner):
    """Runs the engine on the chunks an :class:`MqttSource` releases, until the source's end of
    stream (a replayed or simulated store, with ``accept_end``) or the service stops.

    ``url`` is ``mqtt://host:port[/store]``: the path names the store on the wire (default: the
    store's own name). Picklable: the broker connections are made in :meth:`run`, in the
    engine's worker process.
    """

    def __init__(self, url: str, store: Store, *, client_id: str | None = None,
                 config: EngineConfig | None = None, poll_s: float = 0.2,
                 accept_end: bool = False, silent_after_s: float = 10.0) -> None:
        self.url, wire_name = split_url(url)
        self.store_name = wire_name or store.name
        self._store = store
        self.client_id = client_id or f"walkout-engine-{self.store_name}"
        self.config = config or EngineConfig()
        self.poll_s = poll_s
        self.accept_end = accept_end
        self.silent_after_s = silent_after_s  # a camera or gondola quiet this long: alerted
        self.source = f"mqtt:{self.store_name}:{time.strftime('%Y%m%dT%H%M%S')}"
        self.speed = None
        self.stop_after_chunk = None
        self.chunks_done = 0
        self._gates: list[GateEvent] = []
        self.published = {"receipts": 0, "alerts": 0}
        self._engine_alerts = 0  # engine alerts already published
        self._t = 0.0  # end of the last chunk stepped
        self._src: MqttSource | None = None  # while running: its counters feed the health page
        #: the frames of the chunk being persisted: the health page's camera liveness (a live
        #: source keeps no recording to look them up in)
        self.chunk_frames: list[KeypointFrame] = []

    @property
    def store(self) -> Any:
        return self._store

    def _gate_log(self) -> list[GateEvent]:
        return self._gates

    def input_stats(self) -> dict[str, Any]:
        """The source's counters so far (read in the runner's thread, which updates them)."""
        if self._src is None:
            return {}
        st = self._src.stats
        notes = [f"{st.sessions_lost} reconnections found no session kept by the broker: what "
                 "it received meanwhile was lost"] if st.sessions_lost else []
        return {"received": st.received, "accepted": st.accepted, "duplicates": st.duplicates,
                "late": st.late, "missing": st.missing, "rejected": dict(st.rejected),
                "reconnects": max(0, st.connects - 1), "sessions_lost": st.sessions_lost,
                "notes": notes}

    def run(self, d: Deps, stop: threading.Event | None = None) -> None:
        eng = self._engine()  # in-process, or its stages on Ray (``serve --ray``)
        seen = {"gates": 0, "shelf": 0, "decisions": 0, "cases": 0, "lines": 0, "receipts": 0}
        src = self._src = MqttSource(self.url, self.store, self.store_name,
                                     client_id=self.client_id, chunk_s=self.config.chunk_s,
                                     accept_end=self.accept_end,
                                     silent_after_s=self.silent_after_s)
        pub = MqttPublisher(self.url, client_id=f"{self.client_id}-results")
        try:
            src.start()
            log.info("consuming %s (store %r on the wire) as %s", self.url, self.store_name,
                     self.client_id)
            while not src.finished:
                if stop is not None and stop.is_set():
                    return
                for block, frames, gates, now in src.poll(self.poll_s):
                    self._gates += gates
                    self._admit(d, gates)
                    # the operator's restock mode, at the chunk's start as in LiveRunner.run
                    t0 = self._t if self.chunks_done else now - self.config.chunk_s
                    if self.chunks_done == 0:
                        store_mode.carry_over(d, self.source, t0)
                    store_mode.apply_modes(d, eng, self.source, self.chunks_done, t0)
                    eng.step(block, frames, self._opened(d, gates), now)
                    self._t = now
                    self.chunk_frames = frames
                    self._persist(d, eng, seen, self.chunks_done, now)
                    self.chunks_done += 1
                    self._publish(pub, eng)
                self._device_alerts(d, pub, eng, src.take_alerts())
            eng.finish()
            self._persist(d, eng, seen, self.chunks_done + 1, self._t)
            self._publish(pub, eng)
            st = src.stats
            log.info("end of stream: %d messages accepted, %d duplicates, %d late, %d missing, "
                     "rejected %s; %d receipts published", st.accepted, st.duplicates, st.late,
                     st.missing, dict(st.rejected), self.published["receipts"])
        finally:
            src.close()
            try:
                pub.flush(30.0)
            except TimeoutError as e:
                log.error("results not all acknowledged by the broker: %s", e)
            except PublishRefused as e:  # each refusal was logged with its topic as it came
                log.error("results refused by the broker: %s", e)
            pub.close()

    def _publish(self, pub: MqttPublisher, eng: Engine) -> None:
        """What the engine issued since the last call: receipts, then alerts."""
        issued = _issued(eng)
        for r in issued[self.published["receipts"]:]:
            pub.publish_receipt(self.store_name, r)
        self.published["receipts"] = len(issued)
        for a in eng.alerts[self._engine_alerts:]:
            self._publish_alert(pub, a)
        self._engine_alerts = len(eng.alerts)

    def _device_alerts(self, d: Deps, pub: MqttPublisher, eng: Engine,
                       alerts: list[Alert]) -> None:
        """The source's alerts (``device_silent``) join the engine's: published on the alerts
        topic and written to the event log at once (the dashboard's alert stream and health
        page read them there; a store whose devices all fell silent releases no chunk)."""
        if not alerts:
            return
        self._publish(pub, eng)  # the engine's own first, in the order they came
        eng.alerts.extend(alerts)
        for a in alerts:
            self._publish_alert(pub, a)
        self._engine_alerts = len(eng.alerts)
        live.publish_alerts(d, eng, self, self.source)

    def _publish_alert(self, pub: MqttPublisher, a: Alert) -> None:
        pub.publish_alert(self.store_name, a)
        self.published["alerts"] += 1
