"""Benchmark: unbiased learning from clicks, and interleaving two rankers live.

Semi-synthetic counterfactual LTR on MSLR-WEB10K rows (the standard protocol of Joachims et al.
2017): a weak logging ranker (LambdaMART on the graded labels of 4 training queries) shows the top
10 of each sampled training query, with per-session score noise so items move between ranks;
clicks come from ``simulators.click_models`` (PBM and cascade, ``--preset``) over the true grades.
On the logged sessions with a click we train three rankers through our training path —
``debias = none`` (naive), ``position`` (LightGBM position-debiased lambdarank) and ``ipw``
(inverse PBM examination estimated by EM from the log) — and report test NDCG@10 against the
*true* grades, mean and std over ``--seeds`` seeds, with the gap to the naive ranker.

Then the naive and position-debiased rankers are served side by side on the test queries by
team-draft interleaving, clicks from the same click model, and a sign test says which wins.

Prints one JSON line per result.

    .venv/bin/python benchmarks/ranker_debias.py [--sessions 20000] [--seeds 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr.config import SHARED_DATA_DIR  # noqa: E402
from ltrr.features import FeatureSchema  # noqa: E402
from ltrr.offline.metrics import ndcg_from_grades  # noqa: E402
from ltrr.ranking.interleaving import credit, sign_test, team_draft  # noqa: E402
from ltrr.ranking.lambdamart import LambdaMARTRanker  # noqa: E402
from ltrr.ranking.letor import LetorData, load_letor  # noqa: E402
from ltrr.ranking.training import ClickTrainingSet, fit_from_clicks  # noqa: E402
from simulators.click_models import CascadeClickModel, PositionBasedClickModel  # noqa: E402

MSLR = SHARED_DATA_DIR / "mslr"
K = 10


def schema_of(width: int) -> FeatureSchema:
    return FeatureSchema(tuple(f"f{i}" for i in range(width)))


def synthetic(seed: int, n_q: int, m: int = 20, d: int = 6) -> LetorData:
    """Seeded queries of ``m`` items: grades from features 0 and 1 (plus noise), 0-4."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    X = rng.normal(size=(n_q * m, d)).astype(np.float32)
    grades = np.clip(np.round(1.2 * X[:, 0] + 0.8 * X[:, 1] + 0.5 * rng.normal(size=n_q * m) + 1.0), 0, 4)
    return LetorData(X, grades.astype(np.float32), np.repeat(np.arange(n_q), m), np.full(n_q, m))


class _JunkLogger:
    """The synthetic logging ranker: trusts relevant feature 0 a little, junk feature 2 a lot."""

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        return 0.5 * X[:, 0] + 1.5 * X[:, 2]


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def per_query(data: LetorData) -> list[slice]:
    starts = np.r_[0, np.cumsum(data.groups)[:-1]]
    return [slice(int(s), int(s + g)) for s, g in zip(starts, data.groups, strict=True)]


def test_ndcg(scores: np.ndarray, data: LetorData) -> float:
    vals = []
    for sl in per_query(data):
        y = data.y[sl]
        top = np.argsort(-scores[sl], kind="stable")[:K]
        page = np.full((1, K), np.nan)
        page[0, : top.size] = y[top]
        vals.append(ndcg_from_grades(page, y[None, :], K)[0])
    return float(np.nanmean(vals))


class _LinearLogger:
    """A logging ranker unrelated to the labels: a seeded random direction over standardized
    features (position and relevance decorrelate, the case where click bias bites hardest)."""

    def __init__(self, train: LetorData, seed: int):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
        self.mu = train.X.mean(axis=0)
        self.sd = train.X.std(axis=0) + 1e-6
        self.w = rng.normal(size=train.X.shape[1])

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        return ((X - self.mu) / self.sd) @ self.w


def logging_ranker(train: LetorData, seed: int, kind: str = "supervised"):
    """The production ranker whose pages are logged: ``supervised`` is LambdaMART fit on the
    labels of 4 training queries (weak but aligned with relevance), ``random`` a random
    linear scorer."""
    if kind == "random":
        return _LinearLogger(train, seed)
    if kind == "junk":
        return _JunkLogger()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    qs = per_query(train)
    pick = rng.choice(len(qs), 4, replace=False)
    rows = np.concatenate([np.arange(qs[i].start, qs[i].stop) for i in pick])
    params = LambdaMARTRanker(schema_of(train.X.shape[1]), {"n_estimators": 20, "seed": seed}).lgb_params()
    booster = lgb.train(params, lgb.Dataset(train.X[rows], train.y[rows], group=train.groups[pick]),
                        num_boost_round=20)
    return booster


def click_log(train: LetorData, log_scores: np.ndarray, model, n_sessions: int, seed: int) -> ClickTrainingSet:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    qs = per_query(train)
    spread = float(np.std(log_scores))
    X, y, pos, keys, groups = [], [], [], [], []
    for q in rng.integers(0, len(qs), n_sessions):
        sl = qs[q]
        noisy = log_scores[sl] + 0.5 * spread * rng.normal(size=sl.stop - sl.start)
        page = np.argsort(-noisy, kind="stable")[:K]
        clicks = model.simulate(train.y[sl][page][None, :].astype(np.float64), rng)[0]
        if not clicks.any():
            continue
        X.append(train.X[sl][page])
        y.append(clicks.astype(np.float32))
        pos.append(np.arange(page.size))
        keys.append(q * 10_000 + page)
        groups.append(page.size)
    return ClickTrainingSet(np.concatenate(X), np.concatenate(y), np.asarray(groups), np.concatenate(pos),
                            np.concatenate(keys), tuple(map(str, range(len(groups)))))


def interleave(a: np.ndarray, b: np.ndarray, test: LetorData, model, n_impressions: int, seed: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    qs = per_query(test)
    ca = np.zeros(n_impressions, dtype=np.int64)
    cb = np.zeros(n_impressions, dtype=np.int64)
    for i, q in enumerate(rng.integers(0, len(qs), n_impressions)):
        sl = qs[q]
        ra = np.argsort(-a[sl], kind="stable")
        rb = np.argsort(-b[sl], kind="stable")
        page, team = team_draft(ra, rb, K, rng)
        clicks = model.simulate(test.y[sl][page][None, :].astype(np.float64), rng)[0]
        ca[i], cb[i] = credit(team, clicks)
    return sign_test(ca, cb)


def movies_online(args) -> None:
    """The engine loop itself (``simulators.environment.run_session``): one fresh engine per
    debiasing mode on the same seeded movie query stream, fixed plan (all strategies at maximum
    depth, so only the ranker differs), ranker retrained every ``--retrain-every`` feedbacks."""
    from ltrr.catalog import Catalog
    from ltrr.config import default_config
    from ltrr.engine import Engine
    from simulators.environment import run_session
    from simulators.movies import MovieQueryGenerator

    base = default_config()
    catalog = Catalog.from_jsonl(base.catalog.path)
    stream = MovieQueryGenerator(catalog, seed=args.seed).stream(args.queries, max(args.queries // 4, 1), seed=args.seed)
    shared: dict = {}
    trained: dict = {}
    for cm_name, cls in (("pbm", PositionBasedClickModel), ("cascade", CascadeClickModel)):
        for debias in ("untrained_rrf_prior", "none", "position", "ipw"):
            mode = "none" if debias == "untrained_rrf_prior" else debias
            every = 0 if debias == "untrained_rrf_prior" else args.retrain_every
            ranker = base.ranker.model_copy(update={"retrain_every": every,
                                                    "params": {"debias": mode, "seed": args.seed}})
            cfg = base.with_policy("fixed", {}).model_copy(update={"ranker": ranker, "seed": args.seed})
            engine = Engine.from_config(cfg, catalog=catalog,  # own query caches per run
                                        prebuilt={n: s.with_fresh_caches() for n, s in shared.items()})
            for name, strat in engine.strategies.items():
                if not getattr(strat, "stateful", False):
                    shared.setdefault(name, strat)
            t = time.perf_counter()
            res = run_session(engine, stream, cls(args.preset), seed=args.seed, policy_name=debias)
            half = len(stream) // 2
            emit(bench="debias_online_movies", click_model=cm_name, preset=args.preset, debias=debias,
                 queries=len(stream), retrain_every=args.retrain_every, ranker=engine.ranker.version_,
                 ndcg10=round(float(np.nanmean(res.ndcg)), 4),
                 ndcg10_second_half=round(float(np.nanmean(res.ndcg[half:])), 4),
                 clicks_per_query=round(float(res.clicks.mean()), 3), wall_s=round(time.perf_counter() - t, 1))
            if debias in ("none", "position"):
                trained[debias] = engine.ranker
            if debias == "ipw":
                # serve the naive and the position-debiased rankers side by side on fresh traffic:
                # this engine retrieves and logs features; both rankers score the same union
                fresh = MovieQueryGenerator(catalog, seed=args.seed).stream(args.impressions, max(args.queries // 4, 1),
                                                                          seed=args.seed + 1)
                rng = np.random.default_rng(np.random.SeedSequence([args.seed, 9]))
                model = cls(args.preset)
                ca = np.zeros(len(fresh), dtype=np.int64)
                cb = np.zeros(len(fresh), dtype=np.int64)
                for i, q in enumerate(fresh):
                    d = engine.search(q.text, {})
                    if len(d.candidates) == 0:
                        continue
                    ra = np.argsort(-trained["position"].score(d.features), kind="stable")
                    rb = np.argsort(-trained["none"].score(d.features), kind="stable")
                    idx, team = team_draft(ra, rb, K, rng)
                    grades = np.array([q.relevant.get(int(r), 0) for r in d.candidates.items[idx]], dtype=np.float64)
                    clicks = model.simulate(grades[None, :], rng)[0]
                    ca[i], cb[i] = credit(team, clicks)
                res = sign_test(ca, cb)
                emit(bench="interleaving_online_movies", click_model=cm_name, preset=args.preset,
                     a="position-debiased", b="naive", impressions=len(fresh), **res.to_dict())
            engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--preset", default="informational")
    ap.add_argument("--n-estimators", type=int, default=100)
    ap.add_argument("--impressions", type=int, default=2000)
    ap.add_argument("--data", choices=["mslr", "synthetic", "movies"], default="mslr")
    ap.add_argument("--queries", type=int, default=3000, help="movies: simulated queries per engine")
    ap.add_argument("--retrain-every", type=int, default=300, help="movies: feedbacks between retrains")
    ap.add_argument("--seed", type=int, default=0, help="movies: seed of the stream and clicks")
    ap.add_argument("--logger", choices=["supervised", "random", "junk"], default=None,
                    help="default: supervised on MSLR, junk on synthetic")
    args = ap.parse_args()
    if args.data == "movies":
        movies_online(args)
        return
    if args.data == "mslr":
        train = load_letor(MSLR / "msn1.fold1.train.5k.txt", 136)
        test = load_letor(MSLR / "msn1.fold1.test.5k.txt", 136)
        args.logger = args.logger or "supervised"
        extra_params: dict = {}
    else:
        train, test = synthetic(1, 300), synthetic(2, 200)
        args.logger = args.logger or "junk"
        extra_params = {"num_leaves": 15}
    schema = schema_of(train.X.shape[1])
    full = LambdaMARTRanker(schema, {"n_estimators": args.n_estimators, "debias": "none",
                                     "early_stopping_rounds": 0, **extra_params}).fit(train.X, train.y, train.groups)
    emit(bench="debias", data=args.data, ranker="full_information_labels", test_ndcg10=round(test_ndcg(full.score(test.X), test), 4))
    models = {"pbm": PositionBasedClickModel(args.preset), "cascade": CascadeClickModel(args.preset)}
    for cm_name, model in models.items():
        results: dict[str, list[float]] = {"none": [], "position": [], "ipw": []}
        last_scores = {}
        for seed in range(args.seeds):
            logger = logging_ranker(train, seed, args.logger)
            log_scores = logger.predict(train.X, num_threads=1)
            data = click_log(train, log_scores, model, args.sessions, seed)
            for debias in results:
                t = time.perf_counter()
                r = LambdaMARTRanker(schema, {"n_estimators": args.n_estimators, "debias": debias, "seed": seed,
                                              "early_stopping_rounds": 0, **extra_params})
                report = fit_from_clicks(r, data)
                scores = r.score(test.X)
                results[debias].append(test_ndcg(scores, test))
                last_scores[debias] = scores
                extra = {"examination": report["examination"]} if debias == "ipw" else {}
                emit(bench="debias_run", data=args.data, click_model=cm_name, preset=args.preset, seed=seed, debias=debias,
                     sessions_with_clicks=data.n_queries, test_ndcg10=round(results[debias][-1], 4),
                     train_s=round(time.perf_counter() - t, 2), **extra)
            logging = test_ndcg(logger.predict(test.X, num_threads=1), test)
            emit(bench="debias_run", data=args.data, click_model=cm_name, seed=seed, debias="logging_ranker",
                 test_ndcg10=round(logging, 4))
        naive = np.asarray(results["none"])
        for debias, vals in results.items():
            v = np.asarray(vals)
            emit(bench="debias", data=args.data, click_model=cm_name, preset=args.preset, logger=args.logger, debias=debias, seeds=args.seeds,
                 sessions=args.sessions, test_ndcg10_mean=round(float(v.mean()), 4),
                 test_ndcg10_std=round(float(v.std()), 4),
                 gap_vs_naive_mean=round(float((v - naive).mean()), 4),
                 gap_vs_naive_min=round(float((v - naive).min()), 4))
        res = interleave(last_scores["position"], last_scores["none"], test, model, args.impressions, 0)
        emit(bench="interleaving", data=args.data, click_model=cm_name, logger=args.logger, a="position-debiased", b="naive",
             impressions=args.impressions, **res.to_dict())


if __name__ == "__main__":
    main()
