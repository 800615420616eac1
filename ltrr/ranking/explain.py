"""Why a result is where it is: provenance plus per-feature contributions.

For each result of a decision: which strategies found it and at which rank/score (provenance),
the logged feature values, and each feature's additive contribution to the ranker's score —
LightGBM's ``pred_contrib`` (TreeSHAP, contributions + bias sum to the score) for a trained
model, the per-strategy reciprocal-rank terms for the untrained RRF prior.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ltrr.contracts.ranker import Ranker
from ltrr.types import Decision


def _num(v: float) -> float | None:
    return None if not math.isfinite(float(v)) else round(float(v), 6)


def explain_decision(decision: Decision, ranker: Ranker, titles: Any = None,
                     top: int | None = None) -> list[dict[str, Any]]:
    """Per-result explanations of ``decision``, in page order.

    Parameters
    ----------
    decision
        A decision (its logged features are explained, not recomputed ones).
    ranker
        The ranker whose contributions are computed; when its version differs from the one that
        served the decision, each result says so in ``served_by``.
    titles
        Optional sequence of item titles by catalog row.
    top
        Keep only the ``top`` contributions by absolute value (default: all non-zero).
    """
    c = decision.candidates
    if len(decision.page) == 0:
        return []
    order = np.argsort(c.items, kind="stable")
    idx = order[np.searchsorted(c.items, decision.page, sorter=order)]
    X = np.asarray(decision.features)[idx]
    contrib = ranker.contributions(X)
    names = ranker.schema.names
    served = decision.model_versions.get("ranker")
    out = []
    for r, (i, row) in enumerate(zip(idx, decision.page, strict=True)):
        prov = {s: {"rank": int(c.ranks[i, j]), "score": _num(c.scores[i, j])}
                for j, s in enumerate(c.strategies) if c.found[i, j]}
        vals = contrib[r, :-1]
        keep = np.flatnonzero(vals != 0)
        keep = keep[np.argsort(-np.abs(vals[keep]), kind="stable")]
        if top is not None:
            keep = keep[:top]
        item: dict[str, Any] = {
            "rank": r + 1,
            "id": decision.page_ids[r],
            "score": _num(decision.page_scores[r]),
            "provenance": prov,
            "contributions": {names[j]: round(float(vals[j]), 6) for j in keep},
            "bias": round(float(contrib[r, -1]), 6),
            "features": {n: _num(v) for n, v in zip(names, X[r], strict=True)},
            "model": "lightgbm-pred_contrib" if ranker.is_fitted else "rrf-prior",
            "ranker_version": ranker.version_,
            "served_by": served,
        }
        if titles is not None:
            item["title"] = titles[int(row)]
        out.append(item)
    return out
