"""Off-policy estimators: estimate a target policy's value from a log written by another policy.

Inputs follow Open Bandit Pipeline's conventions so results can be compared number for number:
``reward[n]``, ``action[n]``, ``position[n]`` (optional when ``len_list == 1``), ``pscore[n]``
(the logging policy's probability of the logged action), ``action_dist[n, n_actions, len_list]``
(the target policy's distribution) and ``estimated_rewards_by_reg_model[n, n_actions, len_list]``.

Every estimator reduces the log to four per-round quantities (:class:`RoundTerms`): the reward
``r``, the importance weight ``w = pi_e(a|x, p) / pscore``, the reward model at the logged
action ``q(x, a, p)`` and the reward model averaged under the target ``sum_a pi_e(a|x,p) q(x,a,p)``.
Each estimate is a ratio of *sums* of those terms, so an estimator exposes ``partial`` (the sums
over one shard of the log) and :func:`merge` (add two shards' sums): shard-parallel runs give the
same numbers as one pass. Intervals are percentile bootstraps over the per-round terms
(:mod:`ltrr.offline.bootstrap`), drawn exactly as OBP draws them for an integer seed.

For plans (one depth per strategy) :class:`FactoredIPS` adds per-strategy importance-weighted
terms instead of weighting the whole plan, which stays usable when whole-plan propensities are
tiny.

References: Dudik et al., "Doubly Robust Policy Evaluation and Learning" (2011); Swaminathan and
Joachims, "The Self-Normalized Estimator for Counterfactual Learning" (2015); Wang et al.,
"Optimal and Adaptive Off-policy Evaluation in Contextual Bandits" (2017, switch-DR); Saito et
al., "Open Bandit Dataset and Pipeline" (2021); Swaminathan et al., "Off-policy evaluation for
slate recommendation" (2017, pseudo-inverse estimator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Required, TypedDict, Unpack

import numpy as np

from ltrr.errors import ConfigError, DataError
from ltrr.offline.bootstrap import Interval, bootstrap_interval
from ltrr.types import Plan

Stats = dict[str, float]
#: the per-round terms of :class:`RoundTerms`
TermName = Literal["reward", "weight", "q_factual", "q_target"]


# ----------------------------------------------------------------------------------------------
# validation helpers


def _py(x: object) -> object:
    """A numpy scalar as a plain Python value, so messages read ``0.0`` not ``np.float64(0.0)``."""
    return np.asarray(x).item()


def _first_bad(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad.ravel())[0])


def check_pscore(pscore: np.ndarray, name: str = "pscore") -> None:
    """Raise DataError unless every propensity is in (0, 1]; names the count and first index."""
    bad = ~((pscore > 0.0) & (pscore <= 1.0))  # NaN counts as bad
    if bad.any():
        flat = np.asarray(pscore).ravel()
        i = _first_bad(bad)
        where = tuple(int(x) for x in np.unravel_index(i, pscore.shape)) if pscore.ndim > 1 else i
        raise DataError(
            f"{name} must be in (0, 1]; {int(bad.sum())} of {pscore.size} values are not, "
            f"first at index {where} (value {_py(flat[i])})."
        )


def _as_1d(values: object, name: str, dtype: type, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D [n_rounds]; got shape {arr.shape}.")
    if dtype is np.int64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{name} must hold integers; got dtype {arr.dtype}.")
        arr = arr.astype(np.int64, copy=False)
    else:
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            i = _first_bad(~np.isfinite(arr))
            raise DataError(f"{name} must be finite; first bad value at index {i} ({_py(arr[i])}).")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} rounds but action_dist has {n}.")
    return arr


def _check_range(arr: np.ndarray, name: str, upper: int, upper_name: str) -> None:
    bad = (arr < 0) | (arr >= upper)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{name} must be in [0, {upper}) ({upper_name}); {int(bad.sum())} values are not, "
            f"first at index {i} (value {arr[i]})."
        )


# ----------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class BanditLog:
    """Logged bandit feedback: what the logging policy did and what it earned.

    Parameters
    ----------
    action
        ``int64[n]`` logged action indices.
    reward
        ``float64[n]`` observed rewards.
    pscore
        ``float64[n]`` logging policy's probability of the logged action, in (0, 1].
    position
        ``int64[n]`` slot of the logged action, or None when there is one slot.
    context
        Optional ``float[n, d]`` context features (not used by the estimators themselves).
    """

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    position: np.ndarray | None = None
    context: np.ndarray | None = None

    def __post_init__(self) -> None:
        action = _as_1d(self.action, "action", np.int64)
        n = action.shape[0]
        reward = _as_1d(self.reward, "reward", np.float64)
        pscore = np.asarray(self.pscore, dtype=np.float64)
        if pscore.ndim != 1:
            raise DataError(f"pscore must be 1-D [n_rounds]; got shape {pscore.shape}.")
        for name, arr in (("reward", reward), ("pscore", pscore)):
            if arr.shape[0] != n:
                raise DataError(f"{name} has {arr.shape[0]} rounds but action has {n}.")
        check_pscore(pscore)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "reward", reward)
        object.__setattr__(self, "pscore", pscore)
        if self.position is not None:
            position = _as_1d(self.position, "position", np.int64)
            if position.shape[0] != n:
                raise DataError(f"position has {position.shape[0]} rounds but action has {n}.")
            if position.size and position.min() < 0:
                raise DataError("position must be non-negative.")
            object.__setattr__(self, "position", position)
        if self.context is not None:
            context = np.asarray(self.context)
            if context.shape[0] != n:
                raise DataError(f"context has {context.shape[0]} rounds but action has {n}.")
            object.__setattr__(self, "context", context)

    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])

    def __len__(self) -> int:
        return self.n_rounds

    def slice(self, start: int, stop: int) -> BanditLog:
        """Rounds ``start:stop`` (a shard), as views."""
        return BanditLog(
            self.action[start:stop], self.reward[start:stop], self.pscore[start:stop],
            _cut(self.position, start, stop), _cut(self.context, start, stop),
        )


def _cut(a: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if a is None else a[start:stop]


class LogArrays(TypedDict, total=False):
    """The keyword arrays of the OBP-style API, as :meth:`RoundTerms.compute` takes them."""

    action_dist: Required[np.ndarray]
    reward: np.ndarray | None
    action: np.ndarray | None
    pscore: np.ndarray | None
    position: np.ndarray | None
    estimated_rewards_by_reg_model: np.ndarray | None


@dataclass(frozen=True)
class RoundTerms:
    """The per-round quantities every estimator is a function of.

    Build with :meth:`compute` from OBP-style arrays, or directly when the target's probability
    of the logged action is known without a full ``action_dist`` (e.g. plans, huge action
    spaces). Fields an estimator does not need may be None.

    Attributes
    ----------
    reward
        ``r_i``.
    weight
        ``w_i = pi_e(a_i | x_i, p_i) / pscore_i``.
    q_factual
        ``q_hat(x_i, a_i, p_i)``, the reward model at the logged action.
    q_target
        ``sum_a pi_e(a | x_i, p_i) q_hat(x_i, a, p_i)``, the reward model under the target.
    """

    reward: np.ndarray | None = None
    weight: np.ndarray | None = None
    q_factual: np.ndarray | None = None
    q_target: np.ndarray | None = None

    @property
    def n_rounds(self) -> int:
        for arr in (self.reward, self.weight, self.q_factual, self.q_target):
            if arr is not None:
                return int(arr.shape[0])
        return 0

    def slice(self, start: int, stop: int) -> RoundTerms:
        return RoundTerms(_cut(self.reward, start, stop), _cut(self.weight, start, stop),
                          _cut(self.q_factual, start, stop), _cut(self.q_target, start, stop))

    def require(self, estimator: str, *fields: TermName) -> tuple[np.ndarray, ...]:
        """The terms ``fields``, in order; DataError naming the missing inputs when one of them
        was not computed (its inputs were not given)."""
        _require(self, estimator, *fields)
        return tuple(getattr(self, f) for f in fields)

    @classmethod
    def compute(
        cls,
        *,
        action_dist: np.ndarray,
        reward: np.ndarray | None = None,
        action: np.ndarray | None = None,
        pscore: np.ndarray | None = None,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> RoundTerms:
        """Validate OBP-style arrays and reduce them to per-round terms.

        ``reward``, ``action`` and ``pscore`` go together (all or none); without them only the
        direct method can be computed. ``position`` may be omitted when ``len_list == 1``.
        """
        action_dist = np.asarray(action_dist, dtype=np.float64)
        if action_dist.ndim != 3:
            raise DataError(
                "action_dist must be 3-D [n_rounds, n_actions, len_list]; "
                f"got shape {action_dist.shape}."
            )
        n, n_actions, len_list = action_dist.shape
        _check_distribution(action_dist)
        if position is None:
            if len_list > 1:
                raise DataError(
                    f"position is required when action_dist has len_list = {len_list} > 1."
                )
            pos = None
        else:
            pos = _as_1d(position, "position", np.int64, n)
            _check_range(pos, "position", len_list, "len_list of action_dist")
        rows = np.arange(n)

        given = [x is not None for x in (reward, action, pscore)]
        r = w = q_fact = q_tgt = None
        if any(given):
            if not all(given):
                missing = [k for k, g in zip(("reward", "action", "pscore"), given, strict=True)
                           if not g]
                raise DataError(f"reward, action and pscore go together; missing {missing}.")
            r = _as_1d(reward, "reward", np.float64, n)
            a = _as_1d(action, "action", np.int64, n)
            _check_range(a, "action", n_actions, "n_actions of action_dist")
            ps = np.asarray(pscore, dtype=np.float64)
            if ps.ndim != 1 or ps.shape[0] != n:
                raise DataError(f"pscore must be 1-D with {n} rounds; got shape {ps.shape}.")
            check_pscore(ps)
            pi_logged = action_dist[rows, a, 0 if pos is None else pos]
            w = pi_logged / ps

        if estimated_rewards_by_reg_model is not None:
            q = np.asarray(estimated_rewards_by_reg_model, dtype=np.float64)
            if q.shape != action_dist.shape:
                raise DataError(
                    f"estimated_rewards_by_reg_model has shape {q.shape} but action_dist has "
                    f"{action_dist.shape}; they must match."
                )
            if pos is None:
                q_pos, pi_pos = q[:, :, 0], action_dist[:, :, 0]
            else:
                q_pos, pi_pos = q[rows, :, pos], action_dist[rows, :, pos]
            q_tgt = np.einsum("ij,ij->i", q_pos, pi_pos)
            if r is not None:
                q_fact = q_pos[rows, a]
        return cls(reward=r, weight=w, q_factual=q_fact, q_target=q_tgt)

    @classmethod
    def from_log(
        cls,
        log: BanditLog,
        action_dist: np.ndarray,
        reward_model_estimates: np.ndarray | None = None,
    ) -> RoundTerms:
        """:meth:`compute` from a :class:`BanditLog`."""
        return cls.compute(
            action_dist=action_dist, reward=log.reward, action=log.action, pscore=log.pscore,
            position=log.position, estimated_rewards_by_reg_model=reward_model_estimates,
        )


def _check_distribution(action_dist: np.ndarray) -> None:
    if (action_dist < 0).any() or not np.isfinite(action_dist).all():
        i = _first_bad((action_dist < 0) | ~np.isfinite(action_dist))
        where = np.unravel_index(i, action_dist.shape)
        raise DataError(
            f"action_dist must hold probabilities; entry {tuple(int(x) for x in where)} is "
            f"{_py(action_dist[where])}."
        )
    sums = action_dist.sum(axis=1)  # [n, len_list]
    bad = np.abs(sums - 1.0) > 1e-8 + 1e-5  # numpy.allclose's tolerance, as OBP
    if bad.any():
        row, pos = np.unravel_index(_first_bad(bad), sums.shape)
        raise DataError(
            "action_dist must sum to 1 over actions for every round and position; "
            f"{int(bad.sum())} (round, position) pairs do not, first ({row}, {pos}) sums to "
            f"{_py(sums[row, pos])}."
        )


# ----------------------------------------------------------------------------------------------
# estimators


def merge(a: Mapping[str, float], b: Mapping[str, float]) -> Stats:
    """Add two shards' sufficient statistics (from the same estimator's ``partial``)."""
    if set(a) != set(b):
        raise ValueError(
            f"Cannot merge statistics with different keys: {sorted(a)} vs {sorted(b)}."
        )
    return {k: float(a[k]) + float(b[k]) for k in a}


def _require(terms: RoundTerms, estimator: str, *fields: TermName) -> None:
    missing = [f for f in fields if getattr(terms, f) is None]
    if missing:
        inputs: set[str] = set()
        for f in missing:
            if f in ("reward", "weight") or (f == "q_factual" and terms.reward is None):
                inputs.update(("reward", "action", "pscore"))
            if f == "q_target" or (f == "q_factual" and terms.q_target is None):
                inputs.add("estimated_rewards_by_reg_model")
        order = ["reward", "action", "pscore", "estimated_rewards_by_reg_model"]
        names = [x for x in order if x in inputs]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        raise DataError(f"{estimator} needs {listed}, which were not given.")


def _nonneg_param(value: float, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int) or not value >= 0.0:
        raise ConfigError(
            f"The {name!r} parameter of {owner} must be a float in [0, inf]. Got {value!r} instead."
        )
    return float(value)


class OffPolicyEstimator:
    """Base class: an estimate is ``value(partial(terms))``; intervals bootstrap ``round_rewards``.

    Subclasses implement :meth:`round_rewards` (the per-round contributions whose mean is the
    estimate, as OBP defines them), :meth:`partial_terms` and :meth:`value`.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[TermName, ...]] = ()

    @property
    def label(self) -> str:
        """Name plus any non-default parameter, used as the key of :func:`estimate`'s result."""
        return self.name

    # hooks --------------------------------------------------------------------------------
    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        raise NotImplementedError

    def partial_terms(self, terms: RoundTerms) -> Stats:
        raise NotImplementedError

    def value(self, stats: Mapping[str, float]) -> float:
        raise NotImplementedError

    def _need(self, terms: RoundTerms, *fields: TermName) -> tuple[np.ndarray, ...]:
        """The terms a hook uses (see :meth:`RoundTerms.require`)."""
        return terms.require(type(self).__name__, *fields)

    # array API (keyword names as in OBP) ------------------------------------------------------
    def partial(self, **arrays: Unpack[LogArrays]) -> Stats:
        """Sufficient statistics (sums) over the given rounds; combine shards with :func:`merge`."""
        terms = RoundTerms.compute(**arrays)
        _require(terms, type(self).__name__, *self.needs)
        return self.partial_terms(terms)

    def estimate_policy_value(self, **arrays: Unpack[LogArrays]) -> float:
        """The target policy's estimated value. Keywords: ``action_dist``, ``reward``,
        ``action``, ``pscore``, ``position``, ``estimated_rewards_by_reg_model``."""
        return self.value(self.partial(**arrays))

    def estimate_interval(
        self,
        *,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 10000,
        random_state: int | np.random.Generator = 0,
        **arrays: Unpack[LogArrays],
    ) -> Interval:
        """Percentile bootstrap interval over the per-round terms (OBP's procedure)."""
        terms = RoundTerms.compute(**arrays)
        return self.interval_from_terms(terms, alpha, n_bootstrap_samples, random_state)

    def interval_from_terms(
        self,
        terms: RoundTerms,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 10000,
        random_state: int | np.random.Generator = 0,
    ) -> Interval:
        _require(terms, type(self).__name__, *self.needs)
        _require_rounds(terms)
        return bootstrap_interval(self.round_rewards(terms), alpha, n_bootstrap_samples,
                                  random_state)

    def value_from_terms(self, terms: RoundTerms) -> float:
        _require(terms, type(self).__name__, *self.needs)
        return self.value(self.partial_terms(terms))


def _require_rounds(terms: RoundTerms) -> None:
    if terms.n_rounds == 0:
        raise DataError("The log is empty: no rounds to estimate from.")


def _ratio(num: float, den: float) -> float:
    if den == 0:
        raise DataError("The log is empty (or carries zero total weight): no estimate.")
    return num / den


@dataclass(frozen=True)
class IPS(OffPolicyEstimator):
    """Inverse probability weighting: ``mean(min(w, lambda_) * r)``.

    ``lambda_`` clips the importance weight (OBP 0.5's ``lambda_``); ``inf`` means no clipping
    and is unbiased when the logging policy covers the target's support.
    """

    lambda_: float = float("inf")
    name: ClassVar[str] = "ips"
    needs: ClassVar[tuple[TermName, ...]] = ("reward", "weight")

    def __post_init__(self) -> None:
        _nonneg_param(self.lambda_, "lambda_", "IPS")

    @property
    def label(self) -> str:
        return self.name if np.isinf(self.lambda_) else f"{self.name}(lambda={self.lambda_:g})"

    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        r, w = self._need(terms, "reward", "weight")
        return r * np.minimum(w, self.lambda_)

    def partial_terms(self, terms: RoundTerms) -> Stats:
        return {"n": float(terms.n_rounds), "sum_wr": float(self.round_rewards(terms).sum())}

    def value(self, stats: Mapping[str, float]) -> float:
        return _ratio(stats["sum_wr"], stats["n"])


@dataclass(frozen=True)
class SNIPS(OffPolicyEstimator):
    """Self-normalized IPS: ``sum(w r) / sum(w)``; bounded by the reward range, lower variance.

    Its bootstrap resamples ``w r / mean(w)`` with the full-log ``mean(w)``, exactly as OBP.
    """

    name: ClassVar[str] = "snips"
    needs: ClassVar[tuple[TermName, ...]] = ("reward", "weight")

    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        r, w = self._need(terms, "reward", "weight")
        return r * w / w.mean()

    def partial_terms(self, terms: RoundTerms) -> Stats:
        r, w = self._need(terms, "reward", "weight")
        return {
            "n": float(terms.n_rounds),
            "sum_wr": float((r * w).sum()),
            "sum_w": float(w.sum()),
        }

    def value(self, stats: Mapping[str, float]) -> float:
        _ratio(1.0, stats["n"])
        return _ratio(stats["sum_wr"], stats["sum_w"])


@dataclass(frozen=True)
class DM(OffPolicyEstimator):
    """Direct method: ``mean(sum_a pi_e(a|x) q_hat(x, a))``; low variance, biased by the model."""

    name: ClassVar[str] = "dm"
    needs: ClassVar[tuple[TermName, ...]] = ("q_target",)

    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        (q_target,) = self._need(terms, "q_target")
        return q_target

    def partial_terms(self, terms: RoundTerms) -> Stats:
        (q_target,) = self._need(terms, "q_target")
        return {"n": float(terms.n_rounds), "sum_q": float(q_target.sum())}

    def value(self, stats: Mapping[str, float]) -> float:
        return _ratio(stats["sum_q"], stats["n"])


class _ModelPlusCorrection(OffPolicyEstimator):
    """Estimators of the form ``mean(q_target + correction)``: subclasses define ``_correction``."""

    def _correction(self, terms: RoundTerms) -> np.ndarray:
        raise NotImplementedError

    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        (q_target,) = self._need(terms, "q_target")
        return q_target + self._correction(terms)

    def partial_terms(self, terms: RoundTerms) -> Stats:
        (q_target,) = self._need(terms, "q_target")
        return {
            "n": float(terms.n_rounds),
            "sum_q": float(q_target.sum()),
            "sum_wres": float(self._correction(terms).sum()),
        }

    def value(self, stats: Mapping[str, float]) -> float:
        return _ratio(stats["sum_q"] + stats["sum_wres"], stats["n"])


@dataclass(frozen=True)
class DR(_ModelPlusCorrection):
    """Doubly robust: ``mean(q_target + min(w, lambda_) (r - q_factual))``.

    Unbiased if either the propensities or the reward model are right.
    """

    lambda_: float = float("inf")
    name: ClassVar[str] = "dr"
    needs: ClassVar[tuple[TermName, ...]] = ("reward", "weight", "q_factual", "q_target")

    def __post_init__(self) -> None:
        _nonneg_param(self.lambda_, "lambda_", "DR")

    @property
    def label(self) -> str:
        return self.name if np.isinf(self.lambda_) else f"{self.name}(lambda={self.lambda_:g})"

    def _correction(self, terms: RoundTerms) -> np.ndarray:
        r, w, q_factual = self._need(terms, "reward", "weight", "q_factual")
        return np.minimum(w, self.lambda_) * (r - q_factual)



@dataclass(frozen=True)
class SNDR(OffPolicyEstimator):
    """Self-normalized DR: ``mean(q_target) + sum(w (r - q_factual)) / sum(w)``."""

    name: ClassVar[str] = "sndr"
    needs: ClassVar[tuple[TermName, ...]] = ("reward", "weight", "q_factual", "q_target")

    def round_rewards(self, terms: RoundTerms) -> np.ndarray:
        r, w, q_factual, q_target = self._need(terms, "reward", "weight", "q_factual", "q_target")
        res = w * (r - q_factual)
        return q_target + res / w.mean()

    def partial_terms(self, terms: RoundTerms) -> Stats:
        r, w, q_factual, q_target = self._need(terms, "reward", "weight", "q_factual", "q_target")
        return {
            "n": float(terms.n_rounds),
            "sum_q": float(q_target.sum()),
            "sum_wres": float((w * (r - q_factual)).sum()),
            "sum_w": float(w.sum()),
        }

    def value(self, stats: Mapping[str, float]) -> float:
        return _ratio(stats["sum_q"], stats["n"]) + _ratio(stats["sum_wres"], stats["sum_w"])


@dataclass(frozen=True)
class SwitchDR(_ModelPlusCorrection):
    """Switch-DR: DR's correction only where ``w <= tau``, the model alone elsewhere.

    ``tau = 0`` is the direct method, ``tau = inf`` is DR. Default 1.0 as OBP 0.4.1.
    """

    tau: float = 1.0
    name: ClassVar[str] = "switch-dr"
    needs: ClassVar[tuple[TermName, ...]] = ("reward", "weight", "q_factual", "q_target")

    def __post_init__(self) -> None:
        _nonneg_param(self.tau, "tau", "SwitchDR")

    @property
    def label(self) -> str:
        return self.name if self.tau == 1.0 else f"{self.name}(tau={self.tau:g})"

    def _correction(self, terms: RoundTerms) -> np.ndarray:
        r, w, q_factual = self._need(terms, "reward", "weight", "q_factual")
        keep = w <= self.tau
        return np.where(keep, w * (r - q_factual), 0.0)



ESTIMATORS: dict[str, type[OffPolicyEstimator]] = {
    cls.name: cls for cls in (IPS, SNIPS, DM, DR, SNDR, SwitchDR)
}


def make_estimator(name: str | OffPolicyEstimator) -> OffPolicyEstimator:
    """An estimator instance from its name (or the instance itself)."""
    if isinstance(name, OffPolicyEstimator):
        return name
    try:
        return ESTIMATORS[name]()
    except KeyError:
        raise ConfigError(
            f"Unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}."
        ) from None


# ----------------------------------------------------------------------------------------------
# high-level


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval at level ``1 - alpha``."""

    value: float
    ci_low: float
    ci_high: float


def estimate(
    log: BanditLog,
    action_dist: np.ndarray,
    reward_model_estimates: np.ndarray | None = None,
    estimators: Iterable[str | OffPolicyEstimator] | None = None,
    *,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
) -> dict[str, Estimate]:
    """Estimate a target policy's value with several estimators at once.

    Parameters
    ----------
    log
        The logged feedback.
    action_dist
        ``float[n, n_actions, len_list]`` target policy's distribution for each logged round.
    reward_model_estimates
        ``float[n, n_actions, len_list]`` reward model, needed by dm, dr, sndr and switch-dr.
    estimators
        Names or instances; default: every estimator the inputs support.
    alpha, n_bootstrap_samples, random_state
        Bootstrap settings; every estimator uses the same seed, as OBP's meta class does.

    Returns
    -------
    dict
        Estimator label -> :class:`Estimate`.
    """
    terms = RoundTerms.from_log(log, action_dist, reward_model_estimates)
    _require_rounds(terms)
    if estimators is None:
        estimators = ["ips", "snips"] if reward_model_estimates is None else list(ESTIMATORS)
    out: dict[str, Estimate] = {}
    for spec in estimators:
        est = make_estimator(spec)
        value = est.value_from_terms(terms)
        ci = est.interval_from_terms(terms, alpha, n_bootstrap_samples, random_state)
        out[est.label] = Estimate(value, ci.low, ci.high)
    return out


# ----------------------------------------------------------------------------------------------
# plans: factored (per-strategy) estimator


def plan_arrays(
    plans: Sequence[Plan], depth_menus: Mapping[str, Sequence[int]]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Per-strategy depth indices and propensities of logged plans.

    Parameters
    ----------
    plans
        Logged plans (all over the same strategies, in the same order).
    depth_menus
        Strategy name -> its depth menu; a plan's depth is mapped to its index in the menu.

    Returns
    -------
    tuple
        ``(strategies, depth_index int64[n, S], strategy_pscore float64[n, S])``.
    """
    if not plans:
        raise DataError("No plans given: the log is empty.")
    names = plans[0].strategies
    index = {s: {int(d): j for j, d in enumerate(depth_menus[s])} for s in names
             if s in depth_menus}
    missing = [s for s in names if s not in index]
    if missing:
        raise DataError(f"No depth menu for strategies {missing}; menus given for "
                        f"{sorted(depth_menus)}.")
    depth_index = np.empty((len(plans), len(names)), dtype=np.int64)
    pscore = np.empty((len(plans), len(names)), dtype=np.float64)
    for i, plan in enumerate(plans):
        if plan.strategies != names:
            raise DataError(f"Plan {i} has strategies {plan.strategies}; plan 0 has {names}.")
        for s, (name, d) in enumerate(zip(names, plan.depths, strict=True)):
            try:
                depth_index[i, s] = index[name][int(d)]
            except KeyError:
                raise DataError(
                    f"Plan {i}: depth {d} of strategy {name!r} is not on its menu "
                    f"{list(depth_menus[name])}."
                ) from None
        pscore[i] = plan.strategy_propensities
    return names, depth_index, pscore


@dataclass(frozen=True)
class FactoredIPS:
    """Per-strategy (factored) IPS for plans that pick one depth per strategy.

    ``V = sum_s mean_i (pi_s(d_is | x_i) / mu_s(d_is | x_i)) r_is`` where ``d_is`` is the
    logged depth of strategy ``s``, ``mu_s``/``pi_s`` the logging/target policies' *marginal*
    probabilities of that depth, and ``r_is`` the strategy's own (semi-bandit) reward.

    Assumption: the plan's reward is additive over strategies, ``r = sum_s r_s``, and the
    expected ``r_s`` given the context depends on the plan only through strategy ``s``'s own
    depth. Under it (and ``mu_s > 0`` wherever ``pi_s > 0``) the estimate is unbiased, and each
    weight is a ratio of marginals rather than of whole-plan probabilities (a product over
    strategies), so it stays usable when whole-plan propensities are tiny. When rewards
    interact across strategies (one strategy's items crowd out another's) it is biased.

    ``self_normalized`` divides each strategy's sum by its summed weights instead of ``n``.
    """

    self_normalized: bool = False

    @property
    def label(self) -> str:
        return "factored-snips" if self.self_normalized else "factored-ips"

    @staticmethod
    def weights(
        depth_index: np.ndarray, strategy_pscore: np.ndarray, target_marginals: np.ndarray
    ) -> np.ndarray:
        """``float64[n, S]`` per-strategy importance weights, validated."""
        target_marginals = np.asarray(target_marginals, dtype=np.float64)
        if target_marginals.ndim != 3:
            raise DataError(
                "target_marginals must be 3-D [n_rounds, n_strategies, n_depths]; "
                f"got shape {target_marginals.shape}."
            )
        n, n_s, n_d = target_marginals.shape
        depth_index = np.asarray(depth_index)
        strategy_pscore = np.asarray(strategy_pscore, dtype=np.float64)
        for name, arr in (("depth_index", depth_index), ("strategy_pscore", strategy_pscore)):
            if arr.shape != (n, n_s):
                raise DataError(
                    f"{name} must have shape {(n, n_s)} (rounds, strategies) like "
                    f"target_marginals; got {arr.shape}."
                )
        if depth_index.size and not np.issubdtype(depth_index.dtype, np.integer):
            raise DataError(f"depth_index must hold integers; got dtype {depth_index.dtype}.")
        bad = (depth_index < 0) | (depth_index >= n_d)
        if bad.any():
            i = np.unravel_index(_first_bad(bad), bad.shape)
            raise DataError(
                f"depth_index must be in [0, {n_d}); {int(bad.sum())} values are not, first at "
                f"{tuple(int(x) for x in i)} (value {_py(depth_index[i])})."
            )
        check_pscore(strategy_pscore, "strategy_pscore")
        sums = target_marginals.sum(axis=2)
        off = np.abs(sums - 1.0) > 1e-8 + 1e-5
        if off.any() or (target_marginals < 0).any():
            i = np.unravel_index(_first_bad(off | (target_marginals < 0).any(axis=2)), off.shape)
            raise DataError(
                "target_marginals must be a distribution over depths for every round and "
                f"strategy; first bad (round, strategy) {tuple(int(x) for x in i)} sums to "
                f"{_py(sums[i])}."
            )
        pi = np.take_along_axis(target_marginals, depth_index[:, :, None], axis=2)[:, :, 0]
        return pi / strategy_pscore

    def _terms(self, strategy_reward: np.ndarray, depth_index: np.ndarray, strategy_pscore: np.ndarray,
               target_marginals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights(depth_index, strategy_pscore, target_marginals)
        r = np.asarray(strategy_reward, dtype=np.float64)
        if r.shape != w.shape:
            raise DataError(
                f"strategy_reward must have shape {w.shape} (rounds, strategies); got {r.shape}."
            )
        return w, r

    def partial(
        self,
        strategy_reward: np.ndarray,
        depth_index: np.ndarray,
        strategy_pscore: np.ndarray,
        target_marginals: np.ndarray,
    ) -> Stats:
        """Per-strategy sums ``sum_wr[s]``, ``sum_w[s]`` and ``n``; merge with :func:`merge`."""
        w, r = self._terms(strategy_reward, depth_index, strategy_pscore, target_marginals)
        stats: Stats = {"n": float(w.shape[0])}
        wr, ws = (w * r).sum(axis=0), w.sum(axis=0)
        for s in range(w.shape[1]):
            stats[f"sum_wr/{s}"] = float(wr[s])
            stats[f"sum_w/{s}"] = float(ws[s])
        return stats

    def per_strategy_values(self, stats: Mapping[str, float]) -> np.ndarray:
        """``float64[S]``: each strategy's estimated contribution to the target's value."""
        n_s = sum(1 for k in stats if k.startswith("sum_wr/"))
        num = np.array([stats[f"sum_wr/{s}"] for s in range(n_s)])
        if self.self_normalized:
            den = np.array([stats[f"sum_w/{s}"] for s in range(n_s)])
        else:
            den = np.full(n_s, stats["n"])
        if (den == 0).any():
            raise DataError("The log is empty (or a strategy carries zero total weight).")
        return num / den

    def value(self, stats: Mapping[str, float]) -> float:
        return float(self.per_strategy_values(stats).sum())

    def estimate_policy_value(
        self,
        strategy_reward: np.ndarray,
        depth_index: np.ndarray,
        strategy_pscore: np.ndarray,
        target_marginals: np.ndarray,
    ) -> float:
        """The target's estimated value (sum over strategies of per-strategy estimates)."""
        return self.value(
            self.partial(strategy_reward, depth_index, strategy_pscore, target_marginals)
        )

    def estimate_interval(
        self,
        strategy_reward: np.ndarray,
        depth_index: np.ndarray,
        strategy_pscore: np.ndarray,
        target_marginals: np.ndarray,
        *,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 10000,
        random_state: int | np.random.Generator = 0,
    ) -> Interval:
        """Bootstrap interval over per-round sums of per-strategy terms."""
        w, r = self._terms(strategy_reward, depth_index, strategy_pscore, target_marginals)
        if w.shape[0] == 0:
            raise DataError("The log is empty: no rounds to estimate from.")
        terms = w * r
        if self.self_normalized:
            terms = terms / w.mean(axis=0)
        return bootstrap_interval(terms.sum(axis=1), alpha, n_bootstrap_samples, random_state)
