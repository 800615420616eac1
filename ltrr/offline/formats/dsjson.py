"""Vowpal Wabbit DSJSON contextual-bandit logs (what VW's decision service writes).

One JSON object a line::

    {"_label_cost": -1, "_label_probability": 0.8, "_label_Action": 2, "_labelIndex": 1,
     "Timestamp": "...", "Version": "1", "EventId": "...", "a": [2, 1, 3],
     "c": {"User": {"tier": "pro"}, "_multi": [{...action 1...}, {...}, {...}]},
     "p": [0.8, 0.1, 0.1], "VWState": {"m": "..."}}

``_labelIndex`` is the chosen action's 0-based index in ``c._multi`` (``_label_Action`` the same
1-based), ``_label_probability`` its logged probability, ``_label_cost`` the cost (reward =
-cost), ``a`` the action ids (1-based) in the order served and ``p`` their probabilities: the
logger's whole distribution, which the support diagnostic uses. Events marked ``_skipLearn``
(not activated) are skipped, as VW and the decision service's estimators skip them. Conditional
contextual bandit and slates logs (``_outcomes``/``_slots``) are not supported: one clear error.

Context features for the reward model: the shared part of ``c`` (everything but ``_multi`` and
keys starting with ``_``) flattened VW-style into ``namespace^feature`` names (strings become
``name=value`` indicators) and hashed into ``2**hash_bits`` columns; the action is one-hot.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ltrr.errors import DataError
from ltrr.offline.formats.actionlog import ActionLog
from ltrr.offline.formats.tables import check_file

DEFAULT_HASH_BITS = 8
LABEL_KEYS = ("_label_cost", "_label_probability")


def looks_like_dsjson(obj: Mapping[str, Any]) -> bool:
    c = obj.get("c")
    return "_label_cost" in obj or "_labelIndex" in obj or (isinstance(c, Mapping) and "_multi" in c)


def _features(value: Any, ns: str, out: dict[str, float]) -> None:
    """VW-style flattening of a JSON namespace into named numeric features."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k.startswith("_"):
                continue
            if isinstance(v, Mapping | list):
                _features(v, k if not ns else f"{ns}.{k}", out)
            elif isinstance(v, bool):
                if v:
                    out[f"{ns}^{k}"] = 1.0
            elif isinstance(v, int | float):
                out[f"{ns}^{k}"] = out.get(f"{ns}^{k}", 0.0) + float(v)
            elif v is not None:
                out[f"{ns}^{k}={v}"] = 1.0
    elif isinstance(value, list):
        for j, v in enumerate(value):
            if isinstance(v, Mapping | list):
                _features(v, ns, out)
            elif isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{ns}[{j}]"] = float(v)


def hash_features(feats: Mapping[str, float], bits: int) -> tuple[np.ndarray, np.ndarray]:
    dim = 1 << bits
    idx = np.array([zlib.crc32(k.encode("utf-8")) % dim for k in feats], dtype=np.int64)
    return idx, np.fromiter(feats.values(), dtype=np.float64, count=len(feats))


def _events(path: str | os.PathLike) -> Iterator[tuple[int, str, dict[str, Any]]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}:line {lineno}: invalid JSON ({exc}); a truncated DSJSON log?") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:line {lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, raw.decode("utf-8").strip(), obj


def read_dsjson(path: str | os.PathLike, hash_bits: int = DEFAULT_HASH_BITS) -> ActionLog:
    """A DSJSON contextual-bandit log as an :class:`ActionLog` (see the module doc)."""
    check_file(path)
    actions, rewards, pscores, lines, raws, pmfs, feats = [], [], [], [], [], [], []
    skipped = 0
    for lineno, raw, obj in _events(path):
        where = f"{path}:line {lineno}"
        if "_outcomes" in obj or "_slots" in (obj.get("c") or {}):
            raise DataError(f"{where}: conditional contextual bandit / slates DSJSON is not supported "
                            "(only CB events with _label_cost, _label_probability and c._multi)")
        if obj.get("_skipLearn") or obj.get("_skiplearn"):
            skipped += 1
            continue
        c = obj.get("c")
        multi = c.get("_multi") if isinstance(c, Mapping) else None
        if not isinstance(c, Mapping) or not isinstance(multi, list) or not multi:
            raise DataError(f"{where}: no actions: a DSJSON CB event needs 'c' with a non-empty '_multi' list")
        missing = [k for k in LABEL_KEYS if k not in obj]
        if missing:
            raise DataError(f"{where}: missing {missing}: a DSJSON CB event needs _label_cost, "
                            "_label_probability and _labelIndex (or _label_Action)")
        k = len(multi)
        if "_labelIndex" in obj:
            a = obj["_labelIndex"]
        elif "_label_Action" in obj:
            a = obj["_label_Action"] - 1 if isinstance(obj["_label_Action"], int) else None
        else:
            raise DataError(f"{where}: missing '_labelIndex' (or '_label_Action'): which action was logged?")
        if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < k:
            raise DataError(f"{where}: logged action index {a!r} is not in [0, {k}) (the event has {k} actions)")
        try:
            cost = float(obj["_label_cost"])
            p = float(obj["_label_probability"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: _label_cost and _label_probability must be numbers; got "
                            f"{obj['_label_cost']!r}, {obj['_label_probability']!r}") from None
        if not 0.0 < p <= 1.0:
            raise DataError(f"{where}: _label_probability {p!r} is outside (0, 1]")
        pmf = np.zeros(k)
        ids, probs = obj.get("a"), obj.get("p")
        if isinstance(ids, list) and isinstance(probs, list) and len(ids) == len(probs) == k:
            for i_, p_ in zip(ids, probs, strict=True):
                if isinstance(i_, int) and 1 <= i_ <= k:
                    pmf[i_ - 1] = float(p_)
        else:
            pmf[:] = np.nan  # the logger's distribution is not in the log
        shared: dict[str, float] = {}
        _features({key: v for key, v in c.items() if key != "_multi"}, "", shared)
        actions.append(a)
        rewards.append(-cost)
        pscores.append(p)
        lines.append(lineno)
        raws.append(raw)
        pmfs.append(pmf)
        feats.append(hash_features(shared, hash_bits))
    n = len(actions)
    if n == 0:
        msg = f" ({skipped} events marked _skipLearn)" if skipped else ""
        raise DataError(f"{path}: no contextual-bandit events{msg}; nothing to evaluate")
    n_actions = max(pmf.size for pmf in pmfs)
    logged = np.zeros((n, n_actions))
    for i, pmf in enumerate(pmfs):
        logged[i, : pmf.size] = pmf
    has_pmf = not np.isnan(logged).any()
    context = np.zeros((n, 1 << hash_bits))
    for i, (idx, val) in enumerate(feats):
        np.add.at(context[i], idx, val)
    return ActionLog(str(path), "dsjson", np.asarray(actions, dtype=np.int64), np.asarray(rewards),
                     np.asarray(pscores), np.zeros(n, dtype=np.int64), context, n_actions, 1, None,
                     logged if has_pmf else None, np.asarray(lines, dtype=np.int64), "line", None,
                     tuple(raws), skipped).validate()
