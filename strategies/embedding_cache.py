"""On-disk cache of text embeddings, so a catalog is encoded once per model, not once per run.

Keyed by (model, backend, text): one namespace directory per model name, SHA-256 of the model's
files, backend and dimension, and in it rows keyed by the first 16 bytes of the SHA-256 of each
text's UTF-8 bytes. Texts are hashed exactly as the model sees them (no case folding or
whitespace squeezing): two texts that a "normalization" merged could embed differently.

Layout (no pickle): each :meth:`EmbeddingCache.store` writes one shard, ``<name>.vecs.npy``
(``float32[n, dim]``) then ``<name>.keys.npy`` (``S16[n]``, the index), each under a temporary
name and renamed into place; a shard exists for readers once its keys file does. Concurrent
writers never share a file (names carry the time, process id and a random suffix); duplicates
across shards are harmless. When a namespace has more than :data:`MAX_SHARDS` shards they are
merged into one. When the whole cache outgrows its bound (default 1 GiB, about 690,000 texts at
384 dimensions; ``LTRR_EMBEDDING_CACHE_MAX_MB``), the least recently written shards are deleted.

Location: ``$LTRR_CACHE_DIR`` or ``$XDG_CACHE_HOME/ltrr`` or ``~/.cache/ltrr``, then
``embeddings/``; ``LTRR_EMBEDDING_CACHE=0`` turns the cache off (so does the dense strategy's
``embedding_cache = false``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ltrr.errors import ConfigError

CACHE_DIR_ENV = "LTRR_CACHE_DIR"
ENABLE_ENV = "LTRR_EMBEDDING_CACHE"
MAX_MB_ENV = "LTRR_EMBEDDING_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 1 << 30
#: shards of one namespace beyond which a store merges them
MAX_SHARDS = 16
KEY_BYTES = 16
KEYS_SUFFIX = ".keys.npy"
VECS_SUFFIX = ".vecs.npy"
#: temporary files older than this are left by dead writers and removed
STALE_TMP_SECONDS = 3600.0


def cache_root() -> Path:
    """The user cache directory of ltrr (exports and embeddings live below it)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ltrr"


def cache_enabled() -> bool:
    """False when ``LTRR_EMBEDDING_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def max_cache_bytes() -> int:
    raw = os.environ.get(MAX_MB_ENV)
    if raw is None:
        return DEFAULT_MAX_BYTES
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if mb <= 0:
        raise ConfigError(f"The {MAX_MB_ENV} environment variable must be a positive number of "
                          f"megabytes. Got {raw!r} instead.")
    return int(mb * (1 << 20))


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """``S16[n]``: the first 16 bytes of each text's SHA-256 (its UTF-8 bytes, unchanged)."""
    return np.array([hashlib.sha256(t.encode("utf-8")).digest()[:KEY_BYTES] for t in texts],
                    dtype=f"S{KEY_BYTES}")


def namespace_name(model: str, fingerprint: str, backend: str, dim: int) -> str:
    """Directory name of one (model, weights, backend, dimension) namespace."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)[:60]
    digest = hashlib.sha256(f"{model}\0{fingerprint}\0{backend}\0{dim}".encode()).hexdigest()[:16]
    return f"{slug}-{backend}-{dim}-{digest}"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EmbeddingCache:
    """Embeddings of one model and backend on disk, looked up by text.

    Parameters
    ----------
    directory
        The namespace directory (see :meth:`open`).
    dim
        Embedding dimension; shards of another dimension are ignored.
    max_bytes
        Bound on the whole cache root's shards (the namespace's parent directory).
    """

    def __init__(self, directory: str | os.PathLike, dim: int, max_bytes: int | None = None):
        self.directory = Path(directory)
        self.dim = int(dim)
        self.max_bytes = max_cache_bytes() if max_bytes is None else int(max_bytes)
        self.n_hits = 0
        self.n_misses = 0

    @classmethod
    def open(cls, model: str, fingerprint: str, backend: str, dim: int,
             root: str | os.PathLike | None = None) -> EmbeddingCache:
        """The namespace of (``model``, ``fingerprint``, ``backend``, ``dim``) under ``root``
        (default: :func:`cache_root` / ``embeddings``)."""
        base = Path(root) if root is not None else cache_root() / "embeddings"
        return cls(base / namespace_name(model, fingerprint, backend, dim), dim)

    # ----------------------------------------------------------------- reading
    def _shards(self) -> list[Path]:
        """Key files of complete shards, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{KEYS_SUFFIX}"))

    def _read_shard(self, keys_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """(keys, memory-mapped vectors) of one shard, or None if it vanished or is malformed."""
        vecs_path = keys_path.with_name(keys_path.name[:-len(KEYS_SUFFIX)] + VECS_SUFFIX)
        try:
            keys = np.load(keys_path, allow_pickle=False)
            vecs = np.load(vecs_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):  # deleted by an eviction or merge meanwhile, or truncated
            return None
        if (keys.dtype != np.dtype(f"S{KEY_BYTES}") or vecs.dtype != np.float32
                or vecs.ndim != 2 or vecs.shape != (keys.shape[0], self.dim)):
            return None
        return keys, vecs

    def lookup(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors float32[n, dim], found bool[n])``; rows not found are zero."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        if len(texts) == 0:
            return out, found
        wanted: dict[bytes, list[int]] = {}
        for i, key in enumerate(text_keys(texts).tolist()):
            wanted.setdefault(key, []).append(i)
        for keys_path in reversed(self._shards()):  # newest first
            if not wanted:
                break
            shard = self._read_shard(keys_path)
            if shard is None:
                continue
            keys, vecs = shard
            hit = np.flatnonzero(np.isin(keys, np.array(list(wanted), dtype=keys.dtype)))
            # tolist() gives the bytes as text_keys(...).tolist() did (numpy drops trailing NULs)
            for row, key in zip(hit.tolist(), keys[hit].tolist(), strict=True):
                where = wanted.pop(key, None)
                if where is not None:
                    out[where] = vecs[row]
                    found[where] = True
        self.n_hits += int(found.sum())
        self.n_misses += int((~found).sum())
        return out, found

    # ----------------------------------------------------------------- writing
    def store(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Add ``vectors`` (``float32[n, dim]``, row ``i`` = ``texts[i]``) as one new shard."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ConfigError(f"EmbeddingCache.store needs vectors of shape ({len(texts)}, "
                              f"{self.dim}); got {vectors.shape}")
        if len(texts) == 0:
            return
        keys = text_keys(texts)
        keys, first = np.unique(keys, return_index=True)
        self._write_shard(keys, vectors[first])
        if len(self._shards()) > MAX_SHARDS:
            self.merge()
        self.evict()

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        # vectors first: readers only see a shard once its keys file exists
        _save_atomic(self.directory / (name + VECS_SUFFIX), vectors)
        _save_atomic(self.directory / (name + KEYS_SUFFIX), keys)

    def merge(self) -> None:
        """Rewrite this namespace's shards as one (latest vector per key), then delete them."""
        shards = self._shards()
        parts = [(p, s) for p in shards if (s := self._read_shard(p)) is not None]
        if len(parts) < 2:
            return
        keys = np.concatenate([k for _, (k, _) in parts])
        vecs = np.concatenate([np.asarray(v) for _, (_, v) in parts])
        # newest last, so unique over the reversed order keeps each key's latest vector
        keys_r, first = np.unique(keys[::-1], return_index=True)
        self._write_shard(keys_r, vecs[::-1][first])
        for path, _ in parts:
            self._delete_shard(path)

    @staticmethod
    def _delete_shard(keys_path: Path) -> None:
        keys_path.unlink(missing_ok=True)  # the index first: readers stop seeing the shard
        keys_path.with_name(keys_path.name[:-len(KEYS_SUFFIX)] + VECS_SUFFIX).unlink(missing_ok=True)

    def evict(self) -> None:
        """Delete the oldest shards of the whole cache (every namespace beside this one) until its
        size is within ``max_bytes``; remove temporary files left by dead writers."""
        root = self.directory.parent
        if not root.is_dir():
            return
        now = time.time()
        shards: list[tuple[float, int, Path]] = []
        total = 0
        for path in root.glob("*/*"):
            try:
                st = path.stat()
            except OSError:
                continue
            if path.name.endswith(".tmp"):
                if now - st.st_mtime > STALE_TMP_SECONDS:
                    path.unlink(missing_ok=True)
                continue
            total += st.st_size
            if path.name.endswith(KEYS_SUFFIX):
                vecs = path.with_name(path.name[:-len(KEYS_SUFFIX)] + VECS_SUFFIX)
                size = st.st_size + (vecs.stat().st_size if vecs.exists() else 0)
                shards.append((st.st_mtime, size, path))
        for _mtime, size, path in sorted(shards):
            if total <= self.max_bytes:
                break
            self._delete_shard(path)
            total -= size

    def size_bytes(self) -> int:
        """Bytes of this namespace's files."""
        if not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def __len__(self) -> int:
        """Distinct texts stored in this namespace."""
        parts = [s for p in self._shards() if (s := self._read_shard(p)) is not None]
        return int(np.unique(np.concatenate([k for k, _ in parts])).size) if parts else 0

    def clear(self) -> None:
        """Delete every shard of this namespace."""
        for path in self._shards():
            self._delete_shard(path)
