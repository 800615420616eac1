"""The query->entity (Q2E) click memory, in SQLite (WAL).

For each normalized query x item it keeps impressions and clicks, exponentially decayed with a
configurable half-life: a count observed ``dt`` seconds ago weighs ``0.5 ** (dt / half_life)``.
Both counts of a row decay together from its ``updated`` time, and are brought forward on every
write. Retrieval ranks a query's items by smoothed click-through rate
``(clicks + prior_ctr * prior_weight) / (impressions + prior_weight)``.

Impressions are *examination-weighted* by default: an item shown at position ``r`` of the page
counts ``(1 / r) ** examination_eta`` impressions (the position-based model's usual prior,
Joachims et al. 2017), so clicks over impressions estimates how attractive the item is wherever
it was shown, not how high the engine placed it. With raw counts (``examination_eta = 0``) the
items the engine already shows on top collect the clicks, their CTR rises, and a ranker that
trusts the memory keeps them there whatever their relevance (measured: the learned ranker on
the all-at-max union fell 0.086 nDCG@10 below RRF on Cranfield, PBM informational clicks).

Cold start (``cold_start = true``): items without clicks get *predicted* entries from
pseudo-queries built from their fields (title, title without its article, title + year, director
or lead actor + title, genre + year), scored ``predicted_ctr`` times the pseudo-query's strength,
in a separate table. They are inserted at ``fit`` and ``add_items``, retrieved like observed
entries, and deleted for a (query, item) pair as soon as feedback for it is observed, so real
click statistics replace them. ``counts()`` reports predicted and observed entries.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ltrr.catalog import Catalog
from ltrr.contracts.strategy import (
    CandidateGenerator,
    ItemStatistics,
    LearnsFromFeedback,
    QueryStatistics,
)
from ltrr.params import Params
from ltrr.text import normalize_query
from ltrr.types import QueryBatch, RetrievalResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS q2e (
    query TEXT NOT NULL,
    item INTEGER NOT NULL,
    impressions REAL NOT NULL,
    clicks REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (query, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS q2e_pred (
    query TEXT NOT NULL,
    item INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (query, item)
) WITHOUT ROWID;
"""


class ClickMemoryParams(Params):
    #: half-life of the decay in seconds (default 30 days); 0 disables decay
    half_life_s: float = Field(30 * 86400.0, ge=0.0)
    prior_ctr: float = Field(0.05, ge=0.0, le=1.0)
    prior_weight: float = Field(5.0, gt=0.0)
    #: an item is retrievable for a query once its decayed clicks reach this
    min_clicks: float = Field(0.5, ge=0.0)
    #: SQLite file; empty means an in-memory database (saved with ``save``)
    path: str = ""
    #: an item shown at position r counts (1 / r) ** examination_eta impressions (0: every
    #: impression counts 1, the raw click-through rate)
    examination_eta: float = Field(1.0, ge=0.0)
    #: insert predicted entries from pseudo-queries for items without clicks (fit, add_items)
    cold_start: bool = False
    #: score of a predicted entry of strength 1 (an exact title), comparable to a smoothed CTR
    predicted_ctr: float = Field(0.2, gt=0.0, le=1.0)
    #: queries whose decayed rows are kept in memory after a read (0: none). A search reads its
    #: query's rows up to three times (context signals, retrieval, ranker features); every
    #: write drops the entries it changes, so a kept entry always equals a fresh read
    cache_queries: int = Field(1024, ge=0)


class ClickMemory(CandidateGenerator[ClickMemoryParams], LearnsFromFeedback, QueryStatistics, ItemStatistics):
    """Items users clicked for this (normalized) query, best smoothed CTR first."""

    type_name = "memory"
    requires_fit = False  # answers from the clicks it has observed, with or without a catalog
    Params = ClickMemoryParams
    query_stat_names = ("memory_hits", "memory_ctr")

    def __init__(self, params=None, *, name=None):
        super().__init__(params, name=name)
        self._lock = threading.RLock()
        self._db = self._connect(self.params.path or ":memory:")
        # normalized query -> its decayed rows (items ascending, impressions, clicks), read-only;
        # guarded by ``_lock`` like the database, dropped per query on every write (see _forget)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # a file may also be written by another connection (another process): its commits
        # change ``PRAGMA data_version``, which then empties the cache before a read
        self._shared_file = bool(self.params.path)
        self._data_version = self._read_data_version()

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    # ------------------------------------------------------------------ learning
    def _fit(self, catalog: Catalog) -> None:
        """The memory starts empty and learns from feedback; with ``cold_start`` it is seeded
        with predicted entries for every item that has no click yet."""
        if self.params.cold_start:
            self._predict(catalog, np.arange(len(catalog), dtype=np.int64))

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        self.n_items_ = len(catalog)
        if self.params.cold_start:
            self._predict(catalog, np.asarray(new_rows, dtype=np.int64).ravel())

    def _predict(self, catalog: Catalog, rows: np.ndarray) -> None:
        """Insert predicted (pseudo-query, item) entries for ``rows`` that have no click yet."""
        from strategies.cold_start import pseudo_queries

        with self._lock:
            clicked = {int(r[0]) for r in self._db.execute("SELECT DISTINCT item FROM q2e WHERE clicks > 0")}
        rows = np.array([r for r in rows.tolist() if r not in clicked], dtype=np.int64)
        entries = pseudo_queries(catalog, rows)
        scale = self.params.predicted_ctr
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                """INSERT INTO q2e_pred (query, item, score) VALUES (?1, ?2, ?3)
                   ON CONFLICT (query, item) DO UPDATE SET score = MAX(score, excluded.score)""",
                [(q, int(i), float(scale * w)) for q, i, w in entries])
            self._db.execute("COMMIT")

    def observe(self, query: str, shown: np.ndarray, clicked: np.ndarray, ts: float) -> None:
        """Add an impression to every shown item (``shown`` in page order; weighted by the
        examination prior of its position) and one click to every clicked item."""
        key = normalize_query(query)
        if not key:
            return
        shown = np.asarray(shown, dtype=np.int64)
        clicked = np.asarray(clicked, dtype=np.int64)
        items = np.union1d(shown, clicked)
        if items.size == 0:
            return
        imp = self.impression_weights(items, shown)
        clk = np.isin(items, clicked).astype(float)
        decay = self._decay_sql()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"""INSERT INTO q2e (query, item, impressions, clicks, updated)
                    VALUES (?1, ?2, ?3, ?4, ?5)
                    ON CONFLICT (query, item) DO UPDATE SET
                      impressions = impressions * {decay} + excluded.impressions,
                      clicks = clicks * {decay} + excluded.clicks,
                      updated = MAX(updated, excluded.updated)""",
                [(key, int(i), float(a), float(c), float(ts)) for i, a, c in zip(items, imp, clk, strict=True)],
            )
            if self.params.cold_start:  # observed statistics replace the predictions
                self._db.executemany("DELETE FROM q2e_pred WHERE query = ? AND item = ?",
                                     [(key, int(i)) for i in items])
            self._db.execute("COMMIT")
            self._forget(key)

    def impression_weights(self, items: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """Impressions each of ``items`` gets from one page ``shown`` (in display order): the
        examination prior ``(1 / r) ** examination_eta`` of its first position, 0 if not shown."""
        weights = np.zeros(items.size)
        if shown.size == 0:
            return weights
        uniq, first = np.unique(shown, return_index=True)
        pos = np.searchsorted(uniq, items)
        pos = np.minimum(pos, uniq.size - 1)
        hit = uniq[pos] == items
        weights[hit] = (1.0 + first[pos[hit]].astype(np.float64)) ** -self.params.examination_eta
        return weights

    def smoothed_ctr(self, impressions: np.ndarray, clicks: np.ndarray) -> np.ndarray:
        """The retrieval score: ``(clicks + prior_ctr * prior_weight) / (impressions + prior_weight)``."""
        p = self.params
        return (np.asarray(clicks, dtype=np.float64) + p.prior_ctr * p.prior_weight) / (
            np.asarray(impressions, dtype=np.float64) + p.prior_weight)

    def _decay_sql(self) -> str:
        """SQL for the decay factor from ``updated`` to ``excluded.updated`` (pow via exp/ln-free form)."""
        if self.params.half_life_s <= 0:
            return "1.0"
        # SQLite may lack math functions; the factor is computed by a registered function.
        self._ensure_decay_function()
        return "ltrr_decay(excluded.updated - updated)"

    def _ensure_decay_function(self) -> None:
        if getattr(self, "_decay_registered", False):
            return
        hl = self.params.half_life_s
        self._db.create_function(
            "ltrr_decay", 1, lambda dt: 0.5 ** (max(dt, 0.0) / hl), deterministic=True
        )
        self._decay_registered = True

    # ------------------------------------------------------------------ reading
    def _read_data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0]) if self._shared_file else 0

    def _forget(self, key: str | None = None) -> None:
        """Drop the cached rows of ``key`` (every query's when None); the caller holds ``_lock``
        and has just written them."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)

    def _decayed(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The query's observed rows: items ascending and ``float64[2, m]`` impressions and
        clicks decayed to the query's latest update (read-only arrays; from the cache when this
        process holds them)."""
        with self._lock:
            if self._shared_file:
                version = self._read_data_version()
                if version != self._data_version:  # another connection committed
                    self._forget()
                    self._data_version = version
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            rows = self._db.execute(
                "SELECT item, impressions, clicks, updated FROM q2e WHERE query = ? ORDER BY item", (key,)
            ).fetchall()
            value = self._decay_rows(rows)
            if self.params.cache_queries:
                if len(self._cache) >= self.params.cache_queries:
                    del self._cache[next(iter(self._cache))]  # the oldest entry
                self._cache[key] = value
            return value

    def _decay_rows(self, rows: list[tuple[int, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """``(items, counts)`` of SQLite rows, impressions and clicks the two rows of ``counts``
        (``item_stats`` gathers both with one ``take``)."""
        if not rows:
            items, counts = np.empty(0, dtype=np.int64), np.empty((2, 0))
        else:
            arr = np.array(rows, dtype=np.float64)
            items, counts, upd = arr[:, 0].astype(np.int64), arr[:, 1:3].T.copy(), arr[:, 3]
            if self.params.half_life_s > 0:
                counts *= 0.5 ** (np.maximum(float(upd.max()) - upd, 0.0) / self.params.half_life_s)
        items.flags.writeable = counts.flags.writeable = False
        return items, counts

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        out = RetrievalResult.empty(len(queries), k)
        p = self.params
        for qi, text in enumerate(queries.texts):
            items, (imp, clk) = self._decayed(normalize_query(text))
            keep = clk >= p.min_clicks
            if p.cold_start:
                pred_items, pred_scores = self._predicted(normalize_query(text))
                # a pair with observed feedback is judged by it, never by its prediction
                fresh = ~np.isin(pred_items, items)
                pred_items, pred_scores = pred_items[fresh], pred_scores[fresh]
            else:
                pred_items = pred_scores = np.empty(0)
            if not keep.any() and pred_items.size == 0:
                continue
            items, imp, clk = items[keep], imp[keep], clk[keep]
            ctr = self.smoothed_ctr(imp, clk)
            items = np.concatenate([items, pred_items.astype(np.int64)])
            ctr = np.concatenate([ctr, pred_scores])
            order = np.lexsort((items, -ctr))[:k]
            out.ids[qi, : order.size] = items[order]
            out.scores[qi, : order.size] = ctr[order]
        return out

    def item_stats(self, query: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decayed ``(impressions, clicks)`` of (query, item) for catalog ``rows`` (0 if unseen).

        The query's rows (one SQLite read, or none when an earlier stage of the same search read
        them: see ``cache_queries``), then a vectorized lookup: used as ranker features.
        """
        rows = np.asarray(rows, dtype=np.int64)
        items, counts = self._decayed(normalize_query(query))
        if not (items.size and rows.size):
            return np.zeros(rows.shape, dtype=np.float64), np.zeros(rows.shape, dtype=np.float64)
        pos = items.searchsorted(rows)  # items ascending (one row per item)
        np.minimum(pos, items.size - 1, out=pos)
        # impressions and clicks are the rows of one array (``_decay_rows``): one gather for both
        got = np.where(items.take(pos) == rows, counts.take(pos, axis=1), 0.0)
        return got[0], got[1]

    def query_stats(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Context signals per query: ``memory_hits`` (retrievable items) and ``memory_ctr``
        (decayed clicks / impressions over all of the query's items, 0 when unseen)."""
        hits = np.zeros(len(texts))
        ctr = np.zeros(len(texts))
        for qi, text in enumerate(texts):
            items, (imp, clk) = self._decayed(normalize_query(text))
            if items.size:
                hits[qi] = float((clk >= self.params.min_clicks).sum())
                ctr[qi] = float(clk.sum() / max(imp.sum(), 1e-9))
        return {"memory_hits": hits, "memory_ctr": ctr}

    def _predicted(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute("SELECT item, score FROM q2e_pred WHERE query = ?", (key,)).fetchall()
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0)
        arr = np.asarray(rows, dtype=np.float64)
        return arr[:, 0].astype(np.int64), arr[:, 1]

    def counts(self) -> dict[str, int]:
        """``entries``/``queries``: observed (query, item) pairs and queries; ``observed`` (same as
        ``entries``), ``predicted`` and ``predicted_queries``: the cold-start predictions left."""
        with self._lock:
            n_rows, n_queries = self._db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT query) FROM q2e").fetchone()
            n_pred, n_pred_q = self._db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT query) FROM q2e_pred").fetchone()
        return {"entries": int(n_rows), "queries": int(n_queries), "observed": int(n_rows),
                "predicted": int(n_pred), "predicted_queries": int(n_pred_q)}

    def learned_counts(self) -> dict[str, int]:
        return self.counts()

    def cost_ms(self, k: int) -> float:
        return 0.05

    # ------------------------------------------------------------------ persistence
    def _save(self, directory: Path) -> None:
        target = sqlite3.connect(directory / "memory.sqlite")
        with self._lock:
            self._db.backup(target)
        target.close()

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        src = directory / "memory.sqlite"
        if not src.exists():
            raise FileNotFoundError(2, "missing", str(src))
        source = sqlite3.connect(src)
        with self._lock:
            source.backup(self._db)
            self._db.executescript(_SCHEMA)  # a memory saved before cold start lacks q2e_pred
            self._forget()
        source.close()

    def close(self) -> None:
        with self._lock:
            self._forget()
            self._db.close()
