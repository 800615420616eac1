"""Click models: simulated users clicking on ranked pages of graded documents.

Three standard models (Chuklin, Markov & de Rijke, *Click Models for Web Search*, 2015):

``PositionBasedClickModel`` (PBM)
    A click at rank ``r`` needs the rank to be examined, ``P(E_r) = (1/r)**eta`` (or an explicit
    vector), and the document to attract, ``P(A) = attraction[grade]``; the two are independent.
``CascadeClickModel``
    The user scans top-down; an examined document is clicked with ``attraction[grade]``; after a
    click the user stops with ``stop[grade]``, otherwise moves to the next rank.
``DynamicBayesianNetworkClickModel`` (DBN, Chapelle & Zhang 2009)
    As the cascade, with ``satisfaction[grade]`` as the stop probability after a click, and a
    continuation probability ``gamma`` to go on after any unsatisfied examination. With
    ``gamma = 1`` it is the cascade model above.

Each model ships the three parameterizations used throughout online learning-to-rank research
(Hofmann et al. 2011, Oosterhuis & de Rijke 2018) as presets — click probability per grade 0-4
and stop probability per grade 0-4:

================  ========================  ======================
preset            click                     stop
================  ========================  ======================
``perfect``       .0 .2 .4 .8 1.0           0 0 0 0 0
``navigational``  .05 .3 .5 .7 .95          .2 .3 .5 .7 .9
``informational`` .4 .6 .7 .8 .9            .1 .2 .3 .4 .5
================  ========================  ======================

The click row is each model's ``attraction``; the stop row is the cascade's ``stop`` and the
DBN's ``satisfaction`` (PBM has no stopping). Any parameter can be overridden by keyword.

Grades are read as-is on the 0-4 scale: a collection whose top grade is 1 or 2 (binary or
three-level qrels) is *not* rescaled, so its best documents get the grade-1/2 probabilities.
Grades above 4 count as 4 and negative grades as 0, except the padding values: ``-1`` (as
``ltrr.types.PAD_ID``) and NaN mark an empty slot of a short page, which is never clicked and
does not stop the user. Fractional grades interpolate linearly between the integer grades.

Pages are batched: ``page_grades`` is ``[n_queries, k]``; :meth:`simulate` draws
``bool[n_queries, k]`` clicks from a ``numpy.random.Generator`` and :meth:`click_probabilities`
gives the exact marginal click probability of every position (computed by a recursion over
positions, vectorized over queries) — the oracle the simulation is tested against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from ltrr.errors import ConfigError
from ltrr.params import Params, validate_params
from ltrr.ranking.debias import pbm_em

__all__ = [
    "PRESETS",
    "MAX_GRADE",
    "PBMParams",
    "CascadeParams",
    "DBNParams",
    "PositionBasedClickModel",
    "CascadeClickModel",
    "DynamicBayesianNetworkClickModel",
    "fit_pbm",
]

MAX_GRADE = 4
PAD_GRADE = -1

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: one probability per grade 0..4
PerGrade = Annotated[tuple[Probability, ...], Field(min_length=MAX_GRADE + 1, max_length=MAX_GRADE + 1)]

#: preset name -> (click probability per grade 0-4, stop probability per grade 0-4)
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "perfect": ((0.0, 0.2, 0.4, 0.8, 1.0), (0.0, 0.0, 0.0, 0.0, 0.0)),
    "navigational": ((0.05, 0.3, 0.5, 0.7, 0.95), (0.2, 0.3, 0.5, 0.7, 0.9)),
    "informational": ((0.4, 0.6, 0.7, 0.8, 0.9), (0.1, 0.2, 0.3, 0.4, 0.5)),
}


class PBMParams(Params):
    """PBM parameters: ``attraction`` per grade 0-4; examination ``(1/rank)**eta`` unless an
    explicit per-rank ``examination`` vector is given (it must cover the page width)."""

    attraction: PerGrade
    eta: float = Field(1.0, ge=0.0)
    examination: tuple[Probability, ...] | None = None


class CascadeParams(Params):
    """Cascade parameters: click probability ``attraction`` and ``stop`` (after a click) per grade."""

    attraction: PerGrade
    stop: PerGrade


class DBNParams(Params):
    """DBN parameters: ``attraction`` and ``satisfaction`` per grade, continuation ``gamma``."""

    attraction: PerGrade
    satisfaction: PerGrade
    gamma: Probability = 0.9


def _resolve(name: str, model: type[Params], preset: str, overrides: Mapping[str, Any],
             preset_keys: tuple[str, str | None]) -> Any:
    """Preset values for ``model``, updated by ``overrides``, validated into a frozen Params."""
    if preset not in PRESETS:
        raise ConfigError(
            f"click model '{name}': unknown preset {preset!r}; presets: {', '.join(sorted(PRESETS))}"
        )
    click, stop = PRESETS[preset]
    values: dict[str, Any] = {preset_keys[0]: click}
    if preset_keys[1] is not None:
        values[preset_keys[1]] = stop
    values.update(overrides)
    return validate_params(model, values, f"click model '{name}'")


def _check_pages(page_grades: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(grades clipped to [0, 4] with 0 at padding, valid mask)`` of a 2-D grade array."""
    g = np.asarray(page_grades, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"page_grades must be a 2-D array [n_queries, k]; got shape {g.shape}")
    valid = ~(np.isnan(g) | (g == PAD_GRADE))
    return np.where(valid, np.clip(g, 0.0, MAX_GRADE), 0.0), valid


def _per_grade(table: tuple[float, ...], grades: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Look up (interpolate) a per-grade probability; padding gets 0."""
    return np.where(valid, np.interp(grades, np.arange(MAX_GRADE + 1), table), 0.0)


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got {type(rng).__name__}"
        )
    return rng


class PositionBasedClickModel:
    """Position-based model: ``P(click at r) = P(examine r) * attraction[grade]``.

    Parameters
    ----------
    preset
        ``"perfect"``, ``"navigational"`` or ``"informational"`` (see the module docstring).
    **overrides
        Fields of :class:`PBMParams`: ``attraction``, ``eta``, ``examination``.
    """

    name: ClassVar[str] = "pbm"

    def __init__(self, preset: str = "navigational", **overrides: Any) -> None:
        self.preset = preset
        self.params: PBMParams = _resolve(self.name, PBMParams, preset, overrides, ("attraction", None))

    def examination(self, k: int) -> np.ndarray:
        """Examination probability of ranks 1..k, ``float[k]``."""
        if self.params.examination is not None:
            exam = np.asarray(self.params.examination, dtype=np.float64)
            if exam.size < k:
                raise ValueError(
                    f"click model 'pbm': the examination vector has {exam.size} ranks but the page "
                    f"has {k}; give at least {k} values"
                )
            return exam[:k]
        return np.arange(1, k + 1, dtype=np.float64) ** -self.params.eta

    def click_probabilities(self, page_grades: Any) -> np.ndarray:
        """Exact click probability of every position, ``float[n_q, k]``."""
        grades, valid = _check_pages(page_grades)
        return self.examination(grades.shape[1])[None, :] * _per_grade(self.params.attraction, grades, valid)

    def simulate(self, page_grades: Any, rng: np.random.Generator) -> np.ndarray:
        """Draw clicks ``bool[n_q, k]``; positions are independent given the page."""
        probs = self.click_probabilities(page_grades)
        return _check_rng(rng).random(probs.shape) < probs


class _SequentialModel:
    """Shared machinery of the top-down scanning models (cascade, DBN).

    At each rank an examined document is clicked with ``a``; a click satisfies (ends the
    session) with ``s``; an unsatisfied user goes on with ``gamma``. So
    ``P(E_1) = 1``, ``P(C_r) = P(E_r) a_r`` and ``P(E_{r+1}) = P(E_r) (1 - a_r s_r) gamma``.
    """

    name: ClassVar[str]

    def _per_position(self, page_grades: Any) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    def click_probabilities(self, page_grades: Any) -> np.ndarray:
        """Exact marginal click probability of every position, ``float[n_q, k]``."""
        attract, satisfy, gamma = self._per_position(page_grades)
        # P(E_r) is a running product over earlier ranks of (1 - a s) gamma
        keep_going = (1.0 - attract * satisfy) * gamma
        examined = np.ones_like(attract)
        examined[:, 1:] = np.cumprod(keep_going[:, :-1], axis=1)
        return examined * attract

    def simulate(self, page_grades: Any, rng: np.random.Generator) -> np.ndarray:
        """Draw clicks ``bool[n_q, k]`` by scanning every page top-down (vectorized over pages)."""
        attract, satisfy, gamma = self._per_position(page_grades)
        rng = _check_rng(rng)
        n_q, k = attract.shape
        # all uniforms drawn up front: the clicks depend only on the seed and the pages
        u = rng.random((3, n_q, k))
        clicks = np.zeros((n_q, k), dtype=bool)
        examining = np.ones(n_q, dtype=bool)
        for r in range(k):  # loop over ranks, not candidates: each step is a batch op
            clicks[:, r] = examining & (u[0, :, r] < attract[:, r])
            satisfied = clicks[:, r] & (u[1, :, r] < satisfy[:, r])
            examining &= ~satisfied & (u[2, :, r] < gamma)
        return clicks


class CascadeClickModel(_SequentialModel):
    """Cascade model: scan top-down, click with ``attraction[grade]``, stop after a click with
    ``stop[grade]``; never stop without a click.

    Parameters
    ----------
    preset
        ``"perfect"``, ``"navigational"`` or ``"informational"``.
    **overrides
        Fields of :class:`CascadeParams`: ``attraction``, ``stop``.
    """

    name: ClassVar[str] = "cascade"

    def __init__(self, preset: str = "navigational", **overrides: Any) -> None:
        self.preset = preset
        self.params: CascadeParams = _resolve(self.name, CascadeParams, preset, overrides, ("attraction", "stop"))

    def _per_position(self, page_grades: Any) -> tuple[np.ndarray, np.ndarray, float]:
        grades, valid = _check_pages(page_grades)
        return (_per_grade(self.params.attraction, grades, valid),
                _per_grade(self.params.stop, grades, valid), 1.0)


class DynamicBayesianNetworkClickModel(_SequentialModel):
    """Dynamic Bayesian network model (Chapelle & Zhang 2009).

    ``E_1 = 1``; ``C_r = E_r and A_r`` with ``P(A_r) = attraction[grade]``; a click satisfies
    with ``satisfaction[grade]``; ``E_{r+1} = E_r and not S_r and (continue w.p. gamma)``.

    Parameters
    ----------
    preset
        ``"perfect"``, ``"navigational"`` or ``"informational"`` (their stop row becomes
        ``satisfaction``).
    **overrides
        Fields of :class:`DBNParams`: ``attraction``, ``satisfaction``, ``gamma`` (default 0.9).
    """

    name: ClassVar[str] = "dbn"

    def __init__(self, preset: str = "navigational", **overrides: Any) -> None:
        self.preset = preset
        self.params: DBNParams = _resolve(self.name, DBNParams, preset, overrides, ("attraction", "satisfaction"))

    def _per_position(self, page_grades: Any) -> tuple[np.ndarray, np.ndarray, float]:
        grades, valid = _check_pages(page_grades)
        return (_per_grade(self.params.attraction, grades, valid),
                _per_grade(self.params.satisfaction, grades, valid), self.params.gamma)


def fit_pbm(positions: Any, keys: Any, clicks: Any, n_iter: int = 100, *,
            n_ranks: int | None = None, n_keys: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit a position-based model to a click log by expectation-maximization.

    The EM of Chuklin et al. (2015, sec. 4.2): for an observation with click ``c`` at rank ``r``
    of query-item ``q`` with current ``gamma_r`` (examination) and ``alpha_q`` (attraction),

    * ``c = 1``: examined and attracted for sure;
    * ``c = 0``: ``P(E | no click) = gamma_r (1 - alpha_q) / (1 - gamma_r alpha_q)`` and
      ``P(A | no click) = alpha_q (1 - gamma_r) / (1 - gamma_r alpha_q)``;

    and the M-step sets ``gamma_r`` (``alpha_q``) to the mean of those posteriors over the
    observations at rank ``r`` (of key ``q``), with ``np.bincount``.

    Only the products ``gamma_r alpha_q`` are identified, so compare examination curves after
    dividing by ``gamma_1``. On a seeded log of 200 query-items x 10 ranks with random placements
    and 200,000 impressions (see the tests) the normalized examination curve is recovered within
    a max absolute error of 0.03.

    Parameters
    ----------
    positions
        ``int[n]`` 0-based rank of each impression (rank 1 is position 0).
    keys
        ``int[n]`` query-item id of each impression, in ``[0, n_keys)``.
    clicks
        ``bool[n]`` whether the impression was clicked.
    n_iter
        EM iterations.
    n_ranks, n_keys
        Output sizes; default ``max + 1`` of ``positions`` / ``keys``.

    Returns
    -------
    ``(examination float[n_ranks], attraction float[n_keys])``; a rank or key never observed
    gets NaN.
    """
    pos = np.asarray(positions)
    key = np.asarray(keys)
    clk = np.asarray(clicks)
    if not (pos.ndim == key.ndim == clk.ndim == 1 and pos.size == key.size == clk.size):
        raise ValueError(
            "fit_pbm expects 1-D positions, keys and clicks of equal length; got shapes "
            f"{pos.shape}, {key.shape}, {clk.shape}"
        )
    for label, arr in (("positions", pos), ("keys", key)):
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
            raise ValueError(f"fit_pbm: {label} must be non-negative integers; got dtype {arr.dtype}, min {arr.min()}")
    if clk.size and not (clk.dtype == bool or np.isin(clk, (0, 1)).all()):
        raise ValueError("fit_pbm: clicks must be booleans or 0/1")
    if n_iter < 1:
        raise ValueError(f"The 'n_iter' parameter of fit_pbm must be an int >= 1. Got {n_iter} instead.")
    n_ranks = int(pos.max()) + 1 if n_ranks is None else n_ranks
    n_keys = int(key.max()) + 1 if n_keys is None else n_keys
    if pos.size and (pos.max() >= n_ranks or key.max() >= n_keys):
        raise ValueError(f"fit_pbm: a position or key is out of range (n_ranks={n_ranks}, n_keys={n_keys})")
    # the EM itself lives in ltrr (the ranker's IPW debiasing uses it too): one implementation
    return pbm_em(pos, key, clk, n_iter, n_ranks, n_keys)
