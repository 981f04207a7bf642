"""GitHub Markdown tables from frames, and the number formats the report uses."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd


def cell(value: Any, fmt: Callable[[float], str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (hasattr(value, "is_integer") and type(value).__name__ == "int64"):
        return str(value)
    if isinstance(value, float):
        return fmt(value)
    if hasattr(value, "item"):
        return cell(value.item(), fmt)
    return str(value).replace("|", "\\|")


def markdown(df: pd.DataFrame, formats: dict[str, Callable[[float], str]] | None = None) -> str:
    """A GitHub Markdown table; floats by ``formats[column]`` (default 4 significant digits)."""
    if df.empty:
        return "_(no rows)_\n"
    formats = formats or {}

    def default(v: float) -> str:
        return f"{v:.4g}"

    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for row in df.itertuples(index=False):
        cells = [cell(v, formats.get(c, default)) for c, v in zip(df.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_thousands(v: float) -> str:
    return f"{v:,.0f}"


def fmt_ratio(v: float) -> str:
    return f"{v:.2f}x"


def fmt_gib(v: float) -> str:
    return f"{v:.2f}"
