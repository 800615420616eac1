"""``xmr``: the XR-Linear candidate generator (learned semantic matching from clicks).

Trained on query -> clicked-item pairs plus each item's own text as a pseudo-query (so every item
is reachable, and a catalog without any clicks still gets a working cold-start model). Queries are
vectorized with :class:`~strategies.xmr.features.TfidfFeaturizer` (word 1-3-grams + character
trigrams), labels are catalog rows, and :class:`~strategies.xmr.model.XRModel` does the rest.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator, Retrainable
from ltrr.errors import ConfigError, DataError, NotFittedError
from ltrr.params import validate_params
from ltrr.types import QueryBatch, RetrievalResult
from strategies.xmr.features import TfidfFeaturizer
from strategies.xmr.heap import release_free_heap
from strategies.xmr.model import XRConfig, XRModel, XRTreeParams

__all__ = ["XRLinear", "XRLinearParams", "train_from_pairs"]

log = logging.getLogger(__name__)


class XRLinearParams(XRTreeParams):
    """Hyperparameters of :class:`XRLinear` (defaults follow PECOS XR-Linear).

    Parameters
    ----------
    branching
        B, the out-degree of the label tree (>= 2).
    max_leaf_size
        Leaf clusters hold at most about this many items.
    beam
        Beam width of the tree search (>= 1).
    threshold
        Matcher weights below this absolute value are pruned.
    C
        Loss weight of the squared-hinge matchers (regularization is 1/2 ||w||^2).
    negatives
        ``"tfn"`` teacher-forcing negatives; ``"tfn+man"`` adds matcher-aware negatives.
    transform
        Score transform multiplied down the tree path.
    word_ngrams, char_ngrams, min_df, max_features, max_terms
        Query features (see :class:`~strategies.xmr.features.TfidfFeaturizer`).
    text_fields
        Catalog fields composed into each item's pseudo-query.
    extra_pseudo_queries
        More pseudo-queries per item, each a list of fields (e.g. ``[["directors", "title"]]``).
    seed
        Seeds the k-means tree; the rest is deterministic.
    """

    bias: float = 1.0
    negatives: Literal["tfn", "tfn+man"] = "tfn"
    transform: Literal["l3-hinge", "l2-hinge", "sigmoid"] = "l3-hinge"
    kmeans_iters: int = Field(20, ge=1)
    newton_iters: int = Field(4, ge=1)
    cg_iters: int = Field(10, ge=1)
    word_ngrams: int = Field(3, ge=0)
    char_ngrams: int = Field(3, ge=0)
    min_df: int = Field(1, ge=1)
    max_features: int | None = Field(None, ge=1)
    max_terms: int | None = Field(None, ge=1)
    text_fields: tuple[str, ...] = Field(("title", "text"), min_length=1)
    extra_pseudo_queries: tuple[tuple[str, ...], ...] = ()
    seed: int = 0


def _config(p: XRLinearParams) -> XRConfig:
    return XRConfig(branching=p.branching, max_leaf_size=p.max_leaf_size, kmeans_iters=p.kmeans_iters,
                    seed=p.seed, C=p.C, bias=p.bias, threshold=p.threshold, negatives=p.negatives,
                    newton_iters=p.newton_iters, cg_iters=p.cg_iters, beam=p.beam,
                    transform=p.transform, threads=p.train_threads)


class XRLinear(CandidateGenerator[XRLinearParams], Retrainable):
    """XR-Linear tree over catalog rows; see the module docstring."""

    type_name = "xmr"
    format_version = 1
    Params = XRLinearParams

    def __init__(self, params: XRLinearParams | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        if self.params.word_ngrams == 0 and self.params.char_ngrams == 0:
            raise ConfigError(
                f"strategy {self.name!r}: word_ngrams and char_ngrams cannot both be 0 (no features)."
            )
        self.featurizer_: TfidfFeaturizer | None = None
        self.model_: XRModel | None = None
        self.n_pairs_ = 0
        self.n_pseudo_ = 0
        self.pair_queries_: list[str] = []     # click pairs the model was trained on
        self.pair_rows_ = np.empty(0, dtype=np.int64)
        self._observed: list[tuple[str, int]] = []  # clicks seen since, for the next retrain
        self._consumed = 0  # clicks of the previous instance's buffer this one was trained on

    # ------------------------------------------------------------------ training
    def _fit(self, catalog: Catalog) -> None:
        log.info("%s: cold start, training on the text of %d items as pseudo-queries",
                 self.name, len(catalog))
        self._train(catalog, [], np.empty(0, dtype=np.int64))

    def fit_pairs(self, catalog: Catalog, queries: Sequence[str], item_rows: Sequence[int] | np.ndarray) -> Self:
        """Train from query -> clicked-item pairs (``item_rows`` are catalog rows) plus item text.

        Rows outside the catalog are reported (count and first examples) and skipped. With no
        usable pair at all, training falls back to the items' text and warns.
        """
        rows = np.asarray(item_rows, dtype=np.int64).ravel()
        queries = list(queries)
        if rows.size != len(queries):
            raise DataError(
                f"fit_pairs needs one item row per query; got {len(queries)} queries and {rows.size} rows."
            )
        bad = (rows < 0) | (rows >= len(catalog))
        if bad.any():
            where = np.flatnonzero(bad)[:5]
            examples = ", ".join(f"{queries[i]!r} -> {int(rows[i])}" for i in where)
            warnings.warn(f"{self.name}: skipped {int(bad.sum())} click pair(s) whose item is not in "
                          f"the catalog of {len(catalog)} items; first: {examples}", stacklevel=2)
        keep = ~bad & np.array([bool(q.strip()) for q in queries], dtype=bool)
        queries = [q for q, k in zip(queries, keep, strict=True) if k]
        rows = rows[keep]
        if not queries:
            warnings.warn(f"{self.name}: no click pairs to train on; falling back to item text "
                          f"({len(catalog)} items as pseudo-queries, cold start).", stacklevel=2)
        self._train(catalog, queries, rows)
        self.n_items_ = len(catalog)
        self.fitted_ = True
        return self

    def _train(self, catalog: Catalog, queries: list[str], rows: np.ndarray) -> None:
        p = self.params
        self.pair_queries_, self.pair_rows_ = list(queries), np.asarray(rows, dtype=np.int64)
        texts: list[str] = list(queries)
        labels: list[int] = rows.tolist()
        for fields in (p.text_fields, *p.extra_pseudo_queries):
            composed = catalog.compose(fields)
            for i, t in enumerate(composed):
                if t.strip():
                    texts.append(t)
                    labels.append(i)
        self.n_pairs_ = len(queries)
        self.n_pseudo_ = len(texts) - len(queries)
        if not texts:
            raise DataError(f"{self.name}: nothing to train on (no click pairs and no item text in "
                            f"fields {list(p.text_fields)}).")
        # identical query strings become one training row with all their clicked items
        uniq: dict[str, int] = {}
        qrow = np.array([uniq.setdefault(t.strip().lower(), len(uniq)) for t in texts], dtype=np.int64)
        first: dict[str, str] = {}
        for t in texts:
            first.setdefault(t.strip().lower(), t)
        uniq_texts = list(first.values())
        y = sp.csr_matrix((np.ones(qrow.size), (qrow, np.asarray(labels, dtype=np.int64))),
                          shape=(len(uniq_texts), len(catalog)))
        y.sum_duplicates()
        y.data[:] = 1.0
        # the texts and their lower-cased keys are as large as the catalog: not kept through the fit
        del texts, labels, uniq, first, qrow, composed
        self.featurizer_ = TfidfFeaturizer(p.word_ngrams, p.char_ngrams, p.min_df, p.max_features,
                                           p.max_terms)
        x = self.featurizer_.fit_transform(uniq_texts, threads=p.train_threads)
        del uniq_texts
        release_free_heap()  # featurizing's transients, before the model's phases
        # handed over: released once the matchers' copy (with the bias column) is built
        self.model_ = XRModel(_config(p)).fit(x, y, consume_x=True)
        del x

    # ------------------------------------------------------------------ serving
    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        if self.model_ is None or self.featurizer_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) first")
        x = queries.cached(f"xmr-tfidf:{self.name}:{id(self.featurizer_)}", self.featurizer_.transform)
        ids, scores = self.model_.predict(x, k)
        # a query sharing no feature with the training queries has only bias scores: no match
        unknown = np.diff(x.indptr) == 0
        ids[unknown] = -1
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return RetrievalResult(ids.astype(np.int64), scores)

    # ------------------------------------------------------------------ online retraining
    def observe(self, query: str, shown: np.ndarray, clicked: np.ndarray, ts: float) -> None:
        """Buffer (query, clicked row) pairs for the next :meth:`retrained`; serving is unchanged."""
        for row in np.asarray(clicked, dtype=np.int64).ravel():
            self._observed.append((query, int(row)))

    @property
    def n_observed(self) -> int:
        """Clicks buffered since the last training."""
        return len(self._observed)

    def learned_counts(self) -> dict[str, int]:
        return {"click_pairs": self.n_pairs_, "observed": self.n_observed}

    def retrained(self, catalog: Catalog) -> XRLinear:
        """A new model trained on every pair so far (previous pairs + buffered clicks).

        ``self`` keeps serving while this runs; the caller swaps the reference when it returns,
        so queries never wait for training.
        """
        observed = list(self._observed)  # snapshot: clicks arriving while training stay buffered here
        queries = self.pair_queries_ + [q for q, _ in observed]
        rows = np.concatenate([self.pair_rows_, np.array([r for _, r in observed], dtype=np.int64)])
        fresh = XRLinear(self.params, name=self.name).fit_pairs(catalog, queries, rows)
        fresh._consumed = len(observed)
        return fresh

    def hand_over(self, fresh: XRLinear) -> None:
        """Move the clicks observed while ``fresh`` was being built (after its snapshot) to it."""
        fresh._observed.extend(self._observed[fresh._consumed:])

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Retrain over the grown catalog, keeping every click pair learned so far."""
        fresh = self.retrained(catalog)
        self.featurizer_, self.model_ = fresh.featurizer_, fresh.model_
        self.pair_queries_, self.pair_rows_ = fresh.pair_queries_, fresh.pair_rows_
        self.n_pairs_, self.n_pseudo_ = fresh.n_pairs_, fresh.n_pseudo_
        self._observed = []
        self.n_items_ = len(catalog)

    def cost_ms(self, k: int) -> float:
        return 0.5 + 0.0005 * k

    # ------------------------------------------------------------------ persistence
    def _save(self, directory: Path) -> None:
        if self.model_ is None or self.featurizer_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) before save")
        self.featurizer_.save(directory)
        self.model_.save(directory)
        (directory / "click_pairs.json").write_text(
            json.dumps({"queries": self.pair_queries_, "rows": self.pair_rows_.tolist()},
                       ensure_ascii=False), encoding="utf-8")
        # clicks observed since training are learned state too: a restored snapshot retrains on them
        (directory / "click_buffer.json").write_text(
            json.dumps({"queries": [q for q, _ in self._observed], "rows": [r for _, r in self._observed]},
                       ensure_ascii=False), encoding="utf-8")

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.featurizer_ = TfidfFeaturizer.load(directory)
        self.model_ = XRModel.load(directory)
        pairs = json.loads((directory / "click_pairs.json").read_text(encoding="utf-8"))
        self.pair_queries_ = list(pairs["queries"])
        self.pair_rows_ = np.asarray(pairs["rows"], dtype=np.int64)
        buffer = directory / "click_buffer.json"
        if buffer.exists():  # engines saved before the buffer was persisted have none
            buf = json.loads(buffer.read_text(encoding="utf-8"))
            self._observed = [(str(q), int(r)) for q, r in zip(buf["queries"], buf["rows"], strict=True)]
        self.n_pairs_ = int(manifest.get("n_pairs", 0))
        self.n_pseudo_ = int(manifest.get("n_pseudo", 0))

    def _manifest_extra(self) -> dict[str, Any]:
        return {"n_pairs": self.n_pairs_, "n_pseudo": self.n_pseudo_}


def train_from_pairs(catalog: Catalog, queries: Sequence[str], item_ids: Sequence[str],
                     params: XRLinearParams | dict[str, Any] | None = None,
                     name: str | None = None) -> XRLinear:
    """Train an :class:`XRLinear` from a click log's (query, clicked item id) pairs.

    External item ids are mapped to catalog rows; ids not in the catalog are reported (count and
    first examples) and skipped. This is what ``ltrr`` calls to (re)train the model from its
    accumulated click log.
    """
    if isinstance(params, dict) or params is None:
        params = validate_params(XRLinearParams, params, "strategy 'xmr'")
    queries = list(queries)
    item_ids = [str(i) for i in item_ids]
    if len(queries) != len(item_ids):
        raise DataError(f"train_from_pairs needs one item id per query; got {len(queries)} queries "
                        f"and {len(item_ids)} item ids.")
    rows = catalog.rows_of(item_ids)
    unknown = np.flatnonzero(rows < 0)
    if unknown.size:
        examples = ", ".join(repr(item_ids[i]) for i in unknown[:5])
        warnings.warn(f"{name or 'xmr'}: skipped {unknown.size} click pair(s) with item ids not in the "
                      f"catalog; first: {examples}", stacklevel=2)
        keep = rows >= 0
        queries = [q for q, k in zip(queries, keep, strict=True) if k]
        rows = rows[keep]
    return XRLinear(params, name=name).fit_pairs(catalog, queries, rows)
