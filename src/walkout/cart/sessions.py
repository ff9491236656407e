"""Shopper sessions: identity bound at the entry scan, closed at the exit.

A scan at an entry gate and a new track born at that gate are matched first-in first-out
within a time window; a party of N admits the next N tracks. A track with no scan is an
unbound person (tailgating): it gets a pseudo-session so that what it takes is still recorded,
and an alert is raised.
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

    bind_window_s: float = 8.0
    sessions: dict[str, Session] = field(default_factory=dict)
    by_track: dict[int, str] = field(default_factory=dict)
    _scans: list[tuple[GateEvent, Session]] = field(default_factory=list)
    _births: list[Track] = field(default_factory=list)

    def scan(self, g: GateEvent) -> list[Alert]:
        sid = f"s{len(self.sessions) + 1:05d}"
        s = Session(sid, g.credential, g.t, party_size=g.party_size)
        self.sessions[sid] = s
        self._scans.extend((g, s) for _ in range(g.party_size))
        return []

    def born(self, track: Track) -> None:
        self._births.append(track)

    def resolve(self, now: float) -> list[Alert]:
        """Match pending scans and births (FIFO per gate); expire the ones left too long."""
        alerts: list[Alert] = []
        self._scans.sort(key=lambda x: x[0].t)
        self._births.sort(key=lambda tr: float(tr.t[0]))
        for g, s in list(self._scans):
            match = next(
                (tr for tr in self._births
                 if tr.born_at == g.gate_id and abs(float(tr.t[0]) - g.t) <= self.bind_window_s),
                None,
            )
            if match is not None:
                self._births.remove(match)
                self._scans.remove((g, s))
                s.track_ids.append(match.track_id)
                self.by_track[match.track_id] = s.session_id
        for g, s in list(self._scans):
            if now - g.t > self.bind_window_s:
                self._scans.remove((g, s))
                alerts.append(Alert(g.t, "scan_without_person",
                                    f"a scan at {g.gate_id} was not followed by anyone entering",
                                    s.session_id))
        for tr in list(self._births):
            if now - float(tr.t[0]) > self.bind_window_s:
                self._births.remove(tr)
                sid = f"unbound-{tr.track_id}"
                self.sessions[sid] = Session(sid, "", float(tr.t[0]), [tr.track_id], bound=False)
                self.by_track[tr.track_id] = sid
                alerts.append(Alert(float(tr.t[0]), "unbound_person",
                                    f"track {tr.track_id} entered without a scan (tailgating?)",
                                    sid))
        return alerts

    def open_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state == SessionState.OPEN and s.track_ids]
