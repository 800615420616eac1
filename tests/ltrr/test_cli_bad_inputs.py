"""Every command's bad inputs, table-driven: each is refused before any work with one line on
stderr naming the file, line, key or option and the offending value, exit status 2, nothing on
stdout and nothing written (the output paths do not exist afterwards)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from ltrr import registry
from ltrr.cli import main

CATALOG = (b'{"id": "d1", "title": "Heat", "author": "Michael Mann", "fields": {"year": 1995}}\n'
           b'{"id": "d2", "title": "Ronin", "text": "a heist in Paris", "fields": {"year": 1998}}\n'
           b'{"id": "d3", "title": "Thief", "fields": {"year": 1981, "author": "Michael Mann"}}\n')
QUERIES = b'{"qid": "1", "query": "heat"}\n{"qid": "2", "query": "paris heist"}\n'
QRELS = b"1 0 d1 1\n2 0 d2 2\n"
RUN = b"1 Q0 d1 1 2.5 t\n1 Q0 d3 2 1.5 t\n2 Q0 d2 1 3.0 t\n"
CONFIG = b'''[catalog]
path = "c.jsonl"
text_fields = ["title", "text"]
[[strategies]]
name = "bm25"
depths = [10]
[policy]
type = "epsilon_greedy"
budget = 20
'''
LOG = b'{"ts": 1.0, "query": "heat", "shown": ["d1", "d3"], "clicks": ["d1"]}\n'


@dataclass
class Case:
    id: str
    args: list[str]
    message: str
    files: dict[str, bytes] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("out",)


def truncated_parquet() -> bytes:
    """The first half of a small Parquet file (a write that was interrupted)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"query": ["heat"] * 50, "ts": [1.0] * 50}), buf)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


TRUNCATED = ("error: log.parquet: truncated Parquet file (no footer: it does not end with 'PAR1'; "
             "the write was probably interrupted)")


def retrieve(*extra: str) -> list[str]:
    return ["retrieve", "--strategy", "bm25", "--catalog", "c.jsonl", "--queries", "q.jsonl",
            "--out", "out", *extra]


CASES = [
    # ---------------------------------------------------------------- readers (via retrieve)
    Case("catalog-not-utf8", retrieve(),
         "error: c.jsonl:2: not UTF-8 (byte 0xe9 at column 55); save the file as UTF-8",
         {"c.jsonl": CATALOG.replace(b"a heist in Paris", b"a heist in Par\xe9s")}),
    Case("queries-not-utf8-line-3", retrieve(),
         "error: q.jsonl:3: not UTF-8 (byte 0xe9 at column 27); save the file as UTF-8",
         {"q.jsonl": QUERIES + '{"qid": "3", "query": "café"}\n'.encode("latin-1")}),
    Case("queries-utf16", retrieve(),
         "error: q.jsonl:1: the file is UTF-16 (byte-order mark ff fe); save it as UTF-8",
         {"q.jsonl": QUERIES.decode().encode("utf-16")}),
    Case("queries-empty", retrieve(), "error: q.jsonl: the queries file is empty (no JSON records)",
         {"q.jsonl": b"\n\n"}),
    Case("catalog-empty", retrieve(), "error: c.jsonl: the catalog file is empty (no JSON records)",
         {"c.jsonl": b""}),
    Case("queries-duplicate-qid", retrieve(), "error: q.jsonl:3: duplicate qid '1' (first on line 1)",
         {"q.jsonl": QUERIES + b'{"qid": 1, "query": "again"}\n'}),
    Case("queries-missing-column", retrieve(),
         "error: q.jsonl:2: missing required field 'query' (fields present: q, qid)",
         {"q.jsonl": b'{"qid": "1", "query": "heat"}\n{"qid": "2", "q": "heat"}\n'}),
    Case("queries-bad-json", retrieve(),
         "error: q.jsonl:2: invalid JSON at column 27: Expecting ',' delimiter",
         {"q.jsonl": b'{"qid": "1", "query": "heat"}\n{"qid": "2", "query": "a" "b"}\n'}),
    Case("catalog-field-twice", retrieve(),
         "error: c.jsonl:1: field 'year' is both at the top level (1996) and under 'fields' (1995) "
         "with different values",
         {"c.jsonl": b'{"id": "d1", "title": "Heat", "year": 1996, "fields": {"year": 1995}}\n'}),
    Case("catalog-duplicate-id", retrieve(), "error: c.jsonl:3: duplicate id 'd1' (first on line 1)",
         {"c.jsonl": CATALOG.replace(b'"id": "d3"', b'"id": "d1"')}),
    # ---------------------------------------------------------------- retrieve options
    Case("retrieve-k-negative", retrieve("--k", "-5"),
         "error: ltrr retrieve: Invalid value for '--k': -5 is not in the range x>=1. (see 'ltrr retrieve --help')"),
    Case("retrieve-unknown-text-field", retrieve("--text-fields", "title,no_such_field"),
         "error: --text-fields of bm25: 'no_such_field' is not a field of any of the catalog's 3 items; "
         "its fields: title, text, author, year"),
    Case("retrieve-unknown-strategy", retrieve("--strategy", "bm52"),
         "error: Unknown strategy 'bm52'; registered strategy names: {strategies}"),
    Case("retrieve-bad-param", retrieve("--param", "k1=-1"),
         "error: --param for bm25: the 'k1' parameter input should be greater than or equal to 0. Got -1 instead."),
    Case("retrieve-bad-weights", retrieve("--strategy", "bm25,memory", "--weights", "bm25"),
         "error: ltrr retrieve: Invalid value for --weights: expected NAME=NUMBER, got 'bm25' (see 'ltrr retrieve --help')"),
    Case("retrieve-tag-with-space", retrieve("--tag", "my run"),
         "error: ltrr retrieve: Invalid value for '--tag': must be non-empty without spaces, got 'my run' "
         "(see 'ltrr retrieve --help')"),
    # ---------------------------------------------------------------- evaluate
    Case("evaluate-run-columns", ["evaluate", "--run", "r.run", "--qrels", "qrels.txt"],
         "error: r.run:2: a run file line needs 6 columns 'qid Q0 docid rank score tag', got 5: '1 Q0 d3 2 1.5'",
         {"r.run": RUN.replace(b"1.5 t\n", b"1.5\n")}, ()),
    Case("evaluate-run-doc-twice", ["evaluate", "--run", "r.run", "--qrels", "qrels.txt"],
         "error: r.run:2: document 'd1' is listed twice for query '1'",
         {"r.run": RUN.replace(b"d3", b"d1")}, ()),
    Case("evaluate-qrels-empty", ["evaluate", "--run", "r.run", "--qrels", "qrels.txt"],
         "error: qrels.txt: the qrels file is empty", {"qrels.txt": b""}, ()),
    Case("evaluate-qrels-crlf-bad-grade", ["evaluate", "--run", "r.run", "--qrels", "qrels.txt"],
         "error: qrels.txt:2: grade must be an integer, got 'high'", {"qrels.txt": b"1 0 d1 1\r\n2 0 d2 high\r\n"}, ()),
    Case("evaluate-unknown-measure", ["evaluate", "--run", "r.run", "--qrels", "qrels.txt", "-m", "nDCG@10 Prec@5"],
         "error: --measures: 'Prec@5' is not an ir-measures measure (measure not found: Prec); "
         "e.g. nDCG@10, R@100, AP, RR@10, P@5, P(rel=2)@5", {}, ()),
    # ---------------------------------------------------------------- configs
    Case("config-unknown-strategy", ["config", "show", "--config", "x.toml"],
         "error: x.toml: strategies[0].type: Unknown strategy 'bm52'; registered strategy names: {strategies}",
         {"x.toml": CONFIG.replace(b'name = "bm25"', b'name = "bm52"')}, ()),
    Case("config-unknown-policy-param", ["config", "show", "--config", "x.toml"],
         "error: x.toml: policy.params: unknown key 'alpah'; allowed keys: decay_after, epsilon, reward_range, ridge",
         {"x.toml": CONFIG + b'params = { alpah = 1 }\n'}, ()),
    Case("config-wrong-type", ["config", "check", "x.toml"],
         "error: x.toml: strategies[0] (bm25).params: the 'k1' parameter input should be a valid number, "
         "unable to parse string as a number. Got 'high' instead.",
         {"x.toml": CONFIG.replace(b"depths = [10]", b'depths = [10]\nparams = { k1 = "high" }')}, ()),
    Case("config-unknown-policy", ["config", "check", "x.toml"],
         "error: x.toml: policy.type: Unknown policy 'epsilon'; registered policy names: {policies}",
         {"x.toml": CONFIG.replace(b'"epsilon_greedy"', b'"epsilon"')}, ()),
    Case("config-catalog-path-relative", ["config", "check", "sub/x.toml"],
         "error: sub/x.toml: catalog.path 'c.jsonl', resolved relative to the config file's directory, "
         "is {tmp}/sub/c.jsonl: does not exist", {"sub/x.toml": CONFIG}, ()),
    Case("config-text-field-not-in-catalog", ["config", "check", "x.toml"],
         "error: x.toml: catalog.text_fields: 'director' is not a field of any of the catalog's 3 items; "
         "its fields: title, text, author, year",
         {"x.toml": CONFIG.replace(b'["title", "text"]', b'["title", "director"]')}, ()),
    Case("config-not-utf8", ["config", "check", "x.toml"],
         "error: x.toml:3: not UTF-8 (byte 0xe9); save the file as UTF-8",
         {"x.toml": CONFIG.replace(b'["title", "text"]', b'["title", "t\xe9xt"]')}, ()),
    Case("build-bad-config-writes-nothing", ["build", "--config", "x.toml", "--out", "out"],
         "error: x.toml: policy.params: unknown key 'alpah'; allowed keys: decay_after, epsilon, reward_range, ridge",
         {"x.toml": CONFIG + b'params = { alpah = 1 }\n'}),
    # ---------------------------------------------------------------- engines
    Case("search-k-negative", ["search", "heat", "--k", "-5"],
         "error: ltrr search: Invalid value for '--k': -5 is not in the range x>=1. (see 'ltrr search --help')", {}, ()),
    Case("search-not-an-engine", ["search", "heat", "--engine", "nope"],
         "error: nope: not a saved ltrr component (no manifest.json)", {}, ()),
    Case("run-duplicate-qid", ["run", "--engine", "nope", "--queries", "q.jsonl", "--out", "out"],
         "error: q.jsonl:3: duplicate qid '2' (first on line 2)",
         {"q.jsonl": QUERIES + b'{"qid": "2", "query": "x"}\n'}),
    # ---------------------------------------------------------------- simulations
    Case("simulate-rounds-zero", ["simulate", "--catalog", "c.jsonl", "--queries", "q.jsonl", "--qrels",
                                  "qrels.txt", "--rounds", "0", "--out", "out"],
         "error: ltrr simulate: Invalid value for '--rounds': 0 is not in the range x>=1. (see 'ltrr simulate --help')"),
    Case("simulate-qrels-bad", ["simulate", "--catalog", "c.jsonl", "--queries", "q.jsonl", "--qrels",
                                "qrels.txt", "--out", "out"],
         "error: qrels.txt:1: a qrels file line needs 4 columns 'qid iter docid grade', got 3: '1 d1 1'",
         {"qrels.txt": b"1 d1 1\n"}),
    Case("demo-queries-zero", ["demo", "--queries", "0", "--out", "out"],
         "error: ltrr demo: Invalid value for '--queries': 0 is not in the range x>=1. (see 'ltrr demo --help')"),
    Case("demo-unknown-click-model", ["demo", "--click-model", "ubm", "--out", "out"],
         "error: ltrr demo: Invalid value for '--click-model': 'ubm' is not one of 'cascade', 'dbn', 'pbm'. "
         "(see 'ltrr demo --help')"),
    Case("log-simulate-queries-zero", ["log", "simulate", "--out", "out", "--queries", "0"],
         "error: ltrr log simulate: Invalid value for '--queries': 0 is not in the range x>=1. "
         "(see 'ltrr log simulate --help')"),
    Case("complete-labels-not-utf8", ["complete", "--prefix", "he", "--labels", "l.txt", "--model", "out"],
         "error: l.txt:2: not UTF-8 (byte 0xe9 at column 4); save the file as UTF-8",
         {"l.txt": b"heat\ncaf\xe9\n"}),
    Case("replay-strict-bad-record", ["replay", "--log", "log.jsonl", "--config", "x.toml", "--out", "out", "--strict"],
         "error: log.jsonl:2: field 'query' must be a string, got int (strict mode: stopping at the first bad record)",
         {"x.toml": CONFIG, "log.jsonl": LOG + b'{"ts": 3.0, "query": 5, "shown": ["d1"], "clicks": []}\n' + LOG}),
    Case("replay-no-usable-record-writes-nothing", ["replay", "--log", "log.jsonl", "--config", "x.toml", "--out", "out"],
         "error: log.jsonl: none of the 2 records is usable; 2 records, 0 usable; malformed: 1 (skipped; e.g. "
         "log.jsonl:1: field 'query' must be a string, got int); missing_query: 1 (skipped; e.g. log.jsonl:2: "
         "missing required field 'query')",
         {"x.toml": CONFIG, "log.jsonl": b'{"ts": 3.0, "query": 5, "shown": ["d1"], "clicks": []}\n{"ts": 4.0}\n'}),
    Case("replay-truncated-parquet", ["replay", "--log", "log.parquet", "--config", "x.toml", "--out", "out"],
         TRUNCATED, {"x.toml": CONFIG, "log.parquet": truncated_parquet()}),
    Case("log-check-truncated-parquet", ["log", "check", "log.parquet"], TRUNCATED,
         {"log.parquet": truncated_parquet()}, ()),
    Case("ope-truncated-parquet", ["ope", "--log", "log.parquet", "--policy", "x.toml", "--out", "out"], TRUNCATED,
         {"x.toml": CONFIG, "log.parquet": truncated_parquet()}),
    Case("log-convert-not-utf8", ["log", "convert", "log.jsonl", "out.parquet", "--strict"],
         "error: log.jsonl:2: not UTF-8 (byte 0xe9 at column 26); save the file as UTF-8 "
         "(strict mode: stopping at the first bad record)",
         {"log.jsonl": LOG + b'{"ts": 2.0, "query": "caf\xe9", "shown": ["d1"], "clicks": []}\n'}, ("out.parquet",)),
    Case("replay-no-log", ["replay", "--log", "log.jsonl", "--config", "x.toml", "--out", "out"],
         "error: log.jsonl: no such click log", {"x.toml": CONFIG}),
    Case("train-ranker-no-log", ["train-ranker", "--log", "events.sqlite", "--out", "out"],
         "error: events.sqlite: no such event log"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = {"c.jsonl": CATALOG, "q.jsonl": QUERIES, "qrels.txt": QRELS, "r.run": RUN, **case.files}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    res = CliRunner().invoke(main, case.args, prog_name="ltrr")
    assert (res.exit_code, res.stdout) == (2, ""), res.output
    expected = (case.message.replace("{tmp}", str(tmp_path))  # names registered when the test runs
                .replace("{strategies}", ", ".join(registry.names("strategy")))
                .replace("{policies}", ", ".join(registry.names("policy"))))
    assert res.stderr == expected + "\n"
    for out in case.outputs:
        assert not (tmp_path / out).exists(), f"{out} was written"
    assert not list(tmp_path.glob(".*tmp*")), "a temporary output was left behind"
