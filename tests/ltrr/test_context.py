import numpy as np
import pytest

from ltrr.context import DEFAULT_CONTEXT_FEATURES, ContextFeaturizer
from ltrr.errors import ConfigError


def test_query_type_hints():
    c = ContextFeaturizer(["stopword_frac", "has_decade", "has_year"])
    x = c.transform(["french comedy 1960s", "the 1994 crime film directed by quentin tarantino",
                     "tom hanks war 90s", "the godfather", "1990", ""], [0.0] * 6)
    np.testing.assert_allclose(x, [[0, 1, 1], [0.25, 0, 1], [0, 1, 0], [0.5, 0, 0], [0, 0, 1], [0, 0, 0]])


def test_hints_are_not_in_the_default_set_and_unknown_names_fail():
    assert "stopword_frac" not in DEFAULT_CONTEXT_FEATURES and "has_decade" not in DEFAULT_CONTEXT_FEATURES
    with pytest.raises(ConfigError, match="Unknown context feature 'has_decades'"):
        ContextFeaturizer(["has_decades"])


def test_bm25_signals_are_read_only_when_a_feature_needs_them(small_movies):
    """The engine asks a strategy for its query signals only when a context feature reads one
    (``memory_seen`` reads ``memory_ctr``), and the BM25 signals land in their columns."""
    from strategies.bm25 import BM25

    assert ContextFeaturizer(["bias", "memory_seen"]).signals_needed == {"bias", "memory_seen", "memory_ctr"}
    assert "bm25_top_frac" not in ContextFeaturizer().signals_needed
    bm25 = BM25({"text_fields": ["title"]}).fit(small_movies)
    title = small_movies.titles[3]
    c = ContextFeaturizer(["bm25_top_frac", "bm25_top_gap"])
    x = c.transform([title, "qqqq zzzz"], [0.0, 0.0], bm25.query_stats([title, "qqqq zzzz"]))
    assert 0.5 < x[0, 0] <= 1.0 and 0.0 <= x[0, 1] <= 1.0
    np.testing.assert_array_equal(x[1], [0.0, 0.0])
