import json

import numpy as np
import pytest
from click.testing import CliRunner

from ltrr.errors import DataError
from ltrr.offline.estimators import DM, DR, IPS, SNDR, SNIPS, FactoredIPS, SwitchDR, plan_arrays
from ltrr.offline.logs import LogReader, convert_log
from ltrr.offline.ope import (
    ESTIMATOR_NAMES,
    RewardModel,
    batch_probabilities,
    evaluate,
    fold_of,
    load_policy,
    shard_reward_model,
    target_specs,
)
from ltrr.offline.rewardmodel import RewardModelSpec

from .conftest import small_config_text


@pytest.fixture(scope="module")
def targets(offline_dir):
    """A fixed plan, a uniform-ish epsilon-greedy and a trained softmax and epsilon-greedy policy."""

    paths = []
    fixed = offline_dir / "bm25_only.toml"
    fixed.write_text(small_config_text(policy="fixed", params="{ depths = { bm25 = 100 } }"))
    paths.append(str(fixed))
    rng = np.random.default_rng(0)
    for kind, params in (("epsilon_greedy", "{ epsilon = 0.2 }"), ("softmax", "{ temperature = 0.1 }")):
        cfg = offline_dir / f"{kind}.toml"
        cfg.write_text(small_config_text(policy=kind, params=params))
        policy = load_policy(cfg)
        X = rng.random((200, policy.n_features))
        R = rng.random((200, policy.menu.n_actions)) * X[:, [1]]
        policy.warm_start(X, R)
        policy.save(offline_dir / f"trained_{kind}")
        paths.append(str(offline_dir / f"trained_{kind}"))
    return target_specs(paths)


def test_batch_probabilities_equal_per_row_probabilities(targets, sim_logs):
    X = np.stack([r.x for r in LogReader(sim_logs["ltrr.jsonl"])])
    for spec in targets:
        policy = load_policy(spec.source)
        P = batch_probabilities(policy, X)
        rows = np.stack([policy.probabilities(x) for x in X])
        np.testing.assert_allclose(P, rows, rtol=0, atol=1e-12, err_msg=spec.name)
    with pytest.raises(ValueError, match="context has shape"):
        batch_probabilities(policy, X[:, :3])


def test_pipeline_equals_the_estimators_on_full_arrays(targets, sim_logs):
    """The column sums of the streaming pipeline give the estimators' own values (to 1e-12)."""
    log = sim_logs["ltrr.parquet"]
    result = evaluate(log, targets, n_bootstrap=0, reward_model=RewardModelSpec("ridge", folds=1))
    obp_result = evaluate(log, targets, n_bootstrap=30, seed=3, bootstrap_method="obp",
                          reward_model=RewardModelSpec("ridge", folds=1))
    recs = list(LogReader(log))
    X = np.stack([r.x for r in recs])
    reward = np.array([r.reward for r in recs])
    pscore = np.array([r.plan.propensity for r in recs])
    stats, _ = shard_reward_model(str(log), None)
    model = RewardModel.solve(stats)
    for spec in targets:
        policy = load_policy(spec.source)
        menu = policy.menu
        action = np.array([menu.action_of(r.plan.depths) for r in recs])
        assert (action >= 0).all()
        dist = batch_probabilities(policy, X)[:, :, None]
        q = (X @ model.matrix(menu.plans).T)[:, :, None]
        kw = dict(action_dist=dist, reward=reward, action=action, pscore=pscore,
                  estimated_rewards_by_reg_model=q)
        got = result["policies"][spec.name]["estimates"]
        obp = obp_result["policies"][spec.name]["estimates"]
        for est in (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR()):
            want = est.estimate_policy_value(**kw)
            assert got[est.label]["value"] == pytest.approx(want, abs=1e-12), (spec.name, est.label)
            if obp[est.label]["status"] == "ok":  # OBP's bootstrap of the same per-round terms
                ci = est.estimate_interval(**kw, n_bootstrap_samples=30, random_state=3)
                assert obp[est.label]["ci_low"] == pytest.approx(ci.low, abs=1e-12)
                assert obp[est.label]["ci_high"] == pytest.approx(ci.high, abs=1e-12)
        names, depth_index, sp = plan_arrays([r.plan for r in recs], {s: list(o) for s, o in zip(menu.strategies, menu.options, strict=True)})
        width = max(len(o) for o in menu.options)
        marg = np.zeros((len(recs), len(names), width))
        for s, opts in enumerate(menu.options):
            onehot = menu.plans[:, s][:, None] == np.asarray(opts)[None, :]
            marg[:, s, : len(opts)] = dist[:, :, 0] @ onehot
        sr = np.stack([r.strategy_rewards for r in recs])
        want = FactoredIPS().estimate_policy_value(sr, depth_index, sp, marg)
        fac = got["factored-ips"]
        assert fac["value"] == pytest.approx(want, abs=1e-12)
        assert sum(fac["per_strategy"].values()) == pytest.approx(fac["value"], abs=1e-12)
    # the fixed bm25-only target puts all mass on one plan: its IPS is the mean of reward/propensity there
    fixed = targets[0].name
    mask = np.array([r.plan.depths == (100, 0) for r in recs])
    assert result["policies"][fixed]["estimates"]["ips"]["value"] == pytest.approx(
        (reward[mask] / pscore[mask]).sum() / len(recs), abs=1e-12)


def test_bootstrap_intervals_cover_the_estimate_and_are_seeded(targets, sim_logs):
    a = evaluate(sim_logs["ltrr.jsonl"], targets[:2], n_bootstrap=100, seed=1)
    b = evaluate(sim_logs["ltrr.jsonl"], targets[:2], n_bootstrap=100, seed=1)
    c = evaluate(sim_logs["ltrr.jsonl"], targets[:2], n_bootstrap=100, seed=2)
    assert a["policies"] == b["policies"]
    assert a["policies"] != c["policies"]
    for p in a["policies"].values():
        for name, e in p["estimates"].items():
            assert e["ci_low"] <= e["value"] <= e["ci_high"], name
            # model-based estimators (DM, and switch-DR where most weights exceed tau) are narrow;
            # the importance-weighted ones are not
            width = e["ci_high"] - e["ci_low"]
            assert width > (0.2 * abs(e["value"]) if name in ("ips", "snips") else 0.0), name


def test_shard_parallel_on_dask_equals_single_process(targets, sim_logs, tmp_path):
    from ltrr.cluster import local_client
    from ltrr.offline.shards import shard_row_groups

    log = tmp_path / "groups.parquet"
    convert_log(sim_logs["ltrr.jsonl"], log, row_group_rows=40)
    assert shard_row_groups(str(log), 3) == [[0, 1, 2], [3, 4], [5, 6, 7]]
    single = evaluate(log, targets, n_bootstrap=50, seed=3)
    client = local_client(2)
    try:
        sharded = evaluate(log, targets, n_bootstrap=50, seed=3, shards=3, client=client)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert sharded["shards"] == 3 and sharded["rounds"] == single["rounds"] == 300
    for name, p in single["policies"].items():
        q = sharded["policies"][name]
        for est, e in p["estimates"].items():
            for key in ("value", "ci_low", "ci_high"):
                if e.get(key) is not None:
                    assert q["estimates"][est][key] == pytest.approx(e[key], abs=1e-12), (name, est, key)
        assert q["effective_sample_size"] == pytest.approx(p["effective_sample_size"], rel=1e-12)


def test_ope_cli_writes_json_and_report(targets, sim_logs, tmp_path):
    from ltrr.cli import main

    args = ["ope", "--log", str(sim_logs["ltrr.parquet"]), "--bootstrap", "20", "--out", str(tmp_path / "o")]
    for spec in targets[:2]:
        args += ["--policy", spec.source]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "300 rounds evaluated" in res.output and "switch-dr" in res.output
    data = json.loads((tmp_path / "o" / "ope.json").read_text())
    assert set(data["policies"][targets[0].name]["estimates"]) == set(ESTIMATOR_NAMES)
    assert "estimates.png" in (tmp_path / "o" / "report.html").read_text()
    assert (tmp_path / "o" / "estimates.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(main, ["ope", "--log", str(sim_logs["foreign.jsonl"]), "--policy",
                                    targets[0].source, "--out", str(tmp_path / "f")])
    assert res.exit_code == 2
    assert "none of the 300 records is usable" in res.output
    res = CliRunner().invoke(main, ["ope", "--log", str(sim_logs["ltrr.jsonl"]), "--policy", targets[0].source,
                                    "--estimators", "ips,magic", "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "Unknown estimator 'magic'" in res.output


def test_sharding_needs_parquet(targets, sim_logs):
    with pytest.raises(DataError, match="shard-parallel evaluation reads Parquet row groups"):
        evaluate(sim_logs["ltrr.jsonl"], targets[:1], shards=2)


def test_target_with_other_context_features_is_a_clear_error(sim_logs, offline_dir):
    cfg = offline_dir / "few_features.toml"
    cfg.write_text(small_config_text() + '\ncontext_features = ["bias", "n_tokens"]\n')
    text = cfg.read_text()
    # context_features is a top-level key: move it above the first table
    cfg.write_text('context_features = ["bias", "n_tokens"]\n' + text.replace('\ncontext_features = ["bias", "n_tokens"]\n', ""))
    with pytest.raises(DataError, match=r"target 'few_features' cannot score the logged contexts: .*context has shape \(11,\), expected \(2,\)"):
        evaluate(sim_logs["ltrr.jsonl"], target_specs([str(cfg)]), n_bootstrap=0)


def test_cross_fitted_reward_model_predicts_each_round_from_the_other_folds(targets, sim_logs):
    """With K folds, a round's DM term uses the ridge model solved without its own fold; the
    folds are seeded per chunk, so the result is reproducible and differs from in-sample."""
    log = sim_logs["ltrr.jsonl"]
    spec = RewardModelSpec("ridge", folds=3, seed=4)
    got = evaluate(log, targets[1:2], n_bootstrap=0, seed=4, reward_model=spec, estimators=["dm", "dr"])
    insample = evaluate(log, targets[1:2], n_bootstrap=0, seed=4, estimators=["dm", "dr"],
                        reward_model=RewardModelSpec("ridge", folds=1))
    batches = list(LogReader(log).batches())
    X = np.concatenate([b.x for b in batches])
    fold = np.concatenate([fold_of(b, 3, 4) for b in batches])
    depths = np.concatenate([b.depths for b in batches])
    reward = np.concatenate([b.reward for b in batches])
    assert sorted(np.bincount(fold).tolist()) == sorted(np.bincount(fold).tolist()) and len(set(fold)) == 3
    policy = load_policy(targets[1].source)
    P = batch_probabilities(policy, X)
    q_target = np.zeros(len(X))
    for k in range(3):
        train = fold != k
        thetas = {}
        for plan in {tuple(p) for p in depths[train]}:
            m = train & (depths == plan).all(axis=1)
            thetas[plan] = np.linalg.solve(X[m].T @ X[m] + np.eye(X.shape[1]), X[m].T @ reward[m])
        pooled = np.linalg.solve(X[train].T @ X[train] + np.eye(X.shape[1]), X[train].T @ reward[train])
        M = np.stack([thetas.get(tuple(p), pooled) for p in policy.menu.plans])
        q_target[fold == k] = np.einsum("ij,ij->i", P[fold == k], X[fold == k] @ M.T)
    name = targets[1].name
    assert got["policies"][name]["estimates"]["dm"]["value"] == pytest.approx(q_target.mean(), abs=1e-12)
    assert got["reward_model"]["folds"] == 3 and got["reward_model"]["cross_fitted"]
    assert got["policies"][name]["estimates"]["dm"]["value"] != pytest.approx(
        insample["policies"][name]["estimates"]["dm"]["value"], abs=1e-6)


def test_cli_on_an_external_scheduler_equals_single_process(targets, sim_logs, tmp_path):
    """``--scheduler tcp://...``: both passes on a running cluster's workers; estimates and
    Poisson intervals equal the single-process run's to 1e-12; no Dask chatter in the output."""
    from ltrr.cli import main
    from ltrr.cluster import close_client, local_client

    log = tmp_path / "groups.parquet"
    convert_log(sim_logs["ltrr.jsonl"], log, row_group_rows=60)
    base = ["ope", "--log", str(log), "--bootstrap", "40", "--seed", "5", "--policy", targets[1].source,
            "--policy", targets[2].source]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "single")])
    assert res.exit_code == 0, res.output
    client = local_client(2)
    try:
        res = CliRunner().invoke(main, [*base, "--scheduler", client.scheduler.address, "--out", str(tmp_path / "dask")])
    finally:
        close_client(client)
    assert res.exit_code == 0, res.output
    assert "distributed." not in res.output and "INFO" not in res.output
    single = json.loads((tmp_path / "single" / "ope.json").read_text())
    sharded = json.loads((tmp_path / "dask" / "ope.json").read_text())
    assert sharded["shards"] == 2
    for name, p in single["policies"].items():
        for est, e in p["estimates"].items():
            for key in ("value", "ci_low", "ci_high"):
                if e.get(key) is not None:
                    assert sharded["policies"][name]["estimates"][est][key] == pytest.approx(e[key], abs=1e-12)


def test_a_deterministic_ltrr_log_warns_and_is_not_identifiable(targets, sim_logs, tmp_path):
    """Every propensity 1 (a pure-UCB logger): the IPS family of another policy is "not
    identifiable", DM still a number, and the table says why."""
    from ltrr.cli import main

    lines = []
    for line in sim_logs["ltrr.jsonl"].read_text().splitlines():
        rec = json.loads(line)
        rec["propensities"] = {"plan": 1.0, "strategies": dict.fromkeys(rec["plan"], 1.0)}
        lines.append(json.dumps(rec))
    det = tmp_path / "det.jsonl"
    det.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["ope", "--log", str(det), "--policy", targets[1].source, "--bootstrap", "10",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "deterministic logger: every logged propensity is 1" in res.output
    out = json.loads((tmp_path / "o" / "ope.json").read_text())
    p = out["policies"][targets[1].name]
    for name in ("ips", "snips", "dr", "sndr", "switch-dr", "factored-ips"):
        assert p["estimates"][name]["status"] == "not identifiable", name
    assert p["estimates"]["dm"]["status"] == "ok" and p["diagnostics"]["deterministic_logger"]
    assert "not identifiable" in (tmp_path / "o" / "report.html").read_text()
