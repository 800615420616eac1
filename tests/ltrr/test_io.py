import pytest

from ltrr.catalog import Catalog
from ltrr.errors import DataError
from ltrr.io import read_qrels, read_queries, read_run, write_run


def test_malformed_json_line_names_file_and_line(tmp_path):
    p = tmp_path / "cat.jsonl"
    p.write_text('{"id": "a", "title": "A"}\n{"id": "b", "title": \n')
    with pytest.raises(DataError, match=r"cat\.jsonl:2: invalid JSON"):
        Catalog.from_jsonl(p)


def test_wrong_field_type_names_field(tmp_path):
    p = tmp_path / "cat.jsonl"
    p.write_text('{"id": "a", "title": "A"}\n\n{"id": "b", "title": 7}\n')
    with pytest.raises(DataError, match=r"cat\.jsonl:3: field 'title' must be str, got int"):
        Catalog.from_jsonl(p)


def test_missing_id_and_duplicate_id(tmp_path):
    p = tmp_path / "cat.jsonl"
    p.write_text('{"title": "A"}\n')
    with pytest.raises(DataError, match=r"cat\.jsonl:1: missing required field 'id'"):
        Catalog.from_jsonl(p)
    p.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(DataError, match=r"cat\.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        Catalog.from_jsonl(p)


def test_catalog_compose_from_fields(small_movies):
    text = small_movies.compose_one(0, ["title", "directors", "genres", "year"])
    assert text == "We Live in Public Ondi Timoner Documentary 2009"


def test_queries_qrels_runs(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"qid": 1, "query": "a b"}\n{"qid": "2"}\n')
    with pytest.raises(DataError, match=r"q\.jsonl:2: missing required field 'query'"):
        read_queries(q)
    qr = tmp_path / "qrels.txt"
    qr.write_text("1 0 d1 2\n1 0 d2 x\n")
    with pytest.raises(DataError, match=r"qrels\.txt:2: grade must be an integer, got 'x'"):
        read_qrels(qr)
    run = tmp_path / "r.run"
    write_run(run, {"1": [("d1", 2.0), ("d2", 1.0)]}, tag="t")
    assert read_run(run) == {"1": {"d1": 2.0, "d2": 1.0}}
    assert run.read_text().splitlines()[0] == "1 Q0 d1 1 2.000000 t"
