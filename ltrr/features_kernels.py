"""Compiled lexical match of the ranker features: one pass over each candidate's stacked row.

:class:`ltrr.features._LexicalMatches` holds the title BM25, text BM25 and title-trigram
matrices side by side in one CSR (sorted columns). :func:`match_rows` walks each candidate's row
once, looks each stored column up in a per-query table (the column's count in the query, 0 for a
column the query lacks) and adds ``float64(weight) * count`` per field in column order from 0.0:
the sum, in the order, that ``numpy.bincount`` over the gathered entries formed before (and that
``scipy``'s CSR x dense-vector product forms), so the features are bit-identical to that path
(tests/ltrr/test_features_reference.py). The six lexical features are written straight into the
feature matrix, cast and divided in float32 as numpy did.

Compiled with ``cache=True`` (machine code kept in numba's cache, paid once per machine),
``nogil=True`` (requests on several threads run in parallel) and numpy's error model (a float
division by zero gives inf/NaN as in numpy, never an exception). :func:`warm` compiles or loads
it for both table widths; the feature builder calls it at construction, so no request pays it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["TABLE_TYPES", "match_rows", "warm"]

#: the lookup tables' dtypes: ``int8`` when every query count fits, else ``int32``
TABLE_TYPES = (np.int8, np.int32)


@njit(cache=True, nogil=True, error_model="numpy")
def match_rows(items, indptr, indices, data, table, cols, counts, text_start, tri_start, reach,
               per_field, out, col):  # pragma: no cover (compiled)
    """Write the lexical features of candidates ``items`` into ``out[:, col: col + 6]``.

    ``indptr``/``indices``/``data``: the stacked CSR (``int64``, ``int32``, ``float32``),
    columns ``[0, text_start)`` title terms, ``[text_start, tri_start)`` text terms, the rest
    title trigrams. ``cols``/``counts``: the query's stacked columns and each one's count (the
    dtype of ``table``, a zeroed array over the stacked columns, set here and zeroed again before
    returning). ``reach``: the ``bm25_text_frac`` scale; ``per_field``: ``float32[3]``, the
    overlap denominators. Columns written: ``bm25_title``, ``bm25_text``, ``bm25_text_frac``,
    ``title_overlap``, ``text_overlap``, ``title_trigram_overlap``.

    Returns -1, or the position of the first item that is not a row (nothing written then)."""
    n_rows = indptr.shape[0] - 1
    for i in range(items.shape[0]):
        if items[i] < 0 or items[i] >= n_rows:
            return i
    for k in range(cols.shape[0]):
        table[cols[k]] = counts[k]
    reach32 = np.float32(reach)
    zero32 = np.float32(0.0)
    for i in range(items.shape[0]):
        r = items[i]
        s_title = 0.0
        s_text = 0.0
        h_title = 0
        h_text = 0
        h_tri = 0
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            m = table[c]
            if m != 0:
                if c >= tri_start:
                    h_tri += 1
                elif c >= text_start:
                    s_text += np.float64(data[p]) * np.float64(m)
                    h_text += 1
                else:
                    s_title += np.float64(data[p]) * np.float64(m)
                    h_title += 1
        text32 = np.float32(s_text)
        out[i, col] = np.float32(s_title)
        out[i, col + 1] = text32
        out[i, col + 2] = text32 / reach32 if reach > 0 else zero32
        out[i, col + 3] = np.float32(h_title) / per_field[0]
        out[i, col + 4] = np.float32(h_text) / per_field[1]
        out[i, col + 5] = np.float32(h_tri) / per_field[2]
    for k in range(cols.shape[0]):
        table[cols[k]] = 0
    return -1


def warm(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
    """Compile (or load from numba's cache) :func:`match_rows` for these arrays' types and both
    table widths, on no candidate."""
    items = np.empty(0, dtype=np.int64)
    out = np.empty((0, 6), dtype=np.float32)
    per_field = np.ones(3, dtype=np.float32)
    for dtype in TABLE_TYPES:
        table = np.zeros(1, dtype=dtype)
        match_rows(items, indptr, indices, data, table, np.empty(0, dtype=indices.dtype),
                   np.empty(0, dtype=dtype), 0, 0, 0.0, per_field, out, 0)
