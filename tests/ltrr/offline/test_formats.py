"""Foreign log formats, format detection, and bad input: one clear error naming the file and
row, exit status 2, nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ltrr.config import SHARED_DATA_DIR
from ltrr.errors import ConfigError, DataError
from ltrr.offline.formats import ColumnMapping, detect_format, read_action_log

OBD = SHARED_DATA_DIR / "obd/random/all/all.csv"


def _cli(*args):
    from ltrr.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _toy(n: int = 400, seed: int = 0):
    """A logged 3-action bandit: uniform logger, a reward depending on a context column."""
    rng = np.random.default_rng(seed)
    f = rng.random(n)
    action = rng.integers(0, 3, n)
    reward = (rng.random(n) < np.where(action == (f > 0.5).astype(int), 0.6, 0.1)).astype(float)
    return f, action, reward


def _write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


@pytest.fixture
def toy_csv(tmp_path):
    f, action, reward = _toy()
    ids = np.array(["red", "green", "blue"])[action]
    rows = zip(ids, reward, np.full(len(f), 1 / 3), f, np.where(f > 0.3, "a", "b"), strict=True)
    return _write_csv(tmp_path / "toy.csv", ["item", "clicked", "p", "feat", "seg"], rows)


def test_columns_format_with_a_command_line_and_a_toml_mapping(toy_csv, tmp_path):
    with pytest.raises(DataError, match=r"toy\.csv: no column for action, reward or cost, propensity; name them with --map"):
        read_action_log(toy_csv, "columns")
    m = ColumnMapping.parse(["action=item", "reward=clicked", "propensity=p", "context=feat,se*"])
    log = read_action_log(toy_csv, detect_format(toy_csv, None, m), m)
    assert log.format == "columns" and log.labels == ("blue", "green", "red") and log.n_actions == 3
    assert log.context.shape == (400, 2)  # feat, and seg one-hot with its first category dropped
    toml = tmp_path / "map.toml"
    toml.write_text('action = "item"\ncost = "clicked"\npropensity = "p"\ncontext = ["feat"]\n')
    log2 = read_action_log(toy_csv, "columns", ColumnMapping.parse(toml_path=toml))
    np.testing.assert_array_equal(log2.reward, -log.reward)
    bad = tmp_path / "bad.toml"
    bad.write_text('action = "item"\nreward_col = "clicked"\n')
    with pytest.raises(ConfigError, match=r"unknown column-mapping key 'reward_col'; allowed keys: action, reward, cost"):
        ColumnMapping.parse(toml_path=bad)


def test_ope_of_a_mapped_csv_with_a_uniform_and_a_greedy_target(toy_csv, tmp_path):
    f = np.loadtxt(toy_csv, delimiter=",", skiprows=1, usecols=3)
    # labels sorted: blue=0, green=1, red=2; the good action is red (2) when f <= 0.5, green (1) else
    good = np.where(f > 0.5, 1, 2)
    greedy = np.eye(3)[good] * 0.9 + 0.1 / 3
    np.save(tmp_path / "greedy.npy", greedy)
    np.save(tmp_path / "uniform.npy", np.full((1, 3), 1 / 3))
    res = _cli("ope", "--log", toy_csv, "--map", "action=item", "--map", "reward=clicked", "--map", "propensity=p",
               "--map", "context=feat", "--target-dist", tmp_path / "greedy.npy", "--target-dist",
               tmp_path / "uniform.npy", "--reward-model", "lightgbm", "--reward-param", "n_estimators=20",
               "--bootstrap", "50", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o" / "ope.json").read_text())
    logged = out["logged_value"]
    uni = out["policies"]["uniform"]["estimates"]
    assert uni["ips"]["value"] == pytest.approx(logged, abs=1e-12)  # the logger itself
    assert out["policies"]["uniform"]["diagnostics"]["effective_sample_size"] == pytest.approx(400)
    gre = out["policies"]["greedy"]["estimates"]
    for name in ("ips", "snips", "dr", "sndr"):
        assert gre[name]["value"] > logged + 0.1, name
    assert out["reward_model"]["kind"] == "lightgbm" and out["reward_model"]["params"]["n_estimators"] == 20
    # the same target as Parquet (one list column per round) gives the same numbers
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"dist": pa.array(greedy.tolist())}), tmp_path / "greedy.parquet")
    res = _cli("ope", "--log", toy_csv, "--map", "action=item", "--map", "reward=clicked", "--map", "propensity=p",
               "--target-dist", tmp_path / "greedy.parquet", "--estimators", "ips,snips", "--bootstrap", "0",
               "--out", tmp_path / "pq")
    assert res.exit_code == 0, res.output
    pqo = json.loads((tmp_path / "pq" / "ope.json").read_text())["policies"]["greedy"]["estimates"]
    assert pqo["ips"]["value"] == pytest.approx(gre["ips"]["value"], abs=1e-12)
    np.save(tmp_path / "short.npy", greedy[:10])
    res = _cli("ope", "--log", toy_csv, "--map", "action=item", "--map", "reward=clicked", "--map", "propensity=p",
               "--target-dist", tmp_path / "short.npy", "--out", tmp_path / "short")
    assert res.exit_code == 2 and "short.npy: action distribution has shape (10, 3);" in res.output


def test_unsupported_formats_are_one_clear_error(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello world\n")
    res = _cli("ope", "--log", txt, "--target-dist", txt, "--out", tmp_path / "o")
    assert res.exit_code == 2 and sum(x.startswith("error:") for x in res.output.splitlines()) == 1
    assert "unsupported log format" in res.output and "dsjson" in res.output and "obd" in res.output
    js = tmp_path / "x.jsonl"
    js.write_text(json.dumps({"user": 1, "thing": 2}) + "\n")
    with pytest.raises(DataError, match=r"unsupported log format: the first record has keys \['thing', 'user'\]"):
        detect_format(js)
    with pytest.raises(ConfigError, match="Unsupported log format 'avro'"):
        detect_format(js, "avro")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not OBD.exists(), reason="Open Bandit Dataset sample not present")
def test_bad_input_names_the_file_and_row_and_writes_nothing(tmp_path):
    lines = OBD.read_text().splitlines()
    out = tmp_path / "report"
    out.mkdir()
    (out / "ope.json").write_text('{"earlier": true}')
    dist = tmp_path / "u.npy"
    np.save(dist, np.full((1, 80, 3), 1 / 80))

    def run(log, *extra):
        return _cli("ope", "--log", log, "--target-dist", dist, "--out", out, "--bootstrap", "0", *extra)

    cases = []
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases.append((empty, "the file is empty (0 bytes)"))
    trunc = tmp_path / "trunc.csv"
    trunc.write_text("\n".join(lines[:50]) + "\n" + lines[50][:40] + "\n")
    cases.append((trunc, "trunc.csv:line 51 (has 4 fields, the header 90): cannot read it as CSV"))
    nocol = tmp_path / "nocol.csv"
    header = lines[0].split(",")
    keep = [i for i, c in enumerate(header) if c != "propensity_score"]
    nocol.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in lines[:20]) + "\n")
    cases.append((nocol, "missing column(s) ['propensity_score'] needed by the Open Bandit Dataset format"))
    badp = tmp_path / "badp.csv"
    rows = lines[:30]
    cells = rows[17].split(",")
    cells[header.index("propensity_score")] = "1.5"
    rows[17] = ",".join(cells)
    badp.write_text("\n".join(rows) + "\n")
    cases.append((badp, "badp.csv:line 18: propensity 1.5 is outside (0, 1]"))
    notpq = tmp_path / "log.parquet"
    notpq.write_text("this is not parquet")
    cases.append((notpq, "not a Parquet file"))
    for log, message in cases:
        res = run(log)
        assert res.exit_code == 2, (log, res.output)
        assert message in res.output, (log, res.output)
        assert sum(x.startswith("error:") for x in res.output.splitlines()) == 1
    assert json.loads((out / "ope.json").read_text()) == {"earlier": True}  # untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []


def test_truncated_and_empty_ltrr_parquet_logs(sim_logs, tmp_path):
    data = sim_logs["ltrr.parquet"].read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    res = _cli("log", "check", cut)
    assert res.exit_code == 2 and "truncated Parquet file" in res.output
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    res = _cli("ope", "--log", empty, "--policy", "x.toml", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "empty.parquet: the file is empty (0 bytes)" in res.output


def test_log_check_exit_status_and_convert_of_unusable_logs(sim_logs, tmp_path):
    good = _cli("log", "check", sim_logs["ltrr.jsonl"])
    assert good.exit_code == 0, good.output
    lines = sim_logs["ltrr.jsonl"].read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:5] + ['{"ts": 1.0, "shown": []}'] + lines[5:10]) + "\n")
    res = _cli("log", "check", bad)
    assert res.exit_code == 1 and "missing_query: 1" in res.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for src in (empty, bad.with_name("junk.jsonl")):
        if src.name == "junk.jsonl":
            src.write_text('{"ts": 1}\n{"ts": 2}\n')
        dst = tmp_path / f"{src.stem}.parquet"
        res = _cli("log", "convert", src, dst)
        assert res.exit_code == 2, res.output
        assert res.output.startswith("error:") and "Traceback" not in res.output
        assert not dst.exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.skipif(not OBD.exists(), reason="Open Bandit Dataset sample not present")
def test_convert_obd_to_the_normalized_columns_layout_and_back(tmp_path):
    dst = tmp_path / "obd.parquet"
    res = _cli("log", "convert", OBD, dst)
    assert res.exit_code == 0, res.output
    assert detect_format(dst) == "columns"
    a, b = read_action_log(OBD, "obd"), read_action_log(dst, "columns")
    for name in ("action", "position", "reward", "pscore", "context"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    res = _cli("log", "check", OBD)
    assert res.exit_code == 0 and "(obd); 80 actions, 3 positions" in res.output
    res = _cli("log", "check", OBD, "--json")
    assert res.exit_code == 0 and '"format": "obd"' in res.output


def test_factored_ips_without_strategy_rewards_is_unavailable_not_zero(sim_logs, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ltrr.offline.ope import evaluate, target_specs

    table = pq.read_table(sim_logs["ltrr.parquet"])
    i = table.column_names.index("strategy_rewards")
    nulls = pc.if_else(pc.equal(table.column("reward"), table.column("reward")), None, table.column(i))
    stripped = tmp_path / "no_sr.parquet"
    pq.write_table(table.set_column(i, "strategy_rewards", nulls), stripped)
    cfg = tmp_path / "eg.toml"
    from .conftest import small_config_text

    cfg.write_text(small_config_text())
    for log in (stripped, sim_logs["ltrr.parquet"]):
        out = evaluate(log, target_specs([str(cfg)]), n_bootstrap=0, estimators=["ips", "factored-ips"])
        fac = out["policies"]["eg"]["estimates"]["factored-ips"]
        if log == stripped:
            assert fac["status"] == "unavailable" and fac["value"] is None
            assert "no per-strategy rewards" in fac["reason"]
        else:
            assert fac["status"] == "ok" and fac["value"] != 0.0
