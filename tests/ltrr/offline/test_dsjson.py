"""A real Vowpal Wabbit DSJSON log, made by VW, evaluated by ``ltrr ope``.

The logger is a VW ``cb_explore_adf`` (epsilon-greedy) learning online: each event's
distribution comes from VW's prediction, the action is sampled from it, and the event is written
in the decision service's DSJSON layout and learned back *through VW's own DSJSON parser*
(``--dsjson``), so the file is one VW reads. The target is another VW model trained offline on
the log; the CLI's IPS must equal the value computed here from VW's own predictions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import vowpalwabbit as vw  # noqa: E402  (a core dependency: never skipped)
from click.testing import CliRunner

TIERS = ("free", "pro", "team")
ITEMS = ("news", "sports", "music", "films")
# click probability of each (tier, item)
CTR = np.array([[0.1, 0.5, 0.2, 0.1], [0.6, 0.1, 0.1, 0.3], [0.2, 0.2, 0.7, 0.1]])


def _event(i: int, tier: str, age: float, chosen: int, pmf: np.ndarray, cost: float) -> dict:
    order = [chosen] + [a for a in range(len(ITEMS)) if a != chosen]
    return {"_label_cost": cost, "_label_probability": float(pmf[chosen]), "_label_Action": chosen + 1,
            "_labelIndex": chosen, "Timestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.0000000Z",
            "Version": "1", "EventId": f"ev-{i}", "a": [a + 1 for a in order],
            "c": {"User": {"tier": tier, "age": age},
                  "_multi": [{"Item": {"id": item}} for item in ITEMS]},
            "p": [float(pmf[a]) for a in order], "VWState": {"m": "logger/1"}}


@pytest.fixture(scope="module")
def dsjson(tmp_path_factory):
    d = tmp_path_factory.mktemp("dsjson")
    rng = np.random.default_rng(5)
    logger = vw.Workspace("--cb_explore_adf --epsilon 0.3 --dsjson --quiet -q UI --random_seed 5")
    lines = []
    for i in range(400):
        t = int(rng.integers(len(TIERS)))
        probe = json.dumps(_event(i, TIERS[t], float(rng.integers(18, 70)), 0, np.full(4, 0.25), 0.0))
        ex = logger.parse(probe)
        pmf = np.asarray(logger.predict(ex), dtype=np.float64)
        logger.finish_example(ex)
        pmf /= pmf.sum()
        a = int(rng.choice(len(ITEMS), p=pmf))
        click = rng.random() < CTR[t, a]
        age = json.loads(probe)["c"]["User"]["age"]
        line = json.dumps(_event(i, TIERS[t], age, a, pmf, -1.0 if click else 0.0))
        ex = logger.parse(line)  # VW's own DSJSON parser reads what we write
        logger.learn(ex)
        logger.finish_example(ex)
        lines.append(line)
    logger.finish()
    log = d / "cb.dsjson"
    log.write_text("\n".join(lines) + "\n")
    target = vw.Workspace(f"--cb_explore_adf --epsilon 0.05 --dsjson --quiet -q UI -f {d / 'target.vw'}")
    for line in lines:
        ex = target.parse(line)
        target.learn(ex)
        target.finish_example(ex)
    target.finish()
    return {"log": log, "target": d / "target.vw", "lines": lines}


def test_a_vw_dsjson_log_is_detected_and_read(dsjson):
    from ltrr.offline.formats import detect_format, read_action_log

    assert detect_format(dsjson["log"]) == "dsjson"
    log = read_action_log(dsjson["log"], "dsjson")
    assert len(log) == 400 and log.n_actions == 4 and log.len_list == 1
    first = json.loads(dsjson["lines"][0])
    assert log.action[0] == first["_labelIndex"] and log.pscore[0] == first["_label_probability"]
    assert log.reward[0] == -first["_label_cost"]
    np.testing.assert_allclose(log.logged_pmf.sum(axis=1), 1.0, atol=1e-6)
    assert (log.logged_pmf > 0).all()  # epsilon-greedy: every action has mass
    # the tier is a string feature: one hashed indicator column per tier value
    assert log.context.shape == (400, 256) and (log.context != 0).sum(axis=1).min() >= 2


def test_ope_of_a_vw_model_on_its_dsjson_log(dsjson, tmp_path):
    from ltrr.cli import main

    res = CliRunner().invoke(main, ["ope", "--log", str(dsjson["log"]), "--vw-model", f"target={dsjson['target']}",
                                    "--bootstrap", "50", "--reward-model", "ridge", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "o" / "ope.json").read_text())
    assert result["log"]["format"] == "dsjson" and result["rounds"] == 400
    # the target's distribution, asked of VW directly
    ws = vw.Workspace(f"-i {dsjson['target']} -t --dsjson --quiet")
    pi = []
    for line in dsjson["lines"]:
        ex = ws.parse(line)
        p = np.asarray(ws.predict(ex), dtype=np.float64)
        ws.finish_example(ex)
        pi.append(p / p.sum())
    ws.finish()
    ev = [json.loads(x) for x in dsjson["lines"]]
    w = np.array([pi[i][e["_labelIndex"]] / e["_label_probability"] for i, e in enumerate(ev)])
    r = np.array([-e["_label_cost"] for e in ev])
    est = result["policies"]["target"]["estimates"]
    assert est["ips"]["value"] == pytest.approx(float(np.mean(w * r)), abs=1e-9)
    assert est["snips"]["value"] == pytest.approx(float((w * r).sum() / w.sum()), abs=1e-9)
    # the learned target clicks more than the exploring logger did
    assert est["snips"]["value"] > result["logged_value"]
    d = result["policies"]["target"]["diagnostics"]
    assert d["effective_sample_size"] == pytest.approx(w.sum() ** 2 / (w * w).sum(), rel=1e-9)
    assert d["unsupported_mass"] == 0.0 and not d["deterministic_logger"]
    for name in ("dm", "dr", "sndr", "switch-dr"):
        assert est[name]["status"] == "ok", name
    assert "factored-ips" not in est  # per-strategy plans exist only in ltrr logs


def test_deterministic_dsjson_log_is_not_identifiable(dsjson, tmp_path):
    """A logger that always serves its argmax with probability 1: IPS-family estimates of another
    policy are "not identifiable", with the warning, in the table and in ope.json."""
    from ltrr.cli import main

    lines = []
    for line in dsjson["lines"]:
        e = json.loads(line)
        e["_label_probability"] = 1.0
        e["p"] = [1.0] + [0.0] * (len(e["p"]) - 1)
        lines.append(json.dumps(e))
    path = tmp_path / "det.dsjson"
    path.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["ope", "--log", str(path), "--vw-model", f"target={dsjson['target']}",
                                    "--bootstrap", "20", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "not identifiable" in res.output and "deterministic logger" in res.output
    result = json.loads((tmp_path / "o" / "ope.json").read_text())
    est = result["policies"]["target"]["estimates"]
    for name in ("ips", "snips", "dr", "sndr", "switch-dr"):
        assert est[name]["status"] == "not identifiable" and est[name]["value"] is None, name
    assert est["dm"]["status"] == "ok"
    d = result["policies"]["target"]["diagnostics"]
    assert d["deterministic_logger"] and d["unsupported_mass"] > 0.3
