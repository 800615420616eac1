"""``ltrr ope`` on the Open Bandit Dataset CSV, straight from the file, against Open Bandit
Pipeline 0.4.1 run the standard way (its README): uniform-random logger of campaign "all",
Bernoulli Thompson sampling (ZOZOTOWN prior) as the target, a logistic reward model
cross-fitted over 3 folds, ``OffPolicyEvaluation`` for the values and intervals.

OBP's own dataset class is used for the reference, with the two ``pandas.concat``/``drop`` calls
its ``pre_process`` makes in a form pandas >= 2 accepts (same arguments, keyword axis).
"""

from __future__ import annotations

import json

import numpy as np

# the parity reference and what it reads with: dev dependencies, installed by `make test`
# (a missing one fails the suite rather than skipping the comparison)
import obp.dataset as obp_dataset  # noqa: E402
import obp.ope as obp_ope  # noqa: E402
import obp.policy as obp_policy  # noqa: E402
import pandas as pd  # noqa: E402
import pytest
import sklearn.linear_model as linear_model  # noqa: E402
from click.testing import CliRunner

from ltrr.config import SHARED_DATA_DIR

OBD_DIR = SHARED_DATA_DIR / "obd"
if not (OBD_DIR / "random/all/all.csv").exists():
    pytest.skip(f"Open Bandit Dataset sample not found under {OBD_DIR}", allow_module_level=True)
SEED = 12345
LABELS = {"ipw": "ips", "snipw": "snips", "dm": "dm", "dr": "dr", "sndr": "sndr", "switch-dr": "switch-dr"}


class _OBD(obp_dataset.OpenBanditDataset):
    """OBP's loader with its pandas-1-only positional ``axis`` arguments passed by keyword."""

    def load_raw_data(self) -> None:
        from scipy.stats import rankdata

        self.data = pd.read_csv(self.data_path / self.raw_data_file, index_col=0)
        self.item_context = pd.read_csv(self.data_path / "item_context.csv", index_col=0)
        self.data = self.data.sort_values("timestamp")
        self.action = self.data["item_id"].values
        self.position = (rankdata(self.data["position"].values, "dense") - 1).astype(int)
        self.reward = self.data["click"].values
        self.pscore = self.data["propensity_score"].values

    def pre_process(self) -> None:
        from sklearn.preprocessing import LabelEncoder

        user_cols = self.data.columns.str.contains("user_feature")
        self.context = pd.get_dummies(self.data.loc[:, user_cols], drop_first=True).values
        item_feature_0 = self.item_context["item_feature_0"]
        item_feature_cat = self.item_context.drop("item_feature_0", axis=1).apply(LabelEncoder().fit_transform)
        self.action_context = pd.concat([item_feature_cat, item_feature_0], axis=1).values


@pytest.fixture(scope="module")
def obp_run(tmp_path_factory):
    """OBP's estimates and intervals, and the BTS action distribution saved as .npy."""
    ds = _OBD(behavior_policy="random", campaign="all", data_path=OBD_DIR)
    bf = ds.obtain_batch_bandit_feedback()
    bts = obp_policy.BernoulliTS(n_actions=ds.n_actions, len_list=ds.len_list, is_zozotown_prior=True,
                                 campaign="all", random_state=SEED)
    action_dist = bts.compute_batch_action_dist(n_sim=10_000, n_rounds=bf["n_rounds"])
    path = tmp_path_factory.mktemp("obd") / "bts_action_dist.npy"
    np.save(path, action_dist)
    model = obp_ope.RegressionModel(
        n_actions=ds.n_actions, len_list=ds.len_list, action_context=ds.action_context,
        base_model=linear_model.LogisticRegression(C=1.0, max_iter=1000, random_state=SEED))
    q = model.fit_predict(context=bf["context"], action=bf["action"], reward=bf["reward"],
                          position=bf["position"], n_folds=3, random_state=SEED)
    q_path = path.with_name("q_hat.npy")
    np.save(q_path, q)
    ope = obp_ope.OffPolicyEvaluation(bandit_feedback=bf, ope_estimators=[
        obp_ope.InverseProbabilityWeighting(), obp_ope.SelfNormalizedInverseProbabilityWeighting(),
        obp_ope.DirectMethod(), obp_ope.DoublyRobust(), obp_ope.SelfNormalizedDoublyRobust(),
        obp_ope.SwitchDoublyRobust()])
    values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q)
    intervals = ope.estimate_intervals(action_dist=action_dist, estimated_rewards_by_reg_model=q,
                                       n_bootstrap_samples=100, random_state=SEED)
    truth = _OBD.calc_on_policy_policy_value_estimate(behavior_policy="bts", campaign="all", data_path=OBD_DIR)
    return {"dist": path, "q": q_path, "values": values, "intervals": intervals, "truth": truth,
            "logged": float(bf["reward"].mean())}


def _run(tmp_path, *extra):
    from ltrr.cli import main

    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["ope", "--log", str(OBD_DIR / "random/all/all.csv"),
                                    "--estimators", "ips,snips,dm,dr,sndr,switch-dr", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "ope.json").read_text()), res.output, out


def test_cli_from_the_csv_equals_obp(obp_run, tmp_path):
    """Values and OBP-bootstrap intervals equal OBP's to 1e-9, with the reward model fitted by
    ltrr (same model, folds and seed) -- and the ground truth column filled from the BTS log."""
    result, output, out = _run(tmp_path, "--target-dist", f"bts={obp_run['dist']}", "--reward-model", "logistic",
                               "--folds", "3", "--seed", str(SEED), "--bootstrap", "100",
                               "--bootstrap-method", "obp", "--truth", f"bts={OBD_DIR / 'bts/all/all.csv'}")
    est = result["policies"]["bts"]["estimates"]
    for obp_name, value in obp_run["values"].items():
        mine = est[LABELS[obp_name]]
        assert mine["value"] == pytest.approx(float(value), abs=1e-9), obp_name
        ref = obp_run["intervals"][obp_name]
        assert mine["ci_low"] == pytest.approx(float(ref["95.0% CI (lower)"]), abs=1e-9), obp_name
        assert mine["ci_high"] == pytest.approx(float(ref["95.0% CI (upper)"]), abs=1e-9), obp_name
    assert len({round(float(v), 9) for v in obp_run["values"].values()}) >= 4  # not vacuous
    assert result["log"]["format"] == "obd"
    assert result["logged_value"] == pytest.approx(obp_run["logged"], abs=1e-15)
    assert result["truth"]["bts"] == pytest.approx(obp_run["truth"], abs=1e-15)
    assert result["bootstrap"]["method"] == "obp" and result["reward_model"]["folds"] == 3
    d = result["policies"]["bts"]["diagnostics"]
    assert d["unsupported_mass"] == 0.0 and not d["warnings"] and 1000 < d["effective_sample_size"] < 10_000
    assert "obp bootstrap, 100 replicates" in output and "truth" in output
    html = (out / "report.html").read_text()
    assert "Importance-weight diagnostics" in html and f"{obp_run['truth']:.4g}" in html


def test_estimated_rewards_from_a_file_and_the_poisson_bootstrap(obp_run, tmp_path):
    result, output, _ = _run(tmp_path, "--target-dist", str(obp_run["dist"]), "--estimated-rewards",
                             str(obp_run["q"]), "--bootstrap", "300", "--seed", "3")
    est = result["policies"]["bts_action_dist"]["estimates"]
    for obp_name, value in obp_run["values"].items():
        e = est[LABELS[obp_name]]
        assert e["value"] == pytest.approx(float(value), abs=1e-9), obp_name
        assert e["ci_low"] < e["value"] < e["ci_high"], obp_name
    assert result["bootstrap"]["method"] == "poisson" and result["reward_model"]["kind"] == "file"
    assert "poisson bootstrap, 300 replicates" in output
