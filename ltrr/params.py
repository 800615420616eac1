"""Parameter models for components and configs.

Every component declares its hyperparameters as a frozen pydantic model (``Params``) that rejects
unknown keys. :func:`validate_params` turns pydantic's errors into one readable
:class:`~ltrr.errors.ConfigError` that names the component, the key and the allowed keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ltrr.errors import ConfigError


class Params(BaseModel):
    """Base of every parameter model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


P = TypeVar("P", bound=BaseModel)


def validate_params(model: type[P], values: Mapping[str, Any] | None, where: str) -> P:
    """Build ``model`` from ``values``; raise ConfigError naming ``where``, the key and what is allowed."""
    try:
        return model.model_validate(dict(values or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, where)) from None


def format_validation_error(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = _format_loc(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"][:-1])
            lines.append(f"{where}: unknown key '{loc}'; allowed keys: {', '.join(allowed)}")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key '{loc}'")
        else:
            lines.append(
                f"{where}: the '{loc}' parameter {err['msg'][0].lower() + err['msg'][1:]}. "
                f"Got {err.get('input')!r} instead."
            )
    return "\n".join(lines)


def _format_loc(loc: tuple) -> str:
    """``("strategies", 0, "foo")`` -> ``strategies[0].foo``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the (possibly nested) model at ``path``."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            break
        ann = info.annotation
        args = getattr(ann, "__args__", ())
        nested = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            break
        current = nested
    return sorted(getattr(current, "model_fields", {}).keys())
