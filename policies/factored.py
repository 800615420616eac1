"""A factored policy: each strategy's depth is chosen by its own contextual model (semi-bandit)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ltrr.contracts.policy import PlanMenu, Policy, sample_index
from ltrr.errors import ConfigError
from ltrr.types import Plan
from policies.linear import LinearParams, RidgeArms, decayed_epsilon


class FactoredParams(LinearParams):
    #: how each strategy turns its depth scores into probabilities
    exploration: Literal["epsilon_greedy", "softmax"] = "epsilon_greedy"
    #: epsilon-greedy: probability of a uniformly random allowed depth
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    #: epsilon-greedy: 0 = constant ``epsilon``; ``n > 0`` = decay it as ``(n / t) ** (1/3)`` after
    #: ``n`` updates (each strategy explores independently, so the plan-level rate is larger)
    decay_after: int = Field(0, ge=0)
    #: softmax: temperature of ``exp(score / tau)`` over the allowed depths
    temperature: float = Field(0.1, gt=0.0)
    #: LinUCB bonus ``alpha * sqrt(x^T A^{-1} x)`` added to each depth's score (0 = plain ridge)
    alpha: float = Field(0.0, ge=0.0)


class FactoredPolicy(Policy[FactoredParams]):
    """Sizes each strategy with its own contextual model and learns from per-strategy credit.

    Model: for each strategy ``s`` and each positive depth ``d`` in its menu, a ridge regression
    predicts the *strategy reward* ``r_s`` = 1 if a clicked item was in ``s``'s candidate set,
    minus ``cost_per_candidate * d`` (the caller computes it and passes ``strategy_rewards``).
    Depth 0 draws nothing and finds nothing, so its reward is exactly 0 and needs no model. The
    per-strategy scores are ``theta_{s,d} . x + alpha * width_{s,d}``. Credit is additive (each
    strategy is credited on its own), so overlap between strategies is not modelled.

    Budget rule: depths are drawn strategy by strategy in menu order, each restricted to the
    depths that still complete to a plan of the menu given the depths already drawn. With a menu
    of every combination under the budget this means "what still fits in the remaining budget,
    and not all strategies off"; with an explicit menu it also keeps the draw inside the menu. So
    the policy never chooses a plan outside the menu, and :meth:`probabilities` sums to 1 over
    ``menu.plans``.

    Propensities are exact: the plan's propensity is the product over strategies of the
    *conditional* probability of its depth given the earlier strategies' depths (see
    :meth:`factor_probabilities`). ``Plan.strategy_propensities`` holds each strategy's
    *marginal* probability of its depth (what per-strategy estimators need). The two coincide only
    when the menu is the full product of the depth menus (no binding budget and a strategy that is
    always on, so "all off" is not excluded); only then is the plan propensity the product of
    the marginals.
    """

    type_name = "factored"
    Params = FactoredParams

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        plans = menu.plans
        n_s = len(menu.strategies)
        #: depth_options[s]: the depths strategy s takes in the menu, ascending
        self.depth_options = tuple(tuple(int(d) for d in np.unique(plans[:, s])) for s in range(n_s))
        width = max(len(o) for o in self.depth_options)
        self._opt = np.stack([np.searchsorted(self.depth_options[s], plans[:, s]) for s in range(n_s)], axis=1)
        # one ridge model ("unit") per (strategy, positive depth)
        self._unit = np.full((n_s, width), -1, dtype=np.int64)
        u = 0
        for s, opts in enumerate(self.depth_options):
            for j, d in enumerate(opts):
                if d > 0:
                    self._unit[s, j] = u
                    u += 1
        self._valid = np.zeros((n_s, width), dtype=bool)
        for s, opts in enumerate(self.depth_options):
            self._valid[s, : len(opts)] = True
        # allowed[a, s, j]: depth option j of strategy s completes plan a's prefix to a menu plan
        allowed = np.zeros((menu.n_actions, n_s, width), dtype=bool)
        for s in range(n_s):
            _, prefix_id = np.unique(plans[:, :s], axis=0, return_inverse=True) if s else (None, np.zeros(menu.n_actions, dtype=np.int64))
            prefix_id = np.asarray(prefix_id).reshape(-1)
            table = np.zeros((prefix_id.max() + 1, width), dtype=bool)
            table[prefix_id, self._opt[:, s]] = True
            allowed[:, s, :] = table[prefix_id]
        self._allowed = allowed
        # plans sharing a prefix share their allowed sets: compute each distinct (strategy, allowed
        # set) once per decision and gather, instead of working on the whole (A, S, J) cube
        keys: dict[tuple[int, bytes], int] = {}
        combo = np.empty((menu.n_actions, n_s), dtype=np.int64)
        for a in range(menu.n_actions):
            for s in range(n_s):
                combo[a, s] = keys.setdefault((s, allowed[a, s].tobytes()), len(keys))
        self._combo_s = np.array([k[0] for k in keys], dtype=np.int64)
        self._combo_mask = np.array([np.frombuffer(k[1], dtype=bool) for k in keys]).reshape(len(keys), width)
        self._combo_n = self._combo_mask.sum(axis=1)
        self._gather = combo * width + self._opt
        # flat (strategy, option) index of every plan, for the marginals
        self._flat_opt = (np.arange(n_s)[None, :] * width + self._opt)
        self.arms = RidgeArms(u, n_features, self.params.ridge)

    # ------------------------------------------------------------------ scoring
    def depth_scores(self, x: np.ndarray) -> np.ndarray:
        """``float[n_strategies, n_options]``: score of each depth option (0 for depth 0, -inf pad)."""
        return self._depth_scores(self._check_x(x))

    def _depth_scores(self, x: np.ndarray) -> np.ndarray:
        unit_scores = self.arms.predict(x)
        if self.params.alpha > 0.0:
            unit_scores = unit_scores + self.params.alpha * self.arms.width(x)
        scores = np.where(self._unit >= 0, unit_scores[np.maximum(self._unit, 0)], 0.0)
        return np.where(self._valid, scores, -np.inf)

    def factor_probabilities(self, x: np.ndarray) -> np.ndarray:
        """``float[n_plans, n_strategies]``: P(plan a's depth for s | a's depths for earlier strategies)."""
        return self._factors(self._check_x(x))

    def _factors(self, x: np.ndarray) -> np.ndarray:
        mask = self._combo_mask
        scores = np.where(mask, self._depth_scores(x)[self._combo_s], -np.inf)  # (C, J)
        if self.params.exploration == "softmax":
            z = scores / self.params.temperature
            w = np.where(mask, np.exp(z - z.max(axis=1, keepdims=True)), 0.0)
            cond = w / w.sum(axis=1, keepdims=True)
        else:
            greedy = np.argmax(scores, axis=1)  # ties -> the smallest depth
            eps = decayed_epsilon(self.params.epsilon, self.params.decay_after, self.n_updates_)
            cond = mask * (eps / self._combo_n)[:, None]
            cond[np.arange(cond.shape[0]), greedy] += 1.0 - eps
        return cond.ravel()[self._gather]

    def _marginals(self, p: np.ndarray, action: int) -> list[float]:
        n_s, width = self._unit.shape
        table = np.bincount(self._flat_opt.ravel(), weights=np.repeat(p, n_s), minlength=n_s * width)
        return table[self._flat_opt[action]].tolist()

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        return self._factors(x).prod(axis=1)

    def _select(self, x: np.ndarray, rng: np.random.Generator) -> Plan:
        # drawing the whole plan from the product of the conditionals is the same distribution as
        # drawing the depths one strategy at a time, at the cost of one uniform
        p = self._probabilities(x)
        a = sample_index(p, rng)
        marg = [min(v, 1.0) for v in self._marginals(p, a)]
        return self.menu.plan(a, float(p[a]), self.type_name, strategy_propensities=marg)

    # ------------------------------------------------------------------ learning
    def _update(self, x, plan, reward, strategy_rewards) -> None:
        if strategy_rewards is None:
            raise ValueError("The factored policy learns from per-strategy credit: pass strategy_rewards "
                             f"(one reward per strategy of {list(self.menu.strategies)}).")
        units, rewards = [], []
        for s, d in enumerate(plan.depths):
            if d <= 0:
                continue
            j = np.searchsorted(self.depth_options[s], d)
            if j < len(self.depth_options[s]) and self.depth_options[s][j] == d:
                units.append(int(self._unit[s, j]))
                rewards.append(strategy_rewards[s])
        if units:  # one unit per strategy, so the units are distinct
            self.arms.update_many(np.asarray(units), x, np.asarray(rewards, dtype=np.float64))

    @property
    def learns_plan_rewards(self) -> bool:
        """Plan rewards alone teach every (strategy, depth) model only through the menu's
        single-strategy plans; a menu without them (a strategy that is always on) cannot."""
        return all(d == 0 or self._single_strategy_action(s, d) >= 0
                   for s, opts in enumerate(self.depth_options) for d in opts)

    def _single_strategy_action(self, s: int, d: int) -> int:
        """The menu action drawing only strategy ``s`` at depth ``d`` (-1 when the menu has none)."""
        target = np.zeros(len(self.menu.strategies), dtype=np.int64)
        target[s] = d
        return int(self.menu.action_of(target))

    def _warm_start(self, X, plan_rewards, depth_rewards, observed) -> None:
        n = X.shape[0]
        n_s, width = self._unit.shape
        if depth_rewards is None:
            depth_rewards = np.zeros((n, n_s, width))
            for s, opts in enumerate(self.depth_options):
                for j, d in enumerate(opts):
                    if d == 0:
                        continue
                    a = self._single_strategy_action(s, d)
                    if a < 0:
                        raise ConfigError(
                            f"factored warm start needs depth_rewards: the menu has no plan with only "
                            f"strategy {self.menu.strategies[s]!r} at depth {d}")
                    depth_rewards[:, s, j] = plan_rewards[:, a]
        elif depth_rewards.shape != (n, n_s, width):
            raise ValueError(f"depth_rewards has shape {depth_rewards.shape}, expected ({n}, {n_s}, {width})")
        units = self._unit >= 0
        R = np.zeros((n, self.arms.b.shape[0]))
        R[:, self._unit[units]] = depth_rewards[:, units]
        if observed is None:
            self.arms.update_all(X, R)
            return
        # a (strategy, depth) unit is observed with the menu plan drawing that strategy alone at
        # that depth (a unit without such a plan: always)
        seen = np.ones((n, self.arms.b.shape[0]), dtype=bool)
        for s, opts in enumerate(self.depth_options):
            for j, d in enumerate(opts):
                a = self._single_strategy_action(s, d) if d > 0 else -1
                if self._unit[s, j] >= 0 and a >= 0:
                    seen[:, self._unit[s, j]] = observed[:, a]
        for i in range(n):
            acts = np.flatnonzero(seen[i])
            if acts.size:
                self.arms.update_many(acts, X[i], R[i, acts])

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.arms.state()

    def _set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.arms.set_state(arrays)
