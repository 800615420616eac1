"""Team-draft interleaving: page construction, click credit, sign test, a better ranker wins."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrr.errors import DataError
from ltrr.ranking.interleaving import credit, sign_test, team_draft
from simulators.click_models import PositionBasedClickModel


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(12))), st.permutations(list(range(12))), st.integers(0, 15), st.integers(0, 2**31))
def test_team_draft_pages_are_fair_and_preserve_each_rankers_order(a, b, k, seed):
    a, b = np.array(a[:9]), np.array(b[:9])
    page, team = team_draft(a, b, k, np.random.default_rng(seed))
    assert page.size == min(k, np.union1d(a, b).size)
    assert np.unique(page).size == page.size
    n_a, n_b = int((team == 0).sum()), int((team == 1).sum())
    # every prefix is balanced within one pick while both teams still have items to give
    if page.size and np.setdiff1d(a, page).size and np.setdiff1d(b, page).size:
        assert abs(n_a - n_b) <= 1
    # a team's picks appear in the order of its own ranking
    for items, ranking in ((page[team == 0], a), (page[team == 1], b)):
        where = [int(np.flatnonzero(ranking == i)[0]) for i in items]
        assert where == sorted(where)


def test_identical_rankings_interleave_to_the_same_ranking():
    r = np.arange(10)
    page, team = team_draft(r, r, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(page, r)
    assert set(team.tolist()) <= {0, 1}


def test_credit_and_sign_test_values():
    assert credit(np.array([0, 1, 0, 1]), np.array([True, True, True, False])) == (2, 1)
    res = sign_test(np.array([2, 0, 1, 1, 3]), np.array([0, 1, 1, 0, 0]))
    assert (res.wins_a, res.wins_b, res.ties) == (3, 1, 1)
    assert res.p_value == pytest.approx(0.625)  # two-sided binomial, 3 of 4
    assert res.winner == "A"
    with pytest.raises(DataError, match="equally long"):
        sign_test(np.array([1]), np.array([1, 2]))


def test_a_clearly_better_ranker_wins_significantly():
    rng = np.random.default_rng(5)
    model = PositionBasedClickModel("navigational")
    n_q, m = 300, 30
    ca, cb = np.zeros(n_q, int), np.zeros(n_q, int)
    for q in range(n_q):
        grades = rng.integers(0, 5, m).astype(float)
        good = np.argsort(-(grades + rng.normal(0, 0.5, m)))  # ranks by (noisy) relevance
        bad = rng.permutation(m)                              # random order
        page, team = team_draft(good, bad, 10, rng)
        clicks = model.simulate(grades[page][None, :], rng)[0]
        ca[q], cb[q] = credit(team, clicks)
    res = sign_test(ca, cb)
    assert res.winner == "A" and res.p_value < 0.05
    assert res.wins_a > 2 * res.wins_b
