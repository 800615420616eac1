"""Small engine configs and simulated click logs shared by the offline tests (a catalog slice,
so each log takes a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FIELDS = '["title", "directors", "cast", "writers", "genres", "year", "countries", "languages"]'


def small_config_text(policy: str = "epsilon_greedy", params: str = "{ epsilon = 0.3 }",
                      limit: int = 1500, retrain_every: int = 100, seed: int = 0,
                      reward_kind: str = "any_click") -> str:
    return f"""
seed = {seed}
page_size = 10
[catalog]
path = "{REPO}/data/movies/catalog.jsonl"
limit = {limit}
text_fields = {FIELDS}
[[strategies]]
name = "bm25"
depths = [0, 10, 50, 100]
params = {{ text_fields = {FIELDS} }}
[[strategies]]
name = "memory"
depths = [0, 10, 50]
[policy]
type = "{policy}"
budget = 300
params = {params}
# plan latency from the strategies' declared costs: the simulated logs repeat exactly
latency_source = "declared"
[ranker]
type = "lambdamart"
retrain_every = {retrain_every}
[reward]
cost_per_candidate = 0.0005
kind = "{reward_kind}"
latency_weight = 0.0
[store]
event_ids = "seeded"
[incumbent]
# the offline tests replay the policy's own choices; the incumbent's gates are tested elsewhere
gate_plans = false
gate_ranking = false
"""


@pytest.fixture(scope="session")
def offline_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("offline")


@pytest.fixture(scope="session")
def small_config_path(offline_dir) -> Path:
    path = offline_dir / "small.toml"
    path.write_text(small_config_text())
    return path


@pytest.fixture(scope="session")
def sim_logs(offline_dir, small_config_path) -> dict[str, Path]:
    """The same seeded 300-search simulation written as an ltrr JSONL log, an ltrr Parquet log
    (small row groups, so sharding has work to split) and a foreign JSONL log."""
    from ltrr.config import load_config
    from ltrr.engine import Engine
    from simulators.simlog import movie_stream, simulate_log

    cfg = load_config(small_config_path)
    out = {}
    engine = Engine.from_config(cfg)
    stream = movie_stream(engine, 300, pool_size=150, seed=3)
    engine.close()
    for name, foreign in (("ltrr.jsonl", False), ("ltrr.parquet", False), ("foreign.jsonl", True)):
        engine = Engine.from_config(cfg)
        simulate_log(engine, stream, offline_dir / name, seed=3, foreign=foreign)
        engine.close()
        out[name] = offline_dir / name
    return out
