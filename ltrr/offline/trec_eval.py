"""``ltrr evaluate``: TREC runs scored with ir-measures, under ltrr's averaging convention.

ir-measures (pytrec_eval / trec_eval underneath) computes every per-query value, so a measure
named the ir-measures way (``nDCG@10``, ``R@100``, ``AP``, ``RR@10``, ``P(rel=2)@5``,
``Judged@10`` ...) means exactly what it means there. The mean runs over the qrels queries that
have at least one relevant (grade >= 1) document; such a query that the run lacks counts 0 (as
``trec_eval -c``), and run queries without judgments are ignored — the convention of
:func:`ltrr.offline.metrics.evaluate`, so both agree on binary qrels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltrr.errors import ConfigError, DataError


@dataclass(frozen=True)
class RunEvaluation:
    """``mean`` per measure name, ``per_query`` ``{measure: {qid: value}}``, and how many
    queries the means run over."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    n_queries: int


def parse_measures(text: str) -> list[Any]:
    """ir-measures measure objects from ``"nDCG@10 R@100, AP"``; an unknown name is a
    ConfigError naming it."""
    import ir_measures

    names = [n for n in re.split(r"[\s,]+(?![^()]*\))", text.strip()) if n]
    if not names:
        raise ConfigError("--measures: no measure given (e.g. 'nDCG@10 R@100 AP')")
    out = []
    for name in names:
        try:
            out.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--measures: {name!r} is not an ir-measures measure ({exc}); "
                              "e.g. nDCG@10, R@100, AP, RR@10, P@5, P(rel=2)@5") from None
    return out


def evaluate_run(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                 measures: list[Any]) -> RunEvaluation:
    """Per-query values by ir-measures and their means over the judged queries (module doc)."""
    import ir_measures

    judged = [q for q, docs in qrels.items() if any(g >= 1 for g in docs.values())]  # file order
    if not judged:
        raise DataError(f"the qrels hold no query with a relevant document (grade >= 1) among "
                        f"{len(qrels)} queries: there is nothing to average over")
    qrels_list = [ir_measures.Qrel(q, d, int(g)) for q in judged for d, g in qrels[q].items()]
    run_list = [ir_measures.ScoredDoc(q, d, float(s)) for q in judged if q in run for d, s in run[q].items()]
    names = [str(m) for m in measures]
    per_query: dict[str, dict[str, float]] = {n: dict.fromkeys(judged, 0.0) for n in names}
    by_measure = dict(zip(measures, names, strict=True))
    for metric in ir_measures.iter_calc(measures, qrels_list, run_list):
        per_query[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    mean = {n: sum(v.values()) / len(judged) for n, v in per_query.items()}
    return RunEvaluation(mean, per_query, len(judged))
