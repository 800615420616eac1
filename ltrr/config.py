"""Engine configuration: frozen, validated models built from TOML.

Unknown keys are errors that name the key and the allowed keys; component names are checked
against the registry when the engine is built (and by ``ltrr config check`` without building).
Paths in a config file are resolved relative to the config file, and a path that does not exist
is an error naming the key, the value and what it resolved to. ``ltrr config show`` prints
:data:`DEFAULT_CONFIG` (the demo's embedded defaults).

The shipped data (the movie catalog, Cranfield) and configs are found in :data:`SHARE_DIR`: the
checkout when ltrr runs from one (an editable install), else ``<prefix>/share/ltrr`` where a
wheel installs them; ``$LTRR_HOME`` overrides both.
"""

from __future__ import annotations

import json
import os
import sysconfig
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ltrr.errors import ConfigError
from ltrr.params import Params, validate_params

REPO_ROOT = Path(__file__).resolve().parents[1]


def _share_dir() -> Path:
    """Where ``data/`` and ``configs/`` are: $LTRR_HOME, the checkout, or <prefix>/share/ltrr."""
    if os.environ.get("LTRR_HOME"):
        return Path(os.environ["LTRR_HOME"]).resolve()
    if (REPO_ROOT / "data" / "movies" / "catalog.jsonl").exists():
        return REPO_ROOT
    return Path(sysconfig.get_path("data")) / "share" / "ltrr"


#: the directory holding the shipped ``data/`` and ``configs/`` (``ltrr data`` prints it)
SHARE_DIR = _share_dir()
DATA_DIR = SHARE_DIR / "data"
CONFIGS_DIR = SHARE_DIR / "configs"
#: the development data shared beside the repository (MSLR, Open Bandit Dataset, ...) used by
#: tests and benchmarks; override with LTRR_SHARED_DATA
SHARED_DATA_DIR = Path(os.environ.get("LTRR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


class CatalogConfig(Params):
    path: str = str(DATA_DIR / "movies" / "catalog.jsonl")
    #: fields composed into the text lexical strategies index (``title``, ``text`` or any key of
    #: an item's ``fields``); strategies may override with their own ``text_fields``
    text_fields: list[str] = Field(default_factory=lambda: ["title", "text"])
    limit: int | None = Field(None, gt=0)


class StrategyConfig(Params):
    #: instance name, unique in the engine (used in plans, features and logs)
    name: str
    #: registry name of the strategy class; defaults to ``name``
    type: str | None = None
    #: depth menu for the policy (0 = off)
    depths: list[int] = Field(default_factory=lambda: [0, 10, 50, 100])
    params: dict[str, Any] = Field(default_factory=dict)
    #: for strategies with ``retrained(catalog)`` (e.g. ``xmr``): build a new model once this many
    #: clicks were observed since the last training, then swap it in (0 = never retrain online)
    retrain_every: int = Field(0, ge=0)

    @property
    def kind(self) -> str:
        return self.type or self.name


class PolicyConfig(Params):
    type: str = "epsilon_greedy"
    params: dict[str, Any] = Field(default_factory=dict)
    #: total candidates a plan may draw
    budget: int = Field(300, gt=0)
    #: explicit joint plans (strategy name -> depth); default: every combination within budget
    plans: list[dict[str, int]] | None = None
    #: half-life, in events a strategy ran on, of the ``success_<strategy>`` context features
    success_half_life: float = Field(500.0, gt=0.0)
    #: plans whose estimated p99 latency (sum of the strategies' measured p99s) exceeds this many
    #: milliseconds are not chosen (None: no budget); see ltrr.latency
    p99_budget_ms: float | None = Field(None, gt=0.0)
    #: where a plan's latency comes from: "measured" (each strategy's retrieve calls, timed online
    #: and decayed over ``latency_half_life`` calls) or "declared" (the strategies' own
    #: ``cost_ms`` hints: deterministic, what the simulations use so a seed repeats its run)
    latency_source: Literal["measured", "declared"] = "measured"
    latency_half_life: float = Field(500.0, gt=0.0)
    #: what the policy learns from each feedback: ``"full_information"`` the reward every menu
    #: plan would have earned on the same clicks (strategies are deterministic: one retrieval at
    #: the menu's largest depths tells which clicked items each plan's candidates hold), the
    #: update of :meth:`~ltrr.contracts.policy.Policy.warm_start`; ``"bandit"`` only the chosen
    #: plan's reward. Paired over plans on the same clicks, full information is far less noisy
    #: (docs/learning.md); it costs a max-depth retrieval per feedback in the learner, and falls
    #: back to bandit feedback for a policy without full-information learning.
    #: ``"served_subplans"``: full information for the plans the served plan contains (every
    #: strategy at most as deep), the others learn nothing from the search. A deeper plan's page
    #: holds items nobody saw; full information counts them unclicked, so a plan deeper than the
    #: served one can only look worse than it, and the policy never learns what depth finds
    #: (a feedback graph: serving a plan reveals its sub-plans). The logged decisions keep their
    #: exact propensities either way. ``"served_subplans"`` is the default: on the movie stream
    #: (20,000 queries, with ``incumbent.monitor_share = 0.05``) the final-window page rose from
    #: 0.774 / 0.724 to 0.786 / 0.739 (seeds 0 / 1) with larger learned plans; on Cranfield and
    #: CISI (12 settings x 3 seeds) it is level on average (+0.0006) with more candidates, and
    #: the protocol's criteria still hold in all 12 (docs/learning.md, "Stop 25")
    learning: Literal["full_information", "served_subplans", "bandit"] = "served_subplans"
    #: how full-information learning orders the page each plan would have shown: ``"rrf"``
    #: reciprocal-rank fusion of the plan's lists (the incumbent's ranking); ``"ranker"`` the
    #: ranking that served the search: the learned ranker's page (the candidates' logged feature
    #: rows with the plan's provenance, :mod:`ltrr.ranking.plan_pages`) when it ranked the page,
    #: RRF before it serves. Under RRF a clicked item drawn by two strategies rises on the page,
    #: so a strategy that only repeats what the others found looks worth its latency; under the
    #: learned ranker it earns only what it changes on the learned page (movie stream, 20,000
    #: queries, with match_when_off "missing": 0.806 / 0.772 against 0.791 / 0.750 under "rrf",
    #: but with more candidates: docs/learning.md, Stop 27). "ranker" values the
    #: served plan's sub-plans from the logged candidates (``learning = "served_subplans"``);
    #: under ``"full_information"`` plans deeper than the served one have no logged features,
    #: so that mode values by RRF
    plan_pages: Literal["rrf", "ranker"] = "rrf"


class RankerConfig(Params):
    type: str = "lambdamart"
    params: dict[str, Any] = Field(default_factory=dict)
    #: what the retraining schedule counts: clicks (the unit the ranker learns from, so the data
    #: between trainings does not depend on the click-through rate) or feedback events
    retrain_unit: Literal["clicks", "events"] = "clicks"
    #: retrain every this many (0 = never retrain online) ...
    retrain_every: int = Field(500, ge=0)
    #: ... the first time after this many (0: ``retrain_every``), the interval growing by
    #: ``retrain_growth`` after each training up to ``retrain_every`` (50, 100, 200, 400, 500 ...)
    retrain_first: int = Field(50, ge=0)
    retrain_growth: float = Field(2.0, ge=1.0)
    #: train on at most this many most recent events with clicks
    train_window: int = Field(20000, gt=0)
    #: the ``s_match`` feature (e.g. dense's cosine) of a strategy the plan left off:
    #: ``"score"`` computes it anyway (for dense that encodes the query in the ranker stage, so a
    #: plan without dense saves no encoding time), ``"missing"`` leaves it NaN like the strategy's
    #: other provenance, so a plan that skips a strategy skips its cost (docs/speed.md,
    #: latency-aware plans; the hindsight tables follow it). "score" by default: "missing" holds
    #: the Cranfield/CISI protocol (12/12, -0.0009 nDCG) but lost 0.013 / 0.015 on the 20,000-query
    #: movie stream (seeds 0 / 1) with RRF-valued plans (docs/learning.md, Stop 27)
    match_when_off: Literal["score", "missing"] = "score"


class RewardConfig(Params):
    #: reward subtracted per candidate drawn (makes large plans pay for their cost); small, so
    #: that among plans whose pages are equally good the cheaper one wins, never a worse page.
    #: Small against the reward's own scale: ``click_dcg`` divides by a full page of clicks
    #: (4.54), so one click on top earns 0.22; at 0.0001, 100 more candidates cost 0.01, 4.5% of
    #: such a page, more than the better pages of deeper plans earn under one-click (navigational)
    #: sessions, and the policy kept plans too small (movie stream, 20,000 queries: 0.790 / 0.750
    #: on seeds 0 / 1 with 63 / 45 candidates; at 0.00002, 1% of it: 0.804 / 0.765 with 97 / 73,
    #: the all-at-max engine 0.800 / 0.768 with ~260). Cranfield and CISI: docs/learning.md, Stop 26
    cost_per_candidate: float = Field(0.00002, ge=0.0)
    #: what a page earns before the cost: ``"any_click"`` 1 if anything on it was clicked;
    #: ``"click_dcg"`` its clicks weighted by ``1 / log2(1 + position)`` over the largest possible
    #: such sum of a full page, so a page with several good results earns more than one with a
    #: single click (``any_click`` saturates on queries with many relevant items). Per-strategy
    #: credit splits the same way: each strategy earns the weights of the clicked items it drew.
    #: ``click_dcg`` is the default: a reward that ignores positions ranks plans by whether they
    #: draw any clicked item, so the cheapest plan looks best in hindsight whatever its pages
    kind: Literal["any_click", "click_dcg"] = "click_dcg"
    #: per-strategy (semi-bandit) credit for the factored policy: ``"full"`` a strategy earns
    #: every clicked item it drew (``any_click``: 1 if it drew any), so strategies that overlap
    #: are all paid for the same click; ``"split"`` each clicked item's share of the page reward
    #: is divided equally among the strategies that drew it, so the strategies' credits sum to
    #: the plan's reward (for ``click_dcg``, the Shapley value of the coverage game). "split" is
    #: the default: on the movie benchmark (20k rounds, factored policy) it raised nDCG@10 from
    #: 0.813 to 0.829 and from 0.731 to 0.760 (seeds 0 / 1) with the same or fewer candidates
    credit: Literal["full", "split"] = "split"
    #: reward subtracted per millisecond of the plan's estimated latency (each strategy pays for its
    #: own in the per-strategy credit): plans that only cost time lose to cheaper equal pages.
    #: 0.0001 by default, a tie-breaker: at 0.001 a dense query encoding (~13.5 ms declared) cost
    #: 0.0135 reward, more than the click-DCG its better pages earn under noisy clicks, and the
    #: policy dropped dense where it is the best strategy (CISI, PBM informational, seed 0: the
    #: learned page 0.379 at 0.001, 0.449 at 0.0001, dense alone 0.438; the movie demo, 2000
    #: queries: 0.780 and 0.783 final-window nDCG@10; docs/learning.md)
    latency_weight: float = Field(0.0001, ge=0.0)


class IncumbentConfig(Params):
    """The safe incumbent (see :mod:`ltrr.incumbent`): the baseline ranking (RRF) and plan serve
    until the learned ranker and policy are shown better; every switch is logged and reversible."""

    #: serve RRF of the plan's lists until the learned ranker wins an interleaving test
    gate_ranking: bool = True
    #: let the learned policy choose plans only while the conservative condition holds
    gate_plans: bool = True
    #: RRF constant of the baseline ranking
    rrf_k: float = Field(60.0, gt=0.0)
    #: share of searches interleaved while the learned ranker is the challenger
    interleave_share: float = Field(0.5, ge=0.0, le=1.0)
    #: share of searches interleaved once it serves (the demotion watch): half of those pages
    #: are RRF's team, so the watch costs about half this share of the ranker's advantage
    #: (movie stream, a fixed plan, 20,000 queries: 0.793 at 0.1, 0.798 at 0). At 0.05 the
    #: interleaving test needs about twice as many searches as at 0.1 to demote a ranker that
    #: went bad; the off-policy bound checked after every retraining is unchanged
    monitor_share: float = Field(0.05, ge=0.0, le=1.0)
    #: sequential test: the smallest advantage of the win rate over 1/2 worth detecting ...
    min_effect: float = Field(0.05, gt=0.0, lt=0.5)
    #: ... and the confidence of its promote / demote decisions (and of the off-policy bound)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    #: after every retraining, also compare the new ranker with RRF off-policy on held-out
    #: logged queries (inverse-propensity click DCG, ltrr.ranking.counterfactual): promote when
    #: the lower confidence bound of the difference is > 0, demote when the upper one is < 0
    counterfactual: bool = True
    #: share of logged queries (by a hash of the event id) kept out of ranker training for it
    holdout_share: float = Field(0.2, gt=0.0, lt=1.0)
    #: held-out queries with clicks needed before the off-policy bound may switch anything
    min_holdout_queries: int = Field(50, ge=2)
    #: largest inverse examination weight of a click in that comparison
    ipw_clip: float = Field(10.0, ge=1.0)
    #: the baseline plan (strategy -> depth); empty: every strategy at the middle of its menu's
    #: positive depths (the lower median: 10/50/100 -> 50, 10/50 -> 10, 30/100 -> 30). Not
    #: the largest depths: on Cranfield (PBM perfect clicks, seeds 0 and 2) an all-at-max baseline
    #: plan out-earned the learned plans by more than alpha, so the gate served it and the engine
    #: drew 81-97% of all-at-max's candidates; with bm25 50, dense 50, memory 50 the same runs
    #: drew 11-12% and ended +0.021 / +0.040 above the best fixed baseline (docs/learning.md)
    baseline_plan: dict[str, int] = Field(default_factory=dict)
    #: learned plans only while the decayed realized page gain stays >= (1 - alpha) x the
    #: baseline plan's estimated gain over the same rounds
    alpha: float = Field(0.03, ge=0.0, lt=1.0)
    #: half-life, in rounds, of those gain sums (0: cumulative over all rounds)
    gain_half_life: float = Field(1000.0, ge=0.0)
    #: rounds the baseline plan serves (with feedback) before the learned policy may choose
    min_baseline_rounds: int = Field(50, ge=1)
    #: hysteresis of the plan gate: once the baseline plan took over from the learned policy,
    #: the learned policy resumes only when the realized gain exceeds the conservative bound by
    #: this many rounds of the baseline's mean gain (the first promotion needs the bound only). Without it the gate
    #: flips on every round whose gain crosses the bound (measured: 80 switches in 1230 rounds
    #: on Cranfield, PBM informational); with 10 a switch back needs ~10 / alpha baseline rounds
    #: of evidence, more than the random walk of one round's noisy page gain (sd ~ its mean)
    #: covers in a few hundred rounds
    resume_rounds: float = Field(10.0, ge=0.0)
    #: while the learned policy chooses the plans, every this many searches serve the baseline
    #: plan instead (0: never), so the gate's estimate of what the baseline earns follows the
    #: ranker and click memory as they learn; without it the estimate is frozen at the first
    #: rounds (before any ranker), and learned plans that fall behind the baseline later are
    #: never demoted. Deterministic (by round), so logged propensities stay exact. Off by
    #: default: at 20 it was neutral on the movie stream at 2,000 queries (seeds 0 / 1: 0.765 /
    #: 0.749 vs 0.758 / 0.752) and worse at 20,000 (0.765 vs 0.776; docs/learning.md)
    plan_monitor_every: int = Field(0, ge=0)

    @property
    def enabled(self) -> bool:
        return self.gate_ranking or self.gate_plans


class StoreConfig(Params):
    #: SQLite event log file; empty = in-memory (nothing survives the process)
    events_path: str = ""
    #: "NORMAL" survives a process crash (kill -9) in WAL mode; "FULL" also survives power loss
    synchronous: str = Field("NORMAL", pattern="^(NORMAL|FULL)$")
    #: "random": event ids are UUIDs from the OS (unique across processes and loads, the
    #: default); "seeded": drawn from the engine's seed and the event log's length, so a
    #: simulation with the same seed logs the same ids (see ltrr.event_ids)
    event_ids: Literal["random", "seeded"] = "random"
    #: where decisions, feedback and the journal live: "sqlite" (embedded, one machine) or
    #: "postgres" (shared by serving replicas; see docs/serving.md)
    backend: Literal["sqlite", "postgres"] = "sqlite"
    #: PostgreSQL connection string (libpq); empty = $LTRR_STORE_DSN. Never written to a saved engine
    dsn: str = ""
    #: connections each process keeps to PostgreSQL (plus one for the learner election)
    pool_size: int = Field(4, ge=1, le=64)
    #: serving retention: decisions older than this many seconds are deleted with their feedback
    #: (0 = keep forever; default 7 days: the 1-day feedback window, then a week for offline
    #: evaluation — `ltrr log export` keeps more)
    retention_s: float = Field(7 * 86400.0, ge=0.0)
    #: serving retention: at most this many decisions are kept, the oldest deleted first, but never
    #: one still inside the feedback window (0 = no cap; default ~100 GB at ~10 KB per decision)
    max_events: int = Field(10_000_000, ge=0)


class ServeConfig(Params):
    """Settings of the HTTP service (``ltrr serve``); see docs/serving.md."""

    #: feedback for a decision older than this (seconds) is rejected: the late-feedback window
    feedback_window_s: float = Field(86400.0, gt=0.0)
    #: request bodies larger than this many bytes are refused with 413
    max_body_bytes: int = Field(1_048_576, gt=0)
    #: the learner snapshots policy, ranker and click memory at most this often (seconds)
    snapshot_every_s: float = Field(30.0, gt=0.0)
    #: SQLite sync mode of the commit that acknowledges feedback: "NORMAL" (WAL) survives a
    #: process crash (kill -9); "FULL" also survives power loss, for an fsync (~6 ms) per call
    feedback_synchronous: str = Field("NORMAL", pattern="^(NORMAL|FULL)$")


class ThreadsConfig(Params):
    """Sizes of the native thread pools (faiss, torch, ONNX Runtime, LightGBM, OpenMP/BLAS), set
    through :func:`ltrr.threads.set_native_threads`; 0 = every usable core."""

    #: per search (and while serving): small calls gain nothing from more threads and contend
    search: int = Field(1, ge=0)
    #: batch work (fitting strategies, encoding a catalog, training the ranker)
    batch: int = Field(0, ge=0)


class EngineConfig(Params):
    seed: int = 0
    page_size: int = Field(10, gt=0)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    strategies: list[StrategyConfig]
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    incumbent: IncumbentConfig = Field(default_factory=IncumbentConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    threads: ThreadsConfig = Field(default_factory=ThreadsConfig)
    #: context features the policy sees, in order (see ltrr.context.CONTEXT_FEATURES)
    context_features: list[str] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> EngineConfig:
        names = [s.name for s in self.strategies]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"strategy names must be unique; repeated: {', '.join(dup)}")
        if not names:
            raise ValueError("at least one strategy is required")
        unknown = sorted(set(self.incumbent.baseline_plan) - set(names))
        if unknown:
            raise ValueError(f"incumbent.baseline_plan names unknown strategy {unknown[0]!r}; "
                             f"strategies: {', '.join(names)}")
        return self

    def with_policy(self, type_: str, params: dict[str, Any] | None = None) -> EngineConfig:
        """A copy with another policy (same menu and budget)."""
        policy = self.policy.model_copy(update={"type": type_, "params": dict(params or {})})
        return self.model_copy(update={"policy": policy})


#: what the dense strategy embeds for a film: short texts (cast lists make them ~5x longer and
#: encoding ~5x slower for little gain)
DENSE_TEXT_FIELDS = ["title", "directors", "genres", "year"]
MOVIE_TEXT_FIELDS = ["title", "directors", "cast", "writers", "genres", "year", "countries", "languages"]

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "page_size": 10,
    "catalog": {"path": str(DATA_DIR / "movies" / "catalog.jsonl"), "text_fields": MOVIE_TEXT_FIELDS},
    "strategies": [
        {"name": "bm25", "depths": [10, 30, 100], "params": {"text_fields": MOVIE_TEXT_FIELDS}},
        {"name": "memory", "depths": [0, 10]},
        {"name": "dense", "depths": [0, 30, 100], "params": {"text_fields": DENSE_TEXT_FIELDS}},
        {"name": "xmr", "depths": [0, 30, 100],
         "params": {"text_fields": MOVIE_TEXT_FIELDS, "extra_pseudo_queries": [["title"]], "seed": 0}},
    ],
    # epsilon 0.05: every plan keeps probability >= 0.05 / K, so the logged propensities are those
    # of a stochastic choice and the engine's own logs support off-policy evaluation of others
    "policy": {"type": "linucb", "params": {"alpha": 0.1, "epsilon": 0.05}, "budget": 300},
    "ranker": {"type": "lambdamart", "retrain_every": 500},
    "reward": {"cost_per_candidate": 0.00002, "kind": "click_dcg"},
    "store": {"events_path": ""},
    "context_features": ["bias", "n_tokens", "n_chars", "mean_token_len", "digit_frac", "has_year",
                         "non_ascii_frac", "single_token", "memory_hits", "memory_ctr", "memory_seen",
                         "stopword_frac", "has_decade"],
}


def parse_config(data: dict[str, Any], where: str = "<config>", base_dir: Path | None = None) -> EngineConfig:
    """Validate a config mapping; relative paths resolve against ``base_dir``."""
    cfg = validate_params(EngineConfig, data, where)
    if base_dir is not None:
        cat = cfg.catalog
        if not os.path.isabs(cat.path):
            cfg = cfg.model_copy(update={"catalog": cat.model_copy(update={"path": str((base_dir / cat.path).resolve())})})
        ev = cfg.store.events_path
        if ev and not os.path.isabs(ev):
            cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"events_path": str((base_dir / ev).resolve())})})
    return cfg


def load_config(path: str | os.PathLike) -> EngineConfig:
    """Read and validate a TOML engine config; the paths it names must exist (relative ones are
    resolved against the config file's directory, and an error says so)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a TOML config file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    cfg = parse_config(data, str(path), path.parent)
    _check_paths(data, cfg, path)
    return cfg


def _check_paths(data: dict[str, Any], cfg: EngineConfig, path: Path) -> None:
    """The files a config names exist: ``catalog.path``, and ``store.events_path``'s directory."""
    raw = (data.get("catalog") or {}).get("path")
    if raw is not None and not Path(cfg.catalog.path).is_file():
        how = "" if os.path.isabs(raw) else f", resolved relative to the config file's directory, is {cfg.catalog.path}"
        what = "is a directory" if Path(cfg.catalog.path).is_dir() else "does not exist"
        raise ConfigError(f"{path}: catalog.path {raw!r}{how}: {what}")
    raw = (data.get("store") or {}).get("events_path")
    if raw and not Path(cfg.store.events_path).parent.is_dir():
        how = "" if os.path.isabs(raw) else f", resolved relative to the config file's directory, is {cfg.store.events_path}"
        raise ConfigError(f"{path}: store.events_path {raw!r}{how}: its directory does not exist")


def default_config() -> EngineConfig:
    return parse_config(DEFAULT_CONFIG, "<default config>")


def to_json(cfg: EngineConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), indent=2)
