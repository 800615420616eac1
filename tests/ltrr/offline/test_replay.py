import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ltrr.config import load_config
from ltrr.offline.replay import read_metrics, replay

REPO = Path(__file__).resolve().parents[3]


def _memory_counts(out: Path) -> tuple:
    db = sqlite3.connect(out / "engine" / "strategies" / "memory" / "memory.sqlite")
    try:
        return db.execute("SELECT COUNT(*), SUM(impressions), SUM(clicks) FROM q2e").fetchone()
    finally:
        db.close()


def _policy_state(out: Path) -> dict:
    with np.load(out / "engine" / "policy" / "state.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_foreign_log_replay_learns_with_full_information(sim_logs, small_config_path, tmp_path):
    cfg = load_config(small_config_path)
    res = replay(cfg, sim_logs["foreign.jsonl"], tmp_path / "out", checkpoint_every=0, window=100,
                 progress=False)
    assert res.records == 300 and res.report.valid == 300
    lines = read_metrics(tmp_path / "out")
    assert [m["records"] for m in lines] == [100, 200, 300]
    assert all(m["policy_learning"] == "full-information" and "bandit_feedback" not in m for m in lines)
    for m in lines:
        fi = m["full_information"]
        assert fi["best_plan_in_hindsight_reward"] >= fi["chosen_plan_reward"]
        assert 0.0 <= fi["clicked_recall_of_chosen_plan"] <= 1.0
    regret = [m["full_information"]["cumulative_regret"] for m in lines]
    assert regret == sorted(regret) and regret[-1] >= 0
    # the policy learned from every record with every plan's reward (warm start counts rows)
    manifest = json.loads((tmp_path / "out" / "engine" / "policy" / "manifest.json").read_text())
    assert manifest["n_updates"] == 300
    n_pairs, impressions, clicks = _memory_counts(tmp_path / "out")
    # ten impressions per record, each weighted by its position's examination 1/r (sum 2.93 for
    # a page of ten), decayed by the memory's half-life over the log's time span
    exam = sum(1.0 / r for r in range(1, 11))
    assert n_pairs > 100 and 0.75 * exam * 300 <= impressions <= exam * 300 and clicks > 50
    ranker = json.loads((tmp_path / "out" / "engine" / "ranker" / "manifest.json").read_text())
    assert ranker["fitted"] and ranker["n_fits"] >= 1 and ranker["version"] != "prior-rrf"
    # with clicks on most records the learned plans find them: recall of the chosen plan is high
    assert lines[-1]["full_information"]["clicked_recall_of_chosen_plan"] > 0.8


def test_ltrr_log_replay_uses_bandit_feedback_and_ips(sim_logs, small_config_path, tmp_path):
    cfg = load_config(small_config_path)
    replay(cfg, sim_logs["ltrr.parquet"], tmp_path / "out", checkpoint_every=0, window=150, progress=False)
    lines = read_metrics(tmp_path / "out")
    assert [m["policy_learning"] for m in lines] == ["bandit-feedback"] * 2
    bf = lines[0]["bandit_feedback"]
    assert bf["records"] == 150
    # the replayed engine has the logger's config and seed, so it picks the logged plans: weights are 1
    assert bf["ips_value_of_replayed_policy"] == pytest.approx(bf["logged_reward"])
    # ...and the full-information recomputation of the chosen plan's reward (strategies rerun at
    # their largest depth, truncated per plan) equals the reward the logging engine earned online
    for m in lines:
        assert m["full_information"]["chosen_plan_reward"] == pytest.approx(m["bandit_feedback"]["logged_reward"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["bandit_feedback_records"] == 300 and summary["full_information_records"] == 0


def _cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ltrr"), *args]


def test_killed_replay_resumes_to_the_same_final_state(sim_logs, small_config_path, tmp_path):
    log = str(sim_logs["foreign.jsonl"])
    base = ["replay", "--log", log, "--config", str(small_config_path), "--checkpoint-every", "40",
            "--window", "50", "--no-progress", "--no-report"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    subprocess.run(_cli(*base, "--out", str(full)), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*base, "--out", str(killed)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = killed / "checkpoint" / "state.json"

    def records_done() -> int:
        try:  # the checkpoint is replaced atomically; between two renames it is briefly absent
            return json.loads(state.read_text())["records"]
        except (FileNotFoundError, json.JSONDecodeError):
            return -1

    deadline = time.time() + 120
    while time.time() < deadline and records_done() < 120:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from ltrr.offline.replay import _read_state

    stopped_at = _read_state(killed / "checkpoint")["records"]  # also restores a mid-rename kill
    assert 120 <= stopped_at < 300, "the replay finished before it could be killed"
    assert not (killed / "summary.json").exists()
    res = subprocess.run(_cli(*base, "--out", str(killed)), check=True, env=env, capture_output=True, text=True)
    assert f"resumed at record {stopped_at}" in res.stdout

    a, b = _policy_state(full), _policy_state(killed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _memory_counts(full) == _memory_counts(killed)
    assert read_metrics(full) == read_metrics(killed)
    sa = json.loads((full / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    for key in ("records", "cumulative_reward", "cumulative_regret", "full_information_records"):
        assert sa[key] == sb[key]
    # the ranker retrained from the same rows after the resume: the same LightGBM model
    assert (full / "engine" / "ranker" / "model.txt").read_text() == (killed / "engine" / "ranker" / "model.txt").read_text()
    ev_a = sqlite3.connect(full / "events.sqlite").execute("SELECT COUNT(*) FROM events").fetchone()
    ev_b = sqlite3.connect(killed / "events.sqlite").execute("SELECT COUNT(*) FROM events").fetchone()
    assert ev_a == ev_b


def test_replay_cli_writes_report_with_plots(sim_logs, small_config_path, tmp_path):
    from ltrr.cli import main

    res = CliRunner().invoke(main, ["replay", "--log", str(sim_logs["foreign.jsonl"]), "--config",
                                    str(small_config_path), "--out", str(tmp_path / "o"), "--window", "100",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "full-information: 300 records" in res.output
    html = (tmp_path / "o" / "report.html").read_text()
    assert "cumulative.png" in html and "strategy_share.png" in html
    for png in ("cumulative.png", "strategy_share.png"):
        assert (tmp_path / "o" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_click_dcg_rewards_recomputed_in_replay_equal_the_logged_ones(offline_dir, tmp_path):
    """With reward.kind = click_dcg the full-information reward of the logged plan, recomputed by
    replay, equals what the logging engine earned online (position-weighted clicks)."""
    from ltrr.engine import Engine
    from simulators.simlog import movie_stream, simulate_log

    from .conftest import small_config_text

    cfg_path = tmp_path / "dcg.toml"
    cfg_path.write_text(small_config_text(reward_kind="click_dcg"))
    cfg = load_config(cfg_path)
    engine = Engine.from_config(cfg)
    log = tmp_path / "dcg.jsonl"
    res = simulate_log(engine, movie_stream(engine, 120, pool_size=80, seed=4), log, seed=4)
    engine.close()
    assert 0 < res.reward.mean() < 1 and len(set(np.round(res.reward, 6))) > 5  # graded, not 0/1
    replay(cfg, log, tmp_path / "out", checkpoint_every=0, window=60, progress=False)
    for m in read_metrics(tmp_path / "out"):
        assert m["full_information"]["chosen_plan_reward"] == pytest.approx(m["bandit_feedback"]["logged_reward"])


def test_resume_after_a_kill_between_the_checkpoint_renames(sim_logs, small_config_path, tmp_path):
    cfg = load_config(small_config_path)
    out = tmp_path / "out"
    first = replay(cfg, sim_logs["foreign.jsonl"], out, checkpoint_every=50, window=100, progress=False,
                   stop_after=150, train_ranker=False)
    assert first.records == 150
    # as if killed after the old checkpoint was moved aside and before the new one was renamed in
    os.replace(out / "checkpoint", out / ".checkpoint.old-4242")
    res = replay(cfg, sim_logs["foreign.jsonl"], out, checkpoint_every=50, window=100, progress=False,
                 train_ranker=False)
    assert res.resumed_from == 150 and res.records == 300
    assert [m["records"] for m in read_metrics(out)] == [100, 200, 300]
