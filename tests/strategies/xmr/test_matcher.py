"""Matchers: parity of the vectorized Newton solvers with liblinear (scikit-learn's LinearSVC,
the same L2-regularized squared-hinge objective PECOS trains) and pruning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from strategies.xmr.chunked import ChunkedWeights
from strategies.xmr.matcher import (
    SolverParams,
    _solve_kernel,
    _solve_kernel_rows,
    _solve_primal,
    _solve_primal_columns,
    _stack,
    train_level,
    train_level_chunked,
)


def _solve_implicit(lv, p):
    return _solve_kernel_rows(lv, p, implicit=True)


def _problem(seed: int, n: int = 120, d: int = 40, n_children: int = 3):
    rng = np.random.default_rng(seed)
    x = sp.random(n, d, density=0.15, random_state=np.random.default_rng(seed + 1), format="csr")
    x = sp.hstack([x, np.ones((n, 1))], format="csr")  # bias column, as the model adds it
    w_true = rng.normal(size=(d + 1, n_children))
    lab = np.asarray(x @ w_true).argmax(axis=1)
    pos = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, n_children))
    active = sp.csr_matrix(np.ones((n, 1)))
    child_ptr = np.array([0, n_children])
    return x, active, pos, child_ptr, lab


def _liblinear(x, lab, c):
    ws = []
    for j in range(lab.max() + 1):
        y = np.where(lab == j, 1, -1)
        svc = LinearSVC(C=c, loss="squared_hinge", dual=True, fit_intercept=False, tol=1e-8,
                        max_iter=100_000).fit(x, y)
        ws.append(svc.coef_.ravel())
    return np.stack(ws, axis=1)


@pytest.mark.parametrize(("solver", "bias_col"), [
    (_solve_primal, None), (_solve_kernel, None), (_solve_kernel, 40),  # 40: the bias column
    (_solve_kernel_rows, None), (_solve_implicit, 40),
])
def test_newton_solvers_match_liblinear(solver, bias_col):
    x, active, pos, child_ptr, lab = _problem(0)
    params = SolverParams(C=1.0, newton_iters=30, cg_iters=200, newton_tol=1e-8, cg_tol=1e-8)
    lv = _stack(x, active, pos, child_ptr, bias_col)
    out = solver(lv, params)
    w = out if solver is _solve_primal else lv.xbd.T @ out
    # local columns of the single parent are its used features, in order
    full = np.zeros((x.shape[1], 3))
    full[lv.ufeat] = w
    ref = _liblinear(x, lab, 1.0)
    np.testing.assert_allclose(full, ref, atol=2e-3)


def test_train_level_prunes_and_maps_children():
    x, active, pos, child_ptr, lab = _problem(1)
    dense = train_level(x, active, pos, child_ptr, SolverParams(threshold=0.0, newton_iters=30,
                                                                cg_iters=200, newton_tol=1e-8,
                                                                cg_tol=1e-8))
    pruned = train_level(x, active, pos, child_ptr, SolverParams(threshold=0.3, newton_iters=30,
                                                                 cg_iters=200, newton_tol=1e-8,
                                                                 cg_tol=1e-8))
    assert dense.shape == pruned.shape == (x.shape[1], 3)
    assert np.abs(pruned.data).min() >= 0.3
    assert pruned.nnz < dense.nnz
    kept = pruned.toarray() != 0
    np.testing.assert_allclose(pruned.toarray()[kept], dense.toarray()[kept], rtol=1e-4, atol=1e-5)


def test_teacher_forcing_trains_children_only_on_their_parents_queries():
    # two parents with two children each; queries under parent 0 must not shape parent 1's nodes
    rng = np.random.default_rng(3)
    n, d = 40, 12
    x = sp.csr_matrix(rng.random((n, d)) * (rng.random((n, d)) < 0.4))
    x = sp.hstack([x, np.ones((n, 1))], format="csr")
    lab = np.repeat(np.arange(4), n // 4)
    pos = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, 4))
    active = sp.csr_matrix((np.ones(n), (np.arange(n), lab // 2)), shape=(n, 2))
    child_ptr = np.array([0, 2, 4])
    p = SolverParams(threshold=0.0, newton_iters=30, cg_iters=200, newton_tol=1e-8, cg_tol=1e-8)
    w = train_level(x, active, pos, child_ptr, p).toarray()
    # node 2 is trained only on queries 20..39, so it equals a liblinear fit on those rows alone
    sub = x[20:]
    ref = _liblinear(sub, lab[20:] - 2, 1.0)
    np.testing.assert_allclose(w[:, 2:4], ref, atol=2e-3)


def test_streamed_blocks_and_threads_give_the_same_weights():
    # four parents; a tiny memory budget trains them one block at a time, two threads at once
    rng = np.random.default_rng(5)
    n, d = 80, 15
    x = sp.csr_matrix(rng.random((n, d)) * (rng.random((n, d)) < 0.4))
    x = sp.hstack([x, np.ones((n, 1))], format="csr")
    lab = np.repeat(np.arange(8), n // 8)
    pos = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, 8))
    active = sp.csr_matrix((np.ones(n), (np.arange(n), lab // 2)), shape=(n, 4))
    child_ptr = np.array([0, 2, 4, 6, 8])
    # converged solves (each block's stopping tests are its own, so loose ones would differ)
    p = SolverParams(threshold=0.05, newton_iters=30, cg_iters=200, newton_tol=1e-8, cg_tol=1e-8)
    whole = train_level(x, active, pos, child_ptr, p, bias_col=d)
    streamed = train_level(x, active, pos, child_ptr, p, bias_col=d, budget_bytes=1.0, threads=2)
    assert whole.nnz > 0
    np.testing.assert_allclose(streamed.toarray(), whole.toarray(), atol=1e-4)


@pytest.mark.parametrize("budget, threads", [(512e6, 1), (1.0, 2)])
def test_chunked_level_equals_the_csr_level_regrouped(budget, threads):
    # the level assembled from per-block pieces is, array for array, the CSR level regrouped
    rng = np.random.default_rng(7)
    n, d = 90, 20
    x = sp.csr_matrix(rng.random((n, d)) * (rng.random((n, d)) < 0.4))
    x = sp.hstack([x, np.ones((n, 1))], format="csr")
    lab = rng.integers(0, 9, size=n)
    pos = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, 9))
    child_ptr = np.array([0, 2, 5, 6, 9])  # unequal fan-out; parent 2 has one child
    parent = np.searchsorted(child_ptr, lab, side="right") - 1
    active = sp.csr_matrix((np.ones(n), (np.arange(n), parent)), shape=(n, 4))
    p = SolverParams(threshold=0.05)
    w = train_level(x, active, pos, child_ptr, p, bias_col=d, budget_bytes=budget, threads=threads)
    chunks, bias = train_level_chunked(x, active, pos, child_ptr, p, bias_col=d, budget_bytes=budget,
                                       threads=threads)
    ref = ChunkedWeights.from_csr(w[:-1], child_ptr)
    assert ref.nnz > 20 and np.count_nonzero(bias) > 0
    for name in ("keys", "ptr", "child", "value"):
        np.testing.assert_array_equal(getattr(chunks, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(bias, w[-1].toarray().ravel().astype(np.float32))
    with pytest.raises(ValueError, match="'bias_col' parameter must be the last column"):
        train_level_chunked(x, active, pos, child_ptr, p, bias_col=0)


def test_primal_in_column_groups_matches_one_solve():
    # a parent too large for the work budget is solved a few children at a time: converged, the
    # same weights as all children at once; within budget, the very same call
    x, active, pos, child_ptr, _ = _problem(11, n_children=5)
    lv = _stack(x, sp.csc_matrix(active), sp.csc_matrix(pos), child_ptr, bias_col=x.shape[1] - 1)
    p = SolverParams(newton_iters=30, cg_iters=200, newton_tol=1e-8, cg_tol=1e-8)
    whole = _solve_primal(lv, p)
    split = _solve_primal_columns(lv, p, None, 1, work_bytes=40.0 * lv.xbd.shape[1] * 2)  # 2 columns
    np.testing.assert_allclose(split, whole, atol=1e-4)
    assert np.abs(whole).max() > 0.1
    np.testing.assert_array_equal(_solve_primal_columns(lv, SolverParams(), None, 1, 1e12),
                                  _solve_primal(lv, SolverParams()))


def test_column_groups_on_threads_give_the_very_same_weights():
    # groups solved side by side on two threads (each group's products on one) equal the groups
    # solved one after the other with their products split over the threads, bit for bit
    from concurrent.futures import ThreadPoolExecutor

    x, active, pos, child_ptr, _ = _problem(12, n=300, n_children=7)
    lv = _stack(x, sp.csc_matrix(active), sp.csc_matrix(pos), child_ptr, bias_col=x.shape[1] - 1)
    assert lv is not None
    budget = 40.0 * lv.xbd.shape[1] * 2  # groups of 2 columns: 4 groups
    serial = _solve_primal_columns(lv, SolverParams(), None, 1, budget)
    with ThreadPoolExecutor(2) as pool:
        side_by_side = _solve_primal_columns(lv, SolverParams(), pool, 2, budget)
    np.testing.assert_array_equal(side_by_side, serial)
    assert np.abs(serial).max() > 0.1
