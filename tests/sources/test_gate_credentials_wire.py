"""A gate message's credential on the wire: an entry must name a payer (or a staff badge) the
service could have handed the gate (the API's pattern, 1-128 characters of ``A-Za-z0-9._:-``).
An entry with none bound its person to no payer and raised no alert; one longer than the
visits' column stopped the engine at its admission on PostgreSQL, at every restart."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from walkout.events import GateEvent
from walkout.sources import wire
from walkout.sources.mqtt import MqttSource
from walkout.store.loader import load_store


def _payload(**over: object) -> bytes:
    o = {"v": 1, "seq": 1, "t": 12.5, "gate": "entry", "kind": "entry", "party_size": 1,
         "credential": "qr-0001-00001", **over}
    return json.dumps({k: v for k, v in o.items() if v is not None}).encode()


@pytest.mark.parametrize("cred", ["qr-0001-00001", "staff:0123abcd", "a", "x" * 128,
                                  "A.b_c:D-9"])
def test_an_entry_with_a_credential_of_the_apis_pattern_is_accepted(cred: str) -> None:
    assert wire.decode_gate(_payload(credential=cred), "entry").event.credential == cred


@pytest.mark.parametrize("cred", [None, "", "x" * 129, "qr-" + "x" * 200, "qr 1", "qr/1",
                                  "ünïcode", "qr-1\n"])
def test_an_entry_without_a_valid_credential_is_a_bad_field(cred: str | None) -> None:
    with pytest.raises(wire.WireError, match="credential") as e:
        wire.decode_gate(_payload(credential=cred), "entry")
    assert e.value.reason == "bad_field"
    assert "x" * 129 not in str(e.value)  # the detail says its length, not the whole of it


def test_an_exit_needs_no_credential_but_a_given_one_must_be_valid() -> None:
    assert wire.decode_gate(_payload(kind="exit", gate="exit", credential=None),
                            "exit").event.credential == ""
    with pytest.raises(wire.WireError, match="credential"):
        wire.decode_gate(_payload(kind="exit", gate="exit", credential="x" * 300), "exit")


def test_a_source_counts_such_an_entry_rejected_and_releases_no_event() -> None:
    s = MqttSource("mqtt://127.0.0.1:1", load_store("small"), "shop", chunk_s=1.0)
    base = time.monotonic()
    for seq, cred in enumerate(["", "x" * 200]):
        s._handle(wire.gate_topic("shop", "entry"),
                  wire.encode_gate(seq, GateEvent(1.0 + seq, "entry", "entry", cred)),
                  base + 1.0 + seq)
    assert s.stats.rejected == Counter({"bad_field": 2})
    assert s.stats.accepted == 0
