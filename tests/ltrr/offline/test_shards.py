import numpy as np
import pytest

from ltrr.cluster import local_client
from ltrr.config import load_config
from ltrr.engine import Engine
from ltrr.errors import DataError
from ltrr.offline.logs import LogReader, convert_log
from ltrr.offline.outcomes import record_outcomes
from ltrr.offline.shards import plan_statistics


@pytest.fixture(scope="module")
def trained_engine_dir(sim_logs, small_config_path, tmp_path_factory):
    """An engine whose click memory learned from the foreign log (replay), saved."""
    from ltrr.offline.replay import replay

    out = tmp_path_factory.mktemp("trained")
    replay(load_config(small_config_path), sim_logs["foreign.jsonl"], out, checkpoint_every=0,
           progress=False, train_ranker=False)
    return out / "engine"


def test_full_information_statistics_shard_parallel_equal_single_process(trained_engine_dir, sim_logs, tmp_path):
    log = tmp_path / "groups.parquet"
    convert_log(sim_logs["foreign.jsonl"], log, row_group_rows=50)
    single = plan_statistics(trained_engine_dir, log)
    client = local_client(2)
    try:
        sharded = plan_statistics(trained_engine_dir, log, shards=3, client=client)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert single["records"] == sharded["records"] == 300
    for a, b in zip(single["plans"], sharded["plans"], strict=True):
        assert a["plan"] == b["plan"]
        assert b["mean_reward"] == pytest.approx(a["mean_reward"], abs=1e-12)
        assert b["clicked_recall"] == pytest.approx(a["clicked_recall"], abs=1e-12)
    assert sharded["oracle_per_record_reward"] == pytest.approx(single["oracle_per_record_reward"], abs=1e-12)
    assert single["best_fixed_plan"] == sharded["best_fixed_plan"]
    # the per-record oracle can only beat the best fixed plan; plans drawing more from both
    # strategies contain more of the clicked items
    assert single["oracle_per_record_reward"] >= single["best_fixed_plan_reward"]
    recall = {tuple(p["plan"].values()): p["clicked_recall"] for p in single["plans"]}
    assert recall[(100, 50)] >= recall[(100, 0)] and recall[(100, 50)] >= recall[(0, 50)]
    # the sums are those of record_outcomes record by record
    engine = Engine.load(trained_engine_dir)
    rewards = np.stack([record_outcomes(engine, r)[0] for r in LogReader(log)])
    np.testing.assert_allclose([p["mean_reward"] for p in single["plans"]], rewards.mean(axis=0), atol=1e-12)
    engine.close()


def test_full_information_statistics_need_parquet_to_shard(trained_engine_dir, sim_logs):
    with pytest.raises(DataError, match="sharded reads need a Parquet log"):
        plan_statistics(trained_engine_dir, sim_logs["foreign.jsonl"], shards=2)
