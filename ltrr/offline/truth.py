"""Ground truth for off-policy estimates: the value each target really has, when known.

``--truth [NAME=]FILE``: a JSON file (a number, or ``{"policy name": value}``), or a log of the
target itself (on-policy: its average reward is the truth, e.g. the Open Bandit Dataset's
Bernoulli TS log for the BTS target, or ``ltrr log simulate --config target.toml --frozen``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ltrr.errors import ConfigError, DataError


def log_mean_reward(path: str, log_format: str | None = None) -> float:
    """The average reward of a log of any supported format."""
    from ltrr.offline.formats import detect_format, read_action_log
    from ltrr.offline.logs import LogReader

    fmt = detect_format(path, log_format)
    if fmt != "ltrr":
        return float(read_action_log(path, fmt).reward.mean())
    reader = LogReader(path)
    rewards = [r.reward if r.reward is not None else float(bool(r.clicks)) for r in reader]
    reader.report.check_nonempty()
    return float(np.mean(rewards))


def parse_truth(items: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """``{target name: true value}`` from ``[NAME=]FILE`` options."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, src = item.partition("=")
        if not sep or "/" in name:
            name, src = "", item
        path = Path(src)
        if not path.exists():
            raise DataError(f"{path}: no such ground-truth file")
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: invalid JSON ({exc})") from None
            if isinstance(data, dict):
                for k, v in data.items():
                    if not isinstance(v, int | float) or isinstance(v, bool):
                        raise DataError(f"{path}: the truth of {k!r} must be a number, got {v!r}")
                    out[str(k)] = float(v)
                continue
            if not isinstance(data, int | float) or isinstance(data, bool):
                raise DataError(f"{path}: ground truth must be a number or an object of numbers; got {data!r}")
            value = float(data)
        else:
            value = log_mean_reward(str(path))
        if not name:
            if len(names) != 1:
                raise ConfigError(f"--truth {item}: name the target it belongs to (--truth NAME=FILE); "
                                  f"targets: {', '.join(names)}")
            name = names[0]
        out[name] = value
    unknown = sorted(set(out) - set(names))
    if unknown:
        raise ConfigError(f"--truth names unknown target {unknown[0]!r}; targets: {', '.join(names)}")
    return out
