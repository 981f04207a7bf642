"""How the answer table is shown: about eight primary columns that answer the question at a
glance (fastest, how much faster, what fits, what it costs, how far to trust it), the others
chosen by name; and the table a selection without a model or sequence length gets.

Pure (pandas only): the app's Compare GPUs tab shows what these return."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.analysis.answer import COLUMNS, Answer, answer, fits_column
from sweep.analysis.selection import ANY

# What fits in a 24 GB and an 80 GB card: a consumer/L4 class and the usual data-centre card.
PRIMARY_COLUMNS = [
    "GPU",
    "Precision",  # only where precision "(any)" kept several
    "Tokens/s (like baseline)",
    "Speedup",  # "Speedup vs <baseline GPU>" in the table
    "GPU's best tokens/s",
    fits_column(24),
    fits_column(80),
    "$ per million tokens",
    "Trust",
]
# The columns one may add, in the table's order.
MORE_COLUMNS = [c for c in COLUMNS if c not in PRIMARY_COLUMNS]
PICK_MODEL = "Pick a **model** and a **sequence length** above for the answer table."


def _base(column: str) -> str:
    """A table column's name in ``COLUMNS``: "Speedup vs A100" -> "Speedup"."""
    return column.split(" vs ")[0]


def shown_columns(table: pd.DataFrame, more: list[str] | None = None) -> pd.DataFrame:
    """``table`` with its primary columns and those of ``more`` (names of ``MORE_COLUMNS``), in
    the table's order."""
    wanted = set(PRIMARY_COLUMNS) | set(more or [])
    return table[[c for c in table.columns if _base(c) in wanted]]


# Column widths (CSS pixels): names and trust read at a glance, numbers narrow, sentences cut
# (their whole text on hover); headers wrap. Eight primary columns fill about 900 px.
WIDE = {"GPU": 150, "Trust": 150, "Differs in": 220, "GPU's best config": 220, "Data": 160}
NUMBER_WIDTH = 100


def column_widths(
    columns: list[str], wide: dict[str, int] = WIDE, other: int = NUMBER_WIDTH
) -> list[str]:
    """A table's column widths in the order of ``columns``: ``wide``'s px, ``other`` px for the
    rest (default: the answer table's)."""
    return [f"{wide.get(c, other)}px" for c in columns]


def answer_for(sel: pd.DataFrame, filters: dict[str, Any], **kw: Any) -> Answer:
    """``answer`` for the app's filters; without a model or a sequence length, an empty table
    with the answer's own headers (never placeholders) and a note saying what to pick."""
    if filters.get("model") in (None, "", ANY) or filters.get("seq_len") in (None, "", ANY):
        return Answer(pd.DataFrame(columns=COLUMNS), None, [PICK_MODEL])
    precision = filters.get("precision")
    return answer(
        sel,
        filters["model"],
        filters["seq_len"],
        None if precision in (None, "", ANY) else precision,
        **kw,
    )
