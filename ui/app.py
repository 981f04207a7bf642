"""The Gradio Blocks: widgets wired to ``ui.views`` (data) and ``ui.charts`` (figures).

No measuring, filtering or fitting happens here. ``build_app(holder)`` returns the Blocks;
``ui.__main__`` launches it. Imports neither torch nor ray.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry

import hashlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from ui import charts, views  # noqa: E402
from ui.data import Data, database_counts, database_signature  # noqa: E402

ANY = views.ANY
AUTO = "auto (first recorded)"
FILTER_LABELS = {
    "model": "Model",
    "seq_len": "Sequence length (tokens)",
    "precision": "Precision",
    "attention": "Attention kernel",
    "compile": "torch.compile",
    "harness": "Harness",
    "optimizer": "Optimizer",
    "mode": "Mode",
    "gradient_checkpointing": "Gradient checkpointing",
}
MAIN_FILTERS = ("model", "seq_len", "precision")
# System fonts only: the default theme would ask for web fonts; nothing leaves the machine.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


class Holder:
    """The data the app shows; replaced (not mutated) when the database changes."""

    def __init__(self, db_path: str | None, data_dir: str | None = None) -> None:
        self.db_path = db_path
        self.data_dir = data_dir
        self.version = 0
        self.reload()

    def reload(self) -> None:
        kw = {"data_dir": self.data_dir} if self.data_dir else {}
        # Taken before reading: a trial written meanwhile makes the next check reload again.
        self.signature = database_signature(self.db_path)
        data = Data.load(self.db_path, **kw)
        self.data = data
        self.frame = views.combine(data.measured, data.references)
        self.version += 1


def _dataset_choices(data: Data) -> list[tuple[str, str]]:
    out = []
    if data.n_measured:
        out.append(
            (
                f"your results ({os.path.basename(data.db_path or '')}, {data.n_measured} trials)",
                views.MEASURED_DATASET,
            )
        )
    for name, frame in data.references.items():
        out.append((f"reference: {name} ({len(frame)} rows)", name))
    return out


def _header(data: Data) -> str:
    lines = [
        "# transformers-sweep: which GPU, which configuration",
        "Training throughput, memory, time split, efficiency and cost of Transformer models "
        "on each GPU type. Pick a model and a sequence length; every tab follows the "
        "selection. Reference rows are marked *(ref ...)* and drawn dashed.",
    ]
    if data.n_measured:
        lines.append(f"Your results: **{data.n_measured} trials** from `{data.db_path}`.")
    for msg in data.messages:
        lines.append(f"> ⚠ {msg}")
    return "\n\n".join(lines)


def _provenance(data: Data) -> str:
    parts = []
    for name, frame in data.references.items():
        text = frame["provenance"].dropna()
        parts.append(f"**{name}**: {text.iloc[0] if len(text) else 'no provenance recorded'}")
    return "\n\n".join(parts) or "No reference rows are shipped."


def _title(what: str, filters: dict[str, Any]) -> str:
    bits = [str(filters.get("model") or ANY)]
    if filters.get("seq_len") not in (None, ANY):
        bits.append(f"seq_len {filters['seq_len']}")
    if filters.get("precision") not in (None, ANY):
        bits.append(str(filters["precision"]))
    extra = [
        f"{k}={v}" for k, v in filters.items() if k not in MAIN_FILTERS and v not in (None, "", ANY)
    ]
    return f"{what} — " + ", ".join(bits + extra).replace(ANY, "all models")


def build_app(holder: Holder, refresh_s: float = 5.0) -> gr.Blocks:
    data = holder.data
    frame = holder.frame
    defaults = views.default_filters(frame)
    csv_dir = tempfile.mkdtemp(prefix="tsweep-ui-")

    with gr.Blocks(title="transformers-sweep", analytics_enabled=False) as demo:
        header = gr.Markdown(_header(data))
        with gr.Row():
            datasets = gr.CheckboxGroup(
                _dataset_choices(data), value=data.datasets(), label="Data shown", scale=2
            )
            filters = {}
            for name in MAIN_FILTERS:
                opts = [ANY, *views.choices(frame, name)]
                filters[name] = gr.Dropdown(
                    opts,
                    value=defaults.get(name, ANY),
                    label=FILTER_LABELS[name],
                    scale=1,
                    elem_id=f"filter-{name}",
                )
        with gr.Accordion("More options (attention, compile, harness, ...)", open=False):
            with gr.Row():
                for name in views.FILTER_FIELDS:
                    if name in MAIN_FILTERS:
                        continue
                    opts = [ANY, *views.choices(frame, name)]
                    filters[name] = gr.Dropdown(
                        opts, value=ANY, label=FILTER_LABELS[name], elem_id=f"filter-{name}"
                    )
        with gr.Tabs():
            with gr.Tab("Compare GPUs"):
                tp_metric = gr.Radio(
                    [("sequences / s", "sequences_per_s"), ("tokens / s", "tokens_per_s")],
                    value="sequences_per_s",
                    label="Throughput in",
                )
                tp_plot = gr.Plot(
                    label="Throughput vs batch size", format="png", elem_id="compare-plot"
                )
                tp_table = gr.Dataframe(
                    label="Per GPU: largest batch that fits, best throughput",
                    interactive=False,
                    elem_id="compare-table",
                )
            with gr.Tab("Memory"):
                mem_metric = gr.Dropdown(
                    [AUTO, *views.MEMORY_METRICS], value=AUTO, label="Memory metric"
                )
                mem_plot = gr.Plot(label="Memory vs batch size", format="png")
                mem_table = gr.Dataframe(
                    label="Linear fit per GPU and the largest batch it predicts for each "
                    "capacity (max_batch_<N>gb)",
                    interactive=False,
                )
            with gr.Tab("Time breakdown"):
                bd_plot = gr.Plot(label="Where a training step goes", format="png")
                bd_table = gr.Dataframe(label="Median ms per phase", interactive=False)
            with gr.Tab("Efficiency"):
                eff_plot = gr.Plot(label="MFU, TFLOP/s, utilization, power, energy", format="png")
                eff_table = gr.Dataframe(interactive=False)
            with gr.Tab("Cost"):
                gr.Markdown(
                    "Hourly price of **one GPU**; a row matches every GPU whose name "
                    'contains all its words as whole words ("L4" is not an L40S; the '
                    "longest match wins). Defaults are AWS "
                    "list prices of 2024 (source per row): replace them with yours."
                )
                prices = gr.Dataframe(
                    views.DEFAULT_PRICES,
                    interactive=True,
                    label="GPU prices (editable)",
                    elem_id="prices",
                )
                target = gr.Number(50000, label="Target throughput (tokens / s)")
                cost_msg = gr.Markdown()
                cost_plot = gr.Plot(label="Dollars per million training tokens", format="png")
                cost_table = gr.Dataframe(
                    label="GPUs that reach the target, cheapest first", interactive=False
                )
            with gr.Tab("Speedup"):
                labels = views.gpu_labels(frame)
                measured = [g for g in labels if "(ref " not in g]
                baseline = gr.Dropdown(
                    labels, value=(measured or labels or [None])[0], label="Baseline GPU"
                )
                sp_plot = gr.Plot(label="Speedup over the baseline", format="png")
                sp_table = gr.Dataframe(interactive=False)
            with gr.Tab("Table"):
                with gr.Row():
                    search = gr.Textbox(
                        "",
                        label="Search every column",
                        placeholder="e.g. oom, H200, compile",
                        scale=3,
                    )
                    status = gr.Dropdown(
                        [ANY, *views.choices(frame, "status")], value=ANY, label="Status", scale=1
                    )
                    download = gr.DownloadButton("Download CSV", scale=1)
                table = gr.Dataframe(
                    interactive=False,
                    max_height=420,
                    elem_id="results-table",
                    label="Trials (select a row for its environment and command)",
                )
                command = gr.Code(
                    label="Command that reproduces the selected row",
                    language="shell",
                    lines=2,
                    interactive=False,
                )
                env_table = gr.Dataframe(label="Environment of the selected row", interactive=False)
            with gr.Tab("Sweep progress"):
                prog_md = gr.Markdown()
                prog_table = gr.Dataframe(interactive=False)
                reload_btn = gr.Button("Reload results now")
            with gr.Tab("About the data"):
                provenance = gr.Markdown(_provenance(data))
        version = gr.State(holder.version)
        timer = gr.Timer(refresh_s, active=bool(holder.db_path))

        filter_names = list(filters)
        inputs = [
            datasets,
            *filters.values(),
            tp_metric,
            mem_metric,
            prices,
            target,
            baseline,
            search,
            status,
        ]
        outputs = [
            tp_plot,
            tp_table,
            mem_plot,
            mem_table,
            bd_plot,
            bd_table,
            eff_plot,
            eff_table,
            cost_msg,
            cost_plot,
            cost_table,
            sp_plot,
            sp_table,
            table,
            download,
        ]

        def render(chosen, *args):
            fvals = dict(zip(filter_names, args[: len(filter_names)], strict=True))
            tp_m, mem_m, price_tab, tgt, base, query, st = args[len(filter_names) :]
            sel = views.select(holder.frame, fvals, list(chosen or []))

            points = views.throughput_points(sel, tp_m)
            out: list[Any] = [
                charts.throughput(points, tp_m, _title("Training throughput vs batch size", fvals)),
                views.fit_summary(points).rename(columns={"best_value": f"best_{tp_m}"}),
            ]
            present = views.memory_metrics_present(sel)
            metric = (present[0] if present else "nvml_peak_used_gib") if mem_m == AUTO else mem_m
            mpoints = views.memory_points(sel, metric)
            mfit = views.memory_fit(mpoints)
            out += [
                charts.memory(mpoints, mfit, metric, _title("Memory vs batch size", fvals)),
                mfit,
            ]
            bd = views.time_breakdown(sel)
            out += [charts.breakdown(bd, _title("Time per training step by phase", fvals)), bd]
            eff = views.efficiency(sel)
            out += [charts.efficiency(eff, _title("Efficiency", fvals)), eff]

            good, problems = views.parse_prices(price_tab)
            costs = views.cost_table(sel, good)
            sentence, reach = views.cheapest(costs, tgt if tgt is not None else float("nan"))
            unpriced = sorted(costs.loc[costs["usd_per_gpu_hour"].isna(), "gpu"].unique())
            notes = [f"⚠ {p}" for p in problems]
            if unpriced:
                notes.append("No price for: " + ", ".join(unpriced) + " (add a row).")
            out += [
                "\n\n".join([sentence, *notes]),
                charts.cost(costs, _title("Cost of training tokens", fvals)),
                reach,
            ]

            sp = views.speedup(sel, base) if base else views.speedup(sel.iloc[0:0], "")
            out += [charts.speedup(sp, base or "", _title("Speedup over the baseline", fvals)), sp]

            tab = views.table(sel, query or "", st)
            digest = (
                hashlib.sha1(
                    pd.util.hash_pandas_object(tab, index=False).values.tobytes()
                ).hexdigest()[:10]
                if len(tab)
                else "empty"
            )
            path = os.path.join(csv_dir, f"transformers-sweep-{digest}.csv")
            tab.to_csv(path, index=False)
            out += [tab, gr.DownloadButton(value=path, label=f"Download CSV ({len(tab)} rows)")]
            return out

        def select_row(tab: pd.DataFrame, evt: gr.SelectData):
            row_index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            if tab is None or not len(tab) or row_index is None or row_index >= len(tab):
                return "", pd.DataFrame(columns=["field", "value"])
            row = tab.iloc[row_index]
            if isinstance(evt.row_value, list) and "key" in tab.columns:
                key = evt.row_value[list(tab.columns).index("key")]
                match = holder.frame[holder.frame["key"] == key]
                row = match.iloc[0] if len(match) else row
            return views.reproduce_command(row), views.environment(row)

        def tick(seen: int):
            counts, why = database_counts(holder.db_path)
            stored = sum(counts.values())
            # A written trial (new, or run again in place) changes the signature; comparing
            # counts with the rows read reloaded every tick when a row was unreadable.
            if why is None and database_signature(holder.db_path) != holder.signature:
                holder.reload()  # new rows: everything re-renders through version.change
            when = time.strftime("%H:%M:%S")
            md = (
                f"**{stored} trials** stored in `{holder.db_path}` (checked {when}, every "
                f"{refresh_s:g} s)."
                if why is None
                else f"No sweep progress: {why}."
            )
            return md, views.progress(counts), holder.version

        def reload_now():
            holder.reload()
            return holder.version

        def refresh_choices(_version: int, chosen: list[str], *current):
            """The dataset boxes, the header and every dropdown's choices from the reloaded
            data: a model, precision or GPU that arrived since launch can be chosen."""
            d, frame = holder.data, holder.frame
            names = [v for _, v in _dataset_choices(d)]
            keep = [c for c in (chosen or []) if c in names]
            fvals = dict(zip(filter_names, current[: len(filter_names)], strict=True))
            base, st = current[len(filter_names) :]
            if views.MEASURED_DATASET in names and views.MEASURED_DATASET not in keep:
                keep.insert(0, views.MEASURED_DATASET)  # new results: show them
                shown = views.select(frame, fvals, [views.MEASURED_DATASET])
                if shown.empty:  # the filters hide every one of them: start from theirs
                    fvals.update(views.default_filters(frame))
            updates = []
            for name in filter_names:
                opts = [ANY, *views.choices(frame, name)]
                value = fvals[name] if fvals[name] in opts else ANY
                updates.append(gr.Dropdown(choices=opts, value=value))
            labels = views.gpu_labels(frame)
            mine = [g for g in labels if "(ref " not in g]
            if base not in labels:
                base = (mine or labels or [None])[0]
            statuses = [ANY, *views.choices(frame, "status")]
            return (
                gr.CheckboxGroup(choices=_dataset_choices(d), value=keep),
                _header(d),
                *updates,
                gr.Dropdown(choices=labels, value=base),
                gr.Dropdown(choices=statuses, value=st if st in statuses else ANY),
            )

        # One public endpoint ("/render": the filters in, every view out); the rest are
        # wiring, kept out of the API page.
        private = {"api_visibility": "private"}
        gr.on(
            [c.change for c in inputs],
            render,
            inputs=inputs,
            outputs=outputs,
            api_name="render",
            concurrency_id="render",
            trigger_mode="always_last",
        )
        demo.load(render, inputs=inputs, outputs=outputs, concurrency_id="render", **private)
        demo.load(tick, inputs=version, outputs=[prog_md, prog_table, version], **private)
        table.select(select_row, inputs=table, outputs=[command, env_table], api_name="select_row")
        timer.tick(
            tick, inputs=version, outputs=[prog_md, prog_table, version], api_name="progress"
        )
        reload_btn.click(reload_now, outputs=version, **private)
        version.change(
            refresh_choices,
            inputs=[version, datasets, *filters.values(), baseline, status],
            outputs=[datasets, header, *filters.values(), baseline, status],
            **private,
        ).then(render, inputs=inputs, outputs=outputs, concurrency_id="render", **private)
        del provenance
    return demo
