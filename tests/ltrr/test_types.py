import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrr.types import PAD_ID, Candidates, Plan, RetrievalResult, top_k


def test_top_k_tie_break_by_lower_index():
    r = top_k(np.array([[1.0, 3.0, 3.0, 0.5, 3.0]]), 2)
    assert r.ids.tolist() == [[1, 2]]


def test_top_k_pads_when_k_exceeds_items_and_masks_invalid():
    scores = np.array([[0.2, 0.9, 0.1]])
    r = top_k(scores, 5, valid=scores > 0.15)
    assert r.ids.tolist() == [[1, 0, PAD_ID, PAD_ID, PAD_ID]]
    assert np.isneginf(r.scores[0, 2:]).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=40), st.integers(1, 50))
def test_top_k_matches_full_sort(values, k):
    s = np.array([values])
    r = top_k(s, k)
    order = np.lexsort((np.arange(s.shape[1]), -s[0]))[:k]
    assert r.ids[0, : order.size].tolist() == order.tolist()
    got = r.scores[0][r.ids[0] != PAD_ID]
    assert np.all(np.diff(got) <= 0)


def test_union_keeps_provenance():
    c = Candidates.union(
        ["a", "b"],
        [(np.array([5, 3]), np.array([2.0, 1.0])), (np.array([3, 9]), np.array([7.0, 6.0]))],
    )
    assert c.items.tolist() == [5, 3, 9]
    assert c.found.tolist() == [[True, False], [True, True], [False, True]]
    assert c.ranks[1].tolist() == [2.0, 1.0]
    assert c.scores[2, 1] == 6.0 and np.isnan(c.scores[2, 0])


def test_union_of_nothing():
    c = Candidates.union(["a"], [(np.empty(0, np.int64), np.empty(0, np.float32))])
    assert len(c) == 0 and c.scores.shape == (0, 1)


def test_plan_propensity_validated_and_roundtrip():
    with pytest.raises(ValueError, match=r"propensity must be in \(0, 1\]; got 0"):
        Plan(("a",), (10,), 0.0)
    p = Plan(("a", "b"), (10, 0), 0.25, (0.5, 0.5), 3, "eg")
    assert Plan.from_dict(p.to_dict()) == p
    assert p.total_depth == 10 and p.active() == [("a", 10)]


def test_retrieval_result_shape_checked():
    with pytest.raises(ValueError, match="one shape"):
        RetrievalResult(np.zeros((2, 3), np.int64), np.zeros((2, 2), np.float32))
