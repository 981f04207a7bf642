"""The memory model against what really fits on a smaller card (issue 12), on one GPU.

For each model at seq 512 (the six of the max-batch preset by default): a few small batches
measure peak memory (NVML's, the CUDA context included, as the product fits it), the line through
them predicts the largest batch for each capped card size, and then the card is capped with
``torch.cuda.set_per_process_memory_fraction`` to that size less the measured CUDA context (the
fraction caps torch's allocator, the context sits outside it) and the largest batch that fits is
found by a search started at the prediction (a gallop to a bracket, then bisection), with each
probe a real training trial (sweep.trial.run_trial: warm-up 1, 2 measured steps, bf16-mixed,
fused AdamW, sdpa, as the max-batch preset). Prints one row per model and card size: predicted
(bare and with the 2% margin), measured, the error, and whether the margin kept the prediction
at or under the measured limit; then the machine.

Bounded: one child process per model (a fresh CUDA allocator), each under the time left of
``--budget-s`` (default 300 s: about five models; ``--models`` for fewer), killed when it runs
past it; what did not fit in the budget is listed as skipped. On a machine without CUDA it says
so and exits 1.

    python benchmarks/memory_model_check.py [--models roberta-large gpt2] [--caps 40 80]
        [--small 8 16 32] [--budget-s 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = (
    "roberta-large",
    "bert-large-uncased",
    "gpt2",
    "roberta-base",
    "bert-base-uncased",
    "distilroberta-base",
)
MAX_PROBES = 24  # per model and card size: the search is exact well before this


def _config(model: str, batch: int, seq_len: int):
    from sweep.plan.config import TrialConfig

    return TrialConfig(
        model=model,
        batch_size=batch,
        seq_len=seq_len,
        precision="bf16-mixed",
        optimizer="adamw-fused",
        attention="sdpa",
        device="cuda",
        warmup_steps=1,
        steps=2,
        profile_step=False,
    )


def _probe(model: str, batch: int, seq_len: int, deadline: float) -> tuple[bool, dict]:
    """Run one trial at ``batch``; (fits, its metrics). Past the deadline: raise TimeoutError."""
    import gc

    import torch

    from sweep.results.record import NONFINITE, OK, OOM
    from sweep.trial.run import run_trial

    if time.monotonic() > deadline:
        raise TimeoutError
    t0 = time.monotonic()
    rec = run_trial(_config(model, batch, seq_len))
    gc.collect()
    torch.cuda.empty_cache()
    fits = rec.status in (OK, NONFINITE)
    if not fits and rec.status != OOM:
        raise RuntimeError(f"{model} batch {batch}: {rec.status}: {(rec.error or '')[:300]}")
    print(
        f"  {model} batch {batch}: {rec.status} ({time.monotonic() - t0:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return fits, rec.metrics or {}


def _largest_fitting(fits, lo: int, start: int) -> tuple[int, int]:
    """The largest batch b with fits(b), knowing fits(lo); the search starts at ``start`` (the
    prediction): a gallop away from it to a bracket, then bisection. (answer, probes)."""
    probes = 0

    def ask(b: int) -> bool:
        nonlocal probes
        probes += 1
        if probes > MAX_PROBES:
            raise TimeoutError
        return fits(b)

    hi = None
    start = max(start, lo + 1)
    step = max(1, start // 100)
    if ask(start):
        lo = start
        while hi is None:
            if ask(lo + step):
                lo += step
                step *= 2
            else:
                hi = lo + step
    else:
        hi = start
        while hi - step > lo:
            if ask(hi - step):
                lo = hi - step
                break
            hi -= step
            step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ask(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes


def child(args: argparse.Namespace) -> int:
    """One model: small batches uncapped, then per card size the capped search. One JSON line."""
    import torch

    from sweep.results.memory_model import GIB, MARGIN, fit_memory

    deadline = time.monotonic() + args.child_s
    out: dict = {"model": args.model, "rows": []}
    if not torch.cuda.is_available():
        out["error"] = "no CUDA device"
        print(json.dumps(out))
        return 1
    total = torch.cuda.get_device_properties(0).total_memory
    out["device_total_gib"] = total / GIB
    try:
        points, contexts = [], []
        for b in args.small:
            fits, m = _probe(args.model, b, args.seq_len, deadline)
            if not fits:
                break
            if m.get("nvml_peak_used_gib") and m.get("peak_reserved_gib"):
                points.append((b, m["nvml_peak_used_gib"] * GIB))
                contexts.append(m["nvml_peak_used_gib"] - m["peak_reserved_gib"])
        fit = fit_memory(points)
        if fit is None or not contexts:
            out["error"] = f"fewer than two small batches fitted with NVML readings: {points}"
            print(json.dumps(out))
            return 1
        context = max(contexts)
        out.update(
            small=[b for b, _ in points], context_gib=context, fit_max_error_pct=fit.max_error_pct
        )
        for cap in sorted(args.caps):
            fraction = (cap * GIB - context * GIB) / total
            if not 0 < fraction <= 1:
                out["rows"].append({"cap_gb": cap, "error": f"fraction {fraction:.3f}"})
                continue
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
            bare = fit.largest_batch(cap * GIB, margin=0.0)
            t0 = time.monotonic()
            row = {
                "cap_gb": cap,
                "fraction": fraction,
                "predicted": bare,
                "predicted_margin": fit.largest_batch(cap * GIB, MARGIN),
            }
            lo = max(b for b, _ in points)
            if bare is not None and bare > lo:
                fits = lambda b: _probe(args.model, b, args.seq_len, deadline)[0]  # noqa: E731
                row["measured"], row["probes"] = _largest_fitting(fits, lo, bare)
            else:
                row["error"] = f"no prediction above the small batches ({bare})"
            row["search_s"] = time.monotonic() - t0
            out["rows"].append(row)
            print(json.dumps(out), flush=True)  # what is done survives a kill at the budget
    except TimeoutError:
        out["error"] = "out of time (budget) or probes"
    except RuntimeError as exc:
        out["error"] = str(exc)
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL")
    p.add_argument("--caps", nargs="+", type=float, default=[40.0, 80.0], metavar="GB")
    p.add_argument("--small", nargs="+", type=int, default=[8, 16, 32], metavar="BATCH")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--budget-s", type=float, default=300.0, help="wall-clock bound of the run")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--child-s", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(c <= 0 for c in args.caps) or any(b < 1 for b in args.small) or args.budget_s <= 0:
        p.error("--caps, --small and --budget-s must be positive")
    if args.child:
        return child(args)

    end = time.monotonic() + args.budget_s
    results, skipped = [], []
    for model in args.models:
        left = end - time.monotonic()
        if left < 30:  # not enough for one model's small batches and one search
            skipped.append(model)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--model", model]
        cmd += ["--child-s", f"{left - 10:.0f}", "--seq-len", str(args.seq_len)]
        cmd += ["--caps", *map(str, args.caps), "--small", *map(str, args.small)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, cwd=ROOT)
            stdout, why = proc.stdout, f"child exited {proc.returncode} without a result"
            sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
        except subprocess.TimeoutExpired as exc:  # killed: keep the card sizes it finished
            stdout, why = exc.stdout or "", "killed at the budget"
            stdout = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"model": model, "rows": []}
        if not lines or why == "killed at the budget":
            res.setdefault("error", why)
        results.append(res)
        if res.get("error") == "no CUDA device":
            print("error: no CUDA device: this check needs a GPU", file=sys.stderr)
            return 1

    print_table(results, skipped)
    from benchmarks._machine import machine

    where = machine()
    print(f"machine: {where}")
    if args.json:
        out = {"results": results, "skipped": skipped, "args": vars(args), "machine": where}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


def print_table(results: list[dict], skipped: list[str]) -> None:
    header = ["model", "card_gb", "predicted", "pred_2pct", "measured", "error_pct", "margin_ok"]
    rows = [header]
    for res in results:
        for r in res.get("rows", []):
            meas, pred = r.get("measured"), r.get("predicted")
            err = f"{(pred - meas) / meas * 100:+.1f}" if meas and pred is not None else "-"
            ok = "-" if meas is None else str(r["predicted_margin"] <= meas).lower()
            rows.append(
                [res["model"], f"{r['cap_gb']:g}", str(pred), str(r.get("predicted_margin")),
                 str(meas if meas is not None else "-"), err, ok]
            )  # fmt: skip
        if res.get("error"):
            rows.append([res["model"], "-", "-", "-", "-", "-", f"error: {res['error']}"])
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for res in results:
        if "context_gib" in res:
            print(
                f"{res['model']}: small batches {res['small']}, CUDA context "
                f"{res['context_gib']:.2f} GiB, fit's largest miss {res['fit_max_error_pct']:.2f}%"
            )
    if skipped:
        print(f"skipped (budget): {', '.join(skipped)}")


if __name__ == "__main__":
    raise SystemExit(main())
