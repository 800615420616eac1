"""Policies over retrieval plans: fixed baselines and contextual bandits. Each returns exact
(or, where stated, estimated) propensities with every plan it picks. None retrieves anything."""
