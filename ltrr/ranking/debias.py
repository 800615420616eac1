"""Position-bias correction for learning from clicks.

Under the position-based model (PBM) a click at display rank ``r`` needs the rank to be
examined (probability ``gamma_r``) and the item to attract (``alpha_qd``), independently. A
click-trained ranker that ignores ``gamma`` learns "was shown high" as much as "is relevant".
Inverse propensity weighting (Joachims, Swaminathan & Schnabel 2017) reweights each click by
``gamma_1 / gamma_r`` so that, in expectation, the weighted clicks are proportional to attraction.

:func:`pbm_em` estimates ``gamma`` and ``alpha`` from a click log by expectation-maximization
(Chuklin, Markov & de Rijke 2015, sec. 4.2). It is the one implementation in the project:
``simulators.click_models.fit_pbm`` validates its inputs and calls it.
"""

from __future__ import annotations

import numpy as np

from ltrr.errors import DataError


def pbm_em(positions: np.ndarray, keys: np.ndarray, clicks: np.ndarray, n_iter: int,
           n_ranks: int, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """EM fit of the PBM on validated 1-D arrays.

    For an impression at rank ``r`` of query-item ``q`` with current ``gamma_r``, ``alpha_q``:
    a click means examined and attracted; no click gives the posteriors
    ``P(E | c=0) = gamma (1 - alpha) / (1 - gamma alpha)`` and
    ``P(A | c=0) = alpha (1 - gamma) / (1 - gamma alpha)``. The M-step averages the posteriors
    per rank (per key) with ``np.bincount``.

    Parameters
    ----------
    positions
        ``int[n]`` 0-based display rank of each impression.
    keys
        ``int[n]`` query-item id of each impression in ``[0, n_keys)``.
    clicks
        ``bool[n]`` or 0/1: whether the impression was clicked.
    n_iter
        EM iterations.
    n_ranks, n_keys
        Output sizes.

    Returns
    -------
    ``(gamma float64[n_ranks], alpha float64[n_keys])``; a rank or key never observed is NaN.
    Only the products ``gamma_r alpha_q`` are identified; compare curves divided by ``gamma_0``.
    """
    pos = np.asarray(positions, dtype=np.int64)
    key = np.asarray(keys, dtype=np.int64)
    c = np.asarray(clicks, dtype=np.float64)
    rank_count = np.bincount(pos, minlength=n_ranks).astype(np.float64)
    key_count = np.bincount(key, minlength=n_keys).astype(np.float64)
    gamma = np.full(n_ranks, 0.5)
    alpha = np.full(n_keys, 0.5)
    no_click = 1.0 - c
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(n_iter):
            g, a = gamma[pos], alpha[key]
            denom = np.maximum(1.0 - g * a, 1e-12)
            post_exam = c + no_click * g * (1.0 - a) / denom
            post_attr = c + no_click * a * (1.0 - g) / denom
            gamma = np.bincount(pos, weights=post_exam, minlength=n_ranks) / rank_count
            alpha = np.bincount(key, weights=post_attr, minlength=n_keys) / key_count
    return gamma, alpha


def examination_from_clicks(positions: np.ndarray, keys: np.ndarray, clicks: np.ndarray,
                            n_iter: int = 50) -> np.ndarray:
    """Relative examination probability per rank, ``gamma_r / gamma_0`` in (0, 1].

    Ranks never observed, or with no clicks at all (gamma 0), take the smallest estimated value
    of an earlier rank, so weights stay finite. Raises when the log has no click.
    """
    pos = np.asarray(positions, dtype=np.int64)
    clk = np.asarray(clicks)
    if pos.size == 0 or not np.any(clk):
        raise DataError("cannot estimate position bias: the click log has no clicks")
    _, key_ids = np.unique(np.asarray(keys), return_inverse=True)
    n_ranks = int(pos.max()) + 1
    gamma, _ = pbm_em(pos, key_ids.ravel(), clk, n_iter, n_ranks, int(key_ids.max()) + 1)
    gamma = np.where(np.isfinite(gamma) & (gamma > 0), gamma, np.nan)
    first = gamma[0] if np.isfinite(gamma[0]) else np.nanmax(gamma)
    rel = gamma / first
    # examination should not increase with rank; the running minimum also fills gaps
    rel = np.fmin.accumulate(np.where(np.isnan(rel), np.inf, rel))
    rel[~np.isfinite(rel)] = np.nanmin(rel[np.isfinite(rel)])
    return np.clip(rel, 1e-6, 1.0)


def ipw_weights(positions: np.ndarray, clicks: np.ndarray, examination: np.ndarray,
                clip: float = 10.0, normalize: bool = True) -> np.ndarray:
    """Per-row weights: ``min(1 / examination[rank], clip)`` for clicked rows, 1 otherwise.

    Lambdarank multiplies each row's gradient by its weight, so a click seen at a rarely
    examined rank pulls as hard as the (unseen) clicks it stands for. With ``normalize`` the
    clicked rows' weights are scaled to mean 1, keeping the balance between clicked and
    unclicked rows (and the effective learning rate) of the naive ranker; on the seeded
    simulations of the tests this is the better variant.
    """
    pos = np.asarray(positions, dtype=np.int64)
    exam = np.asarray(examination, dtype=np.float64)
    at = exam[np.minimum(pos, exam.size - 1)]
    clicked = np.asarray(clicks) > 0
    w = np.minimum(1.0 / at, clip)
    if normalize and clicked.any():
        w = w / w[clicked].mean()
    return np.where(clicked, w, 1.0)
