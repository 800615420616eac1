"""Every registered strategy, a plug-in registered here and the example plug-in installed by its
entry point (tests/plugins/example_trigram, installed by tests/conftest.py) honours the candidate-generator
contract: bad ``k`` refused with one message, blank and non-ASCII queries handled, a batch of N
answered as N batches of 1, rows sorted with unique ids, ``k`` beyond the corpus padded, seeded
fits deterministic, save -> load identical, and learned state (clicks observed, a retrained model)
kept through save -> load, which is what serving snapshots are made of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltrr import registry
from ltrr.catalog import Catalog
from ltrr.contracts.strategy import CandidateGenerator, LearnsFromFeedback, Retrainable
from ltrr.errors import ConfigError, NotFittedError
from ltrr.params import Params
from ltrr.types import PAD_ID, QueryBatch, RetrievalResult


class TitlePrefixParams(Params):
    min_chars: int = 2


class TitlePrefix(CandidateGenerator):
    """A plug-in strategy defined outside the packages: titles starting with the query."""

    type_name = "conformance_title_prefix"
    Params = TitlePrefixParams

    def _fit(self, catalog: Catalog) -> None:
        self.titles_ = [t.lower() for t in catalog.titles]

    def _retrieve(self, queries: QueryBatch, k: int) -> RetrievalResult:
        out = RetrievalResult.empty(len(queries), k)
        for qi, text in enumerate(queries.texts):
            q = text.strip().lower()
            if len(q) < self.params.min_chars:
                continue
            rows = [i for i, t in enumerate(self.titles_) if t.startswith(q)][:k]
            out.ids[qi, : len(rows)] = rows
            out.scores[qi, : len(rows)] = 1.0
        return out

    def _save(self, directory: Path) -> None:
        (directory / "titles.txt").write_text("\n".join(self.titles_), encoding="utf-8")

    def _load(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.titles_ = (directory / "titles.txt").read_text(encoding="utf-8").split("\n")


PLUGIN = "conformance_title_prefix"
#: the example package's entry point ([project.entry-points."ltrr.strategies"] trigram = ...)
ENTRY_POINT_PLUGIN = "trigram"
registry.register("strategy", PLUGIN, TitlePrefix)

#: small parameters per strategy so the suite stays fast (defaults otherwise)
PARAMS: dict[str, dict[str, Any]] = {
    "bm25": {"text_fields": ["title", "directors", "genres"]},
    "dense": {"text_fields": ["title", "genres"]},
    "xmr": {"text_fields": ["title"], "seed": 0},
}
NAMES = registry.names("strategy")
QUERIES = ["the godfather", "love", "war 1990", "alien", "drama"]
ODD = ["", "   ", "Amélie", "東京物語", "😀 ?!", "a" * 300]


@pytest.fixture(scope="module")
def catalog(small_movies) -> Catalog:
    return Catalog(small_movies.ids[:300], small_movies.titles[:300], small_movies.texts[:300],
                   small_movies.fields[:300], small_movies.popularity[:300])


_FITTED: dict[str, CandidateGenerator] = {}


def make(name: str, catalog: Catalog) -> CandidateGenerator:
    return registry.get("strategy", name)(PARAMS.get(name), name=name).fit(catalog)


@pytest.fixture()
def fitted(request, catalog) -> CandidateGenerator:
    """A fitted instance per strategy, shared by the read-only tests."""
    name = request.param
    if name not in _FITTED:
        _FITTED[name] = make(name, catalog)
    return _FITTED[name]


def _same(a: RetrievalResult, b: RetrievalResult) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7)


def test_the_suite_covers_every_registered_strategy_and_the_plugins():
    assert PLUGIN in NAMES
    assert ENTRY_POINT_PLUGIN in NAMES
    assert registry.provenance("strategy", ENTRY_POINT_PLUGIN).source == "entry_point"
    assert {"bm25", "memory", "dense", "xmr", "structured", "explore"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_use_before_fit_is_one_clear_error_or_an_answer(name, tmp_path):
    """retrieve and save before fit/load raise NotFittedError naming the strategy, or (a
    strategy declaring ``requires_fit = False``, the click memory) answer: never an
    AttributeError from an index that is not there."""
    s = registry.get("strategy", name)(PARAMS.get(name), name=name)
    if not s.requires_fit:
        assert s.retrieve(["love"], 5).ids.shape == (1, 5)
        s.save(tmp_path / "s")
        return
    with pytest.raises(NotFittedError, match=rf"^{name} is not fitted: call fit\(catalog\) or "
                                             rf"load\(directory\) before retrieve$"):
        s.retrieve(["love"], 5)
    with pytest.raises(NotFittedError, match=rf"^{name} is not fitted: .* before save$"):
        s.save(tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("fitted", NAMES, indirect=True)
@pytest.mark.parametrize("k", [-1, 2.5, True, "3"])
def test_bad_k_is_refused_with_the_offending_value(fitted, k):
    with pytest.raises(ConfigError, match=rf"The 'k' parameter of {fitted.name} must be an int in \[0, inf\)\. "
                                          rf"Got {k!r} instead\."):
        fitted.retrieve(["love"], k)


@pytest.mark.parametrize("fitted", NAMES, indirect=True)
def test_rows_are_sorted_unique_in_range_and_padded(fitted, catalog):
    res = fitted.retrieve(QUERIES + ODD, 20)
    assert res.ids.shape == res.scores.shape == (len(QUERIES) + len(ODD), 20)
    assert res.ids.dtype == np.int64 and res.scores.dtype == np.float32
    for ids, scores in zip(res.ids, res.scores, strict=True):
        real = ids != PAD_ID
        assert not (~real[:-1] & real[1:]).any(), "padding comes after the results"
        assert np.all(ids[real] < len(catalog)) and np.all(ids[real] >= 0)
        assert np.unique(ids[real]).size == real.sum()
        assert np.all(np.diff(scores[real]) <= 1e-6), "scores sorted best first"
        assert np.all(np.isneginf(scores[~real]))
    blank = [len(QUERIES), len(QUERIES) + 1]
    assert (res.ids[blank] == PAD_ID).all()


@pytest.mark.parametrize("fitted", NAMES, indirect=True)
def test_a_batch_of_n_equals_n_batches_of_one(fitted):
    batch = fitted.retrieve(QUERIES + ODD, 15)
    for i, q in enumerate(QUERIES + ODD):
        one = fitted.retrieve([q], 15)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])
        np.testing.assert_allclose(one.scores[0], batch.scores[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fitted", NAMES, indirect=True)
def test_k_beyond_the_corpus_and_zero(fitted, catalog):
    res = fitted.retrieve(QUERIES, len(catalog) + 7)
    assert res.ids.shape == (len(QUERIES), len(catalog) + 7)
    assert (res.ids[:, len(catalog):] == PAD_ID).all()
    assert fitted.retrieve(QUERIES, 0).ids.shape == (len(QUERIES), 0)
    assert fitted.retrieve([], 5).ids.shape == (0, 5)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_fits_are_deterministic(name, catalog):
    _same(make(name, catalog).retrieve(QUERIES, 20), make(name, catalog).retrieve(QUERIES, 20))


@pytest.mark.parametrize("fitted", NAMES, indirect=True)
def test_save_load_answers_identically(fitted, tmp_path):
    fitted.save(tmp_path / "s")
    back = type(fitted).load(tmp_path / "s")
    assert back.name == fitted.name and back.params == fitted.params
    _same(fitted.retrieve(QUERIES + ODD, 20), back.retrieve(QUERIES + ODD, 20))


@pytest.mark.parametrize("name", NAMES)
def test_a_strategy_that_observes_clicks_declares_it(name):
    """The engine feeds clicks only to :class:`LearnsFromFeedback` strategies and snapshots only
    theirs: an ``observe`` method on an undeclared strategy would silently never learn."""
    klass = registry.get("strategy", name)
    assert isinstance(klass, type) and issubclass(klass, CandidateGenerator)
    if hasattr(klass, "observe"):
        assert issubclass(klass, LearnsFromFeedback), f"{name} has observe() but does not declare LearnsFromFeedback"


LEARNERS = [n for n in NAMES if issubclass(registry.get("strategy", n), LearnsFromFeedback)]


def _teach(strat: CandidateGenerator, catalog: Catalog) -> None:
    """Clicks on films no text strategy would find for the query."""
    assert isinstance(strat, LearnsFromFeedback)
    for i, row in enumerate([5, 17, 42]):
        strat.observe("my favourite film", np.array([row, row + 1]), np.array([row]), 100.0 + i)


@pytest.mark.parametrize("name", LEARNERS)
def test_learned_state_survives_save_and_load(name, catalog, tmp_path):
    assert {"memory", "xmr"} <= set(LEARNERS)
    strat = make(name, catalog)
    before = strat.retrieve(["my favourite film"], 10)
    _teach(strat, catalog)
    if isinstance(strat, Retrainable):
        assert strat.n_observed == 3
        strat = strat.retrained(catalog)  # a retrained model, then more clicks on top
        strat.observe("another query", np.array([7]), np.array([7]), 200.0)
    after = strat.retrieve(["my favourite film"], 10)
    assert not np.array_equal(before.ids, after.ids), "the clicks changed what it retrieves"
    strat.save(tmp_path / "s")
    back = type(strat).load(tmp_path / "s")
    _same(after, back.retrieve(["my favourite film"], 10))
    if isinstance(strat, Retrainable):
        assert isinstance(back, Retrainable)
        assert back.n_observed == strat.n_observed == 1
        _same(strat.retrained(catalog).retrieve(["another query"], 5), back.retrained(catalog).retrieve(["another query"], 5))
