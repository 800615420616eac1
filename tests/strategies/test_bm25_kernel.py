"""The compiled top k over touched documents against a brute-force numpy reference: sums in
term order, ties by lower document, zero totals, the prior, padding and a clean scratch."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.bm25_kernel import touched_top_k


def _postings(rng: np.random.Generator, n_docs: int, n_terms: int, zeros: bool, max_df: int):
    """Random term-major postings (ascending documents per term, at most ``max_df``), float32
    scores on a coarse grid (many ties), some exactly 0 when ``zeros``."""
    ptr, docs, scores = [0], [], []
    for _ in range(n_terms):
        d = np.sort(rng.permutation(n_docs)[: int(rng.integers(0, max_df + 1))])
        s = rng.integers(0 if zeros else 1, 5, size=d.size) * 0.25
        docs.append(d)
        scores.append(s)
        ptr.append(ptr[-1] + d.size)
    return (np.array(ptr, dtype=np.int64), np.concatenate(docs).astype(np.int32),
            np.concatenate(scores).astype(np.float32))


def _reference(ptr, docs, scores, terms, weights, prior, qp, k, drop_zero):
    total = np.zeros(prior.size)
    hit = np.zeros(prior.size, dtype=bool)
    for t, w in zip(terms, weights, strict=True):  # float64, term after term
        total[docs[ptr[t]:ptr[t + 1]]] += scores[ptr[t]:ptr[t + 1]].astype(np.float64) * w
        hit[docs[ptr[t]:ptr[t + 1]]] = True
    if drop_zero:
        hit &= total != 0
    rows = np.flatnonzero(hit)
    ranked = total[rows] + (qp * prior[rows] if qp > 0 else 0.0)
    order = np.lexsort((rows, -ranked))[:k]
    return rows[order], ranked[order]


@pytest.mark.parametrize("drop_zero", [False, True])
@pytest.mark.parametrize("qp", [0.0, 0.7])
@pytest.mark.parametrize("short_lists", [False, True])
def test_touched_top_k_matches_brute_force(drop_zero, qp, short_lists) -> None:
    """Short lists in many documents: the touched documents are listed; long ones: the
    accumulator is scanned (``_DENSE_SHARE``)."""
    rng = np.random.default_rng(np.random.SeedSequence([14, int(drop_zero), int(qp * 10), int(short_lists)]))
    for _ in range(200):
        n_docs, n_terms = int(rng.integers(1, 60)), int(rng.integers(1, 8))
        if short_lists:
            n_docs *= 40
        max_df = n_docs // (8 * n_terms) if short_lists else n_docs
        ptr, docs, scores = _postings(rng, n_docs, n_terms, zeros=drop_zero, max_df=max_df)
        prior = rng.integers(0, 3, size=n_docs) * 0.5
        terms = np.sort(rng.permutation(n_terms)[: int(rng.integers(0, n_terms + 1))]).astype(np.int64)
        weights = rng.integers(1, 3, size=terms.size).astype(np.float64)
        k = int(rng.integers(1, 70))
        acc, seen = np.zeros(n_docs), np.zeros(n_docs, dtype=bool)
        touched = np.zeros(n_docs + 1, dtype=np.int32)
        ids, out = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.float32)
        n = touched_top_k(ptr, docs, scores, terms, weights, prior, qp, k, drop_zero,
                          acc, seen, touched, ids, out)
        want_ids, want_scores = _reference(ptr, docs, scores, terms, weights, prior, qp, k, drop_zero)
        assert n == want_ids.size
        np.testing.assert_array_equal(ids[:n], want_ids)
        np.testing.assert_array_equal(out[:n], want_scores.astype(np.float32))
        assert (ids[n:] == -1).all() and (out[n:] == -np.inf).all()
        assert not acc.any() and not seen.any()  # the scratch is clean for the next query


def test_sums_are_bit_identical_to_numpy_add_at() -> None:
    """Scores that round differently in another order: the kernel sums as np.add.at does."""
    rng = np.random.default_rng(np.random.SeedSequence(19))
    n_docs, n_terms = 500, 6
    ptr = np.arange(n_terms + 1, dtype=np.int64) * n_docs
    docs = np.tile(np.arange(n_docs, dtype=np.int32), n_terms)
    scores = rng.random(ptr[-1]).astype(np.float32) * 10
    terms = np.arange(n_terms, dtype=np.int64)
    weights = np.array([1, 2, 1, 3, 1, 1], dtype=np.float64)
    ids, out = np.zeros(n_docs, dtype=np.int64), np.zeros(n_docs, dtype=np.float64)
    touched_top_k(ptr, docs, scores, terms, weights, np.zeros(n_docs), 0.0, n_docs, False,
                  np.zeros(n_docs), np.zeros(n_docs, dtype=bool), np.zeros(n_docs + 1, dtype=np.int32),
                  ids, out)
    acc = np.zeros(n_docs)
    np.add.at(acc, docs, scores.astype(np.float64) * np.repeat(weights, n_docs))
    np.testing.assert_array_equal(out, acc[ids])  # exact, not approximately
