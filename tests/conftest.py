"""Fixtures every test folder may use: the MQTT broker (the source adapters', the camera
publisher's and the service-on-Ray tests'; tests/ops keeps a private one per module)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from walkout.sources.mqtt import LocalMosquitto


@pytest.fixture(scope="module")
def mqtt_url() -> Iterator[str]:
    """The broker the test command started (``WALKOUT_TEST_MQTT_URL``), else a private one."""
    url = os.environ.get("WALKOUT_TEST_MQTT_URL")
    if url:
        yield url
        return
    yield from private_broker()


def private_broker() -> Iterator[str]:
    """A Mosquitto of the caller's own for a fixture's scope (skipped where none is
    installed): its URL, then it is stopped."""
    try:
        broker = LocalMosquitto().start()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    yield broker.url
    broker.close()
