"""What the tabs share: the context they are built in, the ``Tab`` each returns, chart titles,
and the one way a tab redraws itself when one of its own widgets changes."""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from sweep.analysis.interference import without_perturbed
from sweep.analysis.selection import ANY, select
from sweep.plan.config import MAIN_FIELDS
from ui.server import PLOTLY_URL

MAIN_FILTERS = MAIN_FIELDS  # in a row above the others
# Every redraw queues under this id, one at a time, the last change winning.
RENDER = "render"
PRIVATE = {"api_visibility": "private"}  # wiring, kept out of the API page


@dataclass
class Context:
    """What a tab's ``build`` may use: the data holder (``ui.app.Holder``), the Blocks being
    built, the shared widgets (datasets shown, filters by field name) and the data version."""

    holder: Any
    demo: gr.Blocks
    datasets: gr.CheckboxGroup
    filters: dict[str, gr.Dropdown]
    version: gr.State
    refresh_s: float
    # With a password (``--auth``) the page is built without data, since the login page embeds
    # it: the widgets get their choices after login (``refresh``).
    private: bool = False
    # The app's ``ui.render.Renderer`` (set once every tab is built): draws a view through its
    # cache, a view that raises drawn as failed
    renderer: Any = None

    @property
    def shown_frame(self) -> pd.DataFrame:
        """The rows the widgets' initial choices come from: none when private."""
        frame = self.holder.frame
        return frame.iloc[0:0] if self.private else frame

    @property
    def shown_references(self) -> dict:
        return {} if self.private else self.holder.data.references

    @property
    def shared_inputs(self) -> list:
        return [self.datasets, *self.filters.values()]

    def selection(
        self,
        chosen: Sequence[str] | None,
        values: Sequence[Any],
        all_rows: bool = False,
        filtered: bool = True,
    ):
        """The rows of the datasets ``chosen`` that match the filter ``values`` (in the order of
        ``filters``; every row of them unless ``filtered``), and those values by field name.
        Unless ``all_rows``, without the interference check's perturbed row
        (``sweep.analysis.interference.without_perturbed``)."""
        fvals = dict(zip(self.filters, values, strict=True))
        frame = self.holder.frame if all_rows else without_perturbed(self.holder.frame)
        return select(frame, fvals if filtered else {}, list(chosen or [])), fvals


Render = Callable[..., list]  # (selection, filter values, *own inputs) -> one value per output
# (widget, frame, current value) -> the widget's update once the data reloads
Refresh = Callable[[pd.DataFrame, Any], Any]


@dataclass
class Tab:
    """A built tab: its own inputs and outputs (in ``/render``'s order), how it draws them, and
    the widgets whose choices follow reloaded data."""

    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    render: Render | None = None
    all_rows: bool = False  # the Table tab: every stored row, the interference check's too
    # False: the rows of the data shown whatever the shared filters (the planner asks its own)
    filtered: bool = True
    refresh: list[tuple[Any, Refresh]] = field(default_factory=list)
    url: dict[str, Any] = field(default_factory=dict)  # query parameter -> widget it sets
    # query parameter -> its valid values for the current data (default: the widget's choices)
    url_choices: dict[str, Callable[[pd.DataFrame], list[str]]] = field(default_factory=dict)


# Draw the figure (JSON text) on load and on every new value; Plotly.react redraws in place.
# No "Share chart" button: plotly.js 4 would upload the figure to Plotly's cloud.
DRAW_JS = """
const draw = () => {
  const box = element.querySelector('.tsweep-chart');
  if (!box || !props.value) return;
  const fig = JSON.parse(props.value);
  // the layout adjustments gr.Plot made: fill the box, room above the plot for the title
  const layout = fig.layout, margin = (layout.margin = layout.margin || {});
  layout.autosize = true;
  margin.autoexpand = true;
  if (layout.title) margin.t = Math.max(100, margin.t || 0);
  const config = {responsive: true, displaylogo: false, showSendToCloud: false};
  Plotly.react(box, fig.data, layout, config);
};
draw();
watch('value', draw);
"""


def sticky_table(label: str, elem_id: str, **kw: Any) -> gr.Dataframe:
    """A read-only table of the app's CSS class tsweep-table (ui/app.py): its first column stays
    in view while the others scroll, a cut cell shows its whole text on hover."""
    return gr.Dataframe(
        interactive=False,
        label=label,
        elem_id=elem_id,
        elem_classes=["tsweep-table"],
        wrap=False,
        pinned_columns=1,
        **kw,
    )


def hover_cell(text: str, full: str) -> str:
    """A table cell of datatype "html" that shows ``text`` and, on hover, ``full`` (the app's
    HOVER_JS gives the cell the inner title); both escaped, as data files name them."""
    return f'<span title="{html.escape(full)}">{html.escape(text)}</span>'


def chart(label: str, elem_id: str) -> gr.HTML:
    """An interactive chart drawn by plotly.js in the page (hover, zoom, PNG download); its
    value is ``plot_value``'s figure. The script is served by the app (``ui.server``)."""
    return gr.HTML(
        None,
        html_template='<div class="tsweep-chart"></div>',
        js_on_load=DRAW_JS,
        head=f'<script src="{PLOTLY_URL}"></script>',
        label=label,
        show_label=True,
        container=True,
        elem_id=elem_id,
        min_height=450,
    )


def plot_value(figure: dict[str, Any]) -> str:
    """A Plotly figure specification (``sweep.analysis.charts``) as ``chart``'s value: JSON text."""
    return json.dumps(_plain(figure), allow_nan=False)


def _plain(value: Any) -> Any:
    """JSON values: numpy and pandas scalars as numbers, NaN and NA as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def csv_file(frame: pd.DataFrame, folder: str, name: str) -> str:
    """``frame`` written as ``<name>.csv`` (``sweep.analysis.table.download_name``: the file a
    person downloads says what it holds) under ``folder``, in a subfolder per content: two tables
    of one name (another baseline) never overwrite each other, the same rows give the same file."""
    digest = (
        hashlib.sha1(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()[
            :10
        ]
        if len(frame)
        else "empty"
    )
    os.makedirs(os.path.join(folder, digest), exist_ok=True)
    path = os.path.join(folder, digest, f"{name}.csv")
    if not os.path.exists(path):
        frame.to_csv(path, index=False)
    return path


def title(what: str, filters: dict[str, Any]) -> str:
    """A chart title naming the selection: "<what> — model, seq_len N, precision, k=v ..."."""
    bits = [str(filters.get("model") or ANY)]
    if filters.get("seq_len") not in (None, ANY):
        bits.append(f"seq_len {filters['seq_len']}")
    if filters.get("precision") not in (None, ANY):
        bits.append(str(filters["precision"]))
    extra = [
        f"{k}={v}" for k, v in filters.items() if k not in MAIN_FILTERS and v not in (None, "", ANY)
    ]
    return f"{what} — " + ", ".join(bits + extra).replace(ANY, "all models")


def redraw_on_own_inputs(ctx: Context, tab: Tab) -> None:
    """When one of the tab's own widgets changes, redraw that tab only (shared filters redraw
    every tab: ``ui.app``), through the renderer's cache: a widget's change to a value the view
    was drawn for (the answer tab's multi-selects report one as the tab first mounts) draws
    nothing anew."""
    if not tab.inputs or tab.render is None:
        return
    n = len(ctx.filters)

    def redraw(chosen, *args):
        if ctx.renderer is not None:
            index = ctx.renderer.views.index(tab)
            return ctx.renderer.view(index, chosen, list(args[:n]), list(args[n:]))
        sel, fvals = ctx.selection(chosen, args[:n], tab.all_rows, tab.filtered)
        return tab.render(sel, fvals, *args[n:])

    gr.on(
        [c.change for c in tab.inputs],
        redraw,
        inputs=[*ctx.shared_inputs, *tab.inputs],
        outputs=tab.outputs,
        concurrency_id=RENDER,
        trigger_mode="always_last",
        **PRIVATE,
    )
