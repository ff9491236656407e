"""Shopper sessions: identity bound at the entry scan, closed at the exit.

A scan at an entry gate is bound to the first track born at that gate within a tight window of
it (so that one missed birth cannot shift later pairings, and a tailgater right behind stays
unbound); a party of N admits N tracks, the later members a little later each. A track with
no scan is an unbound person (tailgating): it gets a pseudo-session so that what it takes is
still recorded, and an alert is raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from walkout.events import Alert, GateEvent, Track


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


@dataclass
class SessionBook:
    """Binds tracks to scans and keeps every session's state."""

    bind_window_s: float = 2.5
    member_gap_s: float = 2.0  # a party's further members come through this much later each
    sessions: dict[str, Session] = field(default_factory=dict)
    by_track: dict[int, str] = field(default_factory=dict)
    _scans: list[tuple[GateEvent, Session, int]] = field(default_factory=list)
    _births: list[Track] = field(default_factory=list)

    def scan(self, g: GateEvent) -> list[Alert]:
        sid = f"s{len(self.sessions) + 1:05d}"
        s = Session(sid, g.credential, g.t, party_size=g.party_size)
        self.sessions[sid] = s
        self._scans.extend((g, s, k) for k in range(g.party_size))
        return []

    def born(self, track: Track) -> None:
        self._births.append(track)

    def _window(self, member: int) -> float:
        """How far from the scan a member's track may be born (later members follow on)."""
        return self.bind_window_s + self.member_gap_s * member

    def resolve(self, now: float) -> list[Alert]:
        """Bind each scan to the first track born at that gate within a tight window of it.

        A scan is decided only once every birth that could belong to it has been seen. The
        window is tight (people pass a gate seconds apart), so a missed birth costs one alert
        instead of shifting every later pairing by one; within it the earliest birth is the
        person who scanned, and one who slipped in right behind them stays unbound.
        """
        alerts: list[Alert] = []
        for g, s, k in sorted(self._scans, key=lambda x: (x[0].t, x[2])):
            w = self._window(k)
            if now < g.t + w:
                continue
            cands = [tr for tr in self._births
                     if tr.born_at == g.gate_id and abs(float(tr.t[0]) - g.t) <= w]
            self._scans.remove((g, s, k))
            if cands:
                # the one who scans is the first at the gate; a tailgater comes right after
                match = min(cands, key=lambda tr: (float(tr.t[0]), tr.track_id))
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
            alerts.append(Alert(t0, "unbound_person",
                                f"track {tr.track_id} entered without a scan (tailgating?)", sid))
        return alerts

    def unresolved(self) -> set[int]:
        """Ids of tracks born at a gate whose binding is not decided yet (a scan's member, or
        somebody who may turn out to be unbound): what they do cannot be attributed yet."""
        return {tr.track_id for tr in self._births}

    def open_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state == SessionState.OPEN and s.track_ids]
