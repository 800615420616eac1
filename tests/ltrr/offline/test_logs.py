import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ltrr.errors import DataError
from ltrr.offline.logs import LogReader, LogWriter, convert_log, export_event_log
from ltrr.reward import RewardSpec


def _records(path):
    return [r.to_json() for r in LogReader(path)]


def test_jsonl_and_parquet_logs_hold_the_same_records(sim_logs):
    a, b = _records(sim_logs["ltrr.jsonl"]), _records(sim_logs["ltrr.parquet"])
    assert len(a) == len(b) == 300
    assert a == b
    first = a[0]
    assert set(first) >= {"event_id", "ts", "query", "context", "shown", "clicks", "plan", "propensities",
                          "x", "reward", "strategy_rewards"}
    assert set(first["plan"]) == {"bm25", "memory"}
    assert 0 < first["propensities"]["plan"] <= 1
    assert all(set(r["clicks"]) <= set(r["shown"]) for r in a)
    foreign = _records(sim_logs["foreign.jsonl"])
    assert [r["clicks"] for r in foreign] == [r["clicks"] for r in a]
    assert "plan" not in foreign[0] and "x" not in foreign[0]


def test_columnar_batches_match_records(sim_logs, tmp_path):
    small = tmp_path / "small_groups.parquet"
    convert_log(sim_logs["ltrr.jsonl"], small, row_group_rows=64)
    reader = LogReader(small, batch_rows=50)
    batches = list(reader.batches())
    assert reader.n_row_groups() == 5 and [b.key for b in batches][:3] == [(0, 0), (0, 1), (1, 0)]
    recs = list(LogReader(sim_logs["ltrr.jsonl"]))
    depths = np.concatenate([b.depths for b in batches])
    np.testing.assert_array_equal(depths, [r.plan.depths for r in recs])
    np.testing.assert_array_equal(np.concatenate([b.propensity for b in batches]), [r.plan.propensity for r in recs])
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches]), np.stack([r.x for r in recs]))
    np.testing.assert_array_equal(np.concatenate([b.reward for b in batches]), [r.reward for r in recs])
    jsonl_batches = list(LogReader(sim_logs["ltrr.jsonl"], batch_rows=100).batches())
    np.testing.assert_array_equal(np.concatenate([b.strategy_reward for b in jsonl_batches]),
                                  np.concatenate([b.strategy_reward for b in batches]))


GOOD = {"ts": 10.0, "query": "alien", "context": {}, "shown": ["a", "b"], "clicks": ["a"],
        "plan": {"bm25": 10, "memory": 0}, "propensities": {"plan": 0.5, "strategies": {"bm25": 0.5, "memory": 1.0}},
        "x": [1.0, 0.5]}


def _bad_lines():
    lines = [dict(GOOD, event_id="e1")]
    lines.append({k: v for k, v in GOOD.items() if k != "query"} | {"event_id": "e2"})  # line 2
    lines.append(dict(GOOD, event_id="e3", clicks=["zzz"]))  # line 3: click not shown
    lines.append(dict(GOOD, event_id="e4", propensities={"plan": 0.0}))  # line 4
    lines.append(dict(GOOD, event_id="e5", propensities={"plan": 1.5}))  # line 5
    lines.append(dict(GOOD, event_id="e6", ts=5.0))  # line 6: time goes back (kept)
    return lines


def test_bad_jsonl_lines_are_counted_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    text = "\n".join(json.dumps(x) for x in _bad_lines()) + "\n{not json\n"
    path.write_text(text)
    reader = LogReader(path)
    kept = [r.event_id for r in reader]
    assert kept == ["e1", "e6"]
    rep = reader.report
    assert rep.records == 7 and rep.valid == 2
    assert rep.counts == {"malformed": 1, "missing_query": 1, "click_not_shown": 1, "bad_propensity": 2,
                          "out_of_order": 1}
    assert rep.examples["missing_query"] == [f"{path}:2: missing required field 'query'"]
    assert rep.examples["click_not_shown"][0].startswith(f"{path}:3: clicked item 'zzz' was not shown")
    assert rep.examples["bad_propensity"][0] == f"{path}:4: propensity of 'plan' is 0.0; it must be in (0, 1]"
    assert rep.examples["bad_propensity"][1].startswith(f"{path}:5: propensity of 'plan' is 1.5")
    assert rep.examples["malformed"][0].startswith(f"{path}:7: invalid JSON")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: missing required field 'query' \(strict mode"):
        list(LogReader(path, strict=True))


def test_bad_parquet_rows_are_counted_with_file_and_row(tmp_path):
    path = tmp_path / "bad.parquet"
    writer = LogWriter(path, ("bm25", "memory"))
    rows = []
    for x in _bad_lines():
        x = dict(x)
        x["context"] = "{}"
        x["propensities"] = {"plan": x["propensities"]["plan"], "strategies": {"bm25": 0.5, "memory": 1.0}}
        rows.append(x)
    pq.write_table(pa.Table.from_pylist(rows, schema=writer._schema()), path)
    writer._fh = None
    reader = LogReader(path)
    assert [r.event_id for r in reader] == ["e1", "e6"]
    assert reader.report.examples["missing_query"] == [f"{path}:row 1: missing required field 'query'"]
    assert reader.report.counts["bad_propensity"] == 2
    columnar = LogReader(path)
    (batch,) = list(columnar.batches())
    assert len(batch) == 2 and columnar.report.valid == 2
    assert columnar.report.counts["click_not_shown"] == 1
    assert columnar.report.examples["click_not_shown"] == [f"{path}:row 2: a clicked item was not shown"]
    assert columnar.report.examples["bad_propensity"][0].startswith(f"{path}:row 3: propensity of 'plan' is 0.0")
    with pytest.raises(DataError, match=r"bad\.parquet:row 1: missing required field 'query'"):
        list(LogReader(path, strict=True).batches())


def test_empty_log_is_a_clear_error_and_nonzero_exit(tmp_path, small_config_path):
    from ltrr.cli import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    reader = LogReader(empty)
    assert list(reader) == []
    with pytest.raises(DataError, match=r"empty\.jsonl: the log is empty \(no records\)"):
        reader.report.check_nonempty()
    res = CliRunner().invoke(main, ["replay", "--log", str(empty), "--config", str(small_config_path),
                                    "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 2
    assert "the log is empty (no records)" in res.output
    with pytest.raises(DataError, match="no such click log"):
        LogReader(tmp_path / "missing.jsonl")


def test_export_of_the_engine_event_log_round_trips(tmp_path, small_config_path):
    from ltrr.config import load_config
    from ltrr.engine import Engine
    from ltrr.types import Feedback

    cfg = load_config(small_config_path)
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"events_path": str(tmp_path / "ev.sqlite")})})
    engine = Engine.from_config(cfg)
    decisions = []
    for i, q in enumerate(["alien", "the godfather", "comedy 1990s", "alien"]):
        d = engine.search(q, {"i": i}, ts=100.0 + i)
        clicks = list(d.page_ids[:1]) if i % 2 == 0 else []
        engine.feedback(Feedback.clicks(d.event_id, clicks, ts=101.0 + i))
        decisions.append((d, clicks))
    engine.close()
    n = export_event_log(tmp_path / "ev.sqlite", tmp_path / "export.jsonl", RewardSpec(cost_per_candidate=0.0005), batch=3)
    assert n == 4
    recs = list(LogReader(tmp_path / "export.jsonl"))
    for rec, (d, clicks) in zip(recs, decisions, strict=True):
        assert rec.event_id == d.event_id and rec.query == d.query and rec.context == {"i": d.context["i"]}
        assert rec.shown == d.page_ids and list(rec.clicks) == clicks
        assert rec.plan.depths == d.plan.depths and rec.plan.propensity == pytest.approx(d.plan.propensity)
        np.testing.assert_allclose(rec.x, d.x)
        cost = 0.0005 * sum(d.plan.depths)
        assert rec.reward == pytest.approx((1.0 if clicks else 0.0) - cost)


def test_log_cli_check_convert_and_bad_input(sim_logs, tmp_path):
    from ltrr.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["log", "check", str(sim_logs["ltrr.jsonl"])])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("300 records, 300 usable") and res.stdout.endswith("; 300 with plan and propensities\n")
    res = runner.invoke(main, ["log", "check", str(sim_logs["ltrr.jsonl"]), "--json"])
    assert json.loads(res.stdout)["with_plan"] == 300
    out = tmp_path / "c.parquet"
    res = runner.invoke(main, ["log", "convert", str(sim_logs["foreign.jsonl"]), str(out), "--row-group-rows", "100"])
    assert res.exit_code == 0, res.output
    assert LogReader(out).n_row_groups() == 3
    assert _records(out) == _records(sim_logs["foreign.jsonl"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"ts": 1.0, "shown": ["a"], "clicks": []}) + "\n")
    res = runner.invoke(main, ["log", "check", str(bad), "--strict"])
    assert res.exit_code == 2
    assert f"{bad}:1: missing required field 'query' (strict mode" in res.output


def test_logged_rewards_follow_the_engine_reward_kind(tmp_path, offline_dir):
    """record_from_decision credits a decision exactly as the learner does, for both kinds."""
    from ltrr.config import load_config
    from ltrr.engine import Engine
    from ltrr.offline.logs import record_from_decision
    from ltrr.reward import RewardSpec

    from .conftest import small_config_text

    for kind in ("any_click", "click_dcg"):
        cfg_path = tmp_path / f"{kind}.toml"
        cfg_path.write_text(small_config_text(policy="fixed", params="{ depths = { bm25 = 100, memory = 10 } }",
                                              reward_kind=kind))
        engine = Engine.from_config(load_config(cfg_path))
        for q in ("the", "love story", "comedy 1990s"):
            d = engine.search(q, {}, ts=1.0)
            assert len(d.page_ids) >= 2
            clicked = [d.page_ids[0], d.page_ids[-1]]
            rec = record_from_decision(d, clicked, RewardSpec.from_config(engine.config))
            want, want_s, _ = engine.learner.credit(d.candidates, d.page, d.plan.depths,
                                                    engine.catalog.rows_of(clicked), d.strategy_ms)
            assert rec.reward == pytest.approx(want, abs=1e-12), kind
            np.testing.assert_allclose(rec.strategy_rewards, want_s, atol=1e-12)
        engine.close()
