"""What training tokens cost: hourly GPU prices (editable), dollars per million tokens, and the
cheapest GPU that reaches a target rate."""

from __future__ import annotations

import math
import re

import pandas as pd

from sweep.analysis.selection import with_series
from sweep.results.record import OK

PRICE_COLUMNS = ["gpu_name_contains", "usd_per_gpu_hour", "source"]
# Default hourly prices for one GPU, all of one kind and one date: AWS EC2 Capacity Blocks for
# ML, "effective accelerator hourly rate" (instance rate / GPUs), US East (Ohio), the rates listed
# until 1 Jan 2025 (https://aws.amazon.com/ec2/capacityblocks/pricing/): the one AWS list that
# names A100, H100 and H200 at one date. GPUs it does not sell (V100, T4, A10G, L4) have no default:
# on-demand rates are several times higher (p5.48xlarge on-demand was $98.32/h, $12.29 per GPU,
# against $4.916 here), and a table mixing the two made the newest GPUs look cheapest. They are
# a starting point, not a quote: every user should enter their own prices (editable in the app).
PRICE_SOURCE = "AWS EC2 Capacity Blocks, effective accelerator rate, US East (Ohio), to 2025-01-01"
DEFAULT_PRICES = pd.DataFrame(
    [
        ["A100", 1.844, f"{PRICE_SOURCE}: p4d.24xlarge (8x A100 40GB) $14.75/h"],
        ["H100", 4.916, f"{PRICE_SOURCE}: p5.48xlarge (8x H100) $39.33/h"],
        ["H200", 5.408, f"{PRICE_SOURCE}: p5e.48xlarge (8x H200) $43.26/h"],
    ],
    columns=PRICE_COLUMNS,
)


def parse_prices(table: pd.DataFrame | list | None) -> tuple[pd.DataFrame, list[str]]:
    """Read the editable price table. Returns the valid rows and one message per bad row (a row
    with an empty name and price is ignored silently: it is the blank row an editor leaves)."""
    if table is None:
        return DEFAULT_PRICES.iloc[0:0].copy(), []
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    if frame.shape[1] < 2:
        return DEFAULT_PRICES.iloc[0:0].copy(), [
            "price table: needs at least two columns, a GPU name and a price in $ per GPU-hour"
        ]
    frame = frame.iloc[:, :3].copy()
    while frame.shape[1] < 3:
        frame[f"_{frame.shape[1]}"] = ""
    frame.columns = PRICE_COLUMNS
    good, errors = [], []
    for i, (name, price, source) in enumerate(frame.itertuples(index=False), start=1):
        name = (
            ""
            if name is None or (isinstance(name, float) and math.isnan(name))
            else str(name).strip()
        )
        text = (
            ""
            if price is None or (isinstance(price, float) and math.isnan(price))
            else str(price).strip().lstrip("$").replace(",", "")
        )
        if not name and not text:
            continue
        if not name:
            errors.append(f"price row {i}: no GPU name (the GPU name must contain this text)")
            continue
        try:
            value = float(text)
        except ValueError:
            errors.append(
                f"price row {i} ({name}): {price!r} is not a number of dollars per GPU-hour"
            )
            continue
        if not math.isfinite(value) or value <= 0:
            errors.append(
                f"price row {i} ({name}): the price must be a positive number of "
                f"dollars per GPU-hour, got {price!r}"
            )
            continue
        good.append([name, value, "" if source is None else str(source)])
    return pd.DataFrame(good, columns=PRICE_COLUMNS), errors


def _has_word(name: str, word: str) -> bool:
    """``word`` occurs in ``name`` with no letter or digit right before or after it."""
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", name) is not None


def price_for(gpu_name: str, prices: pd.DataFrame) -> tuple[float, str] | None:
    """The hourly price whose name best matches a GPU name: every word of the entry must occur in
    the GPU name as a whole word or dash-separated part (case-insensitive: "L4" is not the price
    of an "L40S", nor "A10" of an "A100-SXM4-80GB"); the entry with the most text wins
    ("A100 80GB" over "A100")."""
    name = str(gpu_name).lower()
    best = None
    for pattern, price, _source in prices.itertuples(index=False):
        words = str(pattern).lower().split()
        if words and all(_has_word(name, w) for w in words):
            if best is None or len(pattern) > len(best[1]):
                best = (float(price), str(pattern))
    return best


def cost_table(df: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Per series: its best tokens/s over the batch sizes that fit, the GPU's hourly price and the
    dollars per million training tokens at that rate: price / (tokens_per_s * 3600) * 1e6."""
    cols = [
        "series",
        "gpu",
        "best_tokens_per_s",
        "at_batch",
        "usd_per_gpu_hour",
        "price_entry",
        "usd_per_million_tokens",
    ]
    d = df[(df["status"] == OK)] if "status" in df else df.iloc[0:0]
    if d.empty or "tokens_per_s" not in d:
        return pd.DataFrame(columns=cols)
    d = with_series(d).assign(tps=pd.to_numeric(d["tokens_per_s"], errors="coerce"))
    d = d[d["tps"].notna()]
    med = d.groupby(["series", "gpu", "batch_size"])["tps"].median().reset_index()
    rows = []
    for (series, gpu), g in med.groupby(["series", "gpu"], sort=True):
        best = g.loc[g["tps"].idxmax()]
        match = price_for(gpu, prices)
        usd = match[0] if match else None
        rows.append(
            {
                "series": series,
                "gpu": gpu,
                "best_tokens_per_s": round(float(best["tps"]), 1),
                "at_batch": int(best["batch_size"]),
                "usd_per_gpu_hour": usd,
                "price_entry": match[1] if match else None,
                "usd_per_million_tokens": round(usd / (best["tps"] * 3600) * 1e6, 6)
                if usd
                else None,
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("usd_per_million_tokens", na_position="last").reset_index(drop=True)


def cheapest(costs: pd.DataFrame, target_tokens_per_s: float) -> tuple[str, pd.DataFrame]:
    """The cheapest GPU (lowest $ per GPU-hour) whose best rate reaches the target, as a sentence,
    and the GPUs that reach it, cheapest first."""
    if (
        target_tokens_per_s is None
        or not math.isfinite(float(target_tokens_per_s))
        or float(target_tokens_per_s) < 0
    ):
        return "Target: enter a number of tokens per second (0 or more).", costs.iloc[0:0]
    target = float(target_tokens_per_s)
    reach = costs[(costs["best_tokens_per_s"] >= target) & costs["usd_per_gpu_hour"].notna()]
    reach = reach.sort_values(["usd_per_gpu_hour", "usd_per_million_tokens"]).reset_index(drop=True)
    if reach.empty:
        fastest = costs["best_tokens_per_s"].max() if len(costs) else None
        extra = (
            f" (the fastest here does {fastest:,.0f} tokens/s)"
            if fastest == fastest and fastest is not None
            else ""
        )
        return (
            f"No single priced GPU reaches {target:,.0f} tokens/s for this selection{extra}.",
            reach,
        )
    top = reach.iloc[0]
    return (
        f"Cheapest GPU reaching {target:,.0f} tokens/s: **{top['series']}** at "
        f"${top['usd_per_gpu_hour']:.2f}/h ({top['best_tokens_per_s']:,.0f} tokens/s at batch "
        f"{top['at_batch']}, ${top['usd_per_million_tokens']:.4f} per million tokens).",
        reach,
    )
