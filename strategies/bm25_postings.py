"""Term-major posting lists assembled from blocks of documents, without a full-size copy.

BM25's index is the CSC layout of a ``docs x vocab`` count matrix. Building it as one CSR matrix
(``vstack`` of per-chunk blocks) and then converting (``tocsc``) holds three copies of every
posting at the peak. Here each block of documents is turned term-major on its own (a small
counting sort) and kept as ``int32`` documents and ``float32`` counts; the final arrays are
allocated once, and each block is copied into its place and freed, so the peak is the blocks
plus the final arrays: two copies, never an ``int64`` one of the whole index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PostingsBuilder", "Postings"]


@dataclass
class Postings:
    """Per term ``t``: its documents ascending (``docs[ptr[t]:ptr[t + 1]]``, ``int32``) and
    their counts (``tf``, ``float32``, or ``uint16`` for whole counts that fit); ``ptr`` is
    ``int64[n_terms + 1]``."""

    ptr: np.ndarray
    docs: np.ndarray
    tf: np.ndarray


@dataclass
class _Block:
    ptr: np.ndarray  # int64[n_terms_then + 1]
    docs: np.ndarray  # int32, global rows
    tf: np.ndarray  # float32


class PostingsBuilder:
    """Collects blocks of consecutive documents (in row order) and assembles :class:`Postings`.

    ``add_tokens`` takes one block's term ids (``int32``, document by document) and each
    document's token count; ``add_matrix`` a ``docs x terms`` count matrix (the field-weighted
    counts). Rows of a block follow the previous block's.
    """

    def __init__(self, first_row: int = 0):
        self.n_rows = first_row
        self._first = first_row
        self._blocks: list[_Block] = []

    def add_tokens(self, term_ids: np.ndarray, lengths: np.ndarray, n_terms: int) -> None:
        """A block whose document ``i`` has tokens ``term_ids[sum(lengths[:i]):][:lengths[i]]``;
        a term repeated in a document counts once per occurrence."""
        rows = np.repeat(np.arange(lengths.size, dtype=np.int32), lengths)
        counts = sp.csc_matrix((np.ones(term_ids.size, dtype=np.float32), (rows, term_ids)),
                               shape=(lengths.size, max(n_terms, 1)))
        del rows
        self._add_csc(counts, lengths.size)

    def add_matrix(self, counts: sp.spmatrix) -> None:
        """A block given as a ``docs x terms`` count matrix."""
        self._add_csc(sp.csc_matrix(counts, dtype=np.float32), counts.shape[0])

    def _add_csc(self, csc: sp.csc_matrix, n_rows: int) -> None:
        csc.sum_duplicates()  # canonical: each list ascending, no repeated document
        docs = csc.indices.astype(np.int32, copy=False)
        if self.n_rows:
            docs = docs + np.int32(self.n_rows)
        self._blocks.append(_Block(csc.indptr.astype(np.int64), docs, csc.data.astype(np.float32, copy=False)))
        self.n_rows += n_rows

    def build(self, n_terms: int, small_counts: bool = False) -> Postings:
        """The term-major postings of every block added (the builder is emptied). With
        ``small_counts`` (counts known to be whole numbers), ``tf`` is ``uint16`` when every
        count fits: half the memory of ``float32``, the same values."""
        df = np.zeros(n_terms, dtype=np.int64)
        for b in self._blocks:
            m = min(b.ptr.size - 1, n_terms)
            df[:m] += np.diff(b.ptr[: m + 1])
        ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=ptr[1:])
        docs = np.empty(int(ptr[-1]), dtype=np.int32)
        fits = small_counts and all(b.tf.size == 0 or b.tf.max() <= np.iinfo(np.uint16).max for b in self._blocks)
        tf = np.empty(int(ptr[-1]), dtype=np.uint16 if fits else np.float32)
        fill = ptr[:-1].copy()  # where each term's next block goes
        blocks, self._blocks = self._blocks, []
        blocks.reverse()
        while blocks:  # blocks in row order, so each list stays ascending; each freed once placed
            b = blocks.pop()
            m = min(b.ptr.size - 1, n_terms)
            bdf = np.diff(b.ptr[: m + 1])
            dest = np.repeat(fill[:m] - b.ptr[:m], bdf)
            dest += np.arange(dest.size, dtype=np.int64)
            docs[dest] = b.docs[: dest.size]
            tf[dest] = b.tf[: dest.size]
            fill[:m] += bdf
            del b, dest
        return Postings(ptr, docs, tf)
