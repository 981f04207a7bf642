"""The fine-tune planner: "I want to fine-tune model M on N tokens of sequence length S: which
card, which method (full / LoRA / QLoRA), which knobs, how long and how much?"

One pure function, ``plan``, builds the table for the web app's first tab and for
``python -m sweep fits``. One row per card size and method, and per GPU type with measured rows
and method. What each row says is taken from the strongest evidence there is, in this order:

1. **measured on <GPU>**: trials that ran on a real card (a GPU row; a card-size row whose size
   is that GPU's memory); a batch that fitted a longer sequence fits a shorter one ("at N
   tokens": a max-seq search's probes answer every shorter length), without a speed;
2. **emulated on a capped <GPU>**: trials run on a bigger GPU whose allocator was capped at the
   card's size (rows with a ``capacity_gb``): they say what fits, never how fast; a row capped
   once with under 0.25 GiB to spare fits "probably";
   either kind fits "probably" where a row ran out of memory by fragmentation (the memory was
   there, split: ``memory_model.fragmented``) at a length that a longer fit would otherwise
   answer: near the limit what fits is not monotone in the length;
3. **predicted** from uncapped rows: by the memory model in batch and sequence length
   (``plan_evidence.predictions``) or by one measured peak that fits what the smaller card shows
   (``plan_evidence.by_peak``);
4. **not measured**: nothing is known, and the row says so.

Among the configurations that fit, the one shown is the cheapest: the fastest where speed was
measured on that very card, otherwise the one with the fewest memory knobs (then the largest
batch). Speed, hours and dollars come only from trials on the row's own GPU, one GPU a trial.
The longest sequence is the card's, not the shown configuration's: the longest any configuration
of the method ran (or is predicted to hold) there, with its knobs ("Longest with"), and never
less than a smaller card's (what a 40 GB card holds, a 48 GB one holds too).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis import plan_evidence as ev
from sweep.analysis.cost import DEFAULT_PRICES, price_for
from sweep.analysis.parity import parity_marks
from sweep.analysis.plan_evidence import (
    EMULATED,
    MEASURED,
    PREDICTED,
    Evidence,
    card_of,
)
from sweep.analysis.selection import config_text, numeric
from sweep.plan.config import FINETUNES
from sweep.results.record import OK

CAPACITIES_GB = (16, 24, 40, 48, 80, 141)  # card sizes as sold (a card of N GB holds N GiB)
METHOD_LABELS = {"full": "Full", "lora": "LoRA", "qlora": "QLoRA"}
NOT_MEASURED = "not measured"
COLUMNS = [
    "Card",
    "Method",
    "Fits",
    "Known from",
    "Largest batch",
    "Longest sequence",
    "Knobs",
    "Tokens/s",
    "At batch",
    "Hours",
    "$ per GPU-hour",
    "$",
    "Longest with",  # after the cost: the answer through the dollars fits 1440 px (the app)
    "Loss parity",
    "Data",
]

INTEGER_COLUMNS = ["Largest batch", "Longest sequence", "At batch"]


@dataclass
class Plan:
    """The planner's table (``COLUMNS``) and notes (prices missing, rows left out)."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


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


def _known_from(e: Evidence) -> str:
    text = _source(e)
    if e.fragmented is not None:  # "Fits: probably"; the help says why
        seq, asked, free = e.fragmented
        text += (
            f"; out of memory by fragmentation at {seq:,} tokens ({asked:.1f} GiB asked, "
            f"{free:.1f} GiB reserved free)"
        )
    return text


def _source(e: Evidence) -> str:
    longer = f" at {e.from_seq:,} tokens" if e.from_seq is not None else ""
    if e.kind == MEASURED:
        return f"measured on {e.gpu}{longer}"
    if e.kind == EMULATED and e.narrow is not None:  # "Fits: probably"; the help says why
        return f"emulated on a capped {e.gpu}{longer}, {e.narrow:.2f} GiB spare"
    if e.kind == EMULATED:
        return f"emulated on a capped {e.gpu}{longer}"
    if e.peak_gib is not None:
        return (
            f"predicted from a peak measured on {e.gpu} "
            f"({e.peak_gib:.1f} GiB at batch {e.largest_batch})"
        )
    lengths = "" if (e.fit_lengths or 1) == 1 else f", {e.fit_lengths} lengths"
    miss = "" if e.miss_pct is None else f", miss <= {e.miss_pct:.1f}%"
    far = ", extrapolated" if e.extrapolated or e.seq_far else ""
    return f"predicted by the memory model ({e.gpu}{lengths}{miss}{far})"


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
    row.update(_longest(of_kind))
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
            "Fits": "yes" if best.narrow is None and best.fragmented is None else "probably",
            "Known from": _known_from(best),
            "Largest batch": best.largest_batch,
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


def _longest(found: list[Evidence]) -> dict:
    """The longest sequence any of ``found`` ran (predicted: the memory model's at batch 1), and
    the knobs of the configuration that did."""
    seqs = [
        (e.longest_seq if e.longest_seq is not None else e.predicted_seq, e.knobs) for e in found
    ]
    seqs = [(s, knobs) for s, knobs in seqs if s is not None]
    if not seqs:
        return {}
    seq, knobs = max(seqs, key=lambda sk: (sk[0], -len(sk[1])))
    text = " + ".join(knobs) or "none"
    return {"Longest sequence": seq, "Longest with": text, "_longest_knobs": text}


def _at_least_a_smaller_cards(rows: list[dict], capacities) -> None:
    """Each card row's longest sequence, raised to a smaller card's of the same method where
    that is longer (a bigger card holds what a smaller one does), saying which card's it is;
    a row with nothing known stays "not measured"."""
    for method in {r["Method"] for r in rows}:
        best = None
        for cap in sorted(capacities):
            card = f"{cap:g} GB"
            for r in rows:
                if r["Card"] != card or r["Method"] != method or r["Known from"] == NOT_MEASURED:
                    continue
                seq = r.get("Longest sequence")
                if best is not None and (seq is None or seq < best[0]):
                    r["Longest sequence"] = best[0]
                    r["Longest with"] = f"{best[1]} (as on the {best[2]} card)"
                elif seq is not None:
                    best = (seq, r["_longest_knobs"], card)


def _lengths_measured(d: pd.DataFrame, model: str, seq_len: int) -> str:
    """What exists of ``model`` where nothing answers ``seq_len``: its lengths per GPU."""
    ok = d[d["status"] == OK]
    per_gpu = (
        ok.groupby("_gpu")["_seq"].agg(lambda s: ", ".join(f"{int(v):,}" for v in sorted(set(s))))
        if len(ok)
        else pd.Series(dtype=str)
    )
    where = "; ".join(f"{gpu}: {lengths}" for gpu, lengths in per_gpu.items()) or "none ok"
    return (
        f"Nothing of {model} answers {seq_len:,} tokens per sequence (no row at or past it, no "
        f"memory model through it). Lengths measured: {where}."
    )


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
    known = model_choices(frame)
    model = next((m for m in known if m.lower() == str(model).lower()), model)
    d = ev.prepare(frame, model)
    notes: list[str] = []
    if d.empty:
        near = difflib.get_close_matches(str(model).lower(), known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(near)}?" if near else ""
        notes.append(f"No training rows of {model!r}: every row is 'not measured'.{hint}")
        measured, emulated, predicted, marks = {}, {}, {}, {}
    else:
        measured, emulated = ev.measured(d, seq_len), ev.emulated(d, seq_len)
        predicted, marks = ev.predicted(d, seq_len, capacities), parity_marks(d)
        for key, found in ev.by_peak(d, seq_len, capacities).items():
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
    _at_least_a_smaller_cards(rows, capacities)
    for gpu in sorted({g for g, _ in measured}):
        for m in methods:
            rows.append(_row(gpu, m, measured.get((gpu, m), []), marks))
    rows = [_cost(r, tokens, prices, unpriced) for r in rows]
    if unpriced:
        notes.append("No price for: " + ", ".join(sorted(unpriced)) + " (add a price).")
    table = pd.DataFrame(rows, columns=COLUMNS)
    if len(d) and (table["Known from"] == NOT_MEASURED).all():
        notes.append(_lengths_measured(d, model, seq_len))
    for col in INTEGER_COLUMNS:
        table[col] = pd.to_numeric(table[col]).astype("Int64")
    return Plan(table, notes)
