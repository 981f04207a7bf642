"""The Gradio Blocks: the header, the shared filters and one tab per view (``ui/tabs/``).

No measuring, filtering or fitting happens here: the tabs call ``analysis`` (data and figures)
and wire their own widgets. ``build_app(holder)`` returns the Blocks; ``ui.__main__`` launches
it. Imports neither torch nor ray.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry

import gradio as gr  # noqa: E402

from sweep.analysis.landing import best_for_model, narrowed_choices  # noqa: E402
from sweep.analysis.selection import (  # noqa: E402
    ANY,
    FILTER_FIELDS,
    MEASURED_DATASET,
    default_filters,
    filter_choices,
    select,
)
from sweep.analysis.sources import Data, database_signature  # noqa: E402
from sweep.plan.config import field_label  # noqa: E402
from ui.render import (  # noqa: E402
    DATA_PARAM,
    URL_READ_JS,
    Renderer,
    is_skip,
    link_query,
    tab_writer_js,
    url_params,
    url_writer_js,
    value_from_url,
)
from ui.server import PLOTLY_URL  # noqa: E402
from ui.tabs import (  # noqa: E402
    about,
    breakdown,
    compare,
    cost,
    efficiency,
    memory,
    planner,
    progress,
    speedup,
    table,
)
from ui.tabs.common import MAIN_FILTERS, PRIVATE, RENDER, Context  # noqa: E402

FILTER_LABELS = {name: field_label(name) for name in FILTER_FIELDS}
# The tabs, in the order shown; the views among them are drawn in this order by /render.
TABS = (
    ("Fine-tune planner", planner),
    ("Compare GPUs", compare),
    ("Memory", memory),
    ("Time breakdown", breakdown),
    ("Efficiency", efficiency),
    ("Cost", cost),
    ("Speedup", speedup),
    ("Table", table),
    ("Sweep progress", progress),
    ("About the data", about),
)
SLUGS = [label.lower().replace(" ", "-") for label, _ in TABS]  # the URL's tab=
# Tabs drawn into the page as it is built (for the initial selection): the planner the page opens
# on, and the answer table, which a link to it then shows without a round trip to draw it.
PREDRAWN = (0, 1)
# At a phone's width (390 px) the header shrinks and the page's padding goes, so that the answer
# table and the chart start on the first screen, and the Memory fit's series column narrows.
# Tables (class tsweep-table): a body cell is cut at its column's width, its whole text shown on
# hover (HOVER_JS); headers wrap; the first column stays in view while the others scroll.
CSS = """
.tsweep-table [role=gridcell] .cell-wrap span {
  display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
.tsweep-table [role=columnheader] .header.text { white-space: normal; line-height: 1.2; }
.tsweep-table .first-column {
  position: sticky !important; left: 0; z-index: 3;
  background: var(--table-even-background-fill, var(--background-fill-primary));
  box-shadow: 1px 0 0 var(--border-color-primary);
}
@media (min-width: 641px) {  /* the Memory fit's short series label whole, on two lines */
  #memory-fit .first-column .cell-wrap span { white-space: normal; }
}
@media (max-width: 640px) {
  .gradio-container { padding: 0 4px !important; }
  #header h1 { font-size: 1.2rem; margin: 0.2rem 0; }
  #header p, #header blockquote { font-size: 0.8rem; margin: 0.2rem 0; }
  #header p:nth-of-type(1) { display: none; }
  #answer-table { font-size: 0.8rem; }
  /* the series narrow (its cells, the header table's sizing row): the largest batches beside */
  #memory-fit .first-column, #memory-fit .header-table tr > :first-child {
    width: 110px !important; min-width: 110px !important; max-width: 110px !important;
    flex: 0 0 110px !important;
  }
  #memory-fit .header-table { width: auto !important; }
}
"""
# System fonts only: the default theme would ask for web fonts; nothing leaves the machine.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


# A table cell shows its whole text on hover (CSS cuts long ones): its title, set when first
# hovered, so that cells redrawn by a new selection get theirs too; a cell that shows a short
# text (``ui.tabs.common.hover_cell``) gets its inner title, the whole one.
HOVER_JS = """<script>
document.addEventListener('mouseover', (e) => {
  const cell = e.target.closest && e.target.closest(
    '.tsweep-table [role=gridcell], .tsweep-table [role=columnheader]');
  if (!cell) return;
  const inner = cell.querySelector('[title]');
  cell.title = inner ? inner.title : cell.innerText.trim();
});
</script>"""
# plotly.js fetched as the page starts (run when the first chart mounts), not after Gradio's start
HEAD = f'<link rel="preload" as="script" href="{PLOTLY_URL}">' + HOVER_JS


class Holder:
    """The data the app shows; replaced (not mutated) when the database changes."""

    def __init__(self, db_path: str | None, data_dir: str | None = None, data_files=()) -> None:
        self.db_path = db_path
        self.data_dir = data_dir
        self.data_files = list(data_files)  # more results files (--data), data sets of their own
        self.version = 0
        self.reload()

    def reload(self) -> None:
        kw = {"data_dir": self.data_dir} if self.data_dir else {}
        # Taken before reading: a trial written meanwhile makes the next check reload again.
        self.signature = database_signature(self.db_path)
        data = Data.load(self.db_path, data_files=self.data_files, **kw)
        self.data = data
        self.frame = data.frame()
        self.version += 1


def _dataset_choices(data: Data) -> list[tuple[str, str]]:
    out = []
    if data.n_measured:
        out.append(
            (
                f"your results ({os.path.basename(data.db_path or '')}, {data.n_measured} trials)",
                MEASURED_DATASET,
            )
        )
    for name, frame in data.pooled.items():
        out.append((f"file: {name} ({len(frame)} rows)", name))
    for name, frame in data.references.items():
        out.append((f"reference: {name} ({len(frame)} rows)", name))
    return out


def _header(data: Data) -> str:
    lines = [
        "# transformers-sweep: which GPU, which configuration",
        "Training throughput, memory, time split, efficiency and cost of Transformer models "
        "on each GPU type. Pick a model and a sequence length; every tab follows the "
        "selection. Reference rows are marked *(ref ...)* and drawn dashed; the rows of a "
        "`--data` file, *(data NAME)*.",
    ]
    if data.n_measured:
        lines.append(f"Your results: **{data.n_measured} trials** from `{data.db_path}`.")
    for msg in data.messages:
        lines.append(f"> ⚠ {msg}")
    return "\n\n".join(lines)


def _shared_filters(frame, defaults: dict[str, str]) -> dict[str, gr.Dropdown]:
    """The filter dropdowns: model, sequence length and precision in a row, the rest folded."""
    filters = {}
    for name in MAIN_FILTERS:
        filters[name] = gr.Dropdown(
            narrowed_choices(frame, defaults, name),
            value=defaults.get(name, ANY),
            label=FILTER_LABELS[name],
            scale=1,
            elem_id=f"filter-{name}",
        )
    return filters


def build_app(holder: Holder, refresh_s: float = 5.0, private: bool = False) -> gr.Blocks:
    """The app over ``holder``'s data. ``private`` (a password is asked): the page is built
    without data (Gradio's login page embeds the page's configuration) and every choice is
    filled once the user has logged in. ``demo.page_patch``: the page's configuration for a
    link's query, for ``ui.server.app_kwargs``."""
    data = Data(holder.db_path) if private else holder.data
    frame = holder.frame.iloc[0:0] if private else holder.frame
    defaults = default_filters(frame)

    with gr.Blocks(title="transformers-sweep", analytics_enabled=False) as demo:
        header = gr.Markdown(_header(data), elem_id="header")
        with gr.Row():
            datasets = gr.CheckboxGroup(
                _dataset_choices(data), value=data.datasets(), label="Data shown", scale=2
            )
            filters = _shared_filters(frame, defaults)
        with gr.Accordion("More options (attention, compile, harness, ...)", open=False):
            with gr.Row():
                for name in FILTER_FIELDS:
                    if name not in MAIN_FILTERS:
                        filters[name] = gr.Dropdown(
                            narrowed_choices(frame, defaults, name),
                            value=ANY,
                            label=FILTER_LABELS[name],
                            elem_id=f"filter-{name}",
                        )
        version = gr.State(holder.version)
        ctx = Context(holder, demo, datasets, filters, version, refresh_s, private)
        tabs, tab_widgets = [], []
        # wrap: at a phone's width every tab name stays visible (a menu hid 7 of 9)
        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs") as tab_group:
            for i, (label, module) in enumerate(TABS):
                with gr.Tab(label, id=i, elem_id=f"tab-{SLUGS[i]}") as tab_widget:
                    tabs.append(module.build(ctx))
                tab_widgets.append(tab_widget)
        renderer = Renderer(ctx, tabs)
        inputs, outputs = renderer.inputs, renderer.outputs
        refreshed = [(w, fn) for t in tabs for w, fn in t.refresh]
        active = gr.State(0)  # the index of the visible tab
        params = url_params(ctx, tabs)

        def render(chosen, *args):
            """Every view for the selection: the shared filters, then each tab's own inputs."""
            return renderer.every(chosen, *args)

        def render_visible(tab_index, chosen, *args):
            """The visible tab's views only: the others are drawn when they are opened."""
            return renderer.visible(tab_index, chosen, *args)

        url_choices = {
            DATA_PARAM: lambda f: [v for _, v in _dataset_choices(holder.data)],
            **{name: (lambda f, n=name: [ANY, *filter_choices(f, n)]) for name in filters},
            **{k: fn for t in tabs for k, fn in t.url_choices.items()},
        }

        position = {id(c): i for i, c in enumerate(inputs)}

        def linked_page(query: dict[str, str]) -> dict[int, dict]:
            """The page's configuration for a link (``ui.server.PagePatch``): a link naming only
            a tab drawn into the page opens on that tab, shown with no round trip first."""
            tab = SLUGS.index(query["tab"]) if query.get("tab") in SLUGS else None
            if private or tab not in PREDRAWN or any(name in params for name in query):
                return {}
            return {tab_group._id: {"selected": tab}}

        demo.page_patch = linked_page

        def first_view(request: gr.Request, *current):
            """The page's first event, in one round trip: the selection a pasted link holds
            (query parameters), the tab it names, and that tab drawn for them. A link that
            names neither changes nothing: the page was built with the first tab drawn for the
            initial selection (``Renderer.preset``), unless it was built without data."""
            query = dict(request.query_params) if request is not None else {}
            query = link_query(query, list(filters))
            values, args = [], list(current)
            for name, c in params.items():
                valid = url_choices[name](holder.frame) if name in url_choices else None
                v = value_from_url(c, query[name], valid) if name in query else gr.skip()
                values.append(v)
                if not is_skip(v) and id(c) in position:
                    args[position[id(c)]] = v
            tab = SLUGS.index(query["tab"]) if query.get("tab") in SLUGS else None
            skipped = [gr.skip()] * len(outputs)
            if not private and tab is None and all(is_skip(v) for v in values):
                return [*values, gr.skip(), gr.skip(), *skipped]
            if not private and tab in PREDRAWN and all(is_skip(v) for v in values):
                # a link that names only a tab drawn into the page: select it (the page served
                # for it opens on it: ``linked_page``), draw nothing
                return [*values, gr.Tabs(selected=tab), tab, *skipped]
            if tab is None:  # the first tab: nothing to select (no event)
                return [*values, gr.skip(), gr.skip(), *renderer.visible(0, *args)]
            return [*values, gr.Tabs(selected=tab), tab, *renderer.visible(tab, *args)]

        def refresh_choices(_version: int, chosen: list[str], *current):
            """The dataset boxes, the header and every dropdown's choices from the reloaded
            data: a model, precision or GPU that arrived since launch can be chosen."""
            d, frame = holder.data, holder.frame
            names = [v for _, v in _dataset_choices(d)]
            keep = [c for c in (chosen or []) if c in names]
            fvals = dict(zip(filters, current[: len(filters)], strict=True))
            if MEASURED_DATASET in names and MEASURED_DATASET not in keep:
                keep.insert(0, MEASURED_DATASET)  # new results: show them
                if select(frame, fvals, [MEASURED_DATASET]).empty:
                    fvals.update(default_filters(frame))  # the filters hide them: start anew
            updates = []
            for name in filters:
                opts = [ANY, *filter_choices(frame, name)]
                fvals[name] = fvals[name] if fvals[name] in opts else ANY
            shown = select(frame, {}, keep)
            for name in filters:
                updates.append(
                    gr.Dropdown(choices=narrowed_choices(shown, fvals, name), value=fvals[name])
                )
            others = [
                fn(frame, v) for (_, fn), v in zip(refreshed, current[len(filters) :], strict=True)
            ]
            return (
                gr.CheckboxGroup(choices=_dataset_choices(d), value=keep),
                _header(d),
                *updates,
                *others,
            )

        def narrow(chosen, *fvals):
            """Each filter's choices: the values with rows under the other choices (counted)."""
            shown = select(holder.frame, {}, list(chosen or []))
            values = dict(zip(filters, fvals, strict=True))
            return [gr.Dropdown(choices=narrowed_choices(shown, values, n)) for n in filters]

        def pick(chosen, *fvals):
            """A model chosen by hand: the sequence length and precision with the most GPUs,
            and every filter's choices for them, in one update, before any view is drawn: a
            view or a dropdown narrowed for the new model at the old sequence length and
            precision would show a passing empty selection (and a dropdown whose choices lack
            its new value shows none)."""
            shown = select(holder.frame, {}, list(chosen or []))
            values = dict(zip(filters, fvals, strict=True))
            if values["model"] != ANY:
                values.update(best_for_model(shown, values["model"], values))
            return [
                gr.Dropdown(choices=narrowed_choices(shown, values, n), value=values[n])
                for n in filters
            ]

        # The model's own changes go through ``pick`` (by hand) or draw their view themselves
        # (a link's first view, reloaded data): no event of their own, which would draw the
        # new model at the old sequence length and precision.
        following = [c.change for c in ctx.shared_inputs if c is not filters["model"]]
        gr.on(
            following,
            narrow,
            inputs=ctx.shared_inputs,
            outputs=list(filters.values()),
            trigger_mode="always_last",
            **PRIVATE,
        )
        filters["model"].input(
            pick,
            inputs=ctx.shared_inputs,
            outputs=list(filters.values()),
            **PRIVATE,
        ).then(
            render_visible,
            inputs=[active, *inputs],
            outputs=outputs,
            concurrency_id=RENDER,
            **PRIVATE,
        )
        # One public endpoint ("/render": the filters in, every view out); a tab's own widgets
        # redraw that tab only (ui/tabs/common.py).
        # A filter change draws the visible tab; the others are drawn when opened (cached).
        gr.on(
            following,
            render_visible,
            inputs=[active, *inputs],
            outputs=outputs,
            concurrency_id=RENDER,
            trigger_mode="always_last",
            **PRIVATE,
        )
        # The public endpoint ("/render": the filters in, every view out), for scripts and tests;
        # a button nobody sees, since every UI event draws one tab only.
        api = gr.Button(visible=False)
        api.click(render, inputs=inputs, outputs=outputs, api_name="render", concurrency_id=RENDER)
        names = list(params)
        gr.on(
            [c.change for c in params.values()],
            None,
            inputs=list(params.values()),
            js=url_writer_js(names),
            **PRIVATE,
        )
        for i, tab_widget in enumerate(tab_widgets):
            tab_widget.select(
                lambda *args, i=i: renderer.opened(i, *args),
                inputs=[active, *inputs],
                outputs=[active, *outputs],
                js=tab_writer_js(SLUGS[i]),
                concurrency_id=RENDER,
                **PRIVATE,
            )
        choice_widgets = [datasets, header, *filters.values(), *(w for w, _ in refreshed)]

        def after_login(*current):
            """Every choice from the data, the filters at their defaults (a private page)."""
            fv = default_filters(holder.frame)
            values = [fv.get(name, ANY) for name in filters] + list(current[len(filters) :])
            return refresh_choices(None, holder.data.datasets(), *values)

        first = dict(
            fn=first_view,
            inputs=inputs,
            outputs=[*params.values(), tab_group, active, *outputs],
            concurrency_id=RENDER,
            **PRIVATE,
        )
        if private:
            loaded = demo.load(
                after_login, inputs=choice_widgets[2:], outputs=choice_widgets, **PRIVATE
            ).then(**first)
        else:
            for index in PREDRAWN:
                renderer.preset(index)
            loaded = demo.load(**first)
        initial = [c.value for c in ctx.shared_inputs]  # the page's, built narrowed for them

        def narrow_link(chosen, *fvals):
            """A link's filters narrowed (its model's change has no event: ``pick``); nothing
            for a page still at its initial selection (a bare link, a tab's)."""
            if not private and [chosen, *fvals] == initial:
                return [gr.skip()] * len(filters)
            return narrow(chosen, *fvals)

        loaded.then(
            narrow_link, inputs=ctx.shared_inputs, outputs=list(filters.values()), **PRIVATE
        )
        loaded.then(None, js=URL_READ_JS, **PRIVATE)
        version.change(
            refresh_choices,
            inputs=[version, datasets, *filters.values(), *(w for w, _ in refreshed)],
            outputs=[datasets, header, *filters.values(), *(w for w, _ in refreshed)],
            **PRIVATE,
        ).then(
            render_visible,
            inputs=[active, *inputs],
            outputs=outputs,
            concurrency_id=RENDER,
            **PRIVATE,
        )
    return demo
