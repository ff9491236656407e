"""Δweight → product hypotheses: a small Bayesian classifier over (product, quantity).

Likelihood: the measured change is Gaussian around ±q·weight with variance
q·weight_sd² + the noise variance of the difference of the two rest levels. Priors come from the
planogram (what should be there) and the inventory (what is there; nobody takes more than that).
A flat "none of these" alternative keeps probabilities honest when nothing fits: an event whose
weight matches no product gets no confident hypothesis instead of the least bad one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy.special import logsumexp as _scipy_logsumexp

from walkout.events import Hypothesis
from walkout.shelf.config import ShelfConfig
from walkout.shelf.inventory import PlateInventory
from walkout.store.model import Store

_LOG_2PI = float(np.log(2.0 * np.pi))


class Explainer:
    """Scores every plausible (product, quantity) for one settled weight change."""

    def __init__(self, store: Store, config: ShelfConfig) -> None:
        self.cfg = config
        self.store = store
        self._ids = [p.id for p in store.catalogue]
        self._w = np.array([p.weight_g for p in store.catalogue])
        self._sd = np.array([p.weight_sd_g for p in store.catalogue])
        self._col = {pid: i for i, pid in enumerate(self._ids)}
        q = np.arange(1, config.max_quantity + 1)
        self._q = q
        lq = (q - 1) * np.log(config.quantity_decay)
        self._log_qprior = lq - _scipy_logsumexp(lq)
        #: plate → products picks proved it holds though its planogram does not list them
        self.learned: dict[str, set[str]] = {}

    def learn(self, plates: Sequence[str], product_id: str) -> None:
        """Remember that ``plates`` really hold ``product_id`` (a wrong planogram entry, seen
        when a pick of it was decided there): later events weigh it like a listed product."""
        for p in plates:
            self.learned.setdefault(p, set()).add(product_id)

    def explain(
        self,
        plates: Sequence[str],
        delta_g: float,
        noise_var: float,
        inventory: PlateInventory,
    ) -> tuple[Hypothesis, ...]:
        """Hypotheses for a change of ``delta_g`` on ``plates``, best first, probabilities
        normalised against all alternatives (including "none of these")."""
        cfg = self.cfg
        pick = delta_g < 0
        sign = -1.0 if pick else 1.0
        present, weight = self._local(plates, inventory)
        local = list(weight)

        cand: list[str] = list(local)
        log_prior: list[float] = []
        total = sum(weight.values())
        unlisted = pick and not self._fits(local, delta_g, noise_var)
        # only a rare count of what should be here fits (5 identical items in one grab): one
        # item of another product weighing as much must stay visible beside it
        rare = pick and not unlisted and not self._fits(
            local, delta_g, noise_var, cfg.rare_quantity - 1)
        if not pick:
            stray = [pid for pid in self._ids if pid not in weight]
            stray_prior = cfg.stray_put_prior
        elif cfg.stray_pick_prior > 0 and (unlisted or rare):
            # nothing that should be here weighs that much: a wrong planogram entry or an
            # item misplaced unseen; the catalogue's candidates go to review
            stray = [pid for pid in self._ids if pid not in weight]
            stray_prior = cfg.stray_pick_prior
        else:
            stray, stray_prior = [], 0.0
        local_mass = 1.0 - (stray_prior if stray and local else 0.0)
        if not local:
            local_mass = 0.0
        log_prior = [np.log(local_mass * weight[pid] / total) for pid in local]
        if stray:
            stray_mass = stray_prior if local else 1.0
            cand += stray
            log_prior += [np.log(stray_mass / len(stray))] * len(stray)
        if not cand:
            return ()

        use_mix = cfg.mixtures and cfg.mixture_prior > 0 and len(local) >= 2
        log_single = np.log1p(-cfg.mixture_prior) if use_mix else 0.0

        idx = np.array([self._col[pid] for pid in cand])
        mean = sign * self._q[None, :] * self._w[idx, None]
        var = self._q[None, :] * self._sd[idx, None] ** 2 + noise_var
        ll = _gauss_ll(delta_g, mean, var)
        lp = np.asarray(log_prior)[:, None] + self._log_qprior[None, :] + log_single
        if pick:
            # what should not be here (or was only learnt to be) was never counted: no
            # overdraw penalty for it
            learned = {pid for p in plates for pid in self.learned.get(p, ())}
            have = np.array([present.get(pid, 0) if pid in weight and pid not in learned
                             else cfg.max_quantity for pid in cand])[:, None]
            lp = lp + np.where(self._q[None, :] > have, _log(cfg.overdraw_prior), 0.0)

        names: list[tuple[tuple[str, int], ...]] = [
            ((pid, int(q)),) for pid in cand for q in self._q
        ]
        lls = list(ll.ravel())
        lps = list(lp.ravel())
        if use_mix:
            m_names, m_ll, m_lp = self._mixtures(local, weight, present, pick, delta_g, noise_var)
            names += m_names
            lls += m_ll
            lps += m_lp

        ll_arr = np.asarray(lls)
        lp_arr = np.asarray(lps) + np.log1p(-cfg.unexplained_prior)
        joint = ll_arr + lp_arr
        null = _log(cfg.unexplained_prior) - np.log(2.0 * cfg.unexplained_range_g)
        log_z = logsumexp(np.append(joint, null))
        prob = np.exp(joint - log_z)
        order = sorted(range(len(names)), key=lambda i: (-prob[i], names[i]))
        out: list[Hypothesis] = []
        for i in order[: cfg.max_hypotheses]:
            if prob[i] < cfg.min_probability or not np.isfinite(joint[i]):
                break
            out.append(Hypothesis(names[i], float(ll_arr[i]), float(prob[i])))
        if rare and len(out) < cfg.max_hypotheses:
            # a single item of another product that fits is kept beside the rare count, so
            # that the decision sees the doubt (walkout.shelf.decide)
            fit_ll = _gauss_ll(delta_g, delta_g, noise_var) - 0.5 * cfg.keep_fit_z**2
            kept = {h.items for h in out}
            for i in order:
                if len(out) >= cfg.max_hypotheses:
                    break
                items = names[i]
                if (items not in kept and len(items) == 1 and items[0][1] == 1
                        and items[0][0] not in weight and ll_arr[i] >= fit_ll):
                    out.append(Hypothesis(items, float(ll_arr[i]), float(prob[i])))
        if not pick and len(out) < cfg.max_hypotheses:
            # a put-back of a misplaced product is improbable a priori but must stay visible
            # when its weight fits: the engine prefers what the shopper holds
            fit_ll = _gauss_ll(delta_g, delta_g, noise_var) - 0.5 * cfg.keep_fit_z**2
            kept = {h.items for h in out}
            for i in order:
                if len(out) >= cfg.max_hypotheses:
                    break
                if names[i] not in kept and np.isfinite(joint[i]) and ll_arr[i] >= fit_ll:
                    out.append(Hypothesis(names[i], float(ll_arr[i]), float(prob[i])))
        return tuple(out)

    def unlisted_pick(
        self, plates: Sequence[str], delta_g: float, noise_var: float, inventory: PlateInventory
    ) -> bool:
        """A pick that no product planned for (or known to be on) these plates explains."""
        return delta_g < 0 and not self._fits(list(self._local(plates, inventory)[1]),
                                                delta_g, noise_var)

    def doubted_by_unlisted(self, plates: Sequence[str], hypotheses: Sequence[Hypothesis],
                            inventory: PlateInventory) -> bool:
        """Whether an item of a product not listed for (nor known on) ``plates`` explains a
        pick about as well as the best of what is (within ``ambiguous_loglik``), or better.

        Only a pick that nothing local explains but a rare count has such hypotheses (see
        :meth:`explain`): one unlisted item, or 5 identical listed ones.
        """
        weight = self._local(plates, inventory)[1]
        local = [h.log_likelihood for h in hypotheses if all(p in weight for p, _ in h.items)]
        best = max(local, default=-np.inf)
        return any(h.log_likelihood >= best - self.cfg.ambiguous_loglik
                   for h in hypotheses if not all(p in weight for p, _ in h.items))

    def _local(
        self, plates: Sequence[str], inventory: PlateInventory
    ) -> tuple[dict[str, int], dict[str, float]]:
        """What is on the plates (inventory) and the prior weight of each product that
        should or does lie there (planned 1, foreign ``foreign_prior``)."""
        present = inventory.on(plates)
        planned: list[str] = []
        for p in plates:
            for pid in (*self.store.plate_products.get(p, ()), *sorted(self.learned.get(p, ()))):
                if pid not in planned:
                    planned.append(pid)
        local = planned + sorted(pid for pid in present if pid not in planned)
        local = [pid for pid in local if pid in self._col]
        weight = {pid: 1.0 if pid in planned else self.cfg.foreign_prior for pid in local}
        return present, {pid: w for pid, w in weight.items() if w > 0}

    def _fits(self, local: list[str], delta_g: float, noise_var: float,
              max_quantity: int | None = None) -> bool:
        """Whether up to ``max_quantity`` (default: all hypothesised) items of some local
        product, or of a pair of them, explain ``|delta_g|`` within ``listed_fit_z`` σ."""
        top = self.cfg.max_quantity if max_quantity is None else max_quantity
        if not local or top < 1:
            return False
        z = self.cfg.listed_fit_z
        idx = np.array([self._col[pid] for pid in local])
        q = self._q[:top]
        mean = q[None, :] * self._w[idx, None]
        sd = np.sqrt(q[None, :] * self._sd[idx, None] ** 2 + noise_var)
        if (np.abs(abs(delta_g) - mean) <= z * sd).any():
            return True
        if not self.cfg.mixtures:
            return False
        for a, b in combinations(idx.tolist(), 2):  # two products at once
            for qa in range(1, top):
                qb = np.arange(1, top - qa + 1)
                m = qa * self._w[a] + qb * self._w[b]
                v = qa * self._sd[a] ** 2 + qb * self._sd[b] ** 2 + noise_var
                if (np.abs(abs(delta_g) - m) <= z * np.sqrt(v)).any():
                    return True
        return False

    def _mixtures(
        self,
        local: list[str],
        weight: dict[str, float],
        present: dict[str, int],
        pick: bool,
        delta_g: float,
        noise_var: float,
    ) -> tuple[list[tuple[tuple[str, int], ...]], list[float], list[float]]:
        """Two different products at once (q1 + q2 ≤ max_quantity), e.g. a 2-product grab."""
        cfg = self.cfg
        sign = -1.0 if pick else 1.0
        pairs = list(combinations(local, 2))
        pair_norm = sum(weight[a] * weight[b] for a, b in pairs)
        names: list[tuple[tuple[str, int], ...]] = []
        lls: list[float] = []
        lps: list[float] = []
        for a, b in pairs:
            ia, ib = self._col[a], self._col[b]
            base = np.log(cfg.mixture_prior * weight[a] * weight[b] / pair_norm)
            for n in range(2, cfg.max_quantity + 1):
                split_lp = self._log_qprior[n - 1] - np.log(n - 1)
                for qa in range(1, n):
                    qb = n - qa
                    mean = sign * (qa * self._w[ia] + qb * self._w[ib])
                    var = qa * self._sd[ia] ** 2 + qb * self._sd[ib] ** 2 + noise_var
                    lp = base + split_lp
                    if pick and (qa > present.get(a, 0) or qb > present.get(b, 0)):
                        lp += _log(cfg.overdraw_prior)
                    names.append(((a, qa), (b, qb)))
                    lls.append(float(_gauss_ll(delta_g, mean, var)))
                    lps.append(float(lp))
        return names, lls, lps


def _gauss_ll(x: float, mean: np.ndarray | float, var: np.ndarray | float) -> np.ndarray:
    return -0.5 * (_LOG_2PI + np.log(var) + (x - mean) ** 2 / var)


def _log(p: float) -> float:
    return float(np.log(p)) if p > 0 else -np.inf


def logsumexp(a: np.ndarray) -> float:
    """``log(sum(exp(a)))`` of a 1-D array, computed as ``scipy.special.logsumexp`` does
    (log1p of the rest around the maximum, Blanchard et al.) to the last bit, without its
    array-API dispatch, which cost several times the sum itself once per shelf event."""
    a_max = float(a.max())
    if not math.isfinite(a_max):
        return float(_scipy_logsumexp(a))
    at_max = a == a_max
    m = float(at_max.sum())
    s = np.exp(np.where(at_max, -np.inf, a - a_max)).sum()
    if s != 0:
        s = s / m
    return float(np.log1p(s) + np.log(m) + a_max)
