"""The MQTT wire format: round trips, exact timestamps, and every malformed payload refused."""

from __future__ import annotations

import json
import struct
from decimal import Decimal

import numpy as np
import pytest

from walkout.checkout.receipt import Receipt, ReceiptLine
from walkout.events import Alert, GateEvent
from walkout.sources import wire


def _plates() -> bytes:
    g = np.arange(12, dtype=np.float32).reshape(6, 2)
    g[2, 1] = np.nan
    return wire.encode_plates("dev-7", 42, 1.5, 60.0, ("A1S-S1-P1", "A1S-S1-P2"), g)


def test_plates_round_trip_is_exact() -> None:
    m = wire.decode_plates(_plates())
    assert (m.device_id, m.seq, m.t0, m.rate_hz) == ("dev-7", 42, 1.5, 60.0)
    assert m.plate_ids == ("A1S-S1-P1", "A1S-S1-P2")
    assert m.grams.dtype == np.float32 and m.grams.shape == (6, 2)
    assert np.isnan(m.grams[2, 1]) and m.grams[5, 0] == 10.0
    assert m.t_last == pytest.approx(1.5 + 5 / 60)


def test_keypoints_round_trip() -> None:
    kp = np.random.default_rng(1).random((3, 17, 3)).astype(np.float32)
    m = wire.decode_keypoints(wire.encode_keypoints(7, 12.25, kp))
    assert (m.seq, m.t) == (7, 12.25)
    np.testing.assert_array_equal(m.keypoints, kp)
    empty = wire.decode_keypoints(wire.encode_keypoints(8, 1.0, np.zeros((0, 17, 3))))
    assert empty.keypoints.shape == (0, 17, 3)


def test_gate_end_and_results_round_trip() -> None:
    g = GateEvent(3.5, "G-IN", "entry", "qr-1", 2)
    assert wire.decode_gate(wire.encode_gate(4, g), "G-IN") == wire.GateMessage(4, g)
    e = wire.decode_end(wire.encode_end(105.9, {"cameras/C01": 10}))
    assert (e.t, e.sent) == (105.9, {"cameras/C01": 10})
    r = Receipt("s1", "qr-1", "EUR", (ReceiptLine("p1", "Milk", 2, Decimal("1.10"),
                                                  Decimal("2.20"), ("e1",)),),
                Decimal("2.20"), 1.0, 30.0, False)
    d = wire.decode_result(wire.encode_receipt(r))
    assert d["v"] == wire.SCHEMA_VERSION and d["total"] == "2.20"
    assert d["lines"] == [{"product": "p1", "name": "Milk", "quantity": 2,
                           "unit_price": "1.10", "amount": "2.20"}]
    assert d["tax"] == []  # a store without tax rates itemises none
    taxed = Receipt("s2", "qr-2", "EUR", (ReceiptLine("p1", "Milk", 3, Decimal("0.99"),
                                                      Decimal("2.97"), ("e1",), "standard",
                                                      Decimal("0.20")),),
                    Decimal("2.97"), 1.0, 30.0, False)
    assert wire.decode_result(wire.encode_receipt(taxed))["tax"] == [
        {"tax_class": "standard", "rate": "0.2", "gross": "2.97", "net": "2.47", "tax": "0.50"}]
    a = wire.decode_result(wire.encode_alert(Alert(5.0, "device_silent", "quiet", "plates/A1")))
    assert (a["kind"], a["subject"]) == ("device_silent", "plates/A1")


@pytest.mark.parametrize(("topic", "parsed"), [
    ("walkout/small/plates/A1S", ("small", "plates", "A1S")),
    ("walkout/small/gates/G1", ("small", "gates", "G1")),
    ("walkout/small/cameras/C01/keypoints", ("small", "keypoints", "C01")),
    ("walkout/small/control/end", ("small", "end", "")),
    ("walkout/small/receipts/s-9", ("small", "receipts", "s-9")),
    ("walkout/small/alerts", ("small", "alerts", "")),
])
def test_topics_parse(topic: str, parsed: tuple[str, str, str]) -> None:
    assert wire.parse_topic(topic) == parsed


@pytest.mark.parametrize("topic", ["walkout/small/plates", "other/small/plates/A1",
                                   "walkout/small/cameras/C01/frames", "walkout//alerts"])
def test_unknown_topics_refused(topic: str) -> None:
    with pytest.raises(wire.WireError) as e:
        wire.parse_topic(topic)
    assert e.value.reason == "unknown_topic"


def _with_version(payload: bytes, v: int) -> bytes:
    return payload[:2] + bytes([v]) + payload[3:]


_KP = wire.encode_keypoints(1, 1.0, np.zeros((1, 17, 3)))


@pytest.mark.parametrize(("decode", "payload", "reason"), [
    (wire.decode_plates, b"", "truncated"),
    (wire.decode_plates, b"XX" + _plates()[2:], "bad_magic"),
    (wire.decode_plates, _with_version(_plates(), 2), "unknown_version"),
    (wire.decode_plates, _plates()[:-1], "bad_length"),
    (wire.decode_plates, _plates() + b"\0\0\0\0", "bad_length"),
    (wire.decode_plates, _KP, "wrong_kind"),
    (wire.decode_plates, _plates()[:12] + struct.pack("<d", float("nan")) + _plates()[20:],
     "bad_timestamp"),
    (wire.decode_keypoints, _KP[:-4], "bad_length"),
    (wire.decode_keypoints, _KP[:20], "truncated"),
    (wire.decode_keypoints, _with_version(_KP, 0), "unknown_version"),
    (wire.decode_keypoints, _KP[:20] + struct.pack("<H", 60000) + _KP[22:], "bad_length"),
])
def test_malformed_binary_refused_with_reason(decode, payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as e:
        decode(payload)
    assert e.value.reason == reason


def _gate(**over: object) -> bytes:
    obj = {"v": 1, "seq": 0, "t": 1.0, "gate": "G1", "kind": "entry", "credential": "q",
           "party_size": 1, **over}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (_gate(v=...), "missing_version"),
    (_gate(v=2), "unknown_version"),
    (_gate(kind="teleport"), "bad_field"),
    (_gate(t="soon"), "bad_field"),
    (_gate(t=float("inf")), "bad_field"),
    (_gate(seq=-1), "bad_field"),
    (_gate(party_size=0), "bad_field"),
    (_gate(gate="G2"), "bad_field"),
])
def test_malformed_gate_refused_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as e:
        wire.decode_gate(payload, "G1")
    assert e.value.reason == reason


def _plates_with(rate: float = 60.0, t0: float = 1.5, value: float = 1.0) -> bytes:
    g = np.ones((6, 2), np.float32)
    g[3, 1] = value
    return wire.encode_plates("dev-7", 1, t0, rate, ("A1S-S1-P1", "A1S-S1-P2"), g)


def _keypoints_with(value: float) -> bytes:
    kp = np.ones((2, 17, 3), np.float32)
    kp[1, 9, 0] = value
    return wire.encode_keypoints(1, 1.0, kp)


@pytest.mark.parametrize(("decode", "payload", "reason"), [
    # a rate outside 1 Hz..10 kHz: 1e308 overflows the consumer's grid, 0.001 Hz spreads six
    # samples over 5000 s and drags the stream's clock along
    (wire.decode_plates, _plates_with(rate=1e308), "bad_header"),
    (wire.decode_plates, _plates_with(rate=0.001), "bad_header"),
    (wire.decode_plates, _plates_with(rate=10_001.0), "bad_header"),
    (wire.decode_plates, _plates_with(t0=1e15), "bad_timestamp"),
    (wire.decode_plates, _plates_with(value=float("inf")), "bad_value"),
    (wire.decode_plates, _plates_with(value=float("-inf")), "bad_value"),
    (wire.decode_keypoints, _keypoints_with(float("nan")), "bad_value"),
    (wire.decode_keypoints, _keypoints_with(float("inf")), "bad_value"),
])
def test_out_of_range_numbers_refused_with_reason(decode, payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as e:
        decode(payload)
    assert e.value.reason == reason


def test_nan_weight_is_no_reading_and_rates_at_the_bounds_pass() -> None:
    assert np.isnan(wire.decode_plates(_plates_with(value=float("nan"))).grams[3, 1])
    assert wire.decode_plates(_plates_with(rate=1.0)).rate_hz == 1.0
    assert wire.decode_plates(_plates_with(rate=10_000.0)).rate_hz == 10_000.0


@pytest.mark.parametrize("over", [{"party_size": 21}, {"party_size": 10**12},
                                  {"party_size": True}, {"t": 1e15}])
def test_gate_party_and_time_bounded(over: dict[str, object]) -> None:
    with pytest.raises(wire.WireError) as e:
        wire.decode_gate(_gate(**over), "G1")
    assert e.value.reason == "bad_field"
    assert wire.decode_gate(_gate(party_size=20), "G1").event.party_size == 20
