"""One-vs-rest linear matchers of one tree level, trained all at once.

For every node ``j`` of a level, a binary L2-regularized squared-hinge classifier

    min_w  1/2 ||w||^2 + C * sum_i max(0, 1 - y_ij w.x_i)^2

is trained on the queries *active* under ``j``'s parent (teacher forcing: the queries with a
positive label below that parent, optionally plus the parents the previous level's beam returned
for them — matcher-aware negatives). Positives are the queries with a label below ``j``; the other
active queries are its negatives (siblings' positives).

All the problems of a level are solved together by truncated Newton with conjugate gradients,
vectorized over problems: the queries of each parent are stacked in one block-diagonal matrix
whose columns are that parent's *local* features, so every CG step is one sparse product for the
whole level. When the blocks are small (deep levels: few queries per parent) the same Newton
iteration runs in the representer (kernel) form ``w = X_p^T beta`` (Chapelle, 2007), whose
variables are one per (query, child) instead of one per (feature, child).
Weights below ``threshold`` in absolute value are pruned, as PECOS does, to keep the model sparse.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from strategies.xmr.chunked import ChunkedWeights
from strategies.xmr.matcher_kernel import segment_dots, segment_sums
from strategies.xmr.parallel import RowSplit

_P = TypeVar("_P")


@dataclass(frozen=True)
class SolverParams:
    """Newton-CG settings: ``C`` (loss weight), iterations and relative tolerances."""

    C: float = 1.0
    newton_iters: int = 4
    cg_iters: int = 10
    newton_tol: float = 0.01
    cg_tol: float = 0.1
    threshold: float = 0.1


@dataclass
class _Level:
    """The stacked training problem of one level."""

    xbd: sp.csr_matrix        # R x U block-diagonal (rows grouped by parent, local columns)
    y: np.ndarray             # R x Bmax, +1 / -1
    valid: np.ndarray         # R x Bmax, slot exists for the row's parent
    rseg: np.ndarray          # R, segment (active parent) of each row
    rstart: np.ndarray        # segment starts in rows
    useg: np.ndarray          # U, segment of each local column
    ustart: np.ndarray        # segment starts in local columns
    ufeat: np.ndarray         # U, global feature of each local column
    seg_parent: np.ndarray    # active parent of each segment
    bias_col: int | None = None  # global index of the constant bias feature, if any


def _segsum(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return segment_sums(a, starts) if a.shape[0] else np.zeros((0,) + a.shape[1:])


def _segdot(a: np.ndarray, b: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``_segsum(a * b, starts)`` (the same bits) without the product array."""
    return segment_dots(a, b, starts) if a.shape[0] else np.zeros((0,) + a.shape[1:])


def _stack(x: sp.csr_matrix, act: sp.csc_matrix, pos: sp.csc_matrix,
           child_ptr: np.ndarray, bias_col: int | None = None) -> _Level | None:
    """Build the block-diagonal problem: one row per (query, active parent) pair.

    ``act`` (queries x parents, CSC, canonical) and ``pos`` (queries x nodes) cover the parents
    of one block and their children; ``child_ptr`` is local to the block.
    """
    n_q, d = x.shape
    if not (sp.issparse(act) and act.format == "csc"):
        act = sp.csc_matrix(act)
        act.sum_duplicates()
        act.sort_indices()
    rows_q = act.indices.astype(np.int64)
    rows_p = np.repeat(np.arange(act.shape[1]), np.diff(act.indptr)).astype(np.int64)
    n_rows = rows_q.size
    if n_rows == 0:
        return None
    nchild = np.diff(child_ptr)
    bmax = int(nchild.max())
    # labels: positive (query, node) -> (row of (query, parent), slot)
    pos = pos.tocoo()
    parent_of_node = np.repeat(np.arange(child_ptr.size - 1), nchild)
    pkey = parent_of_node[pos.col] * n_q + pos.row
    rkey = rows_p * n_q + rows_q
    where = np.searchsorted(rkey, pkey)
    ok = (where < n_rows) & (rkey[np.minimum(where, n_rows - 1)] == pkey)
    y = np.full((n_rows, bmax), -1.0, dtype=np.float32)
    y[where[ok], pos.col[ok] - child_ptr[parent_of_node[pos.col[ok]]]] = 1.0
    valid = np.arange(bmax)[None, :] < nchild[rows_p][:, None]
    # local feature space of each parent
    xe = x if (n_rows == n_q and np.array_equal(rows_q, np.arange(n_q))) else x[rows_q]
    if act.shape[1] == 1:
        # one parent: its local features are the features its rows use (no sort needed)
        used = np.zeros(d, dtype=bool)
        used[xe.indices] = True
        ufeat = np.flatnonzero(used)
        local = np.cumsum(used) - 1
        xbd = sp.csr_matrix((xe.data.astype(np.float32, copy=False),
                             local[xe.indices], xe.indptr), shape=(n_rows, ufeat.size))
        zero = np.zeros(1, dtype=np.int64)
        return _Level(xbd, y, valid, zero[np.zeros(n_rows, np.int64)], zero, np.zeros(ufeat.size, np.int64),
                      zero, ufeat, zero, bias_col)
    nz_row = np.repeat(np.arange(n_rows), np.diff(xe.indptr))
    keys = rows_p[nz_row] * d + xe.indices
    ukeys, inv = np.unique(keys, return_inverse=True)
    xbd = sp.csr_matrix((xe.data.astype(np.float32), inv.astype(np.int64), xe.indptr),
                        shape=(n_rows, ukeys.size))
    seg_parent, rstart = np.unique(rows_p, return_index=True)
    rseg = np.searchsorted(seg_parent, rows_p)
    upar = ukeys // d
    ustart = np.searchsorted(upar, seg_parent)
    useg = np.searchsorted(seg_parent, upar)
    return _Level(xbd, y, valid, rseg, rstart, useg, ustart, ukeys % d, seg_parent, bias_col)


def _balance(lv: _Level) -> np.ndarray:
    """Per-problem tolerance factor ``max(min(#pos, #neg), 1) / #rows`` (as liblinear's TRON).

    A relative gradient test alone stops too early on imbalanced problems: the first step fixes
    the many negatives and the few positives' share of the gradient looks negligible.
    """
    npos = _segsum(((lv.y > 0) & lv.valid).astype(np.float64), lv.rstart)
    nall = _segsum(lv.valid.astype(np.float64), lv.rstart)
    return np.maximum(np.minimum(npos, nall - npos), 1.0) / np.maximum(nall, 1.0)


def _sq_hinge(o: np.ndarray, lv: _Level) -> tuple[np.ndarray, np.ndarray]:
    """Active mask and per-entry loss ``max(0, 1 - y o)^2`` on valid slots."""
    m = 1.0 - lv.y * o
    act = (m > 0) & lv.valid
    return act, np.where(act, m * m, 0.0)


def _line_search(f_quad, loss_at, t_max: int = 8) -> np.ndarray:
    """Per-problem step in {1, 1/2, ...} that does not increase the objective."""
    f0 = f_quad(0.0) + loss_at(None)
    n_seg = f0.shape
    step = np.ones(n_seg)
    done = np.zeros(n_seg, dtype=bool)
    for _ in range(t_max):
        f = f_quad(step) + loss_at(step)
        good = f <= f0 + 1e-12 * np.abs(f0)
        done |= good
        if done.all():
            break
        step = np.where(done, step, step * 0.5)
    return np.where(done, step, 0.0)


def _solve_primal(lv: _Level, p: SolverParams, pool: ThreadPoolExecutor | None = None,
                  threads: int = 1, xt_csr: sp.csr_matrix | None = None) -> np.ndarray:
    """Truncated Newton-CG on ``W`` (U x Bmax) with all problems of the level at once (float32).

    With a ``pool``, each sparse product is split by rows over ``threads`` (same result).
    ``xt_csr``: ``lv.xbd``'s transpose as CSR, if the caller has it (else it is built here)."""
    xt_csr = lv.xbd.T.tocsr() if xt_csr is None else xt_csr
    xbd, xt, c = RowSplit(lv.xbd, pool, threads), RowSplit(xt_csr, pool, threads), p.C
    U, B = xbd.shape[1], lv.y.shape[1]
    w = np.zeros((U, B), dtype=np.float32)
    o = np.zeros((xbd.shape[0], B), dtype=np.float32)
    g0 = None
    bal = _balance(lv) ** 2
    for _ in range(p.newton_iters):
        act, _ = _sq_hinge(o, lv)
        g = w + 2 * c * (xt @ np.where(act, o - lv.y, 0.0))
        gn = _segdot(g, g, lv.ustart)
        if g0 is None:
            g0 = gn
        todo = gn > (p.newton_tol ** 2) * bal * g0
        if not todo.any():
            break
        dvec = np.zeros_like(w)
        r = np.where(todo[lv.useg], -g, 0.0)
        q = r.copy()
        rr = _segdot(r, r, lv.ustart)
        for _ in range(p.cg_iters):
            hq = q + 2 * c * (xt @ np.where(act, xbd @ q, 0.0))
            qhq = _segdot(q, hq, lv.ustart)
            alpha = np.divide(rr, qhq, out=np.zeros_like(rr), where=qhq > 0)
            dvec += alpha[lv.useg] * q
            r -= alpha[lv.useg] * hq
            rr_new = _segdot(r, r, lv.ustart)
            if (rr_new <= (p.cg_tol ** 2) * gn).all():
                break
            beta = np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr > 0)
            q = r + beta[lv.useg] * q
            rr = rr_new
        xd = xbd @ dvec
        ww, wd, dd = (_segdot(a, b, lv.ustart) for a, b in ((w, w), (w, dvec), (dvec, dvec)))

        def quad(t, ww=ww, wd=wd, dd=dd):
            return 0.5 * (ww + 2 * t * wd + t * t * dd)

        def loss(t, o=o, xd=xd):
            oo = o if t is None else o + t[lv.rseg] * xd
            return c * _segsum(_sq_hinge(oo, lv)[1], lv.rstart)

        step = _line_search(quad, loss)
        w += step[lv.useg] * dvec
        o += step[lv.rseg] * xd
    return w


def _solve_kernel(lv: _Level, p: SolverParams) -> np.ndarray:
    """Newton on ``beta`` (R x Bmax) with ``w = X^T beta``; returns beta.

    With the active set fixed, the optimum solves ``(K_AA + I / 2C) beta_A = y_A`` and
    ``beta = 0`` off ``A``; CG solves it per problem, a line search on the primal objective keeps
    each step a descent step. Problems are laid out padded, ``(parents, rows, children)``, so
    per-problem sums are axis sums; very unequal parents use the row layout instead (the
    training blocks group parents of similar size, so that is rare). Float32: half the memory
    traffic of the kernel products, ample for a truncated Newton.
    """
    n_rows, B = lv.y.shape
    n_seg = lv.seg_parent.size
    sizes = np.diff(np.append(lv.rstart, n_rows))
    nmax = int(sizes.max())
    if n_seg * nmax > 2 * n_rows + 1024:
        return _solve_kernel_rows(lv, p)
    pos = np.arange(n_rows) - lv.rstart[lv.rseg]
    y = np.full((n_seg, nmax, B), -1.0, dtype=np.float32)
    y[lv.rseg, pos] = lv.y
    valid = np.zeros((n_seg, nmax, B), dtype=bool)
    valid[lv.rseg, pos] = lv.valid
    xk = lv.xbd
    bpad = None
    if lv.bias_col is not None:
        # the bias column makes every kernel block dense; keep it as a rank-one term per block
        is_bias = lv.ufeat == lv.bias_col
        bpad = np.zeros((n_seg, nmax, 1), dtype=np.float32)
        bpad[lv.rseg, pos, 0] = np.asarray(lv.xbd[:, is_bias].sum(axis=1)).ravel()
        xk = lv.xbd[:, ~is_bias]
    # dense kernel blocks, one (rows x rows) matrix per parent: batched BLAS products are
    # several times faster than a sparse block-diagonal product on blocks this dense
    kco = (xk @ xk.T).tocoo()
    kdense = np.zeros((n_seg, nmax, nmax), dtype=np.float32)
    kdense[lv.rseg[kco.row], pos[kco.row], pos[kco.col]] = kco.data
    del kco
    if bpad is not None:  # the bias column adds the same rank-one term to each block
        kdense += bpad * bpad.transpose(0, 2, 1)

    def kmul(v: np.ndarray) -> np.ndarray:
        return np.matmul(kdense, v)

    def hinge(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = 1.0 - y * o
        act = (m > 0) & valid
        return act, np.where(act, m * m, 0.0)

    lam = np.float32(1.0 / (2.0 * p.C))
    npos = ((y > 0) & valid).sum(axis=1).astype(np.float64)
    nall = valid.sum(axis=1).astype(np.float64)
    bal = (np.maximum(np.minimum(npos, nall - npos), 1.0) / np.maximum(nall, 1.0)) ** 2
    beta = np.zeros((n_seg, nmax, B), dtype=np.float32)
    o = np.zeros_like(beta)
    prev_act = None
    for _ in range(p.newton_iters):
        act, _ = hinge(o)
        if prev_act is not None and np.array_equal(act, prev_act):
            break
        prev_act = act
        rhs = np.where(act, y, 0.0)
        z = np.where(act, beta, 0.0)
        r = rhs - (np.where(act, kmul(z), 0.0) + lam * z)
        q = r.copy()
        rr = (r * r).sum(axis=1)
        r0 = (rhs * rhs).sum(axis=1)
        for _ in range(p.cg_iters):
            if (rr <= (p.cg_tol ** 2) * bal * r0 + 1e-30).all():
                break
            hq = np.where(act, kmul(q), 0.0) + lam * q
            qhq = (q * hq).sum(axis=1)
            alpha = np.divide(rr, qhq, out=np.zeros_like(rr), where=qhq > 0)[:, None, :]
            z += alpha * q
            r -= alpha * hq
            rr_new = (r * r).sum(axis=1)
            beta_cg = np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr > 0)[:, None, :]
            q = r + beta_cg * q
            rr = rr_new
        dvec = z - beta
        kdv = kmul(dvec)
        bb, bd, dd = ((a * b).sum(axis=1) for a, b in ((beta, o), (beta, kdv), (dvec, kdv)))

        def quad(t, bb=bb, bd=bd, dd=dd):
            return 0.5 * (bb + 2 * t * bd + t * t * dd)

        def loss(t, o=o, kdv=kdv):
            oo = o if t is None else o + t[:, None, :] * kdv
            return p.C * hinge(oo)[1].sum(axis=1)

        step = _line_search(quad, loss)[:, None, :]
        beta += step * dvec
        o += step * kdv
    return beta[lv.rseg, pos]


def _solve_kernel_rows(lv: _Level, p: SolverParams, implicit: bool = False,
                       pool: ThreadPoolExecutor | None = None, threads: int = 1) -> np.ndarray:
    """:func:`_solve_kernel` in the row layout, for very unequal parents (padding would not fit).

    With the active set fixed, the optimum solves ``(K_AA + I / 2C) beta_A = y_A`` and
    ``beta = 0`` off ``A``; CG solves it per problem, a line search on the primal objective keeps
    each step a descent step. ``implicit`` never forms ``K``: each product is ``X (X^T v)``, two
    sparse products like the primal solver's, but the CG vectors have one entry per row instead
    of one per local feature (the cheaper form when parents have more features than rows).
    """
    if implicit:
        # float64: in float32 the long CG recurrences over many rows lose orthogonality (the
        # movie benchmark's P@1 fell by 3 points)
        x64 = RowSplit(lv.xbd.astype(np.float64), pool, threads)
        xt = RowSplit(lv.xbd.T.tocsr().astype(np.float64), pool, threads)

        class _K:
            def __matmul__(self, v: np.ndarray) -> np.ndarray:
                return x64 @ (xt @ v)

        k = _K()
    else:
        k = (lv.xbd @ lv.xbd.T).tocsr()
    dtype = np.float64
    lam = 1.0 / (2.0 * p.C)
    n_rows, B = lv.y.shape
    beta = np.zeros((n_rows, B), dtype=dtype)
    o = np.zeros((n_rows, B), dtype=dtype)
    prev_act = None
    bal = _balance(lv) ** 2
    for _ in range(p.newton_iters):
        act, _ = _sq_hinge(o, lv)
        if prev_act is not None and np.array_equal(act, prev_act):
            break
        prev_act = act
        rhs = np.where(act, lv.y, 0.0)
        z = np.where(act, beta, 0.0)
        r = rhs - (np.where(act, k @ z, 0.0) + lam * z)
        q = r.copy()
        rr = _segdot(r, r, lv.rstart)
        r0 = _segdot(rhs, rhs, lv.rstart)
        for _ in range(p.cg_iters):
            if (rr <= (p.cg_tol ** 2) * bal * r0 + 1e-30).all():
                break
            hq = np.where(act, k @ q, 0.0) + lam * q
            qhq = _segdot(q, hq, lv.rstart)
            alpha = np.divide(rr, qhq, out=np.zeros_like(rr), where=qhq > 0)
            z += alpha[lv.rseg] * q
            r -= alpha[lv.rseg] * hq
            rr_new = _segdot(r, r, lv.rstart)
            beta_cg = np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr > 0)
            q = r + beta_cg[lv.rseg] * q
            rr = rr_new
        dvec = z - beta
        kd = k @ dvec
        bb, bd, dd = (_segdot(a, b, lv.rstart) for a, b in ((beta, o), (beta, kd), (dvec, kd)))

        def quad(t, bb=bb, bd=bd, dd=dd):
            return 0.5 * (bb + 2 * t * bd + t * t * dd)

        def loss(t, o=o, kd=kd):
            oo = o if t is None else o + t[lv.rseg] * kd
            return p.C * _segsum(_sq_hinge(oo, lv)[1], lv.rstart)

        step = _line_search(quad, loss)
        beta += step[lv.rseg] * dvec
        o += step[lv.rseg] * kd
    return beta



#: bytes of the primal solver's (local features x children) work arrays above which a block's
#: children are solved a few columns at a time (only single parents of millions of rows reach it)
PRIMAL_WORK_BYTES = float(1 << 30)


def _solve_primal_columns(lv: _Level, p: SolverParams, pool: ThreadPoolExecutor | None, threads: int,
                          work_bytes: float) -> np.ndarray:
    """:func:`_solve_primal`, its children split into groups of columns when its ~10 float32
    work arrays of (local features x children) would pass ``work_bytes``. The children's
    problems are independent; only the solver's shared stopping tests see fewer columns, so
    the weights differ within the solver's tolerance from one solve of all columns. With a
    ``pool``, ``threads`` groups are solved at once (each group's weights are the same as
    alone: its products give the same sums on any number of threads)."""
    n_local, bmax = lv.xbd.shape[1], lv.y.shape[1]
    width = max(1, int(work_bytes // (40.0 * max(n_local, 1))))
    if width >= bmax:
        return _solve_primal(lv, p, pool, threads)
    width = -(-bmax // -(-bmax // width))  # equal groups
    xt = lv.xbd.T.tocsr()  # one transpose for all the groups
    w = np.empty((n_local, bmax), dtype=np.float32)

    def group(c0: int, pool: ThreadPoolExecutor | None = None, threads: int = 1) -> None:
        part = replace(lv, y=lv.y[:, c0:c0 + width], valid=lv.valid[:, c0:c0 + width])
        w[:, c0:c0 + width] = _solve_primal(part, p, pool, threads, xt)

    if pool is not None and threads > 1:  # groups side by side, each on one thread (same weights)
        list(pool.map(group, range(0, bmax, width)))
    else:
        for c0 in range(0, bmax, width):
            group(c0, pool, threads)
    return w


def _solve_block(x: sp.csr_matrix, act: sp.csc_matrix, pos: sp.csc_matrix, child_ptr: np.ndarray,
                 params: SolverParams, max_dense: int, bias_col: int | None,
                 pool: ThreadPoolExecutor | None = None, threads: int = 1,
                 work_bytes: float = PRIMAL_WORK_BYTES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pruned weights ``(feature, local node, value)`` of one block of parents (the sparse
    products of the primal and implicit solvers split over ``threads`` of ``pool``, if given)."""
    lv = _stack(x, act, pos, child_ptr, bias_col)
    if lv is None:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    n_rows, n_local = lv.xbd.shape
    bmax = lv.y.shape[1]
    seg_rows = np.diff(np.append(lv.rstart, n_rows))
    # work per CG step and column: one product with the kernel blocks (or two with the sparse
    # block matrix) plus ~10 dense vector operations over the variables (rows or local features)
    kernel_cost = float((seg_rows.astype(np.float64) ** 2).sum()) + 10.0 * n_rows
    implicit_cost = 4.0 * lv.xbd.nnz + 12.0 * n_rows  # float64 products: twice the traffic
    primal_cost = 2.0 * lv.xbd.nnz + 10.0 * n_local
    best = min(kernel_cost / 3, implicit_cost, primal_cost)
    use_kernel = best != primal_cost
    if best == kernel_cost / 3:
        beta = _solve_kernel(lv, params)
    elif best == implicit_cost:
        beta = _solve_kernel_rows(lv, params, implicit=True, pool=pool, threads=threads)
    else:
        w_all = _solve_primal_columns(lv, params, pool, threads, work_bytes)
    # map local weights back to (feature, node), pruning in chunks of segments to bound memory
    cols, rows_f, vals = [], [], []
    seg_ustarts = np.append(lv.ustart, n_local)
    seg_rstarts = np.append(lv.rstart, n_rows)
    n_seg = lv.seg_parent.size
    s0 = 0
    while s0 < n_seg:
        s1 = s0 + 1
        while s1 < n_seg and (seg_ustarts[s1 + 1] - seg_ustarts[s0]) * bmax <= max_dense:
            s1 += 1
        u0, u1 = seg_ustarts[s0], seg_ustarts[s1]
        if use_kernel:
            r0, r1 = seg_rstarts[s0], seg_rstarts[s1]
            block = lv.xbd[r0:r1]
            block = sp.csr_matrix((block.data, block.indices - u0, block.indptr),
                                  shape=(r1 - r0, u1 - u0))
            w = block.T @ beta[r0:r1]
        else:
            w = w_all[u0:u1]
        keep = (np.abs(w) >= params.threshold) & (w != 0)
        uu, ss = np.nonzero(keep)
        parent = lv.seg_parent[lv.useg[u0 + uu]]
        rows_f.append(lv.ufeat[u0 + uu])
        cols.append(child_ptr[parent] + ss)
        vals.append(w[uu, ss].astype(np.float32))
        s0 = s1
    return np.concatenate(rows_f), np.concatenate(cols), np.concatenate(vals)


def _blocks(act: sp.csc_matrix, row_nnz: np.ndarray, child_ptr: np.ndarray,
            budget_bytes: float, spread: float = 1.5) -> list[np.ndarray]:
    """Groups of parents of similar size whose stacked problems each need about ``budget_bytes``.

    Parents are taken by number of rows, and a group closes when the next parent has more than
    ``spread`` times the rows of its first one (padding stays small) or the budget is spent.
    Estimated bytes of a parent: its rows' nonzeros twice (block matrix and its transpose),
    ~8 float32 work arrays of (rows + local features) x children and its dense kernel block.
    """
    n_par = act.shape[1]
    per_col = np.diff(act.indptr)
    nnz_p = np.bincount(np.repeat(np.arange(n_par), per_col), weights=row_nnz[act.indices],
                        minlength=n_par)
    nchild = np.diff(child_ptr)
    cost = 24.0 * nnz_p + 32.0 * (nnz_p + per_col) * nchild + 4.0 * per_col.astype(np.float64) ** 2
    order = np.argsort(per_col, kind="stable")
    out: list[np.ndarray] = []
    group: list[int] = []
    acc, first = 0.0, 0
    for p in order.tolist():
        if group and (acc + cost[p] > budget_bytes or per_col[p] > spread * max(first, 1)):
            out.append(np.sort(np.asarray(group, dtype=np.int64)))
            group, acc = [], 0.0
        if not group:
            first = per_col[p]
        group.append(p)
        acc += cost[p]
    if group:
        out.append(np.sort(np.asarray(group, dtype=np.int64)))
    return out


def _solve_level(x: sp.csr_matrix, active: sp.csr_matrix, pos: sp.csr_matrix, child_ptr: np.ndarray,
                 params: SolverParams, max_dense: int, bias_col: int | None, budget_bytes: float,
                 threads: int, finish: Callable[[np.ndarray, np.ndarray, np.ndarray], _P]) -> list[_P]:
    """``finish(feature, node, value)`` of every block of parents of one level (see
    :func:`train_level`), called in the thread that solved the block, so each block's raw
    weights are released as soon as they are converted."""
    x = sp.csr_matrix(x)
    act = sp.csc_matrix(active)
    act.sum_duplicates()
    act.sort_indices()
    posc = sp.csc_matrix(pos)
    blocks = _blocks(act, np.diff(x.indptr).astype(np.float64), child_ptr, budget_bytes)

    nchild = np.diff(child_ptr)

    def solve(parents: np.ndarray, pool: ThreadPoolExecutor | None = None) -> _P:
        counts = nchild[parents]
        ends = np.cumsum(counts)
        nodes = np.arange(int(ends[-1])) + np.repeat(child_ptr[parents] - ends + counts, counts)
        if parents.size == act.shape[1]:
            a, pc = act, posc
        else:
            a, pc = act[:, parents], posc[:, nodes]
        f, c, v = _solve_block(x, a, pc, np.r_[0, ends], params, max_dense, bias_col, pool, threads)
        return finish(f, nodes[c], v)

    if threads > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(solve, blocks))
    if threads > 1:  # one block: its products are split instead
        with ThreadPoolExecutor(threads) as pool:
            return [solve(blocks[0], pool)]
    return [solve(b) for b in blocks]


def train_level(x: sp.csr_matrix, active: sp.csr_matrix, pos: sp.csr_matrix,
                child_ptr: np.ndarray, params: SolverParams,
                max_dense: int = 4_000_000, bias_col: int | None = None,
                budget_bytes: float = 512e6, threads: int = 1) -> sp.csr_matrix:
    """Weights of every node of one level as a pruned ``(n_features, n_nodes)`` CSR matrix.

    The parents are trained in blocks of about ``budget_bytes`` of working memory each (the
    problems of different parents are independent; see :func:`_blocks`), ``threads`` blocks at a
    time: memory stays bounded however many labels the level has.

    Parameters
    ----------
    x
        Query features ``(n_queries, n_features)``, the bias column included.
    active
        ``(n_queries, n_parents)``: the parents each query trains under.
    pos
        ``(n_queries, n_nodes)``: the nodes each query is positive for.
    child_ptr
        Children ranges of the parents (see :class:`~strategies.xmr.indexer.ClusterTree`).
    """
    parts = _solve_level(x, active, pos, child_ptr, params, max_dense, bias_col, budget_bytes, threads,
                         lambda f, n, v: (f, n, v))
    out = sp.csr_matrix(
        (np.concatenate([p[2] for p in parts]),
         (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))),
        shape=(x.shape[1], int(child_ptr[-1])), dtype=np.float32,
    )
    out.sum_duplicates()
    out.sort_indices()
    return out


def train_level_chunked(x: sp.csr_matrix, active: sp.csr_matrix, pos: sp.csr_matrix,
                        child_ptr: np.ndarray, params: SolverParams, bias_col: int,
                        max_dense: int = 4_000_000, budget_bytes: float = 512e6,
                        threads: int = 1) -> tuple[ChunkedWeights, np.ndarray]:
    """:func:`train_level` straight into the layout beam search uses: the weights of the features
    before ``bias_col`` (the last column of ``x``) as :class:`ChunkedWeights` and the bias
    weights as a ``float32`` vector over nodes. Each block's weights are compacted as it is
    solved and the level is assembled from the pieces, so no whole-level triplet or CSR copy of
    the weights is ever held (the same arrays as ``ChunkedWeights.from_csr(train_level(...)[:-1])``).
    """
    if bias_col != x.shape[1] - 1:
        raise ValueError(f"The 'bias_col' parameter must be the last column of x ({x.shape[1] - 1}). "
                         f"Got {bias_col!r} instead.")
    n_nodes = int(child_ptr[-1])

    def finish(f: np.ndarray, n: np.ndarray, v: np.ndarray):
        is_bias = f == bias_col
        bias = (n[is_bias], v[is_bias])
        keep = ~is_bias
        return ChunkedWeights.piece(f[keep], n[keep], v[keep], child_ptr, bias_col), bias

    parts = _solve_level(x, active, pos, child_ptr, params, max_dense, bias_col, budget_bytes, threads,
                         finish)
    bias = np.zeros(n_nodes, dtype=np.float32)
    for _, (nodes, vals) in parts:
        bias[nodes] = vals
    pieces = [p for p, _ in parts]
    del parts
    return ChunkedWeights.merge(pieces, bias_col), bias
