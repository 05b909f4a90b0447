"""NaN and infinite numbers in a configuration, found by key (no torch import: the
workflow's config check runs this at every DAG build)."""

import math
from typing import Any

from yaware.errors import ConfigError


def non_finite_numbers(
    value: Any, key: str = "", infinite_ok: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    """Every NaN or infinite number in a nested mapping, as (dotted key, value).

    YAML reads ``.nan`` and ``.inf`` (and ``.NaN``, ``-.Inf``) as floats, so they pass a
    type check and every comparison with NaN is false: a bound like ``lr > 0`` lets NaN
    through. ``infinite_ok`` names keys where an infinite value is a meaningful setting (a
    threshold that turns a check off).
    """
    if isinstance(value, dict):
        return [
            found
            for name, item in value.items()
            for found in non_finite_numbers(
                item, f"{key}.{name}" if key else str(name), infinite_ok
            )
        ]
    if isinstance(value, list | tuple):
        return [
            found
            for i, item in enumerate(value)
            for found in non_finite_numbers(item, f"{key}[{i}]", infinite_ok)
        ]
    if isinstance(value, float) and not math.isfinite(value):
        if math.isinf(value) and key in infinite_ok:
            return []
        return [(key, value)]
    return []


def check_finite_numbers(
    mapping: Any, source: str = "config", infinite_ok: tuple[str, ...] = ()
) -> None:
    """Refuse NaN and infinite numbers by key (see :func:`non_finite_numbers`)."""
    found = non_finite_numbers(mapping, infinite_ok=infinite_ok)
    if found:
        named = "; ".join(f"{key}: {_yaml_number(value)}" for key, value in found)
        raise ConfigError(
            f"{source}: {named}: not a finite number (YAML reads .nan and .inf as numbers); "
            "write the value you mean"
        )


def _yaml_number(value: float) -> str:
    return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
