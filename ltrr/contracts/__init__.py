"""The contracts between the engine and its components, declared in one place.

``ltrr`` talks to strategies, policies and rankers only through these base classes and the
optional capabilities they declare (``isinstance`` checks, never ``getattr`` probing); the
components are found by name through :mod:`ltrr.registry`.
"""

from ltrr.contracts.policy import PageFusion, PlanMenu, Policy
from ltrr.contracts.ranker import Ranker
from ltrr.contracts.strategy import (
    CandidateGenerator,
    ItemScorer,
    ItemStatistics,
    LearnsFromFeedback,
    QueryStatistics,
    Retrainable,
    TermWeighted,
    TermWeights,
)

__all__ = [
    "CandidateGenerator", "ItemScorer", "ItemStatistics", "LearnsFromFeedback", "PageFusion",
    "PlanMenu", "Policy", "QueryStatistics", "Ranker", "Retrainable", "TermWeighted", "TermWeights",
]
