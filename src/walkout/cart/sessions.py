"""Shopper sessions: identity bound at the entry scan, closed at the exit.

A scan at an entry gate is bound to a track born at that gate within a tight window of it (so
that one missed birth cannot shift later pairings): the one farthest into the store by then, as
the person who scanned walks ahead and a tailgater slips in right behind (and stays unbound).
Not the first one born: two people that close can be seen as one for a moment, and the track
that was born first may carry on with the one behind. A party of N admits N tracks, the later
members a little later each; a track that lived for a moment and was lost (a duplicate in the
crowd at the gate) takes a member's place only if nobody else can. A track with no scan is an
unbound person (tailgating): it gets a pseudo-session so that what it takes is still recorded,
and an alert is raised. A scan with an empty credential is no scan: it binds nobody.

A scan whose credential starts with ``staff:`` (a staff badge the gate verified, see
``walkout.service.staff``) opens a *staff* session: bound to its track like any other, so the
associate is nobody's tailgater, but never charged: what staff hands do to a plate is a restock
or a stock removal (``walkout.engine``), not a cart line.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from walkout.events import L_HIP, R_HIP, Alert, GateEvent, Track

#: credential prefix of a staff member's entry (what the gate puts in its GateEvent)
STAFF_PREFIX = "staff:"


def is_staff_credential(credential: str) -> bool:
    """Whether a gate credential is a staff badge's (a staff session: never charged)."""
    return credential.startswith(STAFF_PREFIX)


class SessionState(StrEnum):
    OPEN = "open"
    CHECKING_OUT = "checking_out"
    CLOSED = "closed"


@dataclass
class Session:
    session_id: str
    credential: str
    entered_at: float
    track_ids: list[int] = field(default_factory=list)
    party_size: int = 1
    bound: bool = True
    state: SessionState = SessionState.OPEN
    exited_at: float | None = None
    #: a staff member (badge at the gate): no cart, no receipt; their hands move stock
    staff: bool = False


@dataclass
class SessionBook:
    """Binds tracks to scans and keeps every session's state."""

    bind_window_s: float = 2.5
    member_gap_s: float = 2.0  # a party's further members come through this much later each
    ahead_margin_m: float = 0.5  # the scanner is the one ahead only when clearly so
    # a birth seen for less than this and then unseen as long is a fragment (a duplicate of
    # somebody in the crowd at the gate, or a false detection): it takes a scan's place only
    # when nobody else can, so that a party's member is not left unbound behind it
    fragment_s: float = 1.0
    # entry gate → its floor area (min x, min y, max x, max y), metres
    gate_areas: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    by_track: dict[int, str] = field(default_factory=dict)
    _scans: list[tuple[GateEvent, Session, int]] = field(default_factory=list)
    _births: list[Track] = field(default_factory=list)
    #: sessions let go by :meth:`forget`: ids count every session ever held, so none repeats
    forgotten: int = 0

    def scan(self, g: GateEvent) -> list[Alert]:
        """An entry scan: a session of its party, bound to their tracks by :meth:`resolve`.
        A scan with no credential names nobody to charge: it opens no session, so whoever
        walks in on it is an unbound person (alerted) rather than a bound shopper with no
        payer."""
        if not g.credential:
            return []
        sid = f"s{len(self.sessions) + self.forgotten + 1:05d}"
        s = Session(sid, g.credential, g.t, party_size=g.party_size,
                    staff=is_staff_credential(g.credential))
        self.sessions[sid] = s
        self._scans.extend((g, s, k) for k in range(g.party_size))
        return []

    def born(self, track: Track) -> None:
        self._births.append(track)

    def _window(self, member: int) -> float:
        """How far from the scan a member's track may be born (later members follow on)."""
        return self.bind_window_s + self.member_gap_s * member

    def resolve(self, now: float, tracks: Sequence[Track] = ()) -> list[Alert]:
        """Bind each scan to a track born at that gate within a tight window of it.

        A scan is decided only once every birth that could belong to it has been seen. The
        window is tight (people pass a gate seconds apart), so a missed birth costs one alert
        instead of shifting every later pairing by one; within it the person who scanned is
        the one farthest from the gate (``tracks``: their latest state), and one who slipped
        in right behind them stays unbound.
        """
        latest = {tr.track_id: tr for tr in tracks}
        alerts: list[Alert] = []
        for g, s, k in sorted(self._scans, key=lambda x: (x[0].t, x[2])):
            w = self._window(k)
            if now < g.t + w:
                continue
            cands = [tr for tr in self._births
                     if tr.born_at == g.gate_id and abs(float(tr.t[0]) - g.t) <= w]
            cands = [tr for tr in cands if not self._fragment(latest.get(tr.track_id, tr),
                                                              now)] or cands
            self._scans.remove((g, s, k))
            if cands:
                match = self._scanner(cands, latest, g.gate_id, now)
                self._births.remove(match)
                s.track_ids.append(match.track_id)
                self.by_track[match.track_id] = s.session_id
            else:
                alerts.append(Alert(g.t, "scan_without_person",
                                    f"a scan at {g.gate_id} was not followed by anyone entering",
                                    s.session_id))
        horizon = self._window(0)
        for tr in sorted(self._births, key=lambda tr: float(tr.t[0])):
            t0 = float(tr.t[0])
            # still wanted by a pending scan, or too young to judge
            if now - t0 <= horizon + self.member_gap_s * 8 or any(
                abs(t0 - g.t) <= self._window(k) for g, _, k in self._scans
            ):
                continue
            self._births.remove(tr)
            sid = f"unbound-{tr.track_id}"
            self.sessions[sid] = Session(sid, "", t0, [tr.track_id], bound=False)
            self.by_track[tr.track_id] = sid
            what = (f"was seen at the entry for {float(tr.t[-1] - tr.t[0]):.1f} s without a "
                    "scan, then lost (a duplicate in the crowd, or someone slipping in?)"
                    if self._fragment(latest.get(tr.track_id, tr), now)
                    else "entered without a scan (tailgating?)")
            alerts.append(Alert(t0, "unbound_person", f"track {tr.track_id} {what}", sid))
        return alerts

    def _fragment(self, tr: Track, now: float) -> bool:
        return (float(tr.t[-1] - tr.t[0]) < self.fragment_s
                and now - float(tr.t[-1]) > self.fragment_s)

    def _scanner(self, cands: list[Track], latest: Mapping[int, Track], gate_id: str,
                 now: float) -> Track:
        """Of the tracks born at a gate around a scan, the one that scanned: the one clearly
        farthest from the gate area when last seen together, else the first born."""
        first = min(cands, key=lambda tr: (float(tr.t[0]), tr.track_id))
        gate = self.gate_areas.get(gate_id)
        if gate is None or len(cands) == 1:
            return first
        live = [latest.get(tr.track_id, tr) for tr in cands]
        t = min(now, *(float(tr.t[-1]) for tr in live))  # all seen by then

        def ahead(tr: Track) -> float:
            i = max(int(np.searchsorted(tr.t, t, side="right")) - 1, 0)
            xy = tr.joints[i, [L_HIP, R_HIP], :2]
            if np.isnan(xy).all():
                xy = tr.joints[i, :, :2]
            with warnings.catch_warnings():  # a skeleton seen nowhere: nan, never chosen
                warnings.simplefilter("ignore", RuntimeWarning)
                c = np.nanmean(xy, axis=0)
            x0, y0, x1, y1 = gate
            d = float(np.hypot(max(x0 - c[0], 0.0, c[0] - x1), max(y0 - c[1], 0.0, c[1] - y1)))
            return d if np.isfinite(d) else -1.0

        best = max(live, key=ahead)
        others = [ahead(tr) for tr in live if tr.track_id != best.track_id]
        if ahead(best) - max(others) < self.ahead_margin_m:
            return first  # side by side: the first one through is the likelier
        return next(tr for tr in cands if tr.track_id == best.track_id)

    def idle(self) -> bool:
        """No scan waits for its person, no birth for its binding."""
        return not self._scans and not self._births

    def unresolved(self) -> set[int]:
        """Ids of tracks born at a gate whose binding is not decided yet (a scan's member, or
        somebody who may turn out to be unbound): what they do cannot be attributed yet."""
        return {tr.track_id for tr in self._births}

    def forget(self, session_ids: set[str]) -> None:
        """Let sessions settled long ago go, with their tracks' bindings (``Engine``'s
        ``forget_visits_s``): a store never empty must not keep every past visitor."""
        for sid in session_ids:
            s = self.sessions.pop(sid, None)
            if s is None:
                continue
            self.forgotten += 1
            for tid in s.track_ids:
                if self.by_track.get(tid) == sid:
                    del self.by_track[tid]

    def open_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state == SessionState.OPEN and s.track_ids]
