"""Candidate generators. Each is a :class:`ltrr.contracts.strategy.CandidateGenerator` found by name
through :mod:`ltrr.registry`; none knows about policies or ranking."""
