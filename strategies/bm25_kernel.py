"""Compiled BM25 query scoring: the top k over the documents a query's posting lists touch.

One numba function scores a query without any pass over the corpus: each list's stored
``float32`` scores are added, in float64 and in ascending term order, into a per-thread
accumulator over the documents (the scatter), the documents seen for the first time are listed,
the k best of the listed totals are kept in a binary heap, and only the listed entries are reset.
The sums are the numpy path's (``np.add.at`` over the lists' concatenation adds the same float64
values in the same order), so scores are bit-identical and ties fall the same way: higher score
first, lower document on ties.

Compiled with ``cache=True`` (the machine code is kept beside this file or in numba's cache
directory, so compiling is paid once per machine and Python version) and ``nogil=True`` (served
searches on several threads run in parallel). :func:`warm` compiles or loads it for an index's
array types; the BM25 strategy calls it when an index is fitted or loaded, so no search pays it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["touched_top_k", "warm"]

# A query reading at least 1/this as many postings as there are documents sums into the
# accumulator without listing the touched documents and then scans every document: a linear
# scan costs less than listing most of them (measured on 100k Zipf documents).
_DENSE_SHARE = 4


@njit(cache=True, nogil=True, inline="always")
def _worse(s_a: float, d_a: int, s_b: float, d_b: int) -> bool:
    """Whether (score a, document a) ranks below (score b, document b): lower score, or the
    same score and a higher document."""
    return s_a < s_b or (s_a == s_b and d_a > d_b)


@njit(cache=True, nogil=True)
def _sift_down(hs: np.ndarray, hd: np.ndarray, i: int, n: int) -> None:
    """Restore the heap (the worst entry at the root) below position ``i`` of ``n`` entries."""
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _worse(hs[c + 1], hd[c + 1], hs[c], hd[c]):
            c += 1
        if not _worse(hs[c], hd[c], hs[i], hd[i]):
            return
        hs[i], hs[c] = hs[c], hs[i]
        hd[i], hd[c] = hd[c], hd[i]
        i = c


@njit(cache=True, nogil=True, inline="always")
def _replace_root(hs: np.ndarray, hd: np.ndarray, m: int, s: float, d: int | np.integer) -> tuple[float, int]:
    """Put ``(s, d)`` in place of the heap's worst entry and restore the heap; the new worst."""
    hs[0] = s
    hd[0] = d
    _sift_down(hs, hd, 0, m)
    return hs[0], hd[0]


@njit(cache=True, nogil=True)
def touched_top_k(ptr, docs, scores, terms, weights, prior, quality_prior, k, drop_zero,
                  acc, seen, touched, out_docs, out_scores):  # pragma: no cover (compiled)
    """The best ``k`` documents of one query over every document its lists touch.

    ``ptr``/``docs``/``scores``: the term-major postings (``int64``, ``int32``, ``float32``);
    ``terms`` (ascending) and ``weights`` (each term's count in the query); a document's total
    is ``sum_t weights[t] * scores[t, d]`` (float64, terms in order) plus
    ``quality_prior * prior[d]`` when ``quality_prior > 0``. ``drop_zero`` False promises every
    stored score and weight is > 0 (a document is then new while its total is 0); True allows
    zero scores, marks seen documents in ``seen`` and drops the documents whose terms sum to 0
    (not a match). ``acc`` (float64), ``seen`` (bool) and ``touched`` (int32), one entry per
    document, are the caller's scratch: zero/False on entry and on return.
    Writes the top documents and totals, best first, to ``out_docs``/``out_scores`` (size k;
    the totals cast to their dtype, ``float32`` for a retrieval result), pads the rest with -1
    and -inf, and returns how many documents there are (< k when fewer match).
    """
    n_docs = acc.size
    read = 0
    for i in range(terms.size):
        read += ptr[terms[i] + 1] - ptr[terms[i]]
    dense = read * _DENSE_SHARE >= n_docs
    n = 0
    for i in range(terms.size):
        t = terms[i]
        w = weights[i]
        if dense:  # no list of touched documents: the selection scans every document
            for j in range(ptr[t], ptr[t + 1]):
                acc[np.uint32(docs[j])] += np.float64(scores[j]) * w
        elif drop_zero:  # a total may stay 0: mark the documents seen
            for j in range(ptr[t], ptr[t + 1]):
                d = np.uint32(docs[j])  # unsigned: no negative-index wraparound in the loop
                if not seen[d]:
                    seen[d] = True
                    touched[n] = d
                    n += 1
                acc[d] += np.float64(scores[j]) * w
        else:  # every score > 0: a document is new while its total is 0 (branch-free)
            for j in range(ptr[t], ptr[t + 1]):
                d = np.uint32(docs[j])
                total = acc[d]
                touched[n] = d
                n += total == 0.0
                acc[d] = total + np.float64(scores[j]) * w
    if dense:
        n = n_docs
    # an untouched document's total is 0 too: with the dense scan, 0 is skipped in every case
    skip_zero = drop_zero or dense
    # a total of 0 can pass the root only with a prior added or when scores may be <= 0
    skip_zero_prior = drop_zero or quality_prior > 0
    reset_seen = drop_zero and not dense
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    m = 0
    i = 0
    while m < k and i < n:  # the first k matches fill the heap (each sifted up)
        d = np.uint32(i) if dense else np.uint32(touched[i])
        i += 1
        s = acc[d]
        acc[d] = 0.0
        if reset_seen:
            seen[d] = False
        if skip_zero and s == 0.0:
            continue
        if quality_prior > 0:
            s = s + quality_prior * prior[d]
        j = m
        m += 1
        hs[j] = s
        hd[j] = d
        while j > 0:
            p = (j - 1) // 2
            if not _worse(hs[j], hd[j], hs[p], hd[p]):
                break
            hs[j], hs[p] = hs[p], hs[j]
            hd[j], hd[p] = hd[p], hd[j]
            j = p
    worst_s = hs[0] if m else 0.0  # the heap's root, kept in registers
    worst_d = hd[0] if m else 0
    if dense and not skip_zero_prior:
        # every total > 0 and no prior: an untouched document's 0 is below the root, so the
        # loop only reads (the accumulator is zeroed after it in one pass)
        for row in range(i, n):
            s = acc[row]
            if s < worst_s or (s == worst_s and row > worst_d):
                continue
            worst_s, worst_d = _replace_root(hs, hd, m, s, row)
        acc[i:] = 0.0
        n = i  # nothing left to read
    for r in range(i, n):  # the rest replace the root when better
        d = np.uint32(r) if dense else np.uint32(touched[r])
        total = acc[d]
        acc[d] = 0.0
        if reset_seen:
            seen[d] = False
        s = total + quality_prior * prior[d] if quality_prior > 0 else total
        if skip_zero:  # a select, not a branch: zeros are scattered unpredictably
            s = -np.inf if total == 0.0 else s
        if s < worst_s or (s == worst_s and d > worst_d):
            continue
        worst_s, worst_d = _replace_root(hs, hd, m, s, d)
    # pop the worst to the back until the heap is empty: best first
    for last in range(m - 1, -1, -1):
        out_scores[last] = hs[0]
        out_docs[last] = hd[0]
        hs[0] = hs[last]
        hd[0] = hd[last]
        _sift_down(hs, hd, 0, last)
    for j in range(m, k):
        out_docs[j] = -1
        out_scores[j] = -np.inf
    return m


def warm(ptr: np.ndarray, docs: np.ndarray, scores: np.ndarray, prior: np.ndarray) -> None:
    """Compile (or load from numba's cache) :func:`touched_top_k` for these index arrays'
    types (a memory-mapped, read-only index has types of its own), on a query of no term."""
    touched_top_k(ptr, docs, scores, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64),
                  prior, 0.0, 1, False, np.zeros(1, dtype=np.float64), np.zeros(1, dtype=bool),
                  np.zeros(1, dtype=np.int32), np.empty(1, dtype=np.int64),
                  np.empty(1, dtype=np.float32))
