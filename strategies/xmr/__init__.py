"""XMR tree strategy: XR-Linear (PECOS-style) on numpy/scipy.

- :mod:`strategies.xmr.features` — word n-gram + character trigram TF-IDF.
- :mod:`strategies.xmr.indexer` — balanced spherical k-means label tree.
- :mod:`strategies.xmr.matcher` — per-level one-vs-rest squared-hinge matchers (Newton-CG).
- :mod:`strategies.xmr.model` — PIFA + tree + matchers + beam search on matrices.
- :mod:`strategies.xmr.strategy` — :class:`XRLinear`, the candidate generator.
"""

from strategies.xmr.model import XRConfig, XRModel
from strategies.xmr.strategy import XRLinear, XRLinearParams, train_from_pairs

__all__ = ["XRConfig", "XRLinear", "XRLinearParams", "XRModel", "train_from_pairs"]
