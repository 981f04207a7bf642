"""What a results frame says about one model on each card, for the fine-tune planner
(sweep/analysis/planner.py): one ``Evidence`` per configuration and card, of four kinds, strongest
first: measured on the card itself, emulated on a bigger card whose allocator was capped at the
card's size, predicted from uncapped rows (the memory model, or one measured peak that fits), and
nothing. Pure: pandas only."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.analysis.selection import OOM_STATUSES, config_text, gpu_column, numeric, short_gpu
from sweep.plan.config import shape_fields
from sweep.plan.grid import SEQ_RESOLUTION
from sweep.results.memory_model import GIB, MARGIN, PEAK_SOURCES, fragmented, oom_figures
from sweep.results.memory_surface import (
    Prediction,
    SurfaceFit,
    fit_surface,
    materialises_attention,
)
from sweep.results.record import OK

MEASURED, EMULATED, PREDICTED = "measured", "emulated", "predicted"
UNKNOWN_GPU = "?"  # sweep.analysis.selection.gpu_column's name when nothing says
# A GPU is a card of size C when it reports between this share of C and C GiB (an H200 "141 GB"
# shows 139.8 GiB, an A100-40GB 39.4 GiB, an L40S "48 GB" 44.5 GiB).
CARD_MATCH = 0.9
# The memory knobs a configuration may carry: field -> (values that are the knob, its name). A
# configuration's knobs are those of its values found here; "none" is the plain configuration.
KNOBS: dict[str, tuple[tuple[Any, ...], str]] = {
    "gradient_checkpointing": (("True",), "gradient checkpointing"),
    "liger": (("True",), "Liger"),
    "optimizer": (("adamw-8bit", "paged-adamw-8bit"), "8-bit optimizer"),
    "precision": (("bf16-true",), "pure bf16"),
    "allocator": (("expandable",), "expandable segments"),
}
# A card of C GB shows a little less than C GiB (an H100 "80 GB" 79.18 GiB, an H200 "141 GB" 139.8,
# an A100-40GB 39.4: 98.5% at the least); a batch whose measured peak, the CUDA context in it,
# stays under that share of a smaller card less the memory model's margin fits that card.
SHOWN_SHARE = 0.985
# The peak a row needs: NVML's peak (sampled, so it can miss a short spike; less the driver's
# own region where the row says), or torch's exact reserved peak plus the least CUDA context
# seen (0.51 GiB on Hopper, torch 2.11), the larger.
CONTEXT_MIN_GIB = 0.5
# A row capped once (before the second cap, sweep/trial/capacity.py: it has no
# ``outside_allocator_gib``) had its cap set from what CUDA held at its start; after the warm-up
# the process held up to this much more outside the allocator (0.235 GiB measured on the H200,
# about 0.25 on the H100: docs/RESULTS.md, 2026-12-07), so its cap was up to that much above what
# the card leaves. Such a row fitted surely only with this much to spare (under its cap, or at a
# shorter length than it ran); otherwise it fitted "narrowly" and the planner says so.
SINGLE_CAP_SLACK_GIB = 0.25
# A memory model fitted across lengths whose largest miss on its own points is over this
# predicts nothing for the planner: with checkpointing the step's peak moves from the optimizer
# at short lengths to the backward at long ones (no one line: up to 14% off on the H100's
# Llama-3.2-1B rows), where the MARGIN kept free is 2%.
SURFACE_MAX_MISS_PCT = 3.0
# QLoRA's 4-bit base is a method (a row of its own), not a knob of LoRA's row.
# A configuration is every shape field but the batch, the sequence length and a cap (capped rows
# are told apart by ``_cap``).
GROUP_FIELDS = [f for f in shape_fields() if f not in ("batch_size", "seq_len", "capacity_gb")]


@dataclass
class Evidence:
    """What one configuration's rows say about one card: ``fits`` (None: only rows that neither
    ran nor ran out of memory), the largest ok batch, the first out-of-memory batch, the longest
    ok sequence, the best tokens/s (measured on that card only) and its batch."""

    kind: str
    gpu: str
    knobs: tuple[str, ...]
    fits: bool | None
    largest_batch: int | None = None
    oom_from: int | None = None
    longest_seq: int | None = None
    tokens_per_s: float | None = None
    at_batch: int | None = None
    keys: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    peak_gib: float | None = None  # predicted from this measured peak (by_peak)
    from_seq: int | None = None  # fits because the batch fitted this longer sequence
    narrow: float | None = None  # capped once, fitted with this little to spare (GiB)
    # by the memory model: its longest sequence at batch 1, its largest miss (%) over the
    # lengths it was fitted on, and whether the batch lies far past the measured tokens
    predicted_seq: int | None = None
    miss_pct: float | None = None
    fit_lengths: int | None = None
    extrapolated: bool = False
    seq_far: bool = False  # the longest sequence lies far past the measured tokens too
    # an out-of-memory row by fragmentation at or under the length that fitted: (its length,
    # the GiB it asked, the GiB reserved free); a longer fit then does not promise this one
    fragmented: tuple[int, float, float] | None = None

    def rank(self) -> tuple:
        fast = self.tokens_per_s is not None
        return (
            not fast,
            -(self.tokens_per_s or 0.0),
            self.narrow is not None or self.fragmented is not None,  # a sure fit first
            len(self.knobs),
            -(self.largest_batch or 0),
        )


def knobs_of(row: dict[str, str]) -> tuple[str, ...]:
    """The memory knobs of one configuration (its fields as text), in ``KNOBS`` order."""
    return tuple(name for f, (values, name) in KNOBS.items() if row.get(f) in values)


def card_of(memory_gib: float | None, capacities, name: str = "") -> float | None:
    """The card size (GB as sold) a GPU reporting ``memory_gib`` is, or None. Without a reading
    (rows of 2020), the size its name states ("A100-SXM4-40GB") where that is a card size."""
    if memory_gib is None or not math.isfinite(memory_gib):
        stated = re.search(r"(\d+)GB\b", str(name))
        return float(stated.group(1)) if stated and float(stated.group(1)) in capacities else None
    fits = [c for c in capacities if CARD_MATCH * c <= memory_gib <= c]
    return min(fits) if fits else None


def _fit(rows: pd.DataFrame, quadratic: bool) -> tuple[SurfaceFit | None, str | None]:
    """The memory model through ``rows`` (ok, one configuration on one GPU) from the first peak
    source every row has (one source for all points, as the batch model reads them)."""
    rows = rows[numeric(rows, "batch_size").notna() & numeric(rows, "seq_len").notna()]
    for source in PEAK_SOURCES:
        peaks = numeric(rows, source)
        if len(rows) and peaks.notna().all():
            batch, seq = numeric(rows, "batch_size"), numeric(rows, "seq_len")
            points = list(zip(batch, seq, peaks * GIB, strict=True))
            return fit_surface(points, quadratic), source
    return None, None


def fit_across(rows: pd.DataFrame, quadratic: bool) -> tuple[SurfaceFit | None, int]:
    """The memory model through every length of ``rows`` and how many lengths it holds. Where
    its largest miss is over SURFACE_MAX_MISS_PCT, through the longer lengths only: the point of
    the fewest tokens is left out while at least three remain and it lies below the line through
    the rest (the step's peak there is another phase's, the optimizer's under checkpointing: the
    line errs high there, towards "does not fit"); None where that does not bring the miss
    under (a point above the line: NVML's peak holding cached blocks), or with one length."""
    rows = rows.assign(_tokens=rows["_batch"] * rows["_seq"]).sort_values("_tokens")
    if rows["_seq"].nunique() < 2:
        return None, 0  # one length: no model across lengths (the line of that length serves)
    while True:
        fit, source = _fit(rows, quadratic)
        if fit is None or fit.max_error_pct <= SURFACE_MAX_MISS_PCT:
            return fit, int(rows["_seq"].nunique())
        first, rest = rows.iloc[0], rows.iloc[1:]
        enough = rest["_tokens"].nunique() >= 3 and rest["_seq"].nunique() >= 2
        refit = _fit(rest, quadratic)[0] if enough else None
        measured = float(first[source]) * GIB
        if refit is None or measured > refit.predict_bytes(first["_batch"], first["_seq"]):
            return None, 0
        rows = rest


def predictions(d: pd.DataFrame, seq_len: int, capacities) -> pd.DataFrame:
    """What the memory model in batch and sequence length (sweep/results/memory_surface.py)
    predicts per configuration, GPU and card, from the uncapped ok rows of ``d`` (``prepare``):
    ``predicted_max_batch`` at ``seq_len`` (from the rows at ``seq_len`` alone where they hold
    two batches or more: the line of that length; else from every length measured) and
    ``predicted_max_seq_len`` at batch 1 (every length), each with the MARGIN kept free, and
    whether it extrapolates far past the measured tokens (``fit_across``: a fit across lengths is
    within SURFACE_MAX_MISS_PCT of its points or predicts nothing). The one place the planner
    asks the memory model."""
    columns = [
        "_gpu",
        "_cfg",
        "capacity_gb",
        "predicted_max_batch",
        "batch_extrapolated",
        "predicted_max_seq_len",
        "seq_extrapolated",
        "fit_max_error_pct",
        "fit_lengths",
    ]
    ok = d[d["_cap"].isna() & (d["status"] == OK)] if len(d) else d
    failed = d[d["status"].isin(OOM_STATUSES)] if len(d) else d
    out = []
    for (gpu, cfg), rows in ok.groupby(["_gpu", "_cfg"]) if len(ok) else ():
        if gpu == UNKNOWN_GPU:
            continue
        quadratic = materialises_attention(
            dict(zip(GROUP_FIELDS, cfg, strict=True)).get("attention")
        )
        across, used = fit_across(rows, quadratic)
        here = rows[rows["_seq"] == seq_len]
        one = _fit(here, False)[0] if here["_batch"].nunique() >= 2 else None
        at_len = one or across
        if at_len is None:
            continue
        lengths = 1 if one is not None else used
        same = [c == cfg for c in failed["_cfg"]]
        mine = failed[(failed["_gpu"] == gpu) & pd.Series(same, index=failed.index, dtype=bool)]
        for cap in capacities:
            no_batch, no_seq = _failed_on_bigger(mine, cap, seq_len, capacities)
            batch = at_len.largest_batch(cap * GIB, seq_len, fails_at=no_batch)
            seq = (
                across.longest_seq(cap * GIB, 1, step=SEQ_RESOLUTION, fails_at=no_seq)
                if across is not None
                else Prediction(None, False)
            )
            out.append(
                {
                    "_gpu": gpu,
                    "_cfg": cfg,
                    "capacity_gb": cap,
                    "predicted_max_batch": batch.value,
                    "batch_extrapolated": batch.extrapolated,
                    "predicted_max_seq_len": seq.value,
                    "seq_extrapolated": seq.extrapolated,
                    "fit_max_error_pct": at_len.max_error_pct,
                    "fit_lengths": lengths,
                }
            )
    return pd.DataFrame(out, columns=columns)


def _failed_on_bigger(failed: pd.DataFrame, cap: float, seq_len: int, capacities):
    """(the least batch out of memory at ``seq_len`` or shorter, the shortest length out of
    memory at batch 1) on a card of ``cap`` GB or more, capped or whole: a smaller card fits
    neither, so no prediction says it does. Any failure counts, fragmentation's too."""
    size = failed["_cap"].where(
        failed["_cap"].notna(),
        [card_of(m, capacities, g) for m, g in zip(failed["_mem"], failed["_gpu"], strict=True)],
    )
    big = failed[pd.to_numeric(size, errors="coerce") >= cap]
    batches = big.loc[big["_seq"] <= seq_len, "_batch"]
    lengths = big.loc[big["_batch"] <= 1, "_seq"]
    return (
        int(batches.min()) if len(batches) else None,
        int(lengths.min()) if len(lengths) else None,
    )


def prepare(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """The model's one-GPU training rows, with their configuration as text (``_cfg``), GPU,
    method, batch, sequence length, tokens/s and cap (``_cap``: NaN on an uncapped card)."""
    d = frame[config_text(frame, "model") == str(model)] if len(frame) else frame
    d = d[(config_text(d, "mode") == "train") & (config_text(d, "gpus_per_trial") == "1")]
    if d.empty:
        return d
    text = {f: config_text(d, f) for f in GROUP_FIELDS}
    return d.assign(
        _cfg=list(zip(*text.values(), strict=True)),
        _gpu=gpu_column(d).map(short_gpu),
        _method=text["finetune"],
        _batch=numeric(d, "batch_size"),
        _seq=numeric(d, "seq_len"),
        _tps=numeric(d, "tokens_per_s"),
        _cap=numeric(d, "capacity_gb"),
        _mem=numeric(d, "env.gpu_memory_total_gib"),
        _ds=d["dataset"] if "dataset" in d else "",
    ).pipe(_oom_sizes)


def _oom_sizes(d: pd.DataFrame) -> pd.DataFrame:
    """The out-of-memory rows' sizes (``_asked``, ``_free``: GiB asked and reserved free; from
    the record, else read from its error where the row predates the figures) and ``_frag``:
    out of memory by fragmentation (memory_model.fragmented)."""
    asked = numeric(d, "oom_request_gib").copy()
    free = numeric(d, "oom_cached_gib").copy()
    if "error" in d:
        stale = d["status"].isin(OOM_STATUSES) & (asked.isna() | free.isna())
        for i in d.index[stale]:
            said = oom_figures(str(d.at[i, "error"] or ""))
            asked.at[i] = said.get("oom_request_gib", math.nan)
            free.at[i] = said.get("oom_cached_gib", math.nan)
    return d.assign(_asked=asked, _free=free, _frag=fragmented(asked, free))


def _evidence(
    kind: str, gpu: str, rows: pd.DataFrame, seq_len: int, speed: bool, spare=None
) -> Evidence:
    """One configuration's rows on one card (every sequence length): what they say at
    ``seq_len``. ``speed``: the rows ran on the card itself, so their tokens/s may be shown.
    ``spare``: per row, what it had to spare at ``seq_len`` where it was capped once (GiB; NaN:
    a sure row): the ok rows with SINGLE_CAP_SLACK_GIB or more answer first, the others only
    where none does, and the evidence is then ``narrow``."""
    cfg = dict(zip(GROUP_FIELDS, rows["_cfg"].iloc[0], strict=True))
    ok = rows[rows["status"] == OK]
    narrow = None
    if spare is not None and len(ok):
        left = spare.reindex(ok.index)
        sure = ok[left.isna() | (left >= SINGLE_CAP_SLACK_GIB)]
        fits_at = (sure["_seq"] >= seq_len).any()
        if not fits_at and (ok["_seq"] >= seq_len).any():
            narrow = float(left[ok["_seq"] >= seq_len].max())
        else:
            ok = sure
    ok_here = ok[ok["_seq"] == seq_len]
    # memory grows with the length at a batch: a batch that fitted a longer sequence fits this
    # one (a max-seq search's probes), one out of memory at a shorter length does not fit it;
    # but out of memory by fragmentation (memory_model.fragmented) says nothing of capacity: a
    # fit it lies under is kept, and said to be uncertain
    ok_longer = ok[ok["_seq"] > seq_len]
    failed = rows[rows["status"].isin(OOM_STATUSES)]
    split = failed[failed["_frag"]]
    # where nothing fitted at or past the length, every failure under it counts
    counted = failed[~failed["_frag"]] if len(ok_here) or len(ok_longer) else failed
    oom = counted[counted["_seq"] <= seq_len]
    said = ok_here if len(ok_here) else ok_longer
    e = Evidence(kind, gpu, knobs_of(cfg), None, keys=tuple(said.get("key", ())))
    e.datasets = tuple(sorted({str(v) for v in pd.concat([said, oom])["_ds"]}))
    e.longest_seq = int(ok["_seq"].max()) if len(ok) else None
    e.oom_from = int(oom["_batch"].min()) if len(oom) else None
    if len(ok_here):
        e.fits, e.largest_batch = True, int(ok_here["_batch"].max())
        rate = ok_here.groupby("_batch")["_tps"].median().dropna()
        if speed and len(rate):
            e.tokens_per_s, e.at_batch = float(rate.max()), int(rate.idxmax())
    elif len(ok_longer) and (e.oom_from is None or ok_longer["_batch"].max() < e.oom_from):
        e.fits, e.largest_batch = True, int(ok_longer["_batch"].max())  # no speed at this length
        e.from_seq = int(ok_longer.loc[ok_longer["_batch"] == e.largest_batch, "_seq"].min())
    elif len(oom):
        e.fits = False
    if e.fits:
        e.narrow = narrow
        # a fit read from a longer length crosses every such failure under that length; one
        # measured at this length, only a failure at this length itself (another run's)
        fitted = e.from_seq if e.from_seq is not None else seq_len
        low = 0 if e.from_seq is not None else seq_len
        at = split["_seq"].between(low, fitted) & (split["_batch"] <= e.largest_batch)
        under = split[at]
        if len(under):
            first = under.sort_values("_seq").iloc[0]
            e.fragmented = (
                int(first["_seq"]),
                float(first["_asked"]),
                float(first["_free"]),
            )
    return e


def measured(d: pd.DataFrame, seq_len: int) -> dict[tuple[str, str], list[Evidence]]:
    """(GPU, method) -> each configuration's evidence on that uncapped GPU."""
    out: dict[tuple[str, str], list[Evidence]] = {}
    for (gpu, method, _), rows in d[d["_cap"].isna()].groupby(["_gpu", "_method", "_cfg"]):
        if gpu == UNKNOWN_GPU:  # a row the engine wrote without running, GPU unknown
            continue
        e = _evidence(MEASURED, gpu, rows, seq_len, speed=True)
        if e.fits is not None:
            out.setdefault((gpu, method), []).append(e)
    return out


def emulated(d: pd.DataFrame, seq_len: int) -> dict[tuple[float, str], list[Evidence]]:
    """(card GB, method) -> each configuration's evidence on a GPU capped at that size."""
    out: dict[tuple[float, str], list[Evidence]] = {}
    least = _least_allocated(d, seq_len)
    for (cap, gpu, method, _), rows in d[d["_cap"].notna()].groupby(
        ["_cap", "_gpu", "_method", "_cfg"]
    ):
        # never a capped row's speed; a row capped once may have fitted narrowly
        spare = _spare(rows, least, seq_len)
        e = _evidence(EMULATED, gpu, rows, seq_len, speed=False, spare=spare)
        if e.fits is not None:
            out.setdefault((float(cap), method), []).append(e)
    return out


def _least_allocated(d: pd.DataFrame, seq_len: int) -> dict[tuple, float]:
    """(configuration, batch) -> its least allocated peak at ``seq_len`` (ok rows, any card)."""
    here = d[(d["status"] == OK) & (d["_seq"] == seq_len)]
    least: dict[tuple, float] = {}
    peaks = numeric(here, "peak_allocated_gib")
    for c, b, a in zip(here["_cfg"], here["_batch"], peaks, strict=True):
        if pd.notna(a):
            least[(c, b)] = min(a, least.get((c, b), a))
    return least


def _spare(rows: pd.DataFrame, least: dict[tuple, float], seq_len: int) -> pd.Series:
    """Per capped row, NaN where it was capped again after its warm-up or states no cap and
    reserved peak (sure), else what it had to spare at ``seq_len``: its cap less its reserved
    peak, plus, for a row that ran a longer sequence, what its step allocated beyond the same
    batch at ``seq_len`` (``least``: ``_least_allocated``; 0 where none ran)."""
    once = numeric(rows, "outside_allocator_gib").isna()
    left = numeric(rows, "capacity_cap_gib") - numeric(rows, "peak_reserved_gib")
    at_len = pd.Series(
        [least.get((c, b), math.nan) for c, b in zip(rows["_cfg"], rows["_batch"], strict=True)],
        index=rows.index,
        dtype=float,
    )
    shorter = (numeric(rows, "peak_allocated_gib") - at_len).clip(lower=0).fillna(0.0)
    stated = left.notna()  # a row without its cap or reserved peak: nothing says it was narrow
    left = left + shorter.where(rows["_seq"] > seq_len, 0.0)
    return left.where(once & stated)


def predicted(d: pd.DataFrame, seq_len: int, capacities) -> dict[tuple[float, str], list]:
    """(card GB, method) -> each configuration's prediction (from uncapped ok rows)."""
    out: dict[tuple[float, str], list[Evidence]] = {}
    real = d[d["_cap"].isna()]
    for _, p in predictions(d, seq_len, capacities).iterrows():
        cfg = dict(zip(GROUP_FIELDS, p["_cfg"], strict=True))
        batch = p["predicted_max_batch"]
        if batch is None or pd.isna(batch):
            continue  # memory does not grow with the batch: no prediction
        e = Evidence(PREDICTED, p["_gpu"], knobs_of(cfg), int(batch) >= 1, int(batch) or None)
        seq = p["predicted_max_seq_len"]
        e.predicted_seq = int(seq) if seq is not None and pd.notna(seq) else None
        e.miss_pct, e.fit_lengths = float(p["fit_max_error_pct"]), int(p["fit_lengths"])
        e.extrapolated = bool(p["batch_extrapolated"])
        e.seq_far = bool(p["seq_extrapolated"])
        mask = (real["_gpu"] == e.gpu) & (real["_cfg"] == p["_cfg"])
        e.keys = tuple(real.loc[mask & (real["status"] == OK), "key"])
        e.datasets = tuple(sorted({str(v) for v in real.loc[mask, "_ds"]}))
        out.setdefault((float(p["capacity_gb"]), cfg["finetune"]), []).append(e)
    return out


def by_peak(d: pd.DataFrame, seq_len: int, capacities) -> dict[tuple[float, str], list]:
    """(card GB, method) -> each configuration's largest batch at ``seq_len`` whose peak measured
    on a bigger card fits a card of that size (SHOWN_SHARE, the memory model's margin)."""
    real = d[d["_cap"].isna() & (d["status"] == OK) & (d["_seq"] == seq_len)]
    # NVML counts the driver's own region as used, which a card's shown total leaves out: less
    # that region where the row carries NVML's total (else as read: a little high)
    driver = (numeric(real, "nvml_total_gib") - numeric(real, "device_total_gib")).clip(lower=0)
    nvml = numeric(real, "nvml_peak_used_gib") - driver.fillna(0.0)
    need = pd.concat([nvml, numeric(real, "peak_reserved_gib") + CONTEXT_MIN_GIB], axis=1).max(
        axis=1
    )
    real = real.assign(_need=need)[need.notna()]
    out: dict[tuple[float, str], list[Evidence]] = {}
    for (gpu, method, cfg_values), rows in real.groupby(["_gpu", "_method", "_cfg"]):
        own = card_of(rows["_mem"].median(), capacities, gpu)
        cfg = dict(zip(GROUP_FIELDS, cfg_values, strict=True))
        for cap in capacities:
            if own is not None and cap >= own:
                continue  # the GPU's own card and bigger: measured, not predicted
            fit = rows[rows["_need"] <= cap * SHOWN_SHARE * (1 - MARGIN)]
            if fit.empty:
                continue
            top = fit.loc[fit["_batch"].idxmax()]
            e = Evidence(PREDICTED, gpu, knobs_of(cfg), True, int(top["_batch"]))
            e.peak_gib, e.keys = float(top["_need"]), tuple(fit.get("key", ()))
            e.datasets = tuple(sorted({str(v) for v in fit["_ds"]}))
            out.setdefault((float(cap), method), []).append(e)
    return out
