"""Rate limits: what they count and what they remember. A limiter's keys can be personal
data (a looked-up e-mail address, a card token): they are held as digests and forgotten once
their window is over, so months of kiosk look-ups do not pile up in the service's memory,
past retention and erasure alike. Card taps are limited per gate, so that a leaked gate token
cannot be used to test stolen cards."""

from __future__ import annotations

import pytest

from walkout.service.clock import ManualClock
from walkout.service.errors import ServiceError
from walkout.service.ratelimit import RateLimiter
from walkout.service.testing import Svc


def test_a_key_is_forgotten_once_its_window_is_over_and_never_held_as_text() -> None:
    clock = ManualClock()
    lim = RateLimiter(clock, 2, 60.0, "look-ups")
    for i in range(100):
        lim.hit(f"address:shopper{i}@example.org")
    assert len(lim) == 100
    assert not any(b"example.org" in k for k in lim._hits)  # digests, not the addresses
    clock.advance(61)
    lim.hit("address:late@example.org")  # the sweep runs with the next request
    assert len(lim) == 1


def test_the_limit_still_counts_within_its_window() -> None:
    clock = ManualClock()
    lim = RateLimiter(clock, 2, 60.0, "look-ups")
    lim.hit("k")
    clock.advance(30)
    lim.hit("k")
    with pytest.raises(ServiceError) as e:
        lim.hit("k")
    assert e.value.status == 429 and "retry in 30 s" in e.value.detail
    clock.advance(31)  # the first hit left the window
    lim.hit("k")


def test_card_taps_are_limited_per_gate(svc: Svc) -> None:
    limit = svc.deps.settings.card_taps_per_minute
    for i in range(limit):
        r = svc.client.post("/v1/gates/entry/card", json={"card_token": f"tok_bad{i}x",
                                                          "party_size": 1},
                            headers=svc.gate)
        assert r.status_code != 429, (i, r.text)
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_one_more"},
                        headers=svc.gate)
    assert (r.status_code, r.json()["error"]) == (429, "rate_limited")
    assert "card taps at this gate" in r.json()["detail"]
    svc.clock.advance(61)
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_one_more"},
                        headers=svc.gate)
    assert r.status_code == 201, r.text
