"""The report's own matplotlib figures (the seed grid, speedups over 2020, MFU, option ratios);
the memory and time-split figures are the web app's (``sweep.analysis.figures``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweep.analysis.efficiency import efficiency
from sweep.results.record import OK


def save_figure(fig: Any, docs: str, name: str) -> str:
    path = os.path.join(docs, name)
    # Fixed metadata: the same data gives the same bytes.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return name


def _log2_batches(ax: Any, batches: Sequence[int]) -> None:
    batches = sorted({int(b) for b in batches})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()


def seed_figure(wide: pd.DataFrame, labels: list[str], title: str) -> Any:
    """Tokens/s against batch: one panel per (model, seq_len), one line per column; x for OOM."""
    from matplotlib.figure import Figure

    models = sorted(wide["model"].unique())
    seqs = sorted(wide["seq_len"].unique())
    fig = Figure(
        figsize=(max(10.0, 4.2 * len(seqs)), 3.3 * len(models) + 1.0), layout="constrained"
    )
    axes = fig.subplots(len(models), len(seqs), squeeze=False)
    styles = {lab: ("--" if "2020" in lab else "-") for lab in labels}
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    colors = {lab: palette[i % 10] for i, lab in enumerate(labels)}
    for i, model in enumerate(models):
        for j, seq in enumerate(seqs):
            ax = axes[i][j]
            g = wide[(wide["model"] == model) & (wide["seq_len"] == seq)]
            for k, lab in enumerate(labels):
                if lab not in g:
                    continue
                v = pd.to_numeric(g[lab], errors="coerce")
                ok = v.notna()
                ax.plot(
                    g["batch_size"][ok],
                    v[ok],
                    marker="o",
                    ms=4,
                    linestyle=styles[lab],
                    color=colors[lab],
                    label=lab,
                )
                oom = g[g[lab].astype(str) == "OOM"]
                ax.scatter(
                    oom["batch_size"],
                    [0.04 + 0.05 * k] * len(oom),
                    marker="x",
                    color=colors[lab],
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
            _log2_batches(ax, g["batch_size"])
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{model}, seq {seq}", fontsize=10)
            ax.set_xlabel("batch size (sequences per step)")
            ax.set_ylabel("training tokens / s")
    handles, names = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="x", color="#444", linestyle="none"))
    names.append("out of memory")
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), fontsize=9)
    fig.suptitle(title, fontsize=12)
    return fig


def speedup_figure(wide: pd.DataFrame, ratios: list[str], title: str) -> Any:
    """Measured / 2020 ratio against batch: one panel per (2020 GPU, seq_len), a line per model and
    measured column."""
    import matplotlib
    from matplotlib.figure import Figure

    refs = sorted({r.split(" / ")[1] for r in ratios})
    seqs = sorted(wide["seq_len"].unique())
    fig = Figure(figsize=(max(10.0, 4.2 * len(seqs)), 3.4 * len(refs) + 1.0), layout="constrained")
    axes = fig.subplots(len(refs), len(seqs), squeeze=False)
    models = sorted(wide["model"].unique())
    palette = matplotlib.colormaps["tab10"].colors
    mine = sorted({r.split(" / ")[0] for r in ratios})
    for i, ref in enumerate(refs):
        for j, seq in enumerate(seqs):
            ax = axes[i][j]
            g = wide[wide["seq_len"] == seq]
            for mi, model in enumerate(models):
                gm = g[g["model"] == model]
                for ci, col in enumerate(mine):
                    name = f"{col} / {ref}"
                    if name not in gm:
                        continue
                    v = gm[name]
                    ok = v.notna()
                    if ok.any():
                        ax.plot(
                            gm["batch_size"][ok],
                            v[ok],
                            marker="o",
                            ms=4,
                            color=palette[mi % 10],
                            linestyle=["-", "--", ":", "-."][ci % 4],
                            label=f"{model} · {col}",
                        )
            ax.axhline(1.0, color="#444", linewidth=1)
            if len(g):
                _log2_batches(ax, g["batch_size"])
            ax.grid(True, alpha=0.3)
            ax.set_title(f"vs {ref}, seq {seq}", fontsize=10)
            ax.set_xlabel("batch size (sequences per step)")
            ax.set_ylabel("speedup (tokens/s ratio, x)")
    handles, names = [], []
    for ax in axes.ravel():
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), fontsize=9)
    fig.suptitle(title, fontsize=12)
    return fig


def mfu_figure(sel: pd.DataFrame, title: str) -> Any:
    """MFU (%) against batch: colour by model, line style by sequence length."""
    import matplotlib
    from matplotlib.figure import Figure

    d = sel[sel["status"] == OK]
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    ax = fig.add_subplot()
    palette = matplotlib.colormaps["tab10"].colors
    models = sorted(d["model"].unique())
    seqs = sorted(d["seq_len"].astype(int).unique())
    for mi, model in enumerate(models):
        for si, seq in enumerate(seqs):
            g = d[(d["model"] == model) & (d["seq_len"].astype(int) == seq)]
            eff = efficiency(g).dropna(subset=["mfu"])
            if eff.empty:
                continue
            eff = eff.groupby("batch_size")["mfu"].median()
            ax.plot(
                eff.index,
                eff.values * 100,
                marker="o",
                color=palette[mi % 10],
                linestyle=["-", "--", ":", "-."][si % 4],
                label=f"{model}, seq {seq}",
            )
    _log2_batches(ax, d["batch_size"])
    ax.set_xlabel("batch size (sequences per step)")
    ax.set_ylabel("MFU (% of dense datasheet peak)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=12)
    return fig


def ratio_figure(parts: dict[str, pd.DataFrame], title: str) -> Any:
    """Horizontal bars: one per configuration and comparison."""
    from matplotlib.figure import Figure

    rows = []
    for name, t in parts.items():
        for r in t.to_dict("records"):
            cfg = ", ".join(
                f"{k}={r[k]}" for k in t.columns if k not in ("ratio", "gpu") and " " not in k
            )
            rows.append((f"{name}: {cfg}", r["ratio"]))
    fig = Figure(figsize=(10, max(2.5, 0.28 * len(rows) + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], color="#1f77b4")
    ax.axvline(1.0, color="#444", linewidth=1, label="1.0 = no change")
    ax.set_xlabel("ratio of tokens/s (x; above 1: the first option is faster)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=9, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12)
    return fig
