"""A camera's keypoint frames published live to the store's engine over MQTT, one message per
frame as it is made (docs/mqtt.md: the camera's keypoints topic, QoS 1).

Nothing is held here: a frame is encoded, handed to paho and forgotten. While the broker is
away paho keeps the unacknowledged messages (the device publishers' ``MqttPublisher``: it
never drops) and sends them again once it has reconnected; what the broker never acknowledged
by the end is counted, not raised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from walkout.events import KeypointFrame
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, PublishRefused

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker cannot be reached at the start (refused, unknown host, no answer)."""


class KeypointPublisher:
    """Publishes one camera's frames on ``walkout/{store}/cameras/{camera}/keypoints``.

    ``seq`` counts from 0 per run and +1 per frame: a restarted publisher counts from 0 again,
    as a rebooted device does, which the engine allows (it knows a repeat by the frame's
    camera and time, not by its seq). ``t`` is the frame's capture time plus ``origin``: a
    live stream's publisher is given the wall-clock time of the stream's t = 0
    (:meth:`set_origin`), so a camera worker restarted goes on with the clock it had, as a
    device's clock does, instead of stepping back to 0; a video file's frames keep their own
    time (origin 0)."""

    def __init__(self, url: str, store: str, camera: str, *, connect_s: float = 10.0) -> None:
        self.url, self.topic = url, wire.keypoints_topic(store, camera)
        self.seq = 0
        self.origin = 0.0
        self._stats: dict[str, Any] | None = None
        try:
            self._pub = MqttPublisher(url)
        except (OSError, ValueError) as e:  # refused, unknown host, TCP timeout, bad URL
            raise BrokerError(f"cannot reach the MQTT broker at {url}: {e}") from e
        end = time.monotonic() + connect_s
        while not self._pub.client.is_connected():  # TCP accepted, but does it speak MQTT?
            if time.monotonic() > end:
                self._pub.close()
                raise BrokerError(f"the MQTT broker at {url} did not answer within "
                                  f"{connect_s:.0f} s")
            time.sleep(0.05)

    def set_origin(self, origin: float) -> None:
        """The wall-clock time of the frames' t = 0 (a live stream's start)."""
        self.origin = origin

    def __call__(self, frame: KeypointFrame) -> None:
        """Publish ``frame`` now (queued in paho while the broker is away)."""
        self._pub.publish(self.topic, wire.encode_keypoints(self.seq, self.origin + frame.t,
                                                            frame.keypoints))
        self.seq += 1

    def close(self, flush_s: float = 10.0) -> dict[str, Any]:
        """Wait up to ``flush_s`` for the broker's acknowledgements, then disconnect; the
        counters (``mqtt_unacked``: published but never acknowledged, lost if the broker
        stays away) for the run's stats. Closing again returns them again."""
        if self._stats is not None:
            return self._stats
        unacked = 0
        try:
            self._pub.flush(flush_s)
        except TimeoutError as e:
            log.error("MQTT broker %s: %s", self.url, e)
            unacked = self._pub.unacked
        except PublishRefused as e:
            log.error("MQTT broker %s: %s", self.url, e)
        finally:
            self._pub.close()
        self._stats = {"mqtt": self.url, "mqtt_topic": self.topic,
                       "mqtt_published": self.seq, "mqtt_unacked": unacked,
                       "mqtt_refused": self._pub.refused}
        return self._stats

    def __enter__(self) -> KeypointPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
