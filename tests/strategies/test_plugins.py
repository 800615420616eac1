"""The new generators as plug-ins: configs/demo_full.toml builds an engine whose plan menu holds
structured and explore, searches and learns from feedback, and saves/loads to the same answers."""

from __future__ import annotations

import numpy as np

from ltrr.config import load_config
from ltrr.engine import Engine
from ltrr.types import Feedback


def test_demo_full_config_engine_roundtrip(repo_root, tmp_path) -> None:
    cfg = load_config(repo_root / "configs" / "demo_full.toml")
    cfg = cfg.model_copy(update={"catalog": cfg.catalog.model_copy(update={"limit": 800})})
    engine = Engine.from_config(cfg)
    assert engine.policy.menu.strategies == ("bm25", "memory", "structured", "explore")
    assert "structured_likelihood" in engine.context.names
    d = engine.search("drama 2005", ts=0.0)
    x = dict(zip(engine.context.names, d.x, strict=True))
    assert x["structured_likelihood"] == 1.0 and x["structured_slots"] == 0.5
    assert engine.search("zzzz qqqq", ts=1.0).x[engine.context.names.index("structured_likelihood")] == 0.0
    res = engine.feedback(Feedback.clicks(d.event_id, list(d.page_ids[:1]), ts=2.0))
    assert res.policy_updated
    engine.save(tmp_path / "e")
    loaded = Engine.load(tmp_path / "e")
    for name in ("structured", "explore"):
        a = engine.strategies[name].retrieve(["drama 2005", "comedy films 1990s"], 20)
        b = loaded.strategies[name].retrieve(["drama 2005", "comedy films 1990s"], 20)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.scores, b.scores)
    engine.close()
    loaded.close()
