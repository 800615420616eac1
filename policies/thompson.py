"""Linear Thompson sampling over the joint plan menu (one Bayesian ridge model per plan)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ltrr.types import Plan
from policies.linear import LinearParams, RidgePlanPolicy

#: plans this many standard deviations out of contention are not simulated (see ``_win_shares``)
PRUNE_SD = 5.0


class ThompsonParams(LinearParams):
    #: posterior scale ``v``: plan ``a``'s weights are drawn from ``N(theta_a, v^2 A_a^{-1})``
    scale: float = Field(0.3, gt=0.0)
    #: Monte-Carlo draws used to estimate the propensity of a decision
    n_propensity_draws: int = Field(200, ge=1)
    #: seed of the draws behind :meth:`LinearThompsonSampling.probabilities` (which gets no rng)
    propensity_seed: int = Field(0, ge=0)


class LinearThompsonSampling(RidgePlanPolicy[ThompsonParams]):
    """Linear Thompson sampling (Agrawal & Goyal, 2013) with disjoint per-plan models.

    A decision draws ``w_a ~ N(theta_a, v^2 A_a^{-1})`` for every plan and plays
    ``argmax_a w_a . x``. Only the scalar ``w_a . x ~ N(theta_a . x, v^2 x^T A_a^{-1} x)`` matters
    and plans are independent, so the policy samples those ``K`` scalars directly: the same
    distribution over plans at ``O(K d^2)`` instead of ``O(K d^3)``.

    Propensities are **estimated**, because ``P(argmax = a)`` for independent Gaussians has no
    closed form: ``n_propensity_draws`` further score vectors (antithetic pairs) are drawn from a
    child generator seeded from the decision's ``rng``, and the propensity is the share of draws
    that ``a`` wins, floored at ``1 / (n_propensity_draws + 1)`` so a logged propensity is never 0
    (the floor biases tiny propensities upwards; raise the draws to tighten it). The plan is
    marked ``estimated=True``. The decision itself consumes the parent ``rng`` only, so the stream
    of decisions does not depend on ``n_propensity_draws``. :meth:`probabilities` uses the same
    estimator with a generator seeded by ``propensity_seed`` (so it is repeatable), floors every
    plan and renormalises to sum to 1.
    """

    type_name = "thompson"
    estimated_propensities = True
    Params = ThompsonParams

    def _moments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.arms.predict(x), self.params.scale * self.arms.width(x)

    def _win_shares(self, mu: np.ndarray, sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Share of ``n_propensity_draws`` posterior draws that each plan wins.

        A plan whose upper bound ``mu + PRUNE_SD * sd`` is below another plan's lower bound
        ``mu - PRUNE_SD * sd`` beats it with probability below P(N(0,1) > 5) ~ 3e-7 (expected
        0.00006 wins in 200 draws), so it is left out of the simulation: its share is 0 and it gets
        the floor. This keeps the cost proportional to the plans still in contention.
        """
        n = self.params.n_propensity_draws
        live = np.flatnonzero(mu + PRUNE_SD * sd >= np.max(mu - PRUNE_SD * sd))
        # antithetic pairs (z, -z): each half is an exact posterior draw, so the share stays
        # unbiased, and only half the normals are generated (they dominate the cost)
        z = rng.standard_normal(((n + 1) // 2, live.size))
        m, s = mu[live], sd[live]
        wins = np.concatenate([np.argmax(m + s * z, axis=1), np.argmax(m - s * z[: n // 2], axis=1)])
        return np.bincount(live[wins], minlength=mu.size) / n

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        mu, sd = self._moments(x)
        shares = self._win_shares(mu, sd, np.random.default_rng(self.params.propensity_seed))
        p = np.maximum(shares, 1.0 / (self.params.n_propensity_draws + 1))
        return p / p.sum()

    def _select(self, x: np.ndarray, rng: np.random.Generator) -> Plan:
        mu, sd = self._moments(x)
        a = int(np.argmax(mu + sd * rng.standard_normal(mu.size)))
        child = np.random.default_rng(rng.integers(0, 2**63 - 1))
        floor = 1.0 / (self.params.n_propensity_draws + 1)
        p = np.maximum(self._win_shares(mu, sd, child), floor)
        marg = [min(v, 1.0) for v in self._marginals(p, a)]
        return self.menu.plan(a, float(min(p[a], 1.0)), self.type_name,
                              strategy_propensities=marg, estimated=True)
