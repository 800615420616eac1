"""IR collections with human judgments: Cranfield loads, streams are seeded, bad input is named."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ltrr.errors import DataError
from simulators.collections import IRCollection

CRANFIELD = Path(__file__).resolve().parents[2] / "data" / "cranfield"


@pytest.fixture(scope="module")
def cranfield() -> IRCollection:
    return IRCollection.load(CRANFIELD / "corpus.jsonl", CRANFIELD / "queries.jsonl",
                             CRANFIELD / "qrels.txt")


def test_cranfield_loads_docs_queries_and_judgments(cranfield):
    assert len(cranfield.catalog) == 1400
    assert len(cranfield.queries) == 225
    judged = cranfield.judged()
    assert len(judged) == 225
    assert sum(len(q.relevant) for q in judged) == 1837
    q1 = judged[0]
    assert q1.qid == "1" and q1.qtype == "judged"
    assert q1.text.startswith("what similarity laws must be obeyed")
    # qrels line "1 0 184 1" maps external doc id 184 to its catalog row
    assert q1.relevant[cranfield.catalog.index["184"]] == 1


def test_cranfield_graded_qrels_keep_grades(cranfield):
    graded = IRCollection.load_dir(CRANFIELD, "qrels_graded.txt")
    grades = Counter(g for q in graded.judged() for g in q.relevant.values())
    assert set(grades) <= {1, 2, 3, 4}
    assert len(grades) >= 3


def test_stream_is_uniform_with_replacement_and_seeded(cranfield):
    a = cranfield.stream(5000, seed=3)
    assert a == cranfield.stream(5000, seed=3)
    assert [q.qid for q in a] != [q.qid for q in cranfield.stream(5000, seed=4)]
    counts = Counter(q.qid for q in a)
    assert len(counts) == 225  # every query drawn at least once in 5000 draws
    assert max(counts.values()) < 5000 / 225 * 2.5  # ~22 expected each; uniform, not skewed
    assert all(q.relevant and min(q.relevant.values()) >= 1 for q in a)


def _write(tmp_path: Path, corpus: list, queries: list, qrels: str) -> tuple[Path, Path, Path]:
    c, q, r = tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl", tmp_path / "qrels.txt"
    c.write_text("".join(x if isinstance(x, str) else json.dumps(x) + "\n" for x in corpus))
    q.write_text("".join(x if isinstance(x, str) else json.dumps(x) + "\n" for x in queries))
    r.write_text(qrels)
    return c, q, r


DOCS = [{"id": "d1", "title": "a", "text": "x"}, {"id": "d2", "title": "b", "text": "y"}]
QUERIES = [{"qid": "1", "query": "first"}, {"qid": "2", "query": "second"}]


def test_grade_zero_is_judged_but_not_relevant(tmp_path):
    coll = IRCollection.load(*_write(tmp_path, DOCS, QUERIES, "1 0 d1 2\n1 0 d2 0\n2 0 d2 0\n"))
    assert coll.qrels == {"1": {0: 2, 1: 0}, "2": {1: 0}}
    assert [(q.qid, q.relevant) for q in coll.judged()] == [("1", {0: 2})]
    assert {q.qid for q in coll.stream(20, seed=0)} == {"1"}


def test_unknown_docs_and_queries_warn_with_count_and_examples(tmp_path):
    paths = _write(tmp_path, DOCS, QUERIES, "1 0 d1 1\n1 0 d9 1\n2 0 d8 1\n7 0 d1 1\n")
    with pytest.warns(UserWarning) as record:
        coll = IRCollection.load(*paths)
    messages = [str(w.message) for w in record]
    assert any("skipped 2 judgment(s) of documents not in" in m and "['d9', 'd8']" in m
               for m in messages), messages
    assert any("skipped the judgments of 1 query id(s) not in" in m and "['7']" in m
               for m in messages), messages
    assert coll.qrels == {"1": {0: 1}, "2": {}}


@pytest.mark.parametrize("which, content, match", [
    ("queries", [QUERIES[0], "{not json\n"], r"queries.jsonl:2: invalid JSON"),
    ("queries", [QUERIES[0], {"qid": "2"}], r"queries.jsonl:2: missing required field 'query'"),
    ("queries", [QUERIES[0], QUERIES[0]], r"queries.jsonl:2: duplicate qid '1' \(first on line 1\)"),
    ("queries", [], r"queries.jsonl: the queries file is empty \(no JSON records\)"),
    ("corpus", [DOCS[0], {"title": "t"}], r"corpus.jsonl:2: missing required field 'id'"),
    ("qrels", "1 0 d1 1\n1 d2 1\n", r"qrels.txt:2: a qrels file line needs 4 columns"),
    ("qrels", "1 0 d1 high\n", r"qrels.txt:1: grade must be an integer, got 'high'"),
])
def test_bad_lines_name_file_and_line(tmp_path, which, content, match):
    corpus = content if which == "corpus" else DOCS
    queries = content if which == "queries" else QUERIES
    qrels = content if which == "qrels" else "1 0 d1 1\n"
    with pytest.raises(DataError, match=match):
        IRCollection.load(*_write(tmp_path, corpus, queries, qrels))


def test_stream_argument_errors(tmp_path):
    coll = IRCollection.load(*_write(tmp_path, DOCS, QUERIES, "1 0 d1 0\n"))
    with pytest.raises(ValueError, match=r"no query with a relevant \(grade >= 1\) document"):
        coll.stream(3, seed=0)
    with pytest.raises(ValueError, match=r"n must be an int >= 1. Got 0 instead."):
        coll.stream(0, seed=0)
    with pytest.raises(ValueError, match=r"seed must be a non-negative int. Got -2 instead."):
        coll.stream(3, seed=-2)
