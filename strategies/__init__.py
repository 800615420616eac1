"""Candidate generators. Each is a :class:`strategies.base.CandidateGenerator` found by name
through :mod:`ltrr.registry`; none knows about policies or ranking."""
