import numpy as np
import pytest

from ltrr.errors import ConfigError
from ltrr.ranking.fusion import FusionSpec, fuse, rrf_scores, weighted_scores
from ltrr.types import Candidates


@pytest.fixture()
def cands():
    # a: items 1 (rank 1), 2 (rank 2); b: items 2 (rank 1), 3 (rank 2)
    return Candidates.union(
        ["a", "b"], [(np.array([1, 2]), np.array([10.0, 4.0])), (np.array([2, 3]), np.array([0.9, 0.5]))]
    )


def test_rrf_closed_form(cands):
    s = rrf_scores(cands, k=60)
    assert cands.items.tolist() == [1, 2, 3]
    np.testing.assert_allclose(s, [1 / 61, 1 / 62 + 1 / 61, 1 / 62])
    w = rrf_scores(cands, k=1, weights={"b": 0.0})
    np.testing.assert_allclose(w, [1 / 2, 1 / 3, 0.0])


def test_weighted_fusion_min_max_normalizes(cands):
    s = weighted_scores(cands, {"a": 2.0, "b": 1.0})
    # a: 10 -> 1, 4 -> 0 ; b: 0.9 -> 1, 0.5 -> 0
    np.testing.assert_allclose(s, [2.0, 0.0 + 1.0, 0.0])


def test_fusion_spec_validation(cands):
    with pytest.raises(ConfigError, match="Unknown fusion 'borda'; methods: rrf, weighted"):
        FusionSpec("borda")
    with pytest.raises(ConfigError, match="fusion weight for unknown strategy 'c'"):
        fuse(cands, FusionSpec("rrf", weights={"c": 1.0}))


def test_empty_union():
    c = Candidates.union(["a"], [(np.empty(0, np.int64), np.empty(0, np.float32))])
    assert fuse(c, FusionSpec("weighted")).shape == (0,)
    assert fuse(c, FusionSpec("rrf")).shape == (0,)
