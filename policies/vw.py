"""A Vowpal Wabbit ``--cb_explore_adf`` backend: plans are action-dependent examples."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from vowpalwabbit import Workspace

from ltrr.contracts.policy import PlanMenu, Policy
from policies.linear import LinearParams, menu_action

MODEL_FILE = "model.vw"


class VowpalWabbitParams(LinearParams):
    #: exploration algorithm of ``--cb_explore_adf``
    exploration: Literal["squarecb", "epsilon", "bag"] = "squarecb"
    #: squarecb: ``--gamma_scale`` (larger = greedier as data accrues)
    gamma_scale: float = Field(10.0, gt=0.0)
    #: epsilon (and bag): ``--epsilon``, the uniform exploration mass
    epsilon: float = Field(0.05, ge=0.0, le=1.0)
    #: bag: ``--bag``, the number of bootstrapped policies
    bag_size: int = Field(5, ge=1)
    #: ``-l``: VW's learning rate
    learning_rate: float = Field(0.5, gt=0.0)
    #: ``--random_seed`` of VW's own randomness (bagging's bootstrap weights)
    seed: int = Field(0, ge=0)


def _token(text: str) -> str:
    """A VW-safe feature name (no spaces, ``:`` or ``|``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


class VowpalWabbitPolicy(Policy[VowpalWabbitParams]):
    """Contextual bandit learning with Vowpal Wabbit's ``--cb_explore_adf``.

    Each decision is one multiline example: a ``shared`` line with the context features
    (namespace ``s``) and one line per menu plan (namespace ``a``) holding a strategy-by-depth
    indicator for every strategy (``bm25_50``, ``dense_0``, ...) and ``cost`` = the plan's
    candidates over the budget. ``-q sa`` crosses the two, so VW learns a contextual model shared
    across plans. Exploration is ``squarecb`` (``gamma_scale``), ``epsilon`` or ``bag``
    (``bag_size``, with ``epsilon``), chosen by :attr:`VowpalWabbitParams.exploration`.

    Propensities are exact: VW's pmf (float32, renormalised to sum to 1) is the distribution,
    and the plan is sampled from it with *our* ``rng``; VW's own randomness is seeded with
    ``--random_seed``. VW minimises cost, so ``update`` teaches ``label = 0:-reward:propensity``
    on the chosen plan's line (the index before the first colon is ignored by ADF examples).

    Persistence: VW's own model file (``model.vw``, written by ``Workspace.save``, which keeps the
    learning state) next to the JSON manifest; no pickle.
    """

    type_name = "vw"
    Params = VowpalWabbitParams

    def __init__(self, menu: PlanMenu, n_features: int, params=None, feature_names=None):
        super().__init__(menu, n_features, params, feature_names)
        names = [_token(s) for s in menu.strategies]
        self._action_lines = [
            "|a " + " ".join(f"{n}_{int(d)}" for n, d in zip(names, row, strict=True))
            + f" cost:{row.sum() / menu.budget:.6g}"
            for row in menu.plans
        ]
        self._feat = [f"f{i}" for i in range(self.n_features)]
        self.vw = Workspace(self._args())

    def _args(self, model: Path | None = None) -> str:
        p = self.params
        args = ["--cb_explore_adf", "--cb_type mtr", "-q sa", f"-l {p.learning_rate:g}", "--quiet"]
        if model is None:
            # a saved model carries its random state (bagging advances the seed it stores), so a
            # loaded workspace takes the seed from the file; passing ours again would conflict
            args.append(f"--random_seed {p.seed}")
        if p.exploration == "squarecb":
            args.append(f"--squarecb --gamma_scale {p.gamma_scale:g}")
        elif p.exploration == "epsilon":
            args.append(f"--epsilon {p.epsilon:g}")
        else:
            args.append(f"--bag {p.bag_size} --epsilon {p.epsilon:g}")
        if model is not None:
            args.append(f"-i {model}")
        return " ".join(args)

    def vw_args(self) -> str:
        """The VW command line this policy runs (for logs and reports)."""
        return self._args()

    def _shared(self, x: np.ndarray) -> str:
        # VW reads float32: cast first so values below float32's range become exact zeros
        # (VW turns a float64 denormal such as 1e-210 into NaN) and values above it are caught
        x32 = x.astype(np.float32)
        big = ~np.isfinite(x32)
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise ValueError(f"Context feature {self.feature_names[i]!r} is {x[i]!r}, beyond the float32 "
                             "range Vowpal Wabbit reads.")
        nz = np.flatnonzero(x32)
        return "shared |s " + " ".join(f"{self._feat[i]}:{x32[i]:.9g}" for i in nz)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        pmf = np.asarray(self.vw.predict([self._shared(x), *self._action_lines]), dtype=np.float64)
        if pmf.shape != (self.menu.n_actions,) or not np.all(np.isfinite(pmf)) or pmf.sum() <= 0:
            raise RuntimeError(f"Vowpal Wabbit returned an invalid pmf {pmf.tolist()} for context {x.tolist()}")
        return pmf / pmf.sum()

    def _update(self, x, plan, reward, strategy_rewards) -> None:
        a = menu_action(self.menu, plan)
        if a < 0:
            return  # a plan outside the menu has no action line to credit
        lines = [self._shared(x), *self._action_lines]
        lines[a + 1] = f"0:{-reward:.9g}:{plan.propensity:.9g} {lines[a + 1]}"
        self.vw.learn(lines)

    def _warm_start(self, X, plan_rewards, depth_rewards, observed) -> None:
        # Full information, learnt as cost-sensitive regression: for every (query, plan) a
        # one-action example labelled with that plan's cost and probability 1. ``--cb_type mtr``
        # regresses the labelled action's cost only, so leaving the other plans out of the
        # example changes nothing but the time (K lines instead of K^2 per query).
        for i in range(X.shape[0]):
            shared = self._shared(X[i])
            for a, line in enumerate(self._action_lines):
                if observed is None or observed[i, a]:
                    self.vw.learn([shared, f"0:{-plan_rewards[i, a]:.9g}:1 {line}"])

    def _save_extra(self, directory: Path) -> None:
        self.vw.save(str(directory / MODEL_FILE))

    def _load_extra(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.vw.finish()
        self.vw = Workspace(self._args(directory / MODEL_FILE))

    def close(self) -> None:
        """Release VW's native resources."""
        self.vw.finish()
