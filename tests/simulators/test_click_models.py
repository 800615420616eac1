"""Click models: exact probabilities vs Monte-Carlo, hand-computed cases, presets, EM fit, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr import registry
from ltrr.errors import ConfigError
from simulators.click_models import (
    PRESETS,
    CascadeClickModel,
    DynamicBayesianNetworkClickModel,
    PositionBasedClickModel,
    fit_pbm,
)

MODELS = (PositionBasedClickModel, CascadeClickModel, DynamicBayesianNetworkClickModel)

# four pages of width 8: mixed grades, padding (-1 and NaN) on short pages, all-relevant, all-zero
PAGES = np.array(
    [
        [4, 0, 2, 1, 3, 0, 4, 1],
        [1, 3, 0, 4, -1, -1, -1, -1],
        [4, 4, 4, 4, 4, 4, 4, 4],
        [0, 0, 2, np.nan, 1, 0, np.nan, 3],
    ],
    dtype=float,
)


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_click_probabilities_match_monte_carlo(model_cls, preset):
    model = model_cls(preset)
    reps = 25_000  # 4 pages x 25k = 100k simulated sessions
    pages = np.repeat(PAGES, reps, axis=0)
    clicks = model.simulate(pages, np.random.default_rng(12345))
    freq = clicks.reshape(len(PAGES), reps, -1).mean(axis=1)
    probs = model.click_probabilities(PAGES)
    se = np.sqrt(probs * (1 - probs) / reps)
    assert np.all(np.abs(freq - probs) <= 4 * se + 1e-12), np.abs(freq - probs) / np.maximum(se, 1e-12)
    # padding is never clicked
    assert not clicks.reshape(len(PAGES), reps, -1)[1, :, 4:].any()
    assert np.all(probs[1, 4:] == 0) and probs[3, 3] == 0 and probs[3, 6] == 0


def test_pbm_probabilities_by_hand():
    model = PositionBasedClickModel("informational", eta=2.0)
    got = model.click_probabilities(np.array([[1, 4, 0], [2, -1, 3]]))
    exam = np.array([1.0, 1 / 4, 1 / 9])
    np.testing.assert_allclose(got, [exam * [0.6, 0.9, 0.4], exam * [0.7, 0.0, 0.8]], atol=1e-15)
    explicit = PositionBasedClickModel("perfect", examination=(1.0, 0.5, 0.25))
    np.testing.assert_allclose(explicit.click_probabilities([[4, 4, 3]]), [[1.0, 0.5, 0.2]], atol=1e-15)


def test_cascade_and_dbn_probabilities_by_hand():
    page = np.array([[4, 2, 1]])
    cascade = CascadeClickModel("navigational")
    e2 = 1 - 0.95 * 0.9
    e3 = e2 * (1 - 0.5 * 0.5)
    np.testing.assert_allclose(cascade.click_probabilities(page), [[0.95, e2 * 0.5, e3 * 0.3]], atol=1e-15)
    dbn = DynamicBayesianNetworkClickModel("navigational", gamma=0.8)
    np.testing.assert_allclose(
        dbn.click_probabilities(page), [[0.95, e2 * 0.8 * 0.5, e3 * 0.8**2 * 0.3]], atol=1e-15
    )


def test_dbn_with_gamma_one_is_the_cascade():
    for preset in PRESETS:
        np.testing.assert_allclose(
            DynamicBayesianNetworkClickModel(preset, gamma=1.0).click_probabilities(PAGES),
            CascadeClickModel(preset).click_probabilities(PAGES),
            atol=1e-15,
        )


def test_padding_does_not_stop_the_cascade():
    model = CascadeClickModel("navigational")
    with_pad = model.click_probabilities([[4, -1, 3, np.nan, 2]])
    without = model.click_probabilities([[4, 3, 2]])
    np.testing.assert_allclose(with_pad[0, [0, 2, 4]], without[0], atol=1e-15)


def test_grades_clip_to_0_4_and_interpolate():
    model = PositionBasedClickModel("perfect", eta=0.0)
    got = model.click_probabilities([[7, 4, -3, 0, 2.5]])
    np.testing.assert_allclose(got, [[1.0, 1.0, 0.0, 0.0, 0.6]], atol=1e-15)


@pytest.mark.parametrize("model_cls", MODELS)
def test_perfect_preset_never_clicks_grade_zero(model_cls):
    rng = np.random.default_rng(3)
    pages = rng.integers(0, 5, size=(20_000, 10))
    clicks = model_cls("perfect").simulate(pages, rng)
    assert clicks.any()
    assert not clicks[pages == 0].any()


def test_cascade_with_stop_one_clicks_at_most_once():
    model = CascadeClickModel("informational", stop=(1.0,) * 5)
    clicks = model.simulate(np.random.default_rng(4).integers(0, 5, size=(20_000, 10)), np.random.default_rng(5))
    per_session = clicks.sum(axis=1)
    assert per_session.max() == 1
    assert per_session.mean() > 0.9  # the 0.4 floor on attraction makes a click nearly certain
    # whereas without forced stopping sessions do click several times
    assert CascadeClickModel("informational").simulate(np.full((100, 10), 2), np.random.default_rng(5)).sum(axis=1).max() > 1


@pytest.mark.parametrize("model_cls", MODELS)
def test_same_seed_same_clicks(model_cls):
    model = model_cls("informational")
    pages = np.random.default_rng(0).integers(0, 5, size=(500, 10))
    a = model.simulate(pages, np.random.default_rng(42))
    b = model.simulate(pages, np.random.default_rng(42))
    c = model.simulate(pages, np.random.default_rng(43))
    assert a.dtype == bool and a.shape == pages.shape
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_registry_names_resolve():
    assert registry.get("click_model", "pbm") is PositionBasedClickModel
    assert registry.get("click_model", "cascade") is CascadeClickModel
    assert registry.get("click_model", "dbn") is DynamicBayesianNetworkClickModel


def test_params_are_frozen_and_overrides_apply():
    model = DynamicBayesianNetworkClickModel("perfect", gamma=0.5)
    assert model.params.attraction == PRESETS["perfect"][0]
    assert model.params.satisfaction == PRESETS["perfect"][1]
    assert model.params.gamma == 0.5
    with pytest.raises(Exception, match="frozen"):
        model.params.gamma = 0.1


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: PositionBasedClickModel(attraction=(0, 0.2, 1.5, 0.8, 1)),
         r"click model 'pbm': the 'attraction.*2.*' parameter .*less than or equal to 1. Got 1.5 instead"),
        (lambda: CascadeClickModel(stop=(0, 0, -0.1, 0, 0)),
         r"click model 'cascade': the 'stop.*2.*' parameter .*greater than or equal to 0. Got -0.1 instead"),
        (lambda: DynamicBayesianNetworkClickModel(gamma=1.2),
         r"click model 'dbn': the 'gamma' parameter .*less than or equal to 1. Got 1.2 instead"),
        (lambda: PositionBasedClickModel(attraction=(0, 0.2, 0.8, 1)),
         r"'attraction' parameter tuple should have at least 5 items"),
        (lambda: PositionBasedClickModel(eta=-1),
         r"the 'eta' parameter .*greater than or equal to 0. Got -1 instead"),
        (lambda: CascadeClickModel("weird"),
         r"click model 'cascade': unknown preset 'weird'; presets: informational, navigational, perfect"),
        (lambda: DynamicBayesianNetworkClickModel(eta=1.0),
         r"click model 'dbn': unknown key 'eta'; allowed keys: attraction, gamma, satisfaction"),
    ],
)
def test_bad_params(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_bad_pages_and_rng():
    model = CascadeClickModel()
    with pytest.raises(ValueError, match=r"page_grades must be a 2-D array \[n_queries, k\]; got shape \(3,\)"):
        model.click_probabilities([1, 2, 3])
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator.*got int"):
        model.simulate([[1, 2]], 7)
    short = PositionBasedClickModel(examination=(1.0, 0.5))
    with pytest.raises(ValueError, match="the examination vector has 2 ranks but the page has 3"):
        short.click_probabilities([[1, 2, 3]])


def test_fit_pbm_recovers_examination():
    rng = np.random.default_rng(2024)
    n_keys, k, n_pages = 200, 10, 20_000  # 200k impressions
    grades = rng.integers(0, 5, n_keys)
    pages = np.argsort(rng.random((n_pages, n_keys)), axis=1)[:, :k]  # random placements
    model = PositionBasedClickModel("informational", eta=1.0)
    clicks = model.simulate(grades[pages], rng)
    positions = np.tile(np.arange(k), n_pages)
    exam, attr = fit_pbm(positions, pages.ravel(), clicks.ravel(), n_iter=100)
    assert exam.shape == (k,) and attr.shape == (n_keys,)
    true_exam = model.examination(k)
    assert np.max(np.abs(exam / exam[0] - true_exam)) < 0.03
    # attraction is identified up to the scale of examination
    true_attr = np.asarray(model.params.attraction)[grades]
    assert np.mean(np.abs(attr * exam[0] - true_attr)) < 0.04
    # a model that ignores position (exam = 1) would be far off: the check has teeth
    assert np.max(np.abs(1.0 - true_exam)) > 0.5


def test_fit_pbm_input_errors():
    with pytest.raises(ValueError, match=r"equal length; got shapes \(3,\), \(2,\), \(3,\)"):
        fit_pbm([0, 1, 2], [0, 1], [1, 0, 1])
    with pytest.raises(ValueError, match="positions must be non-negative integers; got dtype int64, min -1"):
        fit_pbm(np.array([0, -1]), np.array([0, 1]), np.array([True, False]))
    with pytest.raises(ValueError, match="clicks must be booleans or 0/1"):
        fit_pbm([0, 1], [0, 1], [2, 0])
    with pytest.raises(ValueError, match="'n_iter' parameter of fit_pbm must be an int >= 1. Got 0 instead."):
        fit_pbm([0, 1], [0, 1], [1, 0], n_iter=0)
