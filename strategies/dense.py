"""Dense retrieval: sentence-transformers embeddings searched with faiss.

Items are embedded from the catalog fields named in ``text_fields`` (via
:meth:`Catalog.compose`), as unit vectors, so inner product is cosine similarity. The index is
exact (``IndexFlatIP``) by default; ``index = "hnsw"`` or ``"ivf"`` trades a little recall for
speed on large catalogs (measure it with :func:`check_recall`). Every index is wrapped in
``IndexIDMap2`` so faiss ids are catalog rows, and new catalog items are added without
re-encoding the others (:meth:`DenseRetriever.add_items`).

Item texts are encoded through the on-disk embedding cache (:mod:`strategies.embedding_cache`):
a second fit of the same catalog with the same model and backend encodes nothing, and an
incremental add encodes only texts never seen. Query embeddings are cached per retriever
(:attr:`DenseRetriever.query_cache`, with its hit rate; :meth:`DenseRetriever.with_query_cache`
gives another engine the same index with a cache of its own).

A saved retriever is a directory: ``manifest.json`` (model, dimension, index type, params),
``index.faiss`` (faiss' own format) and ``embeddings.npy`` (memory-mapped on load, used by
:meth:`DenseRetriever.score_items` for ranker features and by exact-search recall checks).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import faiss
import numpy as np
from pydantic import Field

from ltrr.catalog import DEFAULT_TEXT_FIELDS, Catalog
from ltrr.contracts.strategy import CandidateGenerator, ItemScorer
from ltrr.errors import ConfigError, NotFittedError, PersistenceError
from ltrr.params import Params
from ltrr.store.persist import read_manifest
from ltrr.threads import current_native_threads
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult
from strategies.dense_shards import DEFAULT_CHUNK, encode_on_cluster
from strategies.embedding_cache import EmbeddingCache, cache_enabled
from strategies.encoder import (
    DEFAULT_MODEL,
    PROGRESS_MIN_TEXTS,
    Backend,
    Encoder,
    QueryEmbeddingCache,
    embed_queries,
    get_encoder,
)

INDEX_FILE = "index.faiss"
EMBEDDINGS_FILE = "embeddings.npy"
IndexType = Literal["flat", "hnsw", "ivf"]
#: the dense strategy's encoder backend unless configured: ONNX Runtime fp32 gave the same top-10
#: as torch (mean overlap@10 = 1.0 on Cranfield and on the movie catalog, Cranfield nDCG@10
#: unchanged) for ~1/3 of its CPU per query (benchmarks/encoder.py); int8 is faster but agreed
#: less (0.91 on Cranfield), so it stays opt-in
DEFAULT_DENSE_BACKEND: Backend = "onnx"
#: measured single-query encode CPU ms on one thread (benchmarks/encoder.py), the planning hint
ENCODE_MS = {"torch": 12.0, "onnx": 4.0, "onnx-int8": 1.5}


class DenseParams(Params):
    """Hyperparameters of :class:`DenseRetriever`.

    Parameters
    ----------
    model
        sentence-transformers model name or local path; the default is bundled offline.
    text_fields
        Catalog fields embedded per item, joined with spaces.
    index
        ``"flat"`` (exact inner product), ``"hnsw"`` or ``"ivf"`` (approximate).
    hnsw_m, ef_construction, ef_search
        HNSW graph degree, build-time and search-time beam widths.
    nlist, nprobe
        IVF cells (``None``: ``4 * sqrt(n_items)``, at most ``n_items / 39`` so each centroid has
        enough training points) and cells visited per query.
    batch_size
        Texts per forward pass when encoding.
    query_cache_size
        Entries of this retriever's query-text -> embedding LRU cache (0 disables it).
    progress
        Show a progress bar when encoding a catalog of 1,000 items or more.
    backend
        Encoder backend: ``"onnx"`` (default: ONNX Runtime, the torch model's embeddings within
        1e-4, exported locally on first use), ``"torch"`` (sentence-transformers on torch) or
        ``"onnx-int8"`` (int8 weights: fastest, approximate); see
        :class:`~strategies.encoder.Encoder`.
    embedding_cache
        Look item texts up in (and add them to) the on-disk embedding cache, so a catalog is
        encoded once per model and backend (see :mod:`strategies.embedding_cache`).
    embedding_cache_dir
        Directory of that cache (default ``$LTRR_CACHE_DIR/embeddings`` or
        ``~/.cache/ltrr/embeddings``).
    encode_chunk
        Texts encoded (and stored in the cache) at a time: an interrupted encoding resumes
        after the last stored chunk.
    encode_workers, encode_scheduler
        Encode the catalog on a Dask cluster: this many local worker processes, or the workers
        of the scheduler at ``tcp://host:port`` (they must reach the same cache directory); see
        :mod:`strategies.dense_shards`.
    """

    model: str = DEFAULT_MODEL
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    index: IndexType = "flat"
    hnsw_m: int = Field(32, ge=2)
    ef_construction: int = Field(200, ge=1)
    ef_search: int = Field(128, ge=1)
    nlist: int | None = Field(None, ge=1)
    nprobe: int = Field(16, ge=1)
    batch_size: int = Field(64, ge=1)
    query_cache_size: int = Field(100_000, ge=0)
    progress: bool = True
    backend: Backend = DEFAULT_DENSE_BACKEND
    embedding_cache: bool = True
    embedding_cache_dir: str | None = None
    encode_chunk: int = Field(DEFAULT_CHUNK, ge=1)
    encode_workers: int = Field(1, ge=1)
    encode_scheduler: str | None = None


class VectorIndex:
    """A faiss inner-product index whose ids are catalog rows.

    Thin and model-free, so recall and speed can be measured on any vectors.
    """

    def __init__(self, dim: int, kind: IndexType = "flat", *, hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
                 nprobe: int = 16):
        if kind not in ("flat", "hnsw", "ivf"):
            raise ConfigError(f"The 'index' parameter must be one of flat, hnsw, ivf. Got {kind!r} instead.")
        self.dim = int(dim)
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.index: Any = None

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _new_inner(self, train: np.ndarray) -> Any:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.ef_construction
            return hnsw
        n = train.shape[0]
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise ConfigError(f"The 'nlist' parameter of an ivf index must be at most the number of "
                              f"items to train on ({n}). Got {nlist} instead.")
        quantizer = faiss.IndexFlatIP(self.dim)
        inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(train)  # faiss' python wrapper keeps the quantizer alive with the index
        return inner

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> VectorIndex:
        """Index ``vectors`` (``float32[n, dim]``) under ``ids`` (default ``0..n-1``)."""
        vectors = self._check(vectors)
        self.index = faiss.IndexIDMap2(self._new_inner(vectors))
        self.apply_search_params()
        if ids is None:
            ids = np.arange(vectors.shape[0], dtype=np.int64)
        self.add(vectors, ids)
        return self

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add ``vectors`` under ``ids`` (an ivf index keeps the cells it was trained with)."""
        vectors = self._check(vectors)
        if self.index is None:
            raise ConfigError("The index is empty; build it before adding vectors.")
        if vectors.shape[0]:
            self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def apply_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Set the search-time knobs (``efSearch`` of hnsw, ``nprobe`` of ivf)."""
        if ef_search is not None:
            self.ef_search = int(ef_search)
        if nprobe is not None:
            self.nprobe = int(nprobe)
        inner = faiss.downcast_index(self.index.index)  # the concrete class of ``kind``
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.ef_search
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = min(self.nprobe, inner.nlist)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids int64, scores float32)`` per query, padded with ``PAD_ID`` / -inf."""
        queries = self._check(queries)
        n_q = queries.shape[0]
        if self.index is None or self.ntotal == 0 or n_q == 0 or k == 0:
            return (np.full((n_q, k), PAD_ID, dtype=np.int64),
                    np.full((n_q, k), -np.inf, dtype=np.float32))
        threads = current_native_threads()
        if faiss.omp_get_max_threads() != threads:  # libgomp keeps the setting per thread
            faiss.omp_set_num_threads(threads)
        scores, ids = self.index.search(queries, k)
        missing = ids < 0
        ids = ids.astype(np.int64, copy=False)
        ids[missing] = PAD_ID
        scores = scores.astype(np.float32, copy=False)
        scores[missing] = -np.inf
        return ids, scores

    def write(self, path: Path) -> None:
        """Write the index in faiss' own file format."""
        faiss.write_index(self.index, str(path))

    @classmethod
    def read(cls, path: Path, kind: IndexType, **params: Any) -> VectorIndex:
        """Read an index written by :meth:`write`; ``params`` restore the search-time knobs."""
        obj = cls(0, kind, **params)
        try:
            obj.index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise PersistenceError(f"{path}: not a readable faiss index ({str(exc).splitlines()[0]})") from None
        obj.dim = int(obj.index.d)
        if not isinstance(obj.index, faiss.IndexIDMap2):
            raise PersistenceError(f"{path}: expected a faiss IndexIDMap2, found {type(obj.index).__name__}")
        obj.apply_search_params()
        return obj

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"Expected vectors of shape (n, {self.dim}); got {vectors.shape}.")
        return vectors


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` inner product of ``queries`` against ``embeddings`` (faiss flat)."""
    return VectorIndex(embeddings.shape[1], "flat").build(np.asarray(embeddings)).search(queries, k)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> np.ndarray:
    """Per query, the fraction of the exact top-k ids that the approximate top-k also found."""
    approx_ids = np.asarray(approx_ids)
    exact_ids = np.asarray(exact_ids)
    valid = exact_ids != PAD_ID
    # [n_q, k, 1] == [n_q, 1, k]: k is small, so the cube is cheap and needs no python loop
    hit = (exact_ids[:, :, None] == approx_ids[:, None, :]).any(axis=2) & valid
    denom = valid.sum(axis=1)
    return np.where(denom > 0, hit.sum(axis=1) / np.maximum(denom, 1), 1.0)


class DenseRetriever(CandidateGenerator[DenseParams], ItemScorer):
    """Semantic candidate generator: cosine similarity of sentence-transformer embeddings.

    Registry name ``"dense"``. The query embedding is taken from (or put into) the request's
    :class:`QueryBatch` memo, so ranker features that ask :meth:`embed_queries` or
    :meth:`score_items` for the same batch reuse it.
    """

    type_name: ClassVar[str] = "dense"
    format_version: ClassVar[int] = 1
    Params: ClassVar[type[DenseParams]] = DenseParams

    def __init__(self, params: DenseParams | dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(params, name=name)
        self.embeddings_: np.ndarray = np.empty((0, 0), dtype=np.float32)
        self.index_: VectorIndex | None = None
        #: this retriever's query-embedding LRU cache (see :meth:`with_query_cache`)
        self.query_cache = QueryEmbeddingCache(self.params.query_cache_size)
        #: texts the last :meth:`encode_items` call took from the embedding cache / encoded
        self.last_encode: dict[str, int] = {"cached": 0, "encoded": 0}

    # ----------------------------------------------------------------- encoder
    @property
    def encoder(self) -> Encoder:
        """The process-wide encoder of ``params.model`` on ``params.backend`` (loaded on first
        use)."""
        return get_encoder(self.params.model, backend=self.params.backend)

    @property
    def dim(self) -> int:
        return self.embeddings_.shape[1] if self.embeddings_.size else self.encoder.dim

    def with_query_cache(self, cache: QueryEmbeddingCache | None = None) -> DenseRetriever:
        """A retriever sharing this one's fitted index and embeddings (read-only) with its own
        query cache (``cache``, or a new empty one of ``query_cache_size`` entries), so engines
        that share a fitted index do not warm each other's query embeddings."""
        twin = copy.copy(self)
        twin.query_cache = cache if cache is not None else QueryEmbeddingCache(self.params.query_cache_size)
        twin.last_encode = dict(self.last_encode)
        return twin

    def with_fresh_caches(self) -> DenseRetriever:
        return self.with_query_cache()

    def embed_queries(self, queries: QueryBatch | Sequence[str] | str) -> np.ndarray:
        """Unit-norm query embeddings, computed once per :class:`QueryBatch` and cached across
        batches in :attr:`query_cache` (read-only array)."""
        return embed_queries(queries, self.params.model, self.params.backend, cache=self.query_cache)

    def embedding_store(self) -> EmbeddingCache | None:
        """The on-disk cache of this model's and backend's item embeddings, or None when it is
        turned off (``embedding_cache = false`` or ``LTRR_EMBEDDING_CACHE=0``)."""
        if not (self.params.embedding_cache and cache_enabled()):
            return None
        enc = self.encoder
        return EmbeddingCache.open(enc.model_name, enc.fingerprint, enc.backend, enc.dim,
                                   root=self.params.embedding_cache_dir)

    def encode_items(self, texts: Sequence[str], what: str = "catalog") -> np.ndarray:
        """Embed item texts, taking those already in the embedding cache from disk and adding the
        others; the progress bar (large batches, when ``progress``) says how many of each."""
        enc = self.encoder
        store = self.embedding_store()
        if store is None:
            out, found = np.empty((len(texts), enc.dim), dtype=np.float32), np.zeros(len(texts), bool)
        else:
            out, found = store.lookup(texts)
        todo = np.flatnonzero(~found)
        n_cached = len(texts) - todo.size
        self.last_encode = {"cached": int(n_cached), "encoded": int(todo.size)}
        show = self.params.progress and len(texts) >= PROGRESS_MIN_TEXTS
        desc = f"encoding {todo.size:,} {what} texts"
        if store is not None:
            desc += f" ({n_cached:,} from the embedding cache)"
        p = self.params
        if todo.size and store is not None and (p.encode_workers > 1 or p.encode_scheduler):
            encode_on_cluster([texts[i] for i in todo.tolist()], enc.model_name, enc.backend,
                              p.embedding_cache_dir, p.batch_size, workers=p.encode_workers,
                              scheduler=p.encode_scheduler, chunk=p.encode_chunk, progress=show)
            out, found = store.lookup(texts)
            if not found.all():
                raise RuntimeError(f"{self.name}: {int((~found).sum())} texts missing from the embedding "
                                   "cache after the cluster encoded them (do the workers share its directory?)")
        elif todo.size:
            bar = None
            if show:
                from tqdm import tqdm

                bar = tqdm(total=int(todo.size), desc=desc, unit=" texts")
            for start in range(0, todo.size, p.encode_chunk):  # stored chunk by chunk: resumable
                part = todo[start:start + p.encode_chunk]
                fresh = enc.encode([texts[i] for i in part], p.batch_size, progress=False)
                out[part] = fresh
                if store is not None:
                    store.store([texts[i] for i in part], fresh)
                if bar is not None:
                    bar.update(int(part.size))
            if bar is not None:
                bar.close()
        elif show and store is not None:
            print(f"{self.name}: {len(texts):,} {what} texts, all from the embedding cache "
                  f"({store.directory})", file=sys.stderr)
        return out

    # ----------------------------------------------------------------- hooks
    def _new_index(self, dim: int) -> VectorIndex:
        p = self.params
        return VectorIndex(dim, p.index, hnsw_m=p.hnsw_m, ef_construction=p.ef_construction,
                           ef_search=p.ef_search, nlist=p.nlist, nprobe=p.nprobe)

    def _fit(self, catalog: Catalog) -> None:
        vectors = self.encode_items(catalog.compose(self.params.text_fields))
        self.fit_vectors(vectors)

    def fit_vectors(self, vectors: np.ndarray) -> DenseRetriever:
        """Index precomputed unit-norm item vectors (row ``i`` = catalog row ``i``)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index_ = self._new_index(vectors.shape[1]).build(vectors)
        self.embeddings_ = vectors
        self.n_items_ = vectors.shape[0]
        self.fitted_ = True
        return self

    def add_items(self, catalog: Catalog, new_rows: np.ndarray) -> None:
        """Encode and index only the items appended to ``catalog`` since the last fit.

        ``new_rows`` must be exactly the rows ``n_items .. len(catalog)-1`` (in any order), so
        stored embeddings stay aligned with catalog rows.
        """
        if self.index_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) before add_items")
        rows = np.unique(np.asarray(new_rows, dtype=np.int64))
        expected = np.arange(self.n_items_, len(catalog), dtype=np.int64)
        if rows.size != np.asarray(new_rows).size or not np.array_equal(rows, expected):
            raise ConfigError(
                f"{self.name}: add_items expects the new rows {self.n_items_}..{len(catalog) - 1} "
                f"of a catalog of {len(catalog)} items (the index holds {self.n_items_}); got "
                f"{np.asarray(new_rows).tolist()[:10]}"
            )
        if rows.size == 0:
            return
        texts = [catalog.compose_one(int(i), self.params.text_fields) for i in rows]
        vectors = self.encode_items(texts, what="new catalog")
        self.index_.add(vectors, rows)
        self.embeddings_ = np.concatenate([np.asarray(self.embeddings_), vectors])
        self.n_items_ = len(catalog)

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        if self.index_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) or load(directory) first")
        ids, scores = self.index_.search(self.embed_queries(queries), k)
        return RetrievalResult(ids, scores)

    def score_items(self, queries: QueryBatch | Sequence[str] | str, rows: np.ndarray) -> np.ndarray:
        """Cosine of each query with given items, from the stored item embeddings.

        ``rows`` is ``int64[n_queries, m]`` (or ``[m]`` for a single query) of catalog rows;
        ``PAD_ID`` entries and blank queries score NaN. Returns ``float32`` of ``rows``' shape.
        """
        batch = QueryBatch.of(queries)
        rows = np.asarray(rows, dtype=np.int64)
        flat = rows.ndim == 1
        if flat:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[0] != len(batch):
            raise ConfigError(f"score_items needs rows of shape ({len(batch)}, m); got {rows.shape}.")
        bad = (rows != PAD_ID) & ((rows < 0) | (rows >= self.n_items_))
        if bad.any():
            raise ConfigError(f"{self.name}: item rows out of range [0, {self.n_items_}): "
                              f"{np.unique(rows[bad])[:10].tolist()}")
        out = np.full(rows.shape, np.nan, dtype=np.float32)
        if rows.size and len(batch):
            q = self.embed_queries(batch)
            pad = rows == PAD_ID
            items = np.asarray(self.embeddings_)[np.where(pad, 0, rows)]
            out[:] = np.einsum("qmd,qd->qm", items, q)
            out[pad] = np.nan
            out[np.array([not t.strip() for t in batch.texts])] = np.nan
        return out[0] if flat else out

    def cost_ms(self, k: int) -> float:
        # one short-query forward pass dominates (0 when the query cache hits)
        return ENCODE_MS[self.params.backend] + 1.5 + 0.002 * k

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Retune the approximate index at search time (no rebuild); kept in ``params``."""
        updates = {key: v for key, v in (("ef_search", ef_search), ("nprobe", nprobe)) if v is not None}
        self.params = self.Params.model_validate({**self.params.model_dump(), **updates})
        if self.index_ is not None:
            self.index_.apply_search_params(self.params.ef_search, self.params.nprobe)

    # ----------------------------------------------------------------- persistence
    def _save(self, directory: Path) -> None:
        if self.index_ is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(catalog) before save")
        self.index_.write(directory / INDEX_FILE)
        np.save(directory / EMBEDDINGS_FILE, np.asarray(self.embeddings_), allow_pickle=False)

    def _manifest_extra(self) -> dict[str, Any]:
        return {"model": self.params.model, "dim": int(self.embeddings_.shape[1]),
                "index": self.params.index, "faiss_version": faiss.__version__}

    @classmethod
    def load(cls, directory: str | os.PathLike, *, model: str | None = None) -> DenseRetriever:
        """Load a saved retriever; its embeddings are memory-mapped.

        ``model``, when given (e.g. from the engine config), must be the model that built the
        index; otherwise a :class:`PersistenceError` names both. The model is loaded to check that
        its embedding dimension matches the index's.
        """
        manifest = read_manifest(directory, cls.type_name, (cls.format_version,))
        built_with = manifest.get("model", manifest.get("params", {}).get("model"))
        if model is not None and model != built_with:
            raise PersistenceError(
                f"{directory}: the dense index was built with model {built_with!r}, but the "
                f"configured model is {model!r}; rebuild the index or configure {built_with!r}"
            )
        return super().load(directory)

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        dim = int(manifest.get("dim", -1))
        emb = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
        if not (directory / INDEX_FILE).exists():
            raise PersistenceError(f"{directory}: missing file {INDEX_FILE}")
        p = self.params
        index = VectorIndex.read(directory / INDEX_FILE, p.index, hnsw_m=p.hnsw_m,
                                 ef_construction=p.ef_construction, ef_search=p.ef_search,
                                 nlist=p.nlist, nprobe=p.nprobe)
        if emb.ndim != 2 or emb.dtype != np.float32:
            raise PersistenceError(f"{directory}/{EMBEDDINGS_FILE}: expected a 2-D float32 array, "
                                   f"found {emb.dtype} of shape {emb.shape}")
        if not (index.dim == emb.shape[1] == dim):
            raise PersistenceError(
                f"{directory}: inconsistent dimensions: manifest {dim}, {INDEX_FILE} {index.dim}, "
                f"{EMBEDDINGS_FILE} {emb.shape[1]}"
            )
        if not (index.ntotal == emb.shape[0] == self.n_items_):
            raise PersistenceError(
                f"{directory}: inconsistent sizes: manifest n_items {self.n_items_}, "
                f"{INDEX_FILE} {index.ntotal} vectors, {EMBEDDINGS_FILE} {emb.shape[0]} rows"
            )
        model_dim = self.encoder.dim
        if model_dim != dim:
            raise PersistenceError(
                f"{directory}: the index has dimension {dim}, but model {p.model!r} embeds in "
                f"dimension {model_dim}; rebuild the index with this model"
            )
        self.index_ = index
        self.embeddings_ = emb


def check_recall(retriever: DenseRetriever, queries: QueryBatch | Sequence[str] | None = None,
                 k: int = 10, *, n_sample: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Recall@k of the retriever's index against exact search over its stored embeddings.

    Parameters
    ----------
    retriever
        A fitted (or loaded) :class:`DenseRetriever`.
    queries
        Query texts to embed; ``None`` uses ``n_sample`` stored item embeddings drawn with
        ``seed`` as queries (no model call).
    k
        Depth compared.

    Returns
    -------
    dict
        ``index``, ``k``, ``n_queries``, ``recall_at_k`` (mean), ``min_recall_at_k``,
        ``approx_qps`` / ``exact_qps`` (batched queries per second) and ``speedup``.
    """
    if retriever.index_ is None:
        raise ConfigError(f"{retriever.name}: check_recall needs a fitted index.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter of check_recall must be an int in [1, inf). Got {k!r} instead.")
    emb = np.asarray(retriever.embeddings_)
    if queries is None:
        rng = np.random.default_rng(seed)
        n = min(n_sample, emb.shape[0])
        q = emb[np.sort(rng.choice(emb.shape[0], size=n, replace=False))]
    else:
        batch = QueryBatch.of(queries)
        keep = np.array([bool(t.strip()) for t in batch.texts], dtype=bool)
        q = retriever.embed_queries(batch)[keep]
    q = np.ascontiguousarray(q, dtype=np.float32)
    exact = VectorIndex(emb.shape[1], "flat").build(emb)
    t0 = time.perf_counter()
    approx_ids, _ = retriever.index_.search(q, int(k))
    t1 = time.perf_counter()
    exact_ids, _ = exact.search(q, int(k))
    t2 = time.perf_counter()
    rec = recall_at_k(approx_ids, exact_ids) if q.shape[0] else np.ones(0)
    approx_qps = q.shape[0] / max(t1 - t0, 1e-9)
    exact_qps = q.shape[0] / max(t2 - t1, 1e-9)
    return {
        "index": retriever.params.index,
        "k": int(k),
        "n_queries": int(q.shape[0]),
        "n_items": int(emb.shape[0]),
        "recall_at_k": float(rec.mean()) if rec.size else float("nan"),
        "min_recall_at_k": float(rec.min()) if rec.size else float("nan"),
        "approx_qps": approx_qps,
        "exact_qps": exact_qps,
        "speedup": approx_qps / exact_qps,
    }
