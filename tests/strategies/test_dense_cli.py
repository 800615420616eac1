import json

from click.testing import CliRunner

from ltrr.cli import main


def test_index_check_recall_reports_exact_recall(tmp_path, repo_root):
    src = (repo_root / "data" / "cranfield" / "corpus.jsonl").read_text().splitlines()[:150]
    cat = tmp_path / "c.jsonl"
    cat.write_text("\n".join(src) + "\n")
    res = CliRunner().invoke(main, ["index", "--catalog", str(cat), "--index", "flat", "--text-fields",
                                    "title", "--check-recall", "--sample", "50", "--out", str(tmp_path / "idx"),
                                    "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["saved"] == str(tmp_path / "idx")
    report = out["recall"]
    assert report["index"] == "flat" and report["n_items"] == 150
    assert report["recall_at_k"] == 1.0
    assert (tmp_path / "idx" / "index.faiss").exists()
