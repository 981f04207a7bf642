"""The fine-tune planner: "I want to fine-tune model M on N tokens of sequence length S: which
card, which method (full / LoRA / QLoRA), which knobs, how long and how much?"

One pure function, ``plan``, builds the table for the web app's first tab and for
``python -m sweep fits``. One row per card size and method, and per GPU type with measured rows
and method. What each row says is taken from the strongest evidence there is, in this order:

1. **measured on <GPU>**: trials that ran on a real card (a GPU row; a card-size row whose size
   is that GPU's memory); a batch that fitted a longer sequence fits a shorter one ("at N
   tokens": a max-seq search's probes answer every shorter length), without a speed;
2. **emulated on a capped <GPU>**: trials run on a bigger GPU whose allocator was capped at the
   card's size (rows with a ``capacity_gb``): they say what fits, never how fast;
3. **predicted** from uncapped rows on a bigger card: by the memory model (``predictions``) or
   by one measured peak that fits what the smaller card shows (``_by_peak``);
4. **not measured**: nothing is known, and the row says so.

Among the configurations that fit, the one shown is the cheapest: the fastest where speed was
measured on that very card, otherwise the one with the fewest memory knobs (then the largest
batch). Speed, hours and dollars come only from trials on the row's own GPU, one GPU a trial.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis.cost import DEFAULT_PRICES, price_for
from sweep.analysis.parity import parity_marks
from sweep.analysis.selection import OOM_STATUSES, config_text, gpu_column, numeric, short_gpu
from sweep.plan.config import FINETUNES, shape_fields
from sweep.results.memory_model import MARGIN, predicted_limits
from sweep.results.record import OK

CAPACITIES_GB = (16, 24, 40, 48, 80, 141)  # card sizes as sold (a card of N GB holds N GiB)
METHOD_LABELS = {"full": "Full", "lora": "LoRA", "qlora": "QLoRA"}
MEASURED, EMULATED, PREDICTED = "measured", "emulated", "predicted"
NOT_MEASURED = "not measured"
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
}
# A card of C GB shows a little less than C GiB (an H100 "80 GB" 79.18 GiB, an H200 "141 GB" 139.8,
# an A100-40GB 39.4: 98.5% at the least); a batch whose measured peak, the CUDA context in it,
# stays under that share of a smaller card less the memory model's margin fits that card.
SHOWN_SHARE = 0.985
# The peak a row needs: NVML's peak (sampled, so it can miss a short spike), or torch's exact
# reserved peak plus the least CUDA context seen (0.51 GiB on Hopper, torch 2.11), the larger.
CONTEXT_MIN_GIB = 0.5
# QLoRA's 4-bit base is a method (a row of its own), not a knob of LoRA's row.
# A configuration is every shape field but the batch, the sequence length and a cap (capped rows
# are told apart by ``_cap``).
GROUP_FIELDS = [f for f in shape_fields() if f not in ("batch_size", "seq_len", "capacity_gb")]
COLUMNS = [
    "Card",
    "Method",
    "Fits",
    "Known from",
    "Largest batch",
    "Longest sequence run",
    "Knobs",
    "Tokens/s",
    "At batch",
    "Hours",
    "$ per GPU-hour",
    "$",
    "Loss parity",
    "Data",
]

INTEGER_COLUMNS = ["Largest batch", "Longest sequence run", "At batch"]


@dataclass
class Plan:
    """The planner's table (``COLUMNS``) and notes (prices missing, rows left out)."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


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
    peak_gib: float | None = None  # predicted from this measured peak (_by_peak)
    from_seq: int | None = None  # fits because the batch fitted this longer sequence

    def rank(self) -> tuple:
        fast = self.tokens_per_s is not None
        return (not fast, -(self.tokens_per_s or 0.0), len(self.knobs), -(self.largest_batch or 0))


TOKEN_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
TOKENS = re.compile(r"\s*([0-9][0-9_,]*\.?[0-9]*(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*", re.I)
DEFAULT_MODEL, DEFAULT_SEQ_LEN = "llama-3.1-8b", 4096  # the question issue 25 asks


def parse_tokens(text: Any) -> float:
    """A token count: 50M, 1.5B, 500k, 2e9, 1_000_000 or 1,000,000; ValueError otherwise."""
    m = TOKENS.fullmatch(str(text))
    value = None
    if m:
        try:
            number = float(m.group(1).replace(",", "").replace("_", ""))
            value = number * TOKEN_SUFFIXES[m.group(2).lower()]
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{str(text)[:40]!r} is not a positive number of tokens (e.g. 50M, 1.5B, 2e9)"
        )
    return value


def model_choices(frame: pd.DataFrame) -> list[str]:
    """The models a plan can be asked for: those with training rows, then the catalog's
    decoders (a plan of an unmeasured model says so)."""
    from sweep.plan.catalog import CATALOG, DECODER

    rows = frame[config_text(frame, "mode") == "train"] if len(frame) else frame
    measured = sorted(set(config_text(rows, "model"))) if len(rows) else []
    catalog = [n for n, s in CATALOG.items() if s.family == DECODER and not s.tiny]
    return measured + [n for n in catalog if n not in measured]


def default_question(frame: pd.DataFrame) -> tuple[str, int]:
    """The model and sequence length a plan opens on: issue 25's model where it has ok LoRA or
    QLoRA rows, else the model with the most (without any, the most ok causal-LM rows), and its
    most measured length on an uncapped card; the question of issue 25 without such rows."""
    if frame.empty or "status" not in frame:
        return DEFAULT_MODEL, DEFAULT_SEQ_LEN
    ok = frame[(frame["status"] == OK) & (config_text(frame, "mode") == "train")]
    ok = ok[numeric(ok, "capacity_gb").isna()]  # a capped atlas probes odd lengths
    adapters = ok[config_text(ok, "finetune") != "full"]
    tuned = adapters if len(adapters) else ok[config_text(ok, "task") == "causal-lm"]
    if tuned.empty:
        return DEFAULT_MODEL, DEFAULT_SEQ_LEN
    counts = config_text(tuned, "model").value_counts()
    model = DEFAULT_MODEL if DEFAULT_MODEL in counts.index else counts.index[0]
    lengths = numeric(tuned[config_text(tuned, "model") == model], "seq_len").dropna()
    return str(model), int(lengths.value_counts().index[0]) if len(lengths) else DEFAULT_SEQ_LEN


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


def predictions(rows: pd.DataFrame, seq_len: int, capacities) -> pd.DataFrame:
    """What the memory model predicts per configuration, GPU and card: ``predicted_max_batch``
    at ``seq_len`` and ``predicted_max_seq_len`` (None: the model is in the batch alone). The one
    place the memory model is asked: a model in batch and sequence length replaces this."""
    at_len = rows[numeric(rows, "seq_len") == seq_len]
    lim = predicted_limits(at_len, tuple(capacities))
    return lim.assign(predicted_max_seq_len=None)


def _prepare(frame: pd.DataFrame, model: str) -> pd.DataFrame:
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
    )


def _evidence(kind: str, gpu: str, rows: pd.DataFrame, seq_len: int, speed: bool) -> Evidence:
    """One configuration's rows on one card (every sequence length): what they say at
    ``seq_len``. ``speed``: the rows ran on the card itself, so their tokens/s may be shown."""
    cfg = dict(zip(GROUP_FIELDS, rows["_cfg"].iloc[0], strict=True))
    ok = rows[rows["status"] == OK]
    ok_here = ok[ok["_seq"] == seq_len]
    # memory grows with the length at a batch: a batch that fitted a longer sequence fits this
    # one (a max-seq search's probes), one out of memory at a shorter length does not fit it
    ok_longer = ok[ok["_seq"] > seq_len]
    oom = rows[rows["status"].isin(OOM_STATUSES) & (rows["_seq"] <= seq_len)]
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
    return e


def _measured(d: pd.DataFrame, seq_len: int) -> dict[tuple[str, str], list[Evidence]]:
    """(GPU, method) -> each configuration's evidence on that uncapped GPU."""
    out: dict[tuple[str, str], list[Evidence]] = {}
    for (gpu, method, _), rows in d[d["_cap"].isna()].groupby(["_gpu", "_method", "_cfg"]):
        if gpu == UNKNOWN_GPU:  # a row the engine wrote without running, GPU unknown
            continue
        e = _evidence(MEASURED, gpu, rows, seq_len, speed=True)
        if e.fits is not None:
            out.setdefault((gpu, method), []).append(e)
    return out


def _emulated(d: pd.DataFrame, seq_len: int) -> dict[tuple[float, str], list[Evidence]]:
    """(card GB, method) -> each configuration's evidence on a GPU capped at that size."""
    out: dict[tuple[float, str], list[Evidence]] = {}
    for (cap, gpu, method, _), rows in d[d["_cap"].notna()].groupby(
        ["_cap", "_gpu", "_method", "_cfg"]
    ):
        e = _evidence(EMULATED, gpu, rows, seq_len, speed=False)  # never a capped row's speed
        if e.fits is not None:
            out.setdefault((float(cap), method), []).append(e)
    return out


def _predicted(d: pd.DataFrame, seq_len: int, capacities) -> dict[tuple[float, str], list]:
    """(card GB, method) -> each configuration's prediction (from uncapped ok rows)."""
    out: dict[tuple[float, str], list[Evidence]] = {}
    real = d[d["_cap"].isna()]
    lim = predictions(real.drop(columns=["capacity_gb"], errors="ignore"), seq_len, capacities)
    for _, p in lim.iterrows():
        cfg = {f: config_text(pd.DataFrame([p]), f).iloc[0] for f in GROUP_FIELDS}
        batch = int(p["predicted_max_batch"]) if pd.notna(p["predicted_max_batch"]) else None
        if batch is None:
            continue  # memory does not grow with the batch: no prediction
        seq = p.get("predicted_max_seq_len")
        e = Evidence(PREDICTED, short_gpu(p["gpu"]), knobs_of(cfg), batch >= 1, batch or None)
        e.longest_seq = int(seq) if seq is not None and pd.notna(seq) else None
        mask = (real["_gpu"] == e.gpu) & (real["_cfg"] == tuple(cfg.values()))
        mask &= real["_seq"] == seq_len
        e.keys = tuple(real.loc[mask & (real["status"] == OK), "key"])
        e.datasets = tuple(sorted({str(v) for v in real.loc[mask, "_ds"]}))
        out.setdefault((float(p["capacity_gb"]), cfg["finetune"]), []).append(e)
    return out


def _by_peak(d: pd.DataFrame, seq_len: int, capacities) -> dict[tuple[float, str], list]:
    """(card GB, method) -> each configuration's largest batch at ``seq_len`` whose peak measured
    on a bigger card fits a card of that size (SHOWN_SHARE, the memory model's margin)."""
    real = d[d["_cap"].isna() & (d["status"] == OK) & (d["_seq"] == seq_len)]
    need = pd.concat(
        [numeric(real, "nvml_peak_used_gib"), numeric(real, "peak_reserved_gib") + CONTEXT_MIN_GIB],
        axis=1,
    ).max(axis=1)
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


def _known_from(e: Evidence) -> str:
    longer = f" at {e.from_seq:,} tokens" if e.from_seq is not None else ""
    if e.kind == MEASURED:
        return f"measured on {e.gpu}{longer}"
    if e.kind == EMULATED:
        return f"emulated on a capped {e.gpu}{longer}"
    if e.peak_gib is not None:
        return (
            f"predicted from a peak measured on {e.gpu} "
            f"({e.peak_gib:.1f} GiB at batch {e.largest_batch})"
        )
    return f"predicted by the memory model (from {e.gpu} rows)"


def _row(card: str, method: str, found: list[Evidence], marks: dict[str, str]) -> dict:
    """The table's row for one card and method from its evidence (strongest kind first)."""
    row = dict.fromkeys(COLUMNS)
    row.update({"Card": card, "Method": METHOD_LABELS.get(method, method)})
    for kind in (MEASURED, EMULATED, PREDICTED):
        of_kind = [e for e in found if e.kind == kind]
        if of_kind:
            break
    else:
        return {**row, "Fits": "unknown", "Known from": NOT_MEASURED, "Knobs": "", "Data": ""}
    fitting = sorted((e for e in of_kind if e.fits), key=Evidence.rank)
    gpus = sorted({e.gpu for e in of_kind})
    data = ", ".join(sorted({d for e in of_kind for d in e.datasets}))
    if not fitting:
        ooms = [e.oom_from for e in of_kind if e.oom_from is not None]
        first = min(ooms) if ooms else None
        fits = "no" if first in (None, 1) else f"not at batch {first} or more"
        known = _known_from(of_kind[0]) + (f" (and {', '.join(gpus[1:])})" if len(gpus) > 1 else "")
        tried = len(of_kind)
        return {
            **row,
            "Fits": fits,
            "Known from": known,
            "Knobs": f"none of {tried} configuration(s) fits",
            "Data": data,
        }
    best = fitting[0]
    knob_text = " + ".join(best.knobs) or "none"
    mark = _parity(best, marks)
    row.update(
        {
            "Fits": "yes",
            "Known from": _known_from(best),
            "Largest batch": best.largest_batch,
            "Longest sequence run": best.longest_seq,
            "Knobs": knob_text,
            "Tokens/s": None if best.tokens_per_s is None else round(best.tokens_per_s, 1),
            "At batch": best.at_batch,
            "Loss parity": mark,
            "Data": data,
        }
    )
    row["_gpu"] = best.gpu if best.tokens_per_s is not None else None
    row["_tps"] = best.tokens_per_s
    return row


def _parity(e: Evidence, marks: dict[str, str]) -> str:
    """The configuration's loss-parity mark: a "differs" of any of its rows first, then an
    "ok"; "plain" for a configuration without knobs; "not compared" otherwise."""
    found = [marks[k] for k in e.keys if k in marks]
    if any(m.startswith("differs") for m in found):
        return next(m for m in found if m.startswith("differs"))
    if found:
        return found[0]
    return "plain (no knob)" if not e.knobs else "not compared"


def _cost(row: dict, tokens: float, prices: pd.DataFrame, unpriced: set[str]) -> dict:
    """Hours for ``tokens`` at the row's measured rate, and dollars at its GPU's price."""
    gpu, tps = row.pop("_gpu", None), row.pop("_tps", None)
    if gpu is None or not tps:
        return row
    hours = tokens / tps / 3600.0
    row["Hours"] = round(hours, 2)
    match = price_for(gpu, prices)
    if match is None:
        unpriced.add(gpu)
        return row
    row["$ per GPU-hour"] = match[0]
    row["$"] = round(hours * match[0], 2)
    return row


def plan(
    frame: pd.DataFrame,
    model: str,
    seq_len: int,
    tokens: float,
    methods=None,
    capacities=CAPACITIES_GB,
    prices: pd.DataFrame = DEFAULT_PRICES,
) -> Plan:
    """The planner's table for fine-tuning ``model`` on ``tokens`` tokens of ``seq_len`` tokens
    per sequence: one row per card size in ``capacities`` (GB) and method in ``methods`` (default
    full, lora, qlora), then one per GPU type with uncapped rows of the model and method.

    ``frame``: a results frame (``sweep.analysis.selection.combine``); ``prices``: the price
    table (``sweep.analysis.cost.parse_prices``). Hours are ``tokens / tokens_per_s / 3600``;
    dollars are hours times the GPU's hourly price.
    """
    methods = list(methods) if methods else list(FINETUNES)
    seq_len, tokens = int(seq_len), float(tokens)
    d = _prepare(frame, model)
    notes: list[str] = []
    if d.empty:
        notes.append(f"No training rows of {model!r}: every row is 'not measured'.")
        measured, emulated, predicted, marks = {}, {}, {}, {}
    else:
        measured, emulated = _measured(d, seq_len), _emulated(d, seq_len)
        predicted, marks = _predicted(d, seq_len, capacities), parity_marks(d)
        for key, found in _by_peak(d, seq_len, capacities).items():
            predicted.setdefault(key, []).extend(found)
    memory = d[d["_cap"].isna()].groupby("_gpu")["_mem"].median() if len(d) else pd.Series()
    card = {gpu: card_of(mem, capacities, gpu) for gpu, mem in memory.items()}
    rows, unpriced = [], set()
    for cap in capacities:
        for m in methods:
            found = list(emulated.get((float(cap), m), ())) + predicted.get((float(cap), m), [])
            for gpu, size in card.items():
                if size == cap:
                    found += measured.get((gpu, m), [])
            rows.append(_row(f"{cap:g} GB", m, found, marks))
    for gpu in sorted({g for g, _ in measured}):
        for m in methods:
            rows.append(_row(gpu, m, measured.get((gpu, m), []), marks))
    rows = [_cost(r, tokens, prices, unpriced) for r in rows]
    if unpriced:
        notes.append("No price for: " + ", ".join(sorted(unpriced)) + " (add a price).")
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in INTEGER_COLUMNS:
        table[col] = pd.to_numeric(table[col]).astype("Int64")
    return Plan(table, notes)
