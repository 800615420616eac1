"""ltrr: learning to rank and retrieve.

Candidate generators (``strategies``) are chosen and sized per query by a contextual bandit
(``policies``); their unioned candidates are reranked by LambdaMART; click feedback updates the
policy, the click memory and the ranker. The :class:`ltrr.engine.Engine` runs that loop.
"""

__version__ = "0.1.0"
