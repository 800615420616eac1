"""Session-aware query autocompletion as extreme multi-label ranking (``ltrr complete``).

After Yadav et al., "Session-Aware Query Auto-completion using Extreme Multi-label Ranking"
(KDD 2021): the input is the previous query of the session plus the prefix being typed, the
labels are the queries seen before, and an XR-Linear tree ranks them. Features: TF-IDF of the
prefix (word unigrams + character trigrams), of the prefix's first 1..5 characters as whole
tokens (where the prefix starts decides the completion), and of the previous query's words,
each block L2-normalized and weighted. The label tree is k-means on PIFA embeddings (the XMR
default), a trie over the label strings, or the trie / k-means hybrid of
:mod:`strategies.xmr.trie`. Completions are the beam search's top candidates that start with the
prefix (a vectorized range test on the sorted labels); when fewer than ``k`` survive, the most
frequent labels with that prefix fill the list (marked ``from_model=False``).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ltrr.errors import DataError, NotFittedError
from ltrr.params import validate_params
from ltrr.store.persist import atomic_directory, read_manifest, write_manifest
from strategies.xmr.features import TfidfFeaturizer
from strategies.xmr.model import XRConfig, XRModel, XRTreeParams
from strategies.xmr.trie import hybrid_tree, trie_tree

__all__ = ["CompleterParams", "Completions", "QueryCompleter", "completion_examples", "movie_sessions", "mrr_at"]

_SPACES = re.compile(r"\s+")
_NONWORD = re.compile(r"\W")
START_CHARS = 5


def normalize_query(text: str) -> str:
    """Lowercase, trim, single spaces: the form labels and prefixes are compared in."""
    return _SPACES.sub(" ", text.lower()).strip()


def _normalize_prefix(text: str) -> str:
    # a trailing space is information ("star " has finished a word), so only the left is trimmed
    return _SPACES.sub(" ", text.lower()).lstrip()


class CompleterParams(XRTreeParams):
    """Hyperparameters of :class:`QueryCompleter`.

    Parameters
    ----------
    indexer
        Label tree: ``"kmeans"`` (PIFA + balanced k-means), ``"trie"`` or ``"hybrid"``.
    trie_depth
        Characters the hybrid's trie levels cover.
    candidates
        Labels the beam search returns before the prefix filter.
    prefix_lengths
        Prefix lengths (characters) turned into training examples per (previous, query) pair.
    previous_weight, start_weight
        Weights of the previous-query and prefix-start feature blocks (the prefix n-grams: 1).
    """

    indexer: Literal["kmeans", "trie", "hybrid"] = "hybrid"
    trie_depth: int = Field(1, ge=0)
    candidates: int = Field(100, ge=1)
    prefix_lengths: tuple[int, ...] = Field((1, 2, 3, 4, 5, 6, 8, 10, 14), min_length=1)
    previous_weight: float = Field(0.5, ge=0.0)
    start_weight: float = Field(1.0, ge=0.0)
    seed: int = 0


@dataclass(frozen=True)
class Completions:
    """Top-``k`` completions per request: label ids (-1 padded), scores, whether the model found them."""

    ids: np.ndarray          # int64[n, k]
    scores: np.ndarray       # float32[n, k]; fills from the frequency list score 0, padding -inf
    from_model: np.ndarray   # bool[n, k]
    labels: tuple[str, ...]  # label strings, indexed by id

    def texts(self, i: int) -> list[str]:
        return [self.labels[j] for j in self.ids[i] if j >= 0]


def _start_tokens(prefix: str) -> str:
    return " ".join(f"p{n}_{_NONWORD.sub('_', prefix[:n])}" for n in range(1, min(len(prefix), START_CHARS) + 1))


class SessionFeaturizer:
    """Prefix n-grams + prefix-start tokens + previous-query words, as one CSR row per request."""

    BLOCKS = ("prefix", "start", "previous")

    def __init__(self, previous_weight: float = 0.5, start_weight: float = 1.0):
        self.weights = {"prefix": 1.0, "start": float(start_weight), "previous": float(previous_weight)}
        self.blocks = {"prefix": TfidfFeaturizer(1, 3), "start": TfidfFeaturizer(1, 0),
                       "previous": TfidfFeaturizer(1, 0)}

    def _texts(self, previous: Sequence[str], prefixes: Sequence[str]) -> dict[str, list[str]]:
        return {"prefix": list(prefixes), "start": [_start_tokens(p) for p in prefixes],
                "previous": list(previous)}

    def fit(self, previous: Sequence[str], prefixes: Sequence[str]) -> SessionFeaturizer:
        for name, texts in self._texts(previous, prefixes).items():
            fit_on = [t for t in texts if t.strip()] or ["_"]
            self.blocks[name].fit(fit_on)
        return self

    def transform(self, previous: Sequence[str], prefixes: Sequence[str]) -> sp.csr_matrix:
        texts = self._texts(previous, prefixes)
        mats = [self.blocks[n].transform(texts[n]) * np.float32(self.weights[n]) for n in self.BLOCKS]
        x = sp.hstack(mats, format="csr", dtype=np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        x.data /= np.repeat(norms, np.diff(x.indptr)).astype(np.float32)
        return x

    def save(self, directory: Path) -> None:
        for name in self.BLOCKS:
            d = directory / f"features_{name}"
            d.mkdir()
            self.blocks[name].save(d)
        (directory / "feature_weights.json").write_text(json.dumps(self.weights))

    @classmethod
    def load(cls, directory: Path) -> SessionFeaturizer:
        w = json.loads((directory / "feature_weights.json").read_text())
        obj = cls(w["previous"], w["start"])
        obj.weights = w
        obj.blocks = {n: TfidfFeaturizer.load(directory / f"features_{n}") for n in cls.BLOCKS}
        return obj


class QueryCompleter:
    """Session-aware query autocompletion over the queries seen before (see the module docstring)."""

    type_name = "xmr_complete"
    format_version = 1

    def __init__(self, params: CompleterParams | dict[str, Any] | None = None):
        self.params = params if isinstance(params, CompleterParams) else validate_params(
            CompleterParams, params, "complete")
        self.labels_: tuple[str, ...] = ()
        self.counts_ = np.empty(0, dtype=np.int64)
        self.featurizer_: SessionFeaturizer | None = None
        self.model_: XRModel | None = None

    # ------------------------------------------------------------------ training
    def fit(self, sessions: Sequence[Sequence[str]]) -> Self:
        """Learn from sessions (lists of consecutive queries, oldest first).

        Labels are the distinct normalized queries; every (previous query, query) pair — and
        every query with no previous one — gives one training example per prefix length.
        """
        p = self.params
        counts: dict[str, int] = {}
        pairs: list[tuple[str, str]] = []
        for s in sessions:
            qs = [normalize_query(q) for q in s]
            qs = [q for q in qs if q]
            for i, q in enumerate(qs):
                counts[q] = counts.get(q, 0) + 1
                pairs.append((qs[i - 1] if i else "", q))
        if not counts:
            raise DataError("complete: no queries to learn from (all sessions are empty).")
        labels = sorted(counts)
        index = {q: i for i, q in enumerate(labels)}
        # every label is also learned without a previous query, so it is reachable cold
        pairs.extend(("", q) for q in labels)
        keys: dict[tuple[str, str], int] = {}
        rows, cols = [], []
        for prev, q in pairs:
            lengths = sorted({min(n, len(q)) for n in p.prefix_lengths})
            for n in lengths:
                r = keys.setdefault((prev, q[:n]), len(keys))
                rows.append(r)
                cols.append(index[q])
        y = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(keys), len(labels)))
        y.sum_duplicates()
        y.data[:] = 1.0
        prevs = [k[0] for k in keys]
        prefixes = [k[1] for k in keys]
        self.featurizer_ = SessionFeaturizer(p.previous_weight, p.start_weight).fit(prevs, prefixes)
        x = self.featurizer_.transform(prevs, prefixes)
        cfg = XRConfig(branching=p.branching, max_leaf_size=p.max_leaf_size, seed=p.seed, C=p.C,
                       threshold=p.threshold, beam=p.beam, threads=p.train_threads)
        if p.indexer == "trie":
            tree = trie_tree(labels, p.max_leaf_size)
        elif p.indexer == "hybrid":
            tree = hybrid_tree(labels, p.trie_depth, p.branching, p.max_leaf_size, p.seed)
        else:
            tree = None
        self.model_ = XRModel(cfg).fit(x, y, tree=tree)
        self.labels_ = tuple(labels)
        self.counts_ = np.array([counts[q] for q in labels], dtype=np.int64)
        self.n_examples_ = len(keys)
        return self

    # ------------------------------------------------------------------ serving
    def _prefix_ranges(self, prefixes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Half-open id ranges of the labels starting with each prefix (labels are sorted)."""
        lo = np.array([bisect.bisect_left(self.labels_, pf) for pf in prefixes], dtype=np.int64)
        hi = np.array([bisect.bisect_left(self.labels_, pf + "\U0010ffff") for pf in prefixes], dtype=np.int64)
        return lo, hi

    def complete(self, previous: Sequence[str], prefixes: Sequence[str], k: int = 10,
                 fill: bool = True) -> Completions:
        """Top-``k`` completions of each prefix given the previous query ("" when none)."""
        if self.model_ is None or self.featurizer_ is None:
            raise NotFittedError("QueryCompleter is not fitted: call fit or load before complete")
        if len(previous) != len(prefixes):
            raise DataError(f"complete needs one previous query per prefix; got {len(previous)} and {len(prefixes)}.")
        if k < 1:
            raise ValueError(f"The 'k' parameter must be an int in [1, inf). Got {k!r} instead.")
        prev = [normalize_query(q) for q in previous]
        pref = [_normalize_prefix(q) for q in prefixes]
        n = len(pref)
        x = self.featurizer_.transform(prev, pref)
        ids, scores = self.model_.predict(x, max(self.params.candidates, k))
        lo, hi = self._prefix_ranges(pref)
        # labels are sorted, so "starts with the prefix" is a range test on the label id
        ok = (ids >= lo[:, None]) & (ids < hi[:, None])
        scores = np.where(ok, scores, -np.inf)
        order = np.lexsort((ids, -scores), axis=1)[:, :k]
        top_ids = np.take_along_axis(np.where(ok, ids, -1), order, axis=1)
        top_s = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        from_model = top_ids >= 0
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_s = np.full((n, k), -np.inf, dtype=np.float32)
        m = min(k, top_ids.shape[1])
        out_ids[:, :m], out_s[:, :m] = top_ids[:, :m], top_s[:, :m]
        from_model = np.zeros((n, k), dtype=bool)
        from_model[:, :m] = out_ids[:, :m] >= 0
        if fill:
            for i in np.flatnonzero(from_model.sum(axis=1) < np.minimum(k, hi - lo)):
                have = int(from_model[i].sum())
                span = np.arange(lo[i], hi[i])
                span = span[~np.isin(span, out_ids[i, :have])]
                top = span[np.lexsort((span, -self.counts_[span]))][: k - have]
                out_ids[i, have: have + top.size] = top
                out_s[i, have: have + top.size] = 0.0
        return Completions(out_ids, out_s, from_model, self.labels_)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """A directory: manifest, labels + counts (JSON / npy), features, the XR model."""
        if self.model_ is None or self.featurizer_ is None:
            raise NotFittedError("QueryCompleter is not fitted: call fit before save")
        with atomic_directory(directory) as tmp:
            write_manifest(tmp, self.type_name, self.format_version, self.params.model_dump(mode="json"),
                           n_labels=len(self.labels_))
            (tmp / "labels.json").write_text(json.dumps(list(self.labels_), ensure_ascii=False), encoding="utf-8")
            np.save(tmp / "counts.npy", self.counts_, allow_pickle=False)
            self.featurizer_.save(tmp)
            (tmp / "model").mkdir()
            self.model_.save(tmp / "model")

    @classmethod
    def load(cls, directory: str | Path) -> QueryCompleter:
        directory = Path(directory)
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        obj = cls(manifest["params"])
        obj.labels_ = tuple(json.loads((directory / "labels.json").read_text(encoding="utf-8")))
        obj.counts_ = np.load(directory / "counts.npy", allow_pickle=False)
        obj.featurizer_ = SessionFeaturizer.load(directory)
        obj.model_ = XRModel.load(directory / "model")
        return obj


# ---------------------------------------------------------------------- data and metric
def movie_sessions(catalog: Any, n_sessions: int, seed: int = 0, pool_size: int = 3000,
                   max_len: int = 4, p_related: float = 0.8) -> list[list[str]]:
    """Seeded sessions of related queries from the generated movie query stream.

    A session starts with a pool query drawn with a Zipf law over the pool (head queries
    repeat); each next query is, with probability ``p_related``, another pool query about one of
    the current query's best films (a person's film by title, a film's director, a misspelling
    of the same title...), otherwise a fresh draw. Lengths are uniform in ``2..max_len``.
    """
    from simulators.movies import MovieQueryGenerator  # data only: not a serving dependency

    pool = MovieQueryGenerator(catalog, seed=seed).sample_pool(pool_size)
    by_film: dict[int, list[int]] = {}
    for j, pq in enumerate(pool):
        for f, g in pq.relevant.items():
            if g >= 3:
                by_film.setdefault(f, []).append(j)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    w = np.arange(1, len(pool) + 1, dtype=np.float64) ** -0.8
    cdf = np.cumsum(w) / w.sum()
    perm = rng.permutation(len(pool))

    def draw() -> int:
        return int(perm[min(int(np.searchsorted(cdf, rng.random())), len(pool) - 1)])

    sessions = []
    for _ in range(n_sessions):
        q = draw()
        s = [q]
        for _ in range(int(rng.integers(2, max_len + 1)) - 1):
            nxt = -1
            if rng.random() < p_related:
                best = max(pool[q].relevant.values())
                films = sorted(f for f, g in pool[q].relevant.items() if g == best)
                f = films[int(rng.integers(len(films)))]
                others = [j for j in by_film.get(f, []) if j != q]
                if others:
                    nxt = others[int(rng.integers(len(others)))]
            q = nxt if nxt >= 0 else draw()
            s.append(q)
        sessions.append([pool[j].text for j in s])
    return sessions


def completion_examples(sessions: Sequence[Sequence[str]], seed: int = 0,
                        lengths: Sequence[int] = (1, 2, 3, 5)) -> tuple[list[str], list[str], list[str]]:
    """(previous, prefix, target) test triples: every query after the first of a session, at one
    prefix length drawn from ``lengths`` (seeded)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    prev, pref, tgt = [], [], []
    for s in sessions:
        qs = [normalize_query(q) for q in s]
        for i in range(1, len(qs)):
            n = int(lengths[int(rng.integers(len(lengths)))])
            prev.append(qs[i - 1])
            pref.append(qs[i][:n])
            tgt.append(qs[i])
    return prev, pref, tgt


def mrr_at(result: Completions, targets: Sequence[str], k: int = 10) -> float:
    """Mean reciprocal rank of each target among the first ``k`` completions (0 when absent)."""
    index = {q: i for i, q in enumerate(result.labels)}
    t = np.array([index.get(normalize_query(q), -2) for q in targets], dtype=np.int64)
    hit = result.ids[:, :k] == t[:, None]
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    return float(np.where(rank > 0, 1.0 / np.maximum(rank, 1), 0.0).mean()) if len(targets) else 0.0
