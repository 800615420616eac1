"""Policies over retrieval plans: fixed baselines and contextual bandits. Each returns exact
(or, where stated, estimated) propensities with every plan it picks. None retrieves anything.

How each policy's plan propensity is computed (``K`` = plans in the menu):

==================  ===========================================================================
``fixed``           1 (always the same plan; it may lie outside the menu).
``epsilon_greedy``  exact: ``1 - eps + eps/K`` for the ridge argmax, ``eps/K`` otherwise.
``linucb``          exact: 1 for the UCB argmax when ``epsilon = 0`` (so its logs support no IPS
                    evaluation of other policies); with ``epsilon > 0`` as ``epsilon_greedy``.
``softmax``         exact: ``exp(mu_a/tau) / sum_b exp(mu_b/tau)``.
``thompson``        estimated (``Plan.estimated``): the share of ``n_propensity_draws``
                    posterior draws the plan wins, floored at ``1/(n_propensity_draws + 1)``.
``factored``        exact: product over strategies (menu order) of the conditional probability
                    of the strategy's depth given the earlier ones, restricted to depths that
                    still complete to a menu plan (the budget rule). ``strategy_propensities``
                    hold the marginals.
``vw``              exact: Vowpal Wabbit's ``cb_explore_adf`` pmf; the plan is sampled from it
                    with our seeded generator.
==================  ===========================================================================

Joint policies fill ``Plan.strategy_propensities`` with each strategy's marginal probability of
its depth (summed over plans). ``Policy.warm_start`` pre-trains any of them from
full-information replay.
"""
