"""Ranking stage: LambdaMART ranker and its training."""
