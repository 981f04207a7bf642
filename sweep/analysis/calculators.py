"""What fits, measured, beside what the public rules say (issue 24's "What fits").

Three rules users read before they fine-tune, each as its source states it:

- **LLaMA-Factory**'s README table "Hardware Requirement" (hiyouga/LLaMA-Factory, README.md):
  GB per billion parameters: full fine-tuning in AMP 18x, in pure bf16 8x, LoRA (16-bit base)
  2x, QLoRA with a 4-bit base x/2. No batch, no sequence length.
- **accelerate**'s ``estimate-memory`` (huggingface/accelerate, src/accelerate/commands/
  estimate.py, ``estimate_training_usage``): "Training using Adam" for batch 1, the largest of
  its parts: in float32 4x the fp32 weights (16 bytes a parameter), in float16/bfloat16 2x the
  fp32 weights (8 bytes a parameter: fp32 master weights, gradients, two moments). Full
  fine-tuning only; no sequence length; printed in 1024-based GB.
- **Unsloth**'s context table (unslothai/unsloth, README.md, "Llama 3.1 (8B) max. context
  length"): Llama 3.1 8B, 4-bit QLoRA on every linear layer, rank 32, batch 1; the longest
  context per card with Unsloth and with "Hugging Face + FA2". Its Unsloth column grows by the
  same 4,719 tokens per GB from 12 to 80 GB: a line through two points.

``what_fits`` sets them against the atlas's measured rows of one model: per configuration and
card (capped or whole), the longest sequence at batch 1 the search found (exact where the next
128 tokens ran out of memory in the same search), and the peak the smallest atlas step (batch
1, 2,048 tokens, on the whole card) measured, which the GB rules are compared with: a rule that
says less than that step's peak says a card fits what it does not. Pure: records in, a frame out.
"""

from __future__ import annotations

import math

import pandas as pd

from sweep.analysis.plan_evidence import GROUP_FIELDS, card_of, prepare
from sweep.analysis.selection import numeric
from sweep.plan.grid import SEQ_RESOLUTION
from sweep.results.memory_model import GIB, PEAK_SOURCES
from sweep.results.record import OK

LLAMA_FACTORY_BYTES = {  # bytes a parameter: "18x GB" for x billion parameters is 18 bytes each
    ("full", "bf16-mixed"): 18.0,
    ("full", "fp16-mixed"): 18.0,
    ("full", "bf16-true"): 8.0,
    ("lora", None): 2.0,
    ("qlora", None): 0.5,
}
ACCELERATE_BYTES = {"fp32": 16.0, "bf16-mixed": 8.0, "fp16-mixed": 8.0, "bf16-true": 8.0}
UNSLOTH_MODEL = "llama-3.1-8b"
# card GB -> (Unsloth's context, Hugging Face + FA2's; None: "OOM")
UNSLOTH_CONTEXT = {
    8: (2_972, None),
    12: (21_848, 932),
    16: (40_724, 2_551),
    24: (78_475, 5_789),
    40: (153_977, 12_264),
    48: (191_728, 15_502),
    80: (342_733, 28_454),
}
SMALLEST_STEP = (1, 2048)  # batch, tokens: the atlas's first probe of every configuration
CARDS_GB = (16, 24, 40, 48, 80, 141)


def llama_factory_bytes(finetune: str, precision: str, n_params: float) -> float | None:
    """LLaMA-Factory's table for this method, in bytes; None where it has no row."""
    per = LLAMA_FACTORY_BYTES.get((finetune, precision), LLAMA_FACTORY_BYTES.get((finetune, None)))
    return None if per is None else per * n_params


def accelerate_bytes(finetune: str, precision: str, n_params: float) -> float | None:
    """accelerate's "Training using Adam" in bytes: full fine-tuning only (it has no adapters)."""
    per = ACCELERATE_BYTES.get(precision) if finetune == "full" else None
    return None if per is None else per * n_params


def unsloth_context(model: str, finetune: str, card_gb: float) -> tuple[int | None, ...] | None:
    """(Unsloth's, Hugging Face + FA2's) context for this card, where its table has the row."""
    if model != UNSLOTH_MODEL or finetune != "qlora":
        return None
    return UNSLOTH_CONTEXT.get(int(card_gb)) if float(card_gb).is_integer() else None


def _off(said: float | None, measured: float | None) -> float | None:
    if said is None or measured is None or not measured or math.isnan(measured):
        return None
    return (said - measured) / measured * 100.0


def _peak_bytes(rows: pd.DataFrame) -> float | None:
    """The smallest step's peak on the whole card (NVML's where recorded, else reserved)."""
    batch, seq = SMALLEST_STEP
    at = rows[rows["_cap"].isna() & (rows["status"] == OK)]
    at = at[(at["_batch"] == batch) & (at["_seq"] == seq)]
    for source in PEAK_SOURCES:
        peaks = numeric(at, source).dropna()
        if len(peaks):
            return float(peaks.median()) * GIB
    return None


def _longest(rows: pd.DataFrame) -> tuple[int | None, bool]:
    """(the search's answer, longest at batch 1; whether it is exact: the next step failed)."""
    answers = numeric(rows, "max_seq_len").dropna()
    if not len(answers):
        return None, False
    longest = int(answers.max())
    failed = rows[(rows["status"] != OK) & (rows["_batch"] == 1)]
    exact = bool((failed["_seq"] == longest + SEQ_RESOLUTION).any()) or longest == 0
    return longest, exact


def what_fits(frame: pd.DataFrame, model: str, cards=CARDS_GB) -> pd.DataFrame:
    """One row per configuration of ``model`` (method, precision, knobs) and card the atlas
    answered (its max-seq rows: ``max_seq_len``), with the rules beside it. ``frame``: a results
    frame (``sweep.analysis.selection.combine``)."""
    d = prepare(frame, model)
    rows = []
    for (gpu, cfg), family in d.groupby(["_gpu", "_cfg"]) if len(d) else ():
        fields = dict(zip(GROUP_FIELDS, cfg, strict=True))
        n_params = numeric(family, "n_params").dropna()
        n = float(n_params.iloc[0]) if len(n_params) else None
        peak = _peak_bytes(family)
        finetune, precision = fields.get("finetune", "full"), fields.get("precision")
        for cap, on_card in family.groupby(family["_cap"].fillna(-1.0)):
            whole = cap < 0
            card = card_of(float(on_card["_mem"].median()), cards, gpu) if whole else float(cap)
            longest, exact = _longest(on_card)
            if card is None or longest is None:
                continue
            factory = None if n is None else llama_factory_bytes(finetune, precision, n)
            accel = None if n is None else accelerate_bytes(finetune, precision, n)
            unsloth = unsloth_context(model, finetune, card)
            rows.append(
                {
                    "model": model,
                    "method": finetune,
                    "precision": precision,
                    "checkpointing": fields.get("gradient_checkpointing") == "True",
                    "liger": fields.get("liger") == "True",
                    "card_gb": card,
                    "on": f"{gpu} (whole)" if whole else f"{gpu} capped",
                    "longest_seq": longest,
                    "exact": exact,
                    "peak_2048_gb": None if peak is None else peak / 1e9,
                    "llama_factory_gb": None if factory is None else factory / 1e9,
                    "llama_factory_off_pct": _off(factory, peak),
                    "llama_factory_fits": None if factory is None else factory <= card * GIB,
                    "accelerate_gb": None if accel is None else accel / GIB,
                    "accelerate_off_pct": _off(accel, peak),
                    "unsloth_seq": None if unsloth is None else unsloth[0],
                    "unsloth_off_pct": None if unsloth is None else _off(unsloth[0], longest),
                    "hf_fa2_seq": None if unsloth is None else unsloth[1],
                    "hf_fa2_off_pct": None if unsloth is None else _off(unsloth[1], longest),
                }
            )
    columns = list(rows[0]) if rows else ["model", "method", "card_gb", "longest_seq"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["card_gb", "method", "checkpointing", "liger"]) if len(out) else out
