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
