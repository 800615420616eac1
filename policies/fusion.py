"""Hybrid baselines as fixed policies: a constant plan whose page is ordered by rank fusion
(reciprocal rank fusion or weighted score fusion) instead of the learned ranker.

The policy only *declares* the fusion (:class:`~ltrr.contracts.policy.PageFusion`); the engine
applies it, so policies stay free of ranking code.
"""

from __future__ import annotations

from pydantic import Field

from ltrr.contracts.policy import PageFusion
from ltrr.ranking.fusion import FusionSpec
from policies.fixed import FixedPolicy, FixedPolicyParams


class RRFParams(FixedPolicyParams):
    k: float = Field(60.0, gt=0.0)
    weights: dict[str, float] = Field(default_factory=dict)


class WeightedFusionParams(FixedPolicyParams):
    weights: dict[str, float] = Field(default_factory=dict)


class ReciprocalRankFusion(FixedPolicy[RRFParams], PageFusion):
    """Every strategy at its largest depth (or ``depths``), page ordered by RRF."""

    type_name = "rrf"
    Params = RRFParams

    def fusion_spec(self) -> FusionSpec:
        return FusionSpec("rrf", self.params.k, dict(self.params.weights))


class WeightedScoreFusion(FixedPolicy[WeightedFusionParams], PageFusion):
    """Every strategy at its largest depth (or ``depths``), page ordered by weighted score fusion."""

    type_name = "weighted_fusion"
    Params = WeightedFusionParams

    def fusion_spec(self) -> FusionSpec:
        return FusionSpec("weighted", weights=dict(self.params.weights))
