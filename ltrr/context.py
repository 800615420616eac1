"""Context features ``x`` the policy sees for a request.

Computed from the query text, the request time and signals that strategies report about the
query (``query_stats``, e.g. the click memory's hit count and prior CTR). The feature set is
declared by name in config and versioned with the saved policy; an unknown name is an error that
lists the known ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from ltrr.errors import ConfigError
from ltrr.text import ENGLISH_STOP_WORDS

_WORD = re.compile(r"\w+")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_DECADE = re.compile(r"(\b(1[89]|20)\d0s\b)|((^|[\s'])\d0s\b)")

CONTEXT_FEATURES: dict[str, str] = {
    "bias": "constant 1",
    "n_tokens": "number of word tokens, scaled by 1/10",
    "n_chars": "number of characters, scaled by 1/50",
    "mean_token_len": "mean token length, scaled by 1/10",
    "digit_frac": "fraction of characters that are digits",
    "has_year": "1 if the query names a year or a decade",
    "non_ascii_frac": "fraction of non-ASCII characters (script hint)",
    "single_token": "1 if the query is a single token",
    "memory_hits": "log1p of items the click memory holds for the query",
    "memory_ctr": "decayed click-through rate of the query in the click memory",
    "memory_seen": "1 if the click memory has seen the query",
    "structured_likelihood": "likelihood of the structured tagger's best reading (0: no field recognized)",
    "structured_slots": "field slots in the structured tagger's best reading, scaled by 1/4",
    "stopword_frac": "fraction of tokens that are English stop words (descriptive queries)",
    "has_decade": "1 if the query names a decade (1960s, 60s, '60s)",
    "bm25_top_frac": "the best BM25 score over the largest the query's terms reach (how fully the "
                     "best document matches the query: 1 for an exact title lookup), in [0, 1]",
    "bm25_top_gap": "(best - second BM25 score) / best: one document stands out (0 without a match)",
    "hour_sin": "sin of the hour of day (UTC)",
    "hour_cos": "cos of the hour of day (UTC)",
    "weekend": "1 on Saturday and Sunday (UTC)",
}

#: context features computed from another strategy signal (the signal a feature needs)
_DERIVED_FROM = {"memory_seen": "memory_ctr"}

#: ``success_<strategy>``: the strategy's recent success rate (see :mod:`ltrr.success`)
SUCCESS_PREFIX = "success_"

DEFAULT_CONTEXT_FEATURES = (
    "bias", "n_tokens", "n_chars", "mean_token_len", "digit_frac", "has_year", "non_ascii_frac",
    "single_token", "memory_hits", "memory_ctr", "memory_seen",
)


class ContextFeaturizer:
    """Maps (query, time, strategy signals) to a float64 vector, batched over queries."""

    version = 1

    def __init__(self, names: Sequence[str] | None = None, strategies: Sequence[str] | None = None):
        names = tuple(names) if names is not None else DEFAULT_CONTEXT_FEATURES
        unknown = [n for n in names if n not in CONTEXT_FEATURES and not n.startswith(SUCCESS_PREFIX)]
        if unknown:
            raise ConfigError(
                f"Unknown context feature {unknown[0]!r}; known: {', '.join(CONTEXT_FEATURES)}, "
                f"and {SUCCESS_PREFIX}<strategy> for each strategy of the engine"
            )
        if strategies is not None:
            for n in names:
                if n.startswith(SUCCESS_PREFIX) and n[len(SUCCESS_PREFIX):] not in strategies:
                    raise ConfigError(f"Context feature {n!r} names no strategy of this engine; "
                                      f"strategies: {', '.join(strategies)}")
        self.names = names
        #: the strategy signals (``query_stats`` names) these features read: a strategy whose
        #: signals none of them reads is not asked (a BM25 lookup costs time)
        self.signals_needed = frozenset(names) | {_DERIVED_FROM[n] for n in names if n in _DERIVED_FROM}

    def transform(self, texts: Sequence[str], ts: Sequence[float],
                  signals: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        signals = signals or {}
        n = len(texts)
        cols: dict[str, np.ndarray] = {}
        want = set(self.names)
        tokens = [_WORD.findall(t.lower()) for t in texts]
        n_tok = np.array([len(t) for t in tokens], dtype=np.float64)
        n_chr = np.array([len(t.strip()) for t in texts], dtype=np.float64)
        cols["bias"] = np.ones(n)
        cols["n_tokens"] = n_tok / 10.0
        cols["n_chars"] = n_chr / 50.0
        cols["mean_token_len"] = np.array(
            [sum(map(len, t)) / len(t) if t else 0.0 for t in tokens]) / 10.0
        cols["single_token"] = (n_tok == 1).astype(np.float64)
        if want & {"digit_frac", "non_ascii_frac", "has_year"}:
            cols["digit_frac"] = np.array([sum(c.isdigit() for c in t) / max(len(t), 1) for t in texts])
            cols["non_ascii_frac"] = np.array([sum(ord(c) > 127 for c in t) / max(len(t), 1) for t in texts])
            cols["has_year"] = np.array([1.0 if _YEAR.search(t) else 0.0 for t in texts])
        if want & {"stopword_frac", "has_decade"}:
            cols["stopword_frac"] = np.array(
                [sum(w in ENGLISH_STOP_WORDS for w in t) / len(t) if t else 0.0 for t in tokens])
            cols["has_decade"] = np.array([1.0 if _DECADE.search(t) else 0.0 for t in texts])
        hits = np.asarray(signals.get("memory_hits", np.zeros(n)), dtype=np.float64)
        cols["memory_hits"] = np.log1p(hits)
        cols["memory_ctr"] = np.asarray(signals.get("memory_ctr", np.zeros(n)), dtype=np.float64)
        cols["memory_seen"] = (cols["memory_ctr"] > 0).astype(np.float64)
        cols["structured_likelihood"] = np.asarray(
            signals.get("structured_likelihood", np.zeros(n)), dtype=np.float64)
        cols["structured_slots"] = np.asarray(signals.get("structured_slots", np.zeros(n)), dtype=np.float64) / 4.0
        for name in ("bm25_top_frac", "bm25_top_gap"):
            cols[name] = np.asarray(signals.get(name, np.zeros(n)), dtype=np.float64)
        if want & {"hour_sin", "hour_cos", "weekend"}:
            when = [datetime.fromtimestamp(float(t), tz=UTC) for t in ts]
            hours = np.array([w.hour + w.minute / 60.0 for w in when])
            cols["hour_sin"] = np.sin(2 * math.pi * hours / 24.0)
            cols["hour_cos"] = np.cos(2 * math.pi * hours / 24.0)
            cols["weekend"] = np.array([1.0 if w.weekday() >= 5 else 0.0 for w in when])
        for name in self.names:
            if name.startswith(SUCCESS_PREFIX):
                cols[name] = np.asarray(signals.get(name, np.zeros(n)), dtype=np.float64)
        return np.stack([cols[name] for name in self.names], axis=1)
