"""``ltrr simulate`` on a collection with human judgments: several seeds in one run, the baselines
under their documented names, the learning checks and the HTML report."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ltrr.cli import main

CONFIG = """
[catalog]
text_fields = ["title", "text"]
[[strategies]]
name = "bm25"
depths = [10, 50]
[[strategies]]
name = "memory"
depths = [0, 10]
[policy]
type = "epsilon_greedy"
params = { epsilon = 0.1 }
[ranker]
retrain_every = 60
params = { n_estimators = 20 }
"""


def test_simulate_several_seeds_on_cranfield(tmp_path, repo_root):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    data = repo_root / "data" / "cranfield"
    res = CliRunner().invoke(main, [
        "simulate", "--catalog", str(data / "corpus.jsonl"), "--queries", str(data / "queries.jsonl"),
        "--qrels", str(data / "qrels.txt"), "--rounds", "240", "--seeds", "2", "--seed", "3",
        "--config", str(cfg), "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # --json: nothing but the JSON on stdout (progress: stderr)
    assert report["seeds"] == [3, 4]
    assert report["notes"].startswith("Relevance is the collection's human judgments")
    pols = report["policies"]
    assert set(pols) == {"epsilon_greedy", "bm25_only", "memory_only", "all_max", "rrf_all_max"}
    for p in pols.values():
        assert len(p["ndcg@10_by_seed"]) == 2
        assert abs(p["ndcg@10"] - sum(p["ndcg@10_by_seed"]) / 2) < 1e-5
        assert "mean_candidates" in p and "ndcg@10_final_sd" in p
    # a single strategy in its own order, and RRF of one list: the same pages
    assert set(report["per_seed"]) == {"3", "4"}
    assert report["checks"]["best_baseline"] in {"bm25_only", "rrf_all_max", "memory_only"}
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "report.json").exists()


def test_simulate_refuses_zero_seeds(tmp_path, repo_root):
    data = repo_root / "data" / "cranfield"
    res = CliRunner().invoke(main, [
        "simulate", "--catalog", str(data / "corpus.jsonl"), "--queries", str(data / "queries.jsonl"),
        "--qrels", str(data / "qrels.txt"), "--seeds", "0", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output == ("error: main simulate: Invalid value for '--seeds': 0 is not in the range x>=1. "
                          "(see 'main simulate --help')\n")
