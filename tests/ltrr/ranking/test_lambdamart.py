"""LambdaMART ranker: same learner as plain LightGBM on MSLR, persistence, schema checks."""


import lightgbm as lgb
import numpy as np
import pytest

from ltrr.config import SHARED_DATA_DIR
from ltrr.errors import DataError, PersistenceError
from ltrr.features import FeatureSchema
from ltrr.offline.metrics import mean_ndcg_of_groups
from ltrr.ranking.lambdamart import LambdaMARTRanker, predict_rows
from ltrr.ranking.letor import load_letor
from ltrr.ranking.training import ClickTrainingSet, fit_from_clicks

MSLR = SHARED_DATA_DIR / "mslr"
needs_mslr = pytest.mark.skipif(not (MSLR / "msn1.fold1.train.5k.txt").exists(), reason="MSLR rows not present")




@pytest.fixture(scope="module")
def mslr():
    return load_letor(MSLR / "msn1.fold1.train.5k.txt", 136), load_letor(MSLR / "msn1.fold1.test.5k.txt", 136)


@needs_mslr
def test_training_path_equals_plain_lightgbm_lambdarank_on_mslr(mslr):
    train, test = mslr
    schema = FeatureSchema(tuple(f"f{i}" for i in range(136)))
    params = {"n_estimators": 60, "debias": "none", "early_stopping_rounds": 0}
    ours = LambdaMARTRanker(schema, params).fit(train.X, train.y, train.groups)
    ref_params = ours.lgb_params()
    plain = lgb.train(ref_params, lgb.Dataset(train.X, train.y, group=train.groups), num_boost_round=60)
    p_ours, p_plain = ours.score(test.X), plain.predict(test.X, num_threads=1)
    np.testing.assert_allclose(p_ours, p_plain, rtol=0, atol=1e-9)
    nd_ours, nd_plain = mean_ndcg_of_groups(p_ours, test.y, test.groups), mean_ndcg_of_groups(p_plain, test.y, test.groups)
    assert abs(nd_ours - nd_plain) <= 1e-9
    assert nd_ours > 0.3  # LightGBM lambdarank reaches about 0.36 on these rows
    # the click-training entry point with debiasing off and no held-out split is the same learner
    data = ClickTrainingSet(train.X, train.y, train.groups, np.zeros(train.y.size, np.int64),
                            np.zeros(train.y.size, np.int64), ())
    via_clicks = LambdaMARTRanker(schema, params)
    fit_from_clicks(via_clicks, data)
    np.testing.assert_allclose(via_clicks.score(test.X), p_plain, rtol=0, atol=1e-9)


def small_problem(seed=0, n_q=60, m=15, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_q * m, d)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n_q * m) > 1.0).astype(np.float32)
    return X, y, np.full(n_q, m)


SCHEMA = FeatureSchema(("a_score", "a_rank", "b_rank", "x"))


def test_save_load_gives_identical_scores_and_contributions_sum_to_scores(tmp_path):
    X, y, groups = small_problem()
    r = LambdaMARTRanker(SCHEMA, {"n_estimators": 30, "min_data_in_leaf": 5}).fit(X, y, groups)
    r.save(tmp_path / "r")
    back = LambdaMARTRanker.load(tmp_path / "r", expected_schema=SCHEMA)
    np.testing.assert_array_equal(back.score(X), r.score(X))
    assert back.version_ == r.version_
    contrib = r.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), r.score(X), rtol=1e-6, atol=1e-9)


def test_predict_rows_equals_booster_predict_bit_for_bit():
    """The direct C call behind ``score`` returns Booster.predict's numbers: float32 and float64
    rows, NaN cells, a strided view, every tree or the first few."""
    X, y, groups = small_problem()
    r = LambdaMARTRanker(SCHEMA, {"n_estimators": 30, "min_data_in_leaf": 5}).fit(X, y, groups)
    X32 = np.asarray(X, dtype=np.float32).copy()
    X32[::7, 1] = np.nan
    for rows in (X32, X32.astype(np.float64), X32[::2], np.asfortranarray(X32), X32[:1]):
        for n_iter in (0, 5, 30):
            want = r.booster_.predict(rows, num_iteration=n_iter or None, num_threads=1)
            got = predict_rows(r.booster_, rows, n_iter, 1)
            assert got.dtype == np.float64 and got.shape == (rows.shape[0],)
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(predict_rows(r.booster_, X32, 5, 1), predict_rows(r.booster_, X32, 30, 1))


def test_untrained_prior_is_rrf_and_its_contributions_are_per_strategy():
    r = LambdaMARTRanker(SCHEMA)
    X = np.array([[1.0, 1.0, np.nan, 0.0], [np.nan, np.nan, 2.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(r.score(X), [1 / 61, 1 / 62])
    c = r.contributions(X)
    np.testing.assert_allclose(c[0], [0, 1 / 61, 0, 0, 0])
    np.testing.assert_allclose(c[1], [0, 0, 1 / 62, 0, 0])


def test_load_refuses_a_model_whose_schema_differs_naming_the_features(tmp_path):
    X, y, groups = small_problem()
    LambdaMARTRanker(SCHEMA, {"n_estimators": 5}).fit(X, y, groups).save(tmp_path / "r")
    engine_schema = FeatureSchema(("a_score", "a_rank", "memory_ctr", "x"))
    with pytest.raises(PersistenceError, match=r"missing: \['memory_ctr'\]; unexpected: \['b_rank'\]"):
        LambdaMARTRanker.load(tmp_path / "r", expected_schema=engine_schema)
    reordered = FeatureSchema(("a_rank", "a_score", "b_rank", "x"))
    with pytest.raises(PersistenceError, match="order differs: True"):
        LambdaMARTRanker.load(tmp_path / "r", expected_schema=reordered)


def test_fit_rejects_rows_without_clicks_and_wrong_widths():
    X, y, groups = small_problem()
    r = LambdaMARTRanker(SCHEMA)
    with pytest.raises(DataError, match="contain no clicks"):
        r.fit(X, np.zeros_like(y), groups)
    with pytest.raises(DataError, match=r"expects 4 features, got shape \(900, 3\)"):
        r.fit(X[:, :3], y, groups)
    with pytest.raises(DataError, match="group sizes sum to 899"):
        r.fit(X, y, np.r_[groups[:-1], 14])


def test_bad_params_are_refused():
    from ltrr.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="debias"):
        LambdaMARTRanker(SCHEMA, {"debias": "magic"})


FUSION_SCHEMA = FeatureSchema(("a_rank", "a_rr", "b_rank", "b_rr", "fused_rrf", "x"))


def fusion_problem(seed=0, n_q=80, m=12, inverted=False):
    """Two strategies' ranks; clicks follow strategy a's order (or its reverse), plus noise."""
    rng = np.random.default_rng(seed)
    a = np.tile(np.arange(1, m + 1, dtype=np.float64), n_q)
    b = np.concatenate([rng.permutation(m) + 1.0 for _ in range(n_q)])
    x = rng.normal(size=n_q * m)
    rr_a, rr_b = 1 / (60 + a), 1 / (60 + b)
    X = np.column_stack([a, rr_a, b, rr_b, rr_a + rr_b, x]).astype(np.float32)
    signal = -a if not inverted else a
    y = (signal + 4 * rng.normal(size=a.size) > np.quantile(signal, 0.8)).astype(np.float32)
    return X, y, np.full(n_q, m)


def test_boosting_from_the_fusion_prior_adds_the_prior_back_when_scoring(tmp_path):
    X, y, groups = fusion_problem()
    params = {"n_estimators": 10, "min_data_in_leaf": 5, "prior_weight": 2.0, "early_stopping_rounds": 0}
    r = LambdaMARTRanker(FUSION_SCHEMA, params).fit(X, y, groups)
    prior = np.nansum(1 / (60 + X[:, [0, 2]].astype(np.float64)), axis=1)
    np.testing.assert_allclose(r.prior(X), prior)
    trees = r.booster_.predict(X, num_threads=1)
    np.testing.assert_allclose(r.score(X), 2.0 * 60 * prior + trees, rtol=0, atol=1e-12)
    # the same model trained by LightGBM from the same init_score
    ref = lgb.train(r.lgb_params(), lgb.Dataset(X, y, group=groups, init_score=2.0 * 60 * prior), num_boost_round=10)
    np.testing.assert_allclose(trees, ref.predict(X, num_threads=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.contributions(X).sum(axis=1), r.score(X), rtol=1e-9, atol=1e-9)
    r.save(tmp_path / "r")
    np.testing.assert_array_equal(LambdaMARTRanker.load(tmp_path / "r").score(X), r.score(X))
    # dropping the trees serves the prior again
    r.keep_prior()
    assert not r.is_fitted and r.version_ == "prior-rrf"
    np.testing.assert_allclose(r.score(X), prior)


def test_monotone_constraints_keep_a_better_rank_from_scoring_lower():
    """Clicks that contradict the strategies' order cannot invert it under the constraints."""
    X, y, groups = fusion_problem(inverted=True)
    base = {"n_estimators": 40, "min_data_in_leaf": 5, "prior_weight": 0.0, "monotone": False}
    grid = np.repeat(X[:1], 12, axis=0)
    a = np.arange(1, 13, dtype=np.float32)
    grid[:, 0], grid[:, 1] = a, 1 / (60 + a)
    grid[:, 4] = grid[:, 1] + grid[:, 3]
    free = LambdaMARTRanker(FUSION_SCHEMA, base).fit(X, y, groups).score(grid)
    assert free[-1] > free[0]  # unconstrained, the noisy clicks invert strategy a
    for method in ("basic", "intermediate", "advanced"):
        held = LambdaMARTRanker(FUSION_SCHEMA, {**base, "monotone": True, "monotone_method": method})
        s = held.fit(X, y, groups).score(grid)
        assert np.all(np.diff(s) <= 1e-12), method
    # the defaults: monotone, from the fusion prior
    s = LambdaMARTRanker(FUSION_SCHEMA, {"n_estimators": 40, "min_data_in_leaf": 5}).fit(X, y, groups).score(grid)
    assert np.all(np.diff(s) < 0)


MEMORY_SCHEMA = FeatureSchema(("bm25_score", "bm25_rank", "bm25_found", "memory_score", "memory_rank", "memory_found",
                               "bm25_rr", "memory_rr", "fused_rrf", "memory_ctr", "memory_impressions",
                               "memory_clicks", "x"))


def memory_problem(seed=0, n_q=80, m=12):
    """Clicks that follow the click memory's raw counts exactly, a CTR column that says nothing,
    and a content feature ``x`` that predicts the clicks only partly."""
    rng = np.random.default_rng(seed)
    n = n_q * m
    X = np.full((n, len(MEMORY_SCHEMA.names)), np.nan, dtype=np.float32)
    rank = np.tile(np.arange(1, m + 1), n_q).astype(np.float32)
    X[:, 0], X[:, 1], X[:, 2], X[:, 6], X[:, 7] = 1.0 / rank, rank, 1.0, 1.0 / (60 + rank), 0.0
    X[:, 5], X[:, 8] = 0.0, X[:, 6]
    clicks = rng.poisson(1.0, n).astype(np.float32)
    X[:, 9], X[:, 10], X[:, 11] = 0.05, 5.0 - clicks, clicks
    X[:, 12] = clicks + rng.normal(0, 1.5, n)
    y = (clicks >= 2).astype(np.float32)
    return X, y, np.full(n_q, m)


def test_the_click_memorys_exposure_columns_are_withheld_from_the_trees_by_default():
    from ltrr.features import click_exposure_columns

    withheld_names = ["memory_score", "memory_rank", "memory_found", "memory_rr", "memory_impressions", "memory_clicks"]
    assert [MEMORY_SCHEMA.names[i] for i in click_exposure_columns(MEMORY_SCHEMA)] == withheld_names
    X, y, groups = memory_problem()
    params = {"n_estimators": 20, "min_data_in_leaf": 5}
    withheld = LambdaMARTRanker(MEMORY_SCHEMA, params).fit(X, y, groups)
    seen = LambdaMARTRanker(MEMORY_SCHEMA, {**params, "memory_in_trees": True}).fit(X, y, groups)
    used = dict(zip(MEMORY_SCHEMA.names, withheld.booster_.feature_importance("split"), strict=True))
    assert used["x"] > 0 and all(used[n] == 0 for n in withheld_names)
    seen_used = dict(zip(MEMORY_SCHEMA.names, seen.booster_.feature_importance("split"), strict=True))
    assert seen_used["memory_impressions"] + seen_used["memory_clicks"] > 0
    # changing the memory's counts moves the scores of the ranker that sees them only
    other = X.copy()
    other[:, 10:12] = other[::-1, 10:12]
    np.testing.assert_array_equal(withheld.score(other), withheld.score(X))
    assert not np.allclose(seen.score(other), seen.score(X))
    # the memory's rank still counts in the fusion prior the trees start from
    np.testing.assert_allclose(withheld.prior(X), np.nansum(1 / (60 + X[:, [1, 4]].astype(np.float64)), axis=1))
    np.testing.assert_allclose(withheld.contributions(X).sum(axis=1), withheld.score(X), rtol=1e-9, atol=1e-9)


def test_scores_skip_masking_only_when_no_tree_reads_a_withheld_column():
    """``score`` predicts on the rows as given when no tree splits on a withheld column (then the
    masked copy changes nothing) and masks them otherwise: the same numbers either way."""
    X, y, groups = memory_problem()
    params = {"n_estimators": 20, "min_data_in_leaf": 5}
    withheld = LambdaMARTRanker(MEMORY_SCHEMA, params).fit(X, y, groups)
    seen = LambdaMARTRanker(MEMORY_SCHEMA, {**params, "memory_in_trees": True}).fit(X, y, groups)
    noisy = X.copy()
    cols = withheld._withheld
    noisy[:, cols] = np.random.default_rng(1).normal(size=(X.shape[0], cols.size))

    def masked_score(r, rows):
        return r.init_score(rows) + r.booster_.predict(r.tree_inputs(rows), num_iteration=r.best_iteration_,
                                                       num_threads=1)

    assert withheld._trees_ignore_withheld()
    np.testing.assert_array_equal(withheld.score(noisy), masked_score(withheld, noisy))
    # trees that do split on the memory's columns, served by a ranker that withholds them
    # (a model trained with memory_in_trees): the columns are masked, as before
    mixed = LambdaMARTRanker(MEMORY_SCHEMA, params)
    mixed.booster_, mixed.best_iteration_ = seen.booster_, seen.best_iteration_
    assert not mixed._trees_ignore_withheld()
    np.testing.assert_array_equal(mixed.score(noisy), masked_score(mixed, noisy))
    assert not np.array_equal(mixed.score(noisy), seen.score(noisy))
