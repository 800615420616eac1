"""Training from the event log: logged features only, debiasing, errors, CLI, explanations."""

import dataclasses
import json

import lightgbm as lgb
import numpy as np
import pytest
from click.testing import CliRunner

from ltrr.catalog import Catalog
from ltrr.cli import main
from ltrr.config import parse_config
from ltrr.engine import Engine
from ltrr.errors import DataError
from ltrr.features import FeatureBuilder
from ltrr.ranking.training import MissingFeatureWarning, fit_from_clicks, training_set
from ltrr.types import Feedback

FIELDS = ["title", "directors", "cast", "genres", "year"]


def make_engine(catalog_path, catalog, events_path="", retrain_every=0, **ranker):
    cfg = parse_config({
        "seed": 1,
        "catalog": {"path": str(catalog_path), "text_fields": FIELDS, "limit": 800},
        "strategies": [{"name": "bm25", "depths": [0, 30]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "fixed", "budget": 40},
        "ranker": {"retrain_every": retrain_every,
                   "params": {"n_estimators": 30, "min_data_in_leaf": 5, **ranker}},
        "store": {"events_path": str(events_path)},
        # every logged query trains the ranker (no share held out for the incumbent's comparison)
        "incumbent": {"counterfactual": False},
    }, "test")
    return Engine.from_config(cfg, catalog=catalog)


def run(engine, catalog, n=80, seed=0, click=True):
    """Title queries; the user clicks the film named when it is on the page."""
    rng = np.random.default_rng(seed)
    for i, row in enumerate(rng.integers(0, 300, n)):
        d = engine.search(catalog.titles[row], ts=1000.0 + i)
        target = catalog.ids[row]
        items = [target] if click and target in d.page_ids else []
        engine.feedback(Feedback.clicks(d.event_id, items, ts=1000.5 + i))


@pytest.fixture()
def trained_log(movie_catalog_path, small_movies):
    e = make_engine(movie_catalog_path, small_movies)
    run(e, small_movies)
    yield e
    e.close()


def test_training_uses_exactly_the_logged_features(trained_log, small_movies):
    engine = trained_log
    schema = engine.features.schema
    pairs = list(engine.events.training_events(10_000))
    data = training_set(pairs, schema)
    logged = np.concatenate([ev.features[ev.page_idx] for ev, _ in pairs])
    np.testing.assert_array_equal(data.X, logged)
    # the world moved on after logging: the click memory learned, so features recomputed now differ
    ev = pairs[0][0]
    again = engine.features.build(ev.query, ev.candidates)
    imp = schema.index("memory_impressions")
    assert not np.array_equal(again[:, imp], ev.features[:, imp])
    # ...and so would a changed catalog (new popularity) behind a new feature builder; training
    # through the engine still reads the logged rows
    changed = Catalog(small_movies.ids, small_movies.titles, small_movies.texts, small_movies.fields,
                      small_movies.popularity * 10.0 + 5.0)
    engine.features = FeatureBuilder(changed, engine.strategies, FIELDS)
    assert engine.features.schema == schema
    pop = schema.index("log_popularity")
    assert not np.allclose(engine.features.build(ev.query, ev.candidates)[:, pop], ev.features[:, pop])
    data2 = training_set(engine.events.training_events(10_000), engine.features.schema)
    np.testing.assert_array_equal(data2.X, logged)
    assert engine.learner.retrain_ranker()
    assert engine.learner.last_training_report["rows"] == logged.shape[0]
    # the model trained through our path equals LightGBM trained on the logged arrays directly
    ranker = engine.ranker.__class__(schema, {"n_estimators": 20, "min_data_in_leaf": 5, "debias": "none",
                                              "early_stopping_rounds": 0})
    fit_from_clicks(ranker, data)
    init = ranker.init_score(logged)  # the fusion prior the boosting starts from
    ref = lgb.train(ranker.lgb_params(), lgb.Dataset(logged, data.y, group=data.groups, init_score=init),
                    num_boost_round=20)
    np.testing.assert_allclose(ranker.score(logged), init + ref.predict(logged, num_threads=1), atol=1e-12)


def test_position_debiasing_passes_display_positions_and_ipw_reports_examination(trained_log):
    data = training_set(trained_log.events.training_events(10_000), trained_log.features.schema)
    assert data.positions.max() < 10 and (data.positions[: data.groups[0]] == np.arange(data.groups[0])).all()
    r = trained_log.ranker.__class__(trained_log.features.schema,
                                     {"n_estimators": 20, "min_data_in_leaf": 5, "debias": "ipw",
                                      "early_stopping_rounds": 20})
    report = fit_from_clicks(r, data)
    assert report["examination"][0] == 1.0 and report["valid_queries"] > 0
    assert 1 <= report["best_iteration"] <= 20


def test_no_clicks_is_a_clear_error(movie_catalog_path, small_movies):
    e = make_engine(movie_catalog_path, small_movies)
    run(e, small_movies, n=15, click=False)
    data = training_set(e.events.training_events(1000), e.features.schema)
    with pytest.raises(DataError, match="the training log has no decision with a click"):
        fit_from_clicks(e.ranker, data)
    e.close()


def test_nan_features_are_missing_and_counted_in_a_warning(trained_log):
    schema = trained_log.features.schema
    data = training_set(trained_log.events.training_events(10_000), schema)
    data.X[:3, schema.index("log_popularity")] = np.nan
    r = trained_log.ranker.__class__(schema, {"n_estimators": 5, "min_data_in_leaf": 5})
    with pytest.warns(MissingFeatureWarning, match=r"3 NaN feature values treated as missing: log_popularity=3"):
        report = fit_from_clicks(r, data)
    assert report["nan_features"] == {"log_popularity": 3}


def test_engine_retrains_periodically_and_logs_model_and_schema_versions(movie_catalog_path, small_movies):
    e = make_engine(movie_catalog_path, small_movies, retrain_every=30)
    run(e, small_movies, n=70)
    assert e.ranker.version_.startswith("lgbm-")
    d = e.search(small_movies.titles[3])
    assert d.model_versions["ranker"] == e.ranker.version_
    assert d.model_versions["features"] == e.features.schema.fingerprint
    assert e.events.get(d.event_id).model_versions["ranker"] == e.ranker.version_
    e.close()


def test_explain_gives_provenance_and_contributions_that_sum_to_the_score(trained_log, small_movies):
    e = trained_log
    d = e.search(small_movies.titles[5])
    prior = e.explain(d)
    assert prior[0]["model"] == "rrf-prior" and prior[0]["provenance"]["bm25"]["rank"] >= 1
    for res in prior:
        assert sum(res["contributions"].values()) == pytest.approx(res["score"], rel=1e-5)
        assert set(res["contributions"]) <= {"bm25_rank", "memory_rank"}
    assert e.learner.retrain_ranker()
    d = e.search(small_movies.titles[5])
    out = e.explain(d)
    assert [r["id"] for r in out] == list(d.page_ids)
    for res in out:
        assert res["model"] == "lightgbm-pred_contrib"
        assert sum(res["contributions"].values()) + res["bias"] == pytest.approx(res["score"], abs=1e-4)
    assert len(e.explain(d, top=2)[0]["contributions"]) <= 2


def test_cli_train_ranker_and_explain(movie_catalog_path, small_movies, tmp_path):
    log = tmp_path / "events.sqlite"
    e = make_engine(movie_catalog_path, small_movies, events_path=log)
    run(e, small_movies)
    e.save(tmp_path / "engine")
    e.close()
    runner = CliRunner()
    res = runner.invoke(main, ["train-ranker", "--engine", str(tmp_path / "engine"), "--log", str(log),
                               "--out", str(tmp_path / "ranker"), "--no-progress", "--debias", "position"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert report["debias"] == "position" and report["clicks"] > 10
    assert (tmp_path / "ranker" / "model.txt").exists()
    # the log alone: it records the names of the features it stores
    res = runner.invoke(main, ["train-ranker", "--log", str(log), "--out", str(tmp_path / "r2"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["schema"] == report["schema"]
    empty = make_engine(movie_catalog_path, small_movies, events_path=tmp_path / "empty.sqlite")
    run(empty, small_movies, n=12, click=False)
    empty.close()
    for args in (["--engine", str(tmp_path / "engine")], []):
        res = runner.invoke(main, ["train-ranker", *args, "--log", str(tmp_path / "empty.sqlite"),
                                   "--out", str(tmp_path / "r3")])
        assert res.exit_code == 2 and "the training log has no decision with a click" in res.output
    res = runner.invoke(main, ["explain", "--engine", str(tmp_path / "engine"), small_movies.titles[5], "--top", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["results"] and out["results"][0]["provenance"] and len(out["results"][0]["contributions"]) <= 3


def test_subset_takes_whole_queries_in_the_given_order():
    from ltrr.ranking.training import ClickTrainingSet

    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    data = ClickTrainingSet(X, np.arange(6, dtype=np.float32), np.array([2, 3, 1]), np.array([0, 1, 0, 1, 2, 0]),
                            np.arange(6), ("a", "b", "c"))
    sub = data.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.y, [5, 0, 1])
    np.testing.assert_array_equal(sub.groups, [1, 2])
    np.testing.assert_array_equal(sub.positions, [0, 0, 1])
    assert sub.events == ("c", "a")


def test_a_fit_that_does_not_beat_the_prior_on_held_out_clicks_keeps_the_prior(trained_log):
    schema = trained_log.features.schema
    data = training_set(trained_log.events.training_events(10_000), schema)
    params = {"n_estimators": 20, "min_data_in_leaf": 5, "valid_fraction": 0.3}
    # clicks on random rows: the model is kept exactly when it wins on the held-out queries
    rng = np.random.default_rng(3)
    noise = dataclasses.replace(data, y=(rng.random(data.y.size) < 0.1).astype(np.float32))
    r = trained_log.ranker.__class__(schema, {**params, "min_valid_gain": 0.0})
    report = fit_from_clicks(r, noise)
    v = report["valid_click_ndcg@10"]
    assert bool(report.get("kept_prior")) == (not v["model"] > v["prior"])
    if report.get("kept_prior"):
        assert not r.is_fitted and report["model_version"] == "prior-rrf"
    # the title clicks of the log are learnable: with an impossible margin the prior stays,
    # without a margin the model is taken whatever the held-out numbers say
    strict = trained_log.ranker.__class__(schema, {**params, "min_valid_gain": 1.0})
    assert fit_from_clicks(strict, data)["kept_prior"] and not strict.is_fitted
    loose = trained_log.ranker.__class__(schema, {**params, "min_valid_gain": None})
    assert "kept_prior" not in fit_from_clicks(loose, data) and loose.is_fitted


def test_click_retrain_schedule_grows_to_its_interval_and_round_trips():
    from ltrr.ranking.training import ClickRetrainSchedule

    s = ClickRetrainSchedule(first=50, every=300, growth=2.0)
    due_at = []
    for clicks in range(1, 1201):
        if s.observe(1):
            due_at.append(clicks)
            s.trained()
    assert due_at == [50, 150, 350, 650, 950]  # intervals 50, 100, 200, 300, 300
    s.observe(7)
    assert ClickRetrainSchedule.from_dict(s.to_dict()) == s
    flat = ClickRetrainSchedule(first=40, every=500, growth=1.0)
    assert flat.observe(39) is False and flat.observe(1) is True
    flat.trained()
    assert flat.interval == 40
    with pytest.raises(ValueError, match=r"The 'first' parameter of ClickRetrainSchedule must be an int in \[1, inf\). Got 0 instead."):
        ClickRetrainSchedule(first=0)
    with pytest.raises(ValueError, match=r"'growth' parameter .* Got 0.5 instead."):
        ClickRetrainSchedule(growth=0.5)


def test_training_builds_a_new_ranker_and_leaves_the_serving_one_untouched(trained_log):
    """Models are swapped whole: ``trained`` fits a fresh object, so a search scoring with the
    serving ranker meanwhile never sees new trees with an old iteration count or version."""
    schema = trained_log.features.schema
    data = training_set(trained_log.events.training_events(10_000), schema)
    serving = trained_log.ranker.__class__(schema, {"n_estimators": 10, "min_data_in_leaf": 5,
                                                    "min_valid_gain": None})
    before = (serving.booster_, serving.best_iteration_, serving.version_)
    X = data.X[: 20]
    scores = serving.score(X)
    fresh, report = serving.trained(data)
    assert fresh is not serving and fresh.is_fitted
    assert (serving.booster_, serving.best_iteration_, serving.version_) == before
    np.testing.assert_array_equal(serving.score(X), scores)
    assert report["model_version"] == fresh.version_ != serving.version_
