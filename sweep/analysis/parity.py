"""Loss parity: does a speed or memory knob change what the step learns?

A row whose configuration differs from another row's in one knob alone (Liger's kernels, compile,
CUDA graph, gradient checkpointing, an 8-bit optimizer, bf16-true, QLoRA's 4-bit base), measured
from the same seed on the same GPU and data set, is compared with it step by step: the losses of
the measured steps (``losses``; the first and last where a record has no list). A knob that moves
any step's loss by more than LOSS_TOLERANCE of the plain row's is flagged. The plain value of each
knob is what a user would run without it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sweep.analysis.selection import config_text, gpu_column, value_text
from sweep.plan.config import field_label, field_names
from sweep.results.record import OK

# knob -> (its plain value, the values it is compared from). A knob value is compared with the
# row equal in everything else that has the plain value.
KNOBS: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "liger": (False, (True,)),
    "compile": (False, (True, "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
    "cuda_graph": (False, (True,)),
    "gradient_checkpointing": (False, (True,)),
    "optimizer": ("adamw-fused", ("adamw", "adamw-8bit", "paged-adamw-8bit", "apex-fused-adam")),
    "precision": ("bf16-mixed", ("bf16-true",)),
    "finetune": ("lora", ("qlora",)),
    "allocator": ("default", ("expandable",)),
}
# Relative to the plain row's loss, on every measured step. The same seed, weights and batch give
# the same first loss up to the kernels' rounding; a knob past 1% changes the arithmetic, not its
# rounding (bf16's relative precision is 2**-8, about 0.4%).
LOSS_TOLERANCE = 0.01
COLUMNS = ["key", "plain_key", "knob", "value", "plain", "steps", "loss_diff_pct", "parity"]


def _losses(row: dict) -> list[float] | None:
    v = row.get("losses")
    if isinstance(v, (list, tuple)) and v:
        return [float(x) if x is not None else math.nan for x in v]
    first, last = row.get("loss_first"), row.get("loss_last")
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return None
    return [float(first), float(last)]


def loss_parity(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (knob row, its plain row): the largest per-step loss difference in % of the
    plain row's, and ``parity`` "ok" or "differs". Empty where no such pairs exist."""
    if frame.empty or "status" not in frame:
        return pd.DataFrame(columns=COLUMNS)
    d = frame[frame["status"] == OK]
    fields = field_names()
    # every field as text, a missing one (a row stored before it existed) read as its default
    texts = {f: config_text(d, f) for f in fields}
    d = d.assign(
        _gpu=gpu_column(d),
        _ds=d["dataset"] if "dataset" in d else "",
        _cfg=list(zip(*texts.values(), strict=True)),
    )
    index = {(r["_gpu"], r["_ds"], r["_cfg"]): r for r in d.to_dict("records")}
    knobs = {
        knob: (fields.index(knob), value_text(plain), {value_text(v) for v in values})
        for knob, (plain, values) in KNOBS.items()
    }
    out = []
    for (gpu, ds, cfg), row in index.items():
        for knob, (i, plain, values) in knobs.items():
            if cfg[i] not in values:
                continue
            base = index.get((gpu, ds, cfg[:i] + (plain,) + cfg[i + 1 :]))
            if base is None:
                continue
            a, b = _losses(row), _losses(base)
            if not a or not b:
                continue
            n = min(len(a), len(b))
            diffs = [abs(x - y) / abs(y) for x, y in zip(a[:n], b[:n], strict=True) if y]
            worst = max(diffs) if diffs else math.nan
            out.append(
                {
                    "key": row["key"],
                    "plain_key": base["key"],
                    "knob": knob,
                    "value": cfg[i],
                    "plain": plain,
                    "steps": n,
                    "loss_diff_pct": worst * 100.0,
                    "parity": "ok" if worst <= LOSS_TOLERANCE else "differs",
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)


def parity_marks(frame: pd.DataFrame) -> dict[str, str]:
    """key -> a short mark for each row that has a plain counterpart: "ok (0.12%)" or
    "differs: Liger kernels true moves the loss 3.1%", the worst of its knobs."""
    table = loss_parity(frame)
    marks: dict[str, str] = {}
    for key, rows in table.groupby("key"):
        worst = rows.loc[rows["loss_diff_pct"].idxmax()]
        pct = worst["loss_diff_pct"]
        if worst["parity"] == "ok":
            marks[key] = f"ok ({pct:.2f}%)"
        else:
            marks[key] = (
                f"differs: {field_label(worst['knob'])} {worst['value']} moves the loss "
                f"{pct:.1f}% (vs {worst['plain']})"
            )
    return marks


def with_parity(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with ``loss_parity``: each row's mark (empty where it has no plain row)."""
    marks = parity_marks(frame)
    if "key" not in frame:
        return frame
    return frame.assign(loss_parity=frame["key"].map(marks).fillna(""))


def format_parity(frame: pd.DataFrame) -> str:
    """The pairs as text for the sweep's summary; "" without pairs."""
    table = loss_parity(frame)
    if table.empty:
        return ""
    shown = table.assign(
        knob=[f"{field_label(k)} {v} (vs {p})" for k, v, p in zip(*_cols(table), strict=True)],
        loss_diff_pct=table["loss_diff_pct"].map(lambda v: f"{v:.2f}"),
    )[["key", "plain_key", "knob", "steps", "loss_diff_pct", "parity"]]
    flagged = int((table["parity"] == "differs").sum())
    head = (
        f"Loss parity: a knob against the same configuration without it, same seed, step by "
        f"step (tolerance {LOSS_TOLERANCE:.0%} of the loss); {flagged} of {len(table)} differ."
    )
    return head + "\n" + shown.to_string(index=False)


def _cols(table: pd.DataFrame):
    return table["knob"], table["value"], table["plain"]
