"""What a new user meets in the first hour: --version, -q and progress on stderr, inputs with a BOM
and CRLF, catalog fields at the top level, runs that any evaluator orders as written, ltrr run
from a saved engine, evaluate with ir-measures names and per-query values, config check."""

from __future__ import annotations

import json
import sys
import time

import ir_measures
import pytest
from click.testing import CliRunner

from ltrr import __version__, progress
from ltrr.cli import main
from ltrr.config import DATA_DIR, parse_config
from ltrr.io import read_run, run_scores, write_run
from ltrr.offline.metrics import rank_documents


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="ltrr")


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0
    assert res.stdout == f"ltrr {__version__} (Python {sys.version.split()[0]})\n"


def test_progress_names_the_step_its_count_and_rate_on_stderr_only(capsys, monkeypatch):
    monkeypatch.delenv("LTRR_QUIET", raising=False)
    with progress.step("fitting bm25", 1000, delay=0.01):
        time.sleep(0.1)
    with progress.step("a short step", 5, delay=5.0):
        pass
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "ltrr: fitting bm25 (1,000 items) ..."
    assert lines[1].startswith("ltrr: fitting bm25: done in 0.1 s, ") and lines[1].endswith(" items/s")
    assert len(lines) == 2  # the short step printed nothing
    progress.set_quiet(True)
    try:
        with progress.step("silenced", 3, delay=0.0):
            time.sleep(0.05)
        assert list(progress.bar([1, 2], 2, "x")) == [1, 2]
    finally:
        progress.set_quiet(False)
    assert capsys.readouterr() == ("", "")


def test_bom_crlf_and_top_level_fields_are_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_bytes(
        b'\xef\xbb\xbf{"id": "b1", "title": "Dune", "author": "Frank Herbert"}\r\n'
        b'{"id": "b2", "title": "Emma", "fields": {"author": "Jane Austen"}}\r\n'
        b'{"id": "b3", "title": "Ulysses", "author": "James Joyce"}\r\n'
        b'{"id": "b4", "title": "Hamlet", "author": "William Shakespeare"}\r\n')
    (tmp_path / "q.jsonl").write_bytes(b'\xef\xbb\xbf{"qid": "1", "query": "herbert"}\r\n'
                                       b'{"qid": "2", "query": "austen"}\r\n')
    res = invoke("retrieve", "--strategy", "bm25", "--catalog", "c.jsonl", "--queries", "q.jsonl",
                 "--text-fields", "author", "--out", "a.run", "--tag", "authors", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"out": "a.run", "queries": 2, "k": 1000, "lines": 2, "tag": "authors"}
    rows = [line.split() for line in (tmp_path / "a.run").read_text().splitlines()]
    assert [(r[0], r[2], r[5]) for r in rows] == [("1", "b1", "authors"), ("2", "b2", "authors")]


def test_run_scores_reproduce_the_written_order():
    assert run_scores([3.0, 2.0, 1.0]) == ["3.000000", "2.000000", "1.000000"]
    # scores that differ only past the 6th decimal keep their values, with more digits
    assert run_scores([0.5000004, 0.5000001, 0.25]) == ["0.5000004", "0.5000001", "0.25"]
    assert run_scores([0.5, 0.5, 0.5, 0.25]) == ["4", "3", "2", "1"]  # ties: rank-derived
    assert run_scores([1.0, 2.0, 0.5]) == ["3", "2", "1"]  # not sorted (an interleaved page)
    assert run_scores([1.0, 1.0 - 1e-12]) == ["2", "1"]  # distinct in float64, tied in float32


def test_a_written_run_is_ordered_the_same_by_trec_eval_rules(tmp_path):
    docs = [("d9", 0.5), ("d1", 0.5), ("d5", 0.5), ("d2", 0.25), ("d3", 0.25)]  # ties, docids unsorted
    write_run(tmp_path / "t.run", {"q": docs}, tag="t")
    back = read_run(tmp_path / "t.run")
    assert rank_documents(back["q"]) == [d for d, _ in docs]
    qrels = [ir_measures.Qrel("q", "d5", 1)]
    run = [ir_measures.ScoredDoc("q", d, s) for d, s in back["q"].items()]
    assert ir_measures.calc_aggregate([ir_measures.RR], qrels, run)[ir_measures.RR] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def saved_engine(tmp_path_factory):
    from ltrr.engine import Engine

    cfg = parse_config({
        "catalog": {"path": str(DATA_DIR / "movies" / "catalog.jsonl"), "limit": 300,
                    "text_fields": ["title", "directors", "genres", "year"]},
        "strategies": [{"name": "bm25", "depths": [10, 30]}, {"name": "memory", "depths": [0, 10]}],
        "policy": {"type": "epsilon_greedy", "budget": 50},
    }, "<test>")
    d = tmp_path_factory.mktemp("run") / "engine"
    engine = Engine.from_config(cfg)
    engine.save(d)
    engine.close()
    return d


def test_ltrr_run_writes_a_repeatable_trec_run_from_a_saved_engine(saved_engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.jsonl").write_text('{"qid": "a", "query": "drama 2009"}\n{"qid": "b", "query": "comedy"}\n'
                                      '{"qid": "c", "query": "zzzz"}\n')
    res = invoke("run", "--engine", str(saved_engine), "--queries", "q.jsonl", "--out", "r1.run", "--tag", "mine",
                 "--k", "20")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("wrote r1.run: 3 queries, ")
    assert invoke("-q", "run", "--engine", str(saved_engine), "--queries", "q.jsonl", "--out", "r2.run",
                  "--tag", "mine", "--k", "20").exit_code == 0
    text = (tmp_path / "r1.run").read_text()
    assert text == (tmp_path / "r2.run").read_text()  # seeded: the same run twice
    lines = [line.split() for line in text.splitlines()]
    assert {r[0] for r in lines} == {"a", "b"} and all(r[5] == "mine" for r in lines)
    per_q = read_run(tmp_path / "r1.run")
    for qid in ("a", "b"):
        written = [r[2] for r in lines if r[0] == qid]
        assert rank_documents(per_q[qid]) == written and len(written) == 20
    manifest = json.loads((saved_engine / "manifest.json").read_text())
    assert manifest["ltrr_version"] == __version__ and manifest["plugins"] == []


def test_evaluate_measures_by_ir_measures_names_and_per_query(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qrels.txt").write_text("1 0 d1 2\n1 0 d2 1\n2 0 d3 1\n3 0 d4 0\n")
    write_run(tmp_path / "r.run", {"1": [("d2", 2.0), ("d1", 1.0)], "2": [("d9", 1.0)]}, tag="t")
    res = invoke("evaluate", "--run", "r.run", "--qrels", "qrels.txt", "-m", "nDCG@10 P@1 RR AP", "--per-query",
                 "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["queries"] == 2  # query 3 has no relevant document
    assert out["per_query"]["P@1"] == {"1": 1.0, "2": 0.0}
    assert out["per_query"]["RR"] == {"1": 1.0, "2": 0.0}
    ref = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], [ir_measures.Qrel("1", "d1", 2),
                                                               ir_measures.Qrel("1", "d2", 1)],
                                     [ir_measures.ScoredDoc("1", "d2", 2.0), ir_measures.ScoredDoc("1", "d1", 1.0)])
    assert out["per_query"]["nDCG@10"]["1"] == pytest.approx(ref[ir_measures.nDCG @ 10])
    assert out["mean"]["nDCG@10"] == pytest.approx(ref[ir_measures.nDCG @ 10] / 2)
    res = invoke("evaluate", "--run", "r.run", "--qrels", "qrels.txt", "-m", "P@1", "--per-query")
    assert res.stdout == "P@1  1         1.0000\nP@1  2         0.0000\nP@1  all       0.5000\n"


def test_config_check_accepts_a_shipped_config_and_says_what_it_checked():
    res = invoke("config", "check", str(DATA_DIR.parent / "configs" / "cranfield.toml"))
    assert res.exit_code == 0, res.output
    assert res.stdout.endswith(": ok (1400 catalog items; strategy bm25, strategy memory, "
                               "policy epsilon_greedy, ranker lambdamart)\n")


def test_ltrr_data_lists_the_shipped_files():
    res = invoke("data")
    assert res.exit_code == 0
    listed = res.stdout.splitlines()
    assert str(DATA_DIR / "movies" / "catalog.jsonl") in listed
    assert str(DATA_DIR / "cranfield" / "qrels.txt") in listed
    assert invoke("data", "--dir").stdout == f"{DATA_DIR.parent}\n"
