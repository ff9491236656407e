"""What the service does by itself on a timer, so that no money or personal data waits on a
restart or a cron job (`create_app` runs :func:`run` in a thread of the API process).

Every ``housekeeping_s`` (60 s):

- payments whose outcome was unknown (provider unreachable, answer lost) are repeated with
  their own idempotency keys: captures at exit, review refunds and releases, dispute refunds,
  and the holds a turned-away shopper's lost pre-authorisation may have left (released);
- admissions still ``authorizing`` :data:`entry.STALE_AUTHORIZING_S` after their scan (a
  process that died mid-admission, a refusal that could not be recorded) are refused, and the
  hold their pre-authorisation may have made is released with the same key;
- visits open longer than ``max_visit_s`` (an exit no camera or gate saw) are checked out
  with the cart as recorded and their receipt held for review, so no hold stays on a card
  and nobody stays "inside" for good;
- receipt e-mails whose send failed (an SMTP outage) are tried again once their wait is over
  (``receipting.RETRY_AFTER``: from a minute to half a day, 8 tries in all). While the server
  refuses the store's sender or login, or lacks the STARTTLS, AUTH or trusted certificate
  the settings ask for (a configuration error, alerted as ``mail_refused``), a turn stops
  at its first refusal, so it makes one try, which is not counted.

When the thread starts, and then every ``retention_check_s`` (an hour): the retention purge
(:mod:`walkout.service.retention`), so that a service restarted more often than that still
purges; with it set to 0, run ``POST /v1/admin/retention/purge`` from cron instead.
Each task is independent: one that fails is logged and tried again at its next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from walkout.service import checkout, disputes, entry, receipting, retention, revisions
from walkout.service.deps import Deps
from walkout.service.models import Visit

log = logging.getLogger("walkout.service.housekeeping")


def close_abandoned(d: Deps) -> int:
    """Check out every visit open longer than ``max_visit_s``, its receipt under review (the
    engine never saw its exit: staff look at it). Returns how many."""
    if d.settings.max_visit_s <= 0:
        return 0
    cutoff = d.clock.now() - timedelta(seconds=d.settings.max_visit_s)
    with d.sessions() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "open",
                                                    Visit.entered_at < cutoff)))
    for vid in ids:
        log.warning("visit %s open for more than %.0f s: checked out with its cart, held for "
                    "review", vid, d.settings.max_visit_s)
        checkout.exit_visit(d, vid, needs_review=True)
    return len(ids)


#: the payment and visit tasks, in the order they run each turn
TASKS: tuple[Callable[[Deps], Any], ...] = (
    entry.refuse_stale_authorizing, entry.void_unknown_holds, checkout.resume_checkouts,
    revisions.resume_pending, disputes.resume_refunds, close_abandoned, receipting.retry_mail)


def turn(d: Deps) -> None:
    """One run of every task; a failing task does not stop the others."""
    for task in TASKS:
        try:
            task(d)
        except Exception:
            log.exception("housekeeping: %s failed; tried again next turn", task.__name__)


def run(d: Deps, stop: threading.Event) -> None:
    """The timer loop, until ``stop``. The retention sweep runs at once, then every
    ``retention_check_s``; the first turn comes one interval after the start, which has
    resumed what was pending itself (``create_app``); an interval of 0 turns its task off."""
    every, sweep_every = d.settings.housekeeping_s, d.settings.retention_check_s
    start = time.monotonic()
    next_turn, next_sweep = start + every, start
    while True:
        due = [t for t, on in ((next_turn, every > 0), (next_sweep, sweep_every > 0)) if on]
        if not due or stop.wait(max(0.0, min(due) - time.monotonic())):
            return
        now = time.monotonic()
        if every > 0 and now >= next_turn:
            turn(d)
            next_turn = now + every
        if sweep_every > 0 and now >= next_sweep:
            next_sweep = now + sweep_every
            try:
                n = retention.sweep(d)
                if any(n.values()):
                    log.info("retention: purged %s", n)
            except Exception:
                log.exception("retention sweep failed; tried again in %.0f s", sweep_every)
