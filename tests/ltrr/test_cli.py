import json

import pytest
from click.testing import CliRunner

from ltrr.cli import main


@pytest.fixture()
def runner():
    return CliRunner()


def test_demo_end_to_end_on_a_tiny_slice(runner, tmp_path, repo_root):
    cfg = tmp_path / "demo.toml"
    text = (repo_root / "configs" / "demo.toml").read_text()
    text = text.replace('path = "../data/movies/catalog.jsonl"',
                        f'path = "{repo_root}/data/movies/catalog.jsonl"\nlimit = 1500')
    cfg.write_text(text)
    res = runner.invoke(main, ["demo", "--queries", "150", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "linucb" in res.output and "all_max" in res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    pols = report["policies"]
    assert set(pols) == {"linucb", "bm25_only", "memory_only", "dense_only", "xmr_only", "all_max",
                         "rrf_all_max"}
    for s in pols.values():
        assert s["queries"] == 150
        for key in ("ndcg@10", "candidate_recall", "mean_candidates", "clicks_per_query",
                    "latency_p50_ms", "latency_p99_ms"):
            assert key in s
    # the memory alone never sees an impression, so it can never retrieve; BM25 can
    assert pols["memory_only"]["ndcg@10"] == 0.0
    assert pols["bm25_only"]["ndcg@10"] > 0.3
    assert pols["all_max"]["candidate_recall"] >= pols["bm25_only"]["candidate_recall"]
    # the learned configuration starts on the incumbent (RRF, baseline plan); the baselines do not
    assert pols["linucb"]["incumbent_switches_by_seed"] == [[
        s for s in report["per_seed"]["0"]["policies"]["linucb"]["incumbent_switches"]]]
    assert set(report["checks"]) >= {"best_baseline", "margin_over_best_baseline",
                                     "candidates_share_of_all_max", "ranker_minus_rrf_on_all_max"}
    # regret against the best fixed plan in hindsight, valued with the ranker on the all-max pass
    hind = report["hindsight"]
    assert set(hind["best_fixed_plan"]) == {"bm25", "memory", "dense", "xmr"}
    # every ranker-ordered run; single strategies and RRF order by fusion: no table values them
    assert set(hind["regret"]) == {"linucb", "all_max"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "nDCG@10 over rounds" in html and "Incumbent switches" in html
    for png in ("ndcg.png", "plans.png", "latency.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in hind["regret"].values():
        assert r["vs_per_round_best_plan"]["total"] >= r["vs_best_plan_per_query_type"]["total"] - 1e-6
        assert len(r["vs_best_fixed"]["at_quarters"]) == 4
    assert "regret vs the best fixed plan in hindsight" in res.output


def test_demo_is_deterministic(runner, tmp_path, repo_root):
    cfg = tmp_path / "demo.toml"
    text = (repo_root / "configs" / "demo.toml").read_text()
    cfg.write_text(text.replace('path = "../data/movies/catalog.jsonl"',
                                f'path = "{repo_root}/data/movies/catalog.jsonl"\nlimit = 1000'))
    outs = []
    for i in range(2):
        res = runner.invoke(main, ["demo", "--queries", "60", "--seed", "5", "--config", str(cfg),
                                   "--out", str(tmp_path / f"o{i}"), "--json"])
        assert res.exit_code == 0, res.output
        rep = json.loads((tmp_path / f"o{i}" / "report.json").read_text())
        outs.append({k: {m: v for m, v in s.items() if "latency" not in m and "stage_ms" not in m}
                     for k, s in rep["policies"].items()})
        outs[-1]["hindsight"] = rep["hindsight"]
    assert outs[0] == outs[1]


def test_retrieve_and_evaluate_reproduce_cranfield_bm25_reference(runner, tmp_path, repo_root):
    cran = repo_root / "data" / "cranfield"
    run = tmp_path / "bm25.run"
    res = runner.invoke(main, ["retrieve", "--strategy", "bm25", "--catalog", str(cran / "corpus.jsonl"),
                               "--queries", str(cran / "queries.jsonl"), "--k", "1000", "--out", str(run)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["evaluate", "--run", str(run), "--qrels", str(cran / "qrels.txt"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)["mean"]
    assert round(m["nDCG@10"], 3) == 0.485
    assert round(m["R@100"], 3) == 0.717
    assert round(m["AP"], 3) == 0.385


def test_config_show_prints_defaults(runner):
    res = runner.invoke(main, ["config", "show"])
    assert res.exit_code == 0
    cfg = json.loads(res.output)
    assert [s["name"] for s in cfg["strategies"]] == ["bm25", "memory", "dense", "xmr"]


def test_bad_inputs_give_one_line_errors(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[strategies]]\nname = "bm25"\nfoo = 1\n')
    res = runner.invoke(main, ["config", "show", "--config", str(bad)])
    assert res.exit_code == 2
    from ltrr.config import StrategyConfig

    allowed = ", ".join(sorted(StrategyConfig.model_fields))
    assert f"unknown key 'strategies[0].foo'; allowed keys: {allowed}" in res.output
    res = runner.invoke(main, ["retrieve", "--strategy", "nope", "--catalog", "x", "--queries", "y",
                               "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "Unknown strategy 'nope'; registered strategy names: bm25" in res.output
    q = tmp_path / "q.jsonl"
    q.write_text('{"qid": "1", "query": "x"}\n{"qid": "2", "query": 5}\n')
    cat = tmp_path / "c.jsonl"
    cat.write_text('{"id": "a", "title": "x"}\n')
    res = runner.invoke(main, ["retrieve", "--strategy", "bm25", "--catalog", str(cat), "--queries", str(q),
                               "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "q.jsonl:2: field 'query' must be str, got int" in res.output
