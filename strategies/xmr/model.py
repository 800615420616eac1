"""The XR-Linear model on matrices: PIFA label embeddings, k-means tree, per-level matchers, beam search.

This layer knows nothing about text or catalogs: it maps a feature matrix ``X`` (queries x
features, CSR) and a label matrix ``Y`` (queries x labels, binary) to a tree model, and predicts
the top-k labels of new rows. The benchmark feeds the very same ``X``/``Y`` to PECOS.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ltrr.errors import NotFittedError
from ltrr.params import Params
from strategies.xmr.chunked import ChunkedWeights
from strategies.xmr.heap import release_free_heap
from strategies.xmr.indexer import ClusterTree, _row_normalize, build_tree
from strategies.xmr.matcher import SolverParams, train_level_chunked

TRANSFORMS = ("l3-hinge", "l2-hinge", "sigmoid")


class XRTreeParams(Params):
    """The label-tree and matcher hyperparameters shared by every XR-Linear front end (the
    retrieval strategy and the query completer): tree out-degree ``branching``, leaf size
    ``max_leaf_size``, search ``beam``, weight-pruning ``threshold``, matcher loss weight ``C``
    (defaults follow PECOS) and ``train_threads`` (blocks of matchers trained at once)."""

    branching: int = Field(16, ge=2)
    max_leaf_size: int = Field(100, ge=1)
    beam: int = Field(10, ge=1)
    threshold: float = Field(0.1, ge=0.0)
    C: float = Field(1.0, gt=0.0)
    train_threads: int = Field(1, ge=1)


@dataclass(frozen=True)
class XRConfig:
    """Hyperparameters of :class:`XRModel` (PECOS XR-Linear defaults)."""

    branching: int = 16
    max_leaf_size: int = 100
    kmeans_iters: int = 20
    seed: int = 0
    C: float = 1.0
    bias: float = 1.0
    threshold: float = 0.1
    negatives: str = "tfn"
    newton_iters: int = 4
    cg_iters: int = 10
    beam: int = 10
    transform: str = "l3-hinge"
    threads: int = 1  # training threads (blocks of parents solved at once); prediction uses 1

    def __post_init__(self) -> None:
        if self.branching < 2:
            raise ValueError(f"The 'branching' (B) parameter must be an int in [2, inf). Got {self.branching!r} instead.")
        if self.beam < 1:
            raise ValueError(f"The 'beam' parameter must be an int in [1, inf). Got {self.beam!r} instead.")
        if self.max_leaf_size < 1:
            raise ValueError(f"The 'max_leaf_size' parameter must be an int in [1, inf). Got {self.max_leaf_size!r} instead.")
        if self.negatives not in ("tfn", "tfn+man"):
            raise ValueError(f"The 'negatives' parameter must be 'tfn' or 'tfn+man'. Got {self.negatives!r} instead.")
        if self.threads < 1:
            raise ValueError(f"The 'threads' parameter must be an int in [1, inf). Got {self.threads!r} instead.")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"The 'transform' parameter must be one of {TRANSFORMS}. Got {self.transform!r} instead.")


def pifa(x: sp.csr_matrix, y: sp.csr_matrix) -> sp.csr_matrix:
    """PIFA label embeddings: row ``l`` is the normalized sum of the rows of ``x`` labelled ``l``."""
    yb = sp.csr_matrix(y, dtype=np.float32, copy=True)
    yb.data[:] = 1.0
    return _row_normalize((yb.T.tocsr() @ sp.csr_matrix(x, dtype=np.float32)).tocsr(), np.float32, copy=False)


def _with_bias(x: sp.csr_matrix, bias: float) -> sp.csr_matrix:
    """``hstack([x, bias column], format="csr")`` as ``float32``, written straight into the
    result's arrays (each row's entries, then the bias as the last column). Like ``hstack``,
    the result is canonical: ``x`` with unsorted or duplicate indices is summed in a copy."""
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    n, d = x.shape
    indptr = x.indptr.astype(np.int64) + np.arange(n + 1, dtype=np.int64)
    last = indptr[1:] - 1  # each row's last slot: the bias
    rest = np.ones(int(indptr[-1]), dtype=bool)
    rest[last] = False
    data = np.empty(rest.size, dtype=np.float32)
    data[rest] = x.data
    data[last] = bias
    idx_type = np.int32 if d + 1 < 2 ** 31 and indptr[-1] < 2 ** 31 else np.int64
    indices = np.empty(rest.size, dtype=idx_type)
    indices[rest] = x.indices
    indices[last] = d
    del rest, last
    if idx_type is np.int32:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n, d + 1), copy=False)


def _release(m: sp.csr_matrix) -> None:
    """Drop a CSR matrix's arrays: it becomes an all-zero matrix of the same shape."""
    m.data = np.empty(0, dtype=m.data.dtype)
    m.indices = np.empty(0, dtype=m.indices.dtype)
    m.indptr = np.zeros(m.shape[0] + 1, dtype=m.indptr.dtype)


def _transform(z: np.ndarray, name: str) -> np.ndarray:
    if name == "l3-hinge":
        return np.exp(-np.maximum(0.0, 1.0 - z) ** 3)
    if name == "l2-hinge":
        return np.exp(-np.maximum(0.0, 1.0 - z) ** 2)
    return 1.0 / (1.0 + np.exp(-z))


def _log_transform(z: np.ndarray, name: str) -> np.ndarray:
    """``log(_transform(z, name))`` without the exponential: beam scores add up in log space."""
    if name == "sigmoid":
        return -np.logaddexp(0.0, -z)
    u = np.maximum(1.0 - z, 0.0)
    return -(u * u * u) if name == "l3-hinge" else -(u * u)


def _top_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` per row by score (ties: lower id first); pads with id -1 and score -inf.

    Wide rows are cut first to the entries at or above each row's ``k``-th largest score (ties
    kept), so only those are sorted.
    """
    n, m = scores.shape
    kk = min(k, m)
    out_s = np.full((n, k), -np.inf)
    out_i = np.full((n, k), -1, dtype=np.int64)
    if kk == 0 or n == 0:
        return out_i, out_s
    if m > 4 * kk:
        kth = np.partition(scores, m - kk, axis=1)[:, m - kk]
        r, c = np.nonzero((scores >= kth[:, None]) & (scores > -np.inf))
        s, i = scores[r, c], ids[r, c]
        order = np.lexsort((i, -s, r))
        r, s, i = r[order], s[order], i[order]
        rank = np.arange(r.size) - np.searchsorted(r, r)
        keep = rank < kk
        out_s[r[keep], rank[keep]] = s[keep]
        out_i[r[keep], rank[keep]] = i[keep]
        return out_i, out_s
    order = np.lexsort((ids, -scores), axis=1)[:, :kk]
    top_s = np.take_along_axis(scores, order, axis=1)
    top_i = np.take_along_axis(ids, order, axis=1)
    out_s[:, :kk] = top_s
    out_i[:, :kk] = np.where(np.isfinite(top_s), top_i, -1)
    return out_i, out_s


class XRModel:
    """A trained XR-Linear tree: :class:`ClusterTree` plus one sparse weight matrix per level."""

    BATCH = 1024  # queries per beam-search block: bounds the dense candidate arrays

    def __init__(self, config: XRConfig | None = None):
        self.config = config or XRConfig()
        self.tree: ClusterTree | None = None
        self.chunks: list[ChunkedWeights] = []  # per level: feature x node weights, by parent
        self.biases: list[np.ndarray] = []       # node weights of the bias feature
        self.n_features = 0
        self.n_labels = 0
        self.fit_cpu_s_: dict[str, float] = {}  # CPU seconds of the last fit: tree, matchers
        self._cache: dict = {}  # per-level arrays derived from the tree and biases, for search

    def _fitted_tree(self) -> ClusterTree:
        """The label tree; a model that was neither fitted nor loaded has none."""
        if self.tree is None:
            raise NotFittedError("XRModel is not fitted (no label tree): call fit or load first")
        return self.tree

    # ------------------------------------------------------------------ training
    def fit(self, x: sp.csr_matrix, y: sp.csr_matrix, label_emb: sp.csr_matrix | None = None,
            tree: ClusterTree | None = None, consume_x: bool = False) -> XRModel:
        """Train on features ``x`` (n x d) and binary labels ``y`` (n x L).

        ``tree`` replaces the k-means indexer with a prebuilt label tree (e.g. a trie, see
        :mod:`strategies.xmr.trie`); matchers and beam search are the same for any tree.
        ``consume_x``: the caller hands ``x`` over; once the matchers' copy with the bias column
        is built, ``x``'s arrays are released (it is left an empty matrix of its shape), so the
        features are not held twice through the matchers (kept with ``negatives="tfn+man"``,
        whose beam searches read them).
        """
        cfg = self.config
        c0 = time.process_time()
        given = x
        x = sp.csr_matrix(x, dtype=np.float32)
        y = sp.csr_matrix(y)
        y.data[:] = 1
        self.n_features, self.n_labels = x.shape[1], y.shape[1]
        if tree is not None:
            if tree.label_order.size != y.shape[1]:
                raise ValueError(f"The tree holds {tree.label_order.size} labels but y has {y.shape[1]} columns.")
            self.tree = tree
        else:
            emb = pifa(x, y) if label_emb is None else label_emb
            self.tree = build_tree(emb, cfg.branching, cfg.max_leaf_size, cfg.seed, cfg.kmeans_iters,
                                   cfg.threads, own=label_emb is None)
            del emb  # as large as x: not kept through the matchers
            release_free_heap()
        c1 = time.process_time()
        xb = _with_bias(x, cfg.bias)
        if consume_x and cfg.negatives == "tfn":
            for m in {id(given): given, id(x): x}.values():
                _release(m)
            release_free_heap()
        solver = SolverParams(C=cfg.C, newton_iters=cfg.newton_iters, cg_iters=cfg.cg_iters,
                              threshold=cfg.threshold)
        # positives per level, bottom (labels in tree order) up
        pos = [sp.csr_matrix(y[:, self.tree.label_order])]
        for t in range(self.tree.n_levels - 1, 0, -1):
            par = self.tree.parents(t)
            agg = sp.csr_matrix((np.ones(par.size), (np.arange(par.size), par)),
                                shape=(par.size, self.tree.child_ptr[t].size - 1))
            up = (pos[0] @ agg).tocsr()
            up.data[:] = 1
            pos.insert(0, up)
        n = x.shape[0]
        root = sp.csr_matrix(np.ones((n, 1)))
        self.chunks, self.biases = [], []
        for t in range(self.tree.n_levels):
            active = root if t == 0 else pos[t - 1]
            if t > 0 and cfg.negatives == "tfn+man":
                beam_nodes, _ = self._beam(x, cfg.beam, levels=t)
                rows = np.repeat(np.arange(n), beam_nodes.shape[1])
                keep = beam_nodes.ravel() >= 0
                man = sp.csr_matrix((np.ones(keep.sum()), (rows[keep], beam_nodes.ravel()[keep])),
                                    shape=active.shape)
                active = (active + man).tocsr()
                active.data[:] = 1
            chunks, bias = train_level_chunked(xb, active, pos[t], self.tree.child_ptr[t], solver,
                                               bias_col=xb.shape[1] - 1, threads=cfg.threads)
            self.chunks.append(chunks)
            self.biases.append(bias * cfg.bias)
            del chunks, bias
            release_free_heap()  # the level's work arrays, before the next level's
        self.fit_cpu_s_ = {"tree_cpu_s": c1 - c0, "matcher_cpu_s": time.process_time() - c1}
        return self

    # ------------------------------------------------------------------ inference
    def _beam(self, x: sp.csr_matrix, beam: int, levels: int | None = None,
              k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Beam search down ``levels`` levels; the last level keeps ``k`` (default ``beam``).

        Each level scores only the children of the beam's nodes (see
        :class:`~strategies.xmr.chunked.ChunkedWeights`), laid out per query in one padded row.
        """
        tree = self._fitted_tree()
        n = x.shape[0]
        levels = tree.n_levels if levels is None else levels
        nodes = np.zeros((n, 1), dtype=np.int64)
        scores = np.zeros((n, 1))  # log of the product of transformed margins down the path
        name = self.config.transform
        for t in range(levels):
            cp = tree.child_ptr[t]
            bias = self.biases[t]
            safe = np.maximum(nodes, 0)
            starts = cp[safe]
            counts = np.where(nodes >= 0, cp[safe + 1] - starts, 0)
            b = nodes.shape[1]
            bmax = int(counts.max()) if n else 0
            total = int(counts.sum())
            if n * b * bmax <= 2 * total + 4096:
                # regular tree: slot (q, j, c) for child c of beam node j, dense broadcasts; a
                # missing child has bias -inf, hence score -inf, and is never selected
                slot_start = (np.arange(n * b) * bmax).reshape(n, b)
                margins = self.chunks[t].margins(x, nodes, slot_start, n * b * bmax)
                mat_i = (starts[:, :, None] + np.arange(bmax)).reshape(n, b * bmax)
                s = scores[:, :, None] + _log_transform(
                    margins.reshape(n, b, bmax) + self._padded_bias(t, bmax)[safe], name)
                mat_s = s.reshape(n, b * bmax)
            else:
                # very unequal fan-out (e.g. a trie): each query's candidates packed in one row
                width = max(int(counts.sum(axis=1).max()), 1)
                slot_start = (np.cumsum(counts, axis=1) - counts) + (np.arange(n) * width)[:, None]
                margins = self.chunks[t].margins(x, nodes, slot_start, n * width)
                flat = counts.ravel()
                src = np.repeat(np.arange(flat.size), flat)
                offs = np.arange(total) - np.repeat(np.cumsum(flat) - flat, flat)
                cand = starts.ravel()[src] + offs
                where = slot_start.ravel()[src] + offs
                mat_s = np.full(n * width, -np.inf)
                mat_i = np.full(n * width, -1, dtype=np.int64)
                mat_i[where] = cand
                mat_s[where] = scores.ravel()[src] + _log_transform(margins[where] + bias[cand], name)
                mat_s, mat_i = mat_s.reshape(n, width), mat_i.reshape(n, width)
            keep = beam if (t < levels - 1 or k is None) else k
            nodes, scores = _top_rows(mat_s, mat_i, keep)
        return nodes, scores

    def _padded_bias(self, t: int, width: int) -> np.ndarray:
        """Level ``t``'s bias weights as ``(parents, width)``, -inf past each parent's children."""
        key = ("bias_pad", t, width)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not self.biases[t]:
            cp = self._fitted_tree().child_ptr[t]
            ar = np.arange(width)
            idx = cp[:-1, None] + ar
            pad = np.where(ar < np.diff(cp)[:, None], self.biases[t][np.minimum(idx, cp[-1] - 1)], -np.inf)
            cached = (self.biases[t], pad)
            self._cache[key] = cached
        return cached[1]

    @property
    def _nchild(self) -> list[np.ndarray]:
        cached = self._cache.get("nchild")
        if cached is None or cached[0] is not self.tree:
            tree = self._fitted_tree()
            cached = (tree, [np.diff(cp) for cp in tree.child_ptr])
            self._cache["nchild"] = cached
        return cached[1]

    def _beam_one(self, indices: np.ndarray, data: np.ndarray, beam: int,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_beam` for a single query, on 1-D arrays (serving latency is call overhead)."""
        tree = self._fitted_tree()
        nodes = np.zeros(1, dtype=np.int64)
        scores = np.zeros(1)
        last = tree.n_levels - 1
        name = self.config.transform
        nchild = self._nchild
        # ndarray methods (take, repeat, cumsum) rather than numpy's function wrappers: a single
        # query is ~15 small calls per level, each wrapper ~1 us of it
        for t in range(tree.n_levels):
            starts = tree.child_ptr[t].take(nodes)
            counts = nchild[t].take(nodes)
            ends = counts.cumsum()
            total = int(ends[-1])
            base = ends - counts
            cand = np.arange(total) + (starts - base).repeat(counts)
            margins = self.chunks[t].margins_one(indices, data, nodes, base, total)
            s = scores.repeat(counts) + _log_transform(margins + self.biases[t].take(cand), name)
            keep = k if t == last else beam
            if total > 4 * keep:
                sel = (s >= np.partition(s, total - keep)[total - keep]).nonzero()[0]
                order = sel[np.lexsort((cand.take(sel), -s.take(sel)))[:keep]]
            else:
                order = np.lexsort((cand, -s))[:keep]
            if t < last:  # sorted node ids make the next level's key lookups nearly sorted
                order = order[cand.take(order).argsort()]
            nodes, scores = cand.take(order), s.take(order)
        return nodes, scores

    def predict(self, x: sp.csr_matrix, k: int, beam: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` labels (``int64``, -1 padded) and scores (``float32``, -inf padded) per row."""
        tree = self._fitted_tree()
        beam = self.config.beam if beam is None else beam
        if beam < 1:
            raise ValueError(f"The 'beam' parameter must be an int in [1, inf). Got {beam!r} instead.")
        if not (sp.issparse(x) and x.format == "csr"):
            x = sp.csr_matrix(x)
        if x.shape[0] == 1:
            nodes, scores = self._beam_one(x.indices, x.data, beam, k)
            labels = np.full((1, k), -1, dtype=np.int64)
            out = np.full((1, k), -np.inf, dtype=np.float32)
            labels[0, :nodes.size] = tree.label_order[nodes]
            out[0, :nodes.size] = np.exp(scores)
            return labels, out
        parts = [self._beam(x[i:i + self.BATCH], beam, k=k) for i in range(0, x.shape[0], self.BATCH)]
        nodes = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, k), np.int64)
        scores = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, k))
        labels = np.where(nodes >= 0, tree.label_order[np.maximum(nodes, 0)], -1)
        return labels, np.where(nodes >= 0, np.exp(scores), -np.inf).astype(np.float32)

    @property
    def weights(self) -> list[sp.csr_matrix]:
        """Each level's ``(n_features, n_nodes)`` weight matrix (without the bias row)."""
        tree = self._fitted_tree()
        return [c.to_csr(cp) for c, cp in zip(self.chunks, tree.child_ptr, strict=True)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """``xr_config.json`` + ``tree.json`` + ``label_order.npy``; per level ``t`` the chunked
        weights ``L<t>_{keys,ptr,child,value}.npy`` and the bias weights ``b<t>.npy``."""
        tree = self._fitted_tree()
        directory = Path(directory)
        (directory / "xr_config.json").write_text(json.dumps(asdict(self.config), indent=2))
        (directory / "tree.json").write_text(json.dumps({
            **tree.to_json(), "n_features": self.n_features, "n_labels": self.n_labels,
        }))
        np.save(directory / "label_order.npy", tree.label_order, allow_pickle=False)
        for t, (c, b) in enumerate(zip(self.chunks, self.biases, strict=True)):
            c.save(directory, f"L{t}")
            np.save(directory / f"b{t}.npy", b, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> XRModel:
        """Load a saved model; the weight arrays are memory-mapped unless ``mmap`` is false.

        Directories written before the chunked layout (``W<t>.npz``) are converted on load.
        """
        directory = Path(directory)
        cfg = XRConfig(**json.loads((directory / "xr_config.json").read_text()))
        meta = json.loads((directory / "tree.json").read_text())
        obj = cls(cfg)
        obj.tree = ClusterTree(
            tuple(np.asarray(cp, dtype=np.int64) for cp in meta["child_ptr"]),
            np.load(directory / "label_order.npy", allow_pickle=False),
        )
        obj.n_features, obj.n_labels = int(meta["n_features"]), int(meta["n_labels"])
        for t in range(obj.tree.n_levels):
            if (directory / f"W{t}.npz").exists():
                w = sp.load_npz(directory / f"W{t}.npz").tocsr()
                obj.chunks.append(ChunkedWeights.from_csr(w, obj.tree.child_ptr[t]))
            else:
                obj.chunks.append(ChunkedWeights.load(directory, f"L{t}", obj.n_features, mmap))
            obj.biases.append(np.load(directory / f"b{t}.npy", allow_pickle=False))
        return obj
