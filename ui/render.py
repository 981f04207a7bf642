"""How the app draws its views: only the visible tab's on a change, from a cache of results per
selection, and the selection kept in the page's URL (query parameters) so that a pasted link
opens the same view.

``/render`` (the public endpoint) still draws every view; the page's own events draw one tab.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd
from gradio.processing_utils import move_files_to_cache

from sweep.analysis import charts
from sweep.analysis.selection import ANY
from ui.tabs.common import Context, Tab, plot_value

LOG = logging.getLogger(__name__)

CACHE_SIZE = 64  # views per (data version, tab, selection): a few hundred KB each at most
DATA_PARAM, TAB_PARAM = "data", "tab"


def _hashable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return ("frame", value.to_csv(index=False))
    if isinstance(value, dict):
        return ("dict", json.dumps(value, sort_keys=True, default=str))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


class Renderer:
    """Draws views for the current inputs: ``inputs`` are the shared ones (datasets, filters)
    then each view's own, in ``views`` order; one list of outputs, every view's in order."""

    def __init__(self, ctx: Context, tabs: Sequence[Tab]) -> None:
        self.ctx = ctx
        ctx.renderer = self  # a tab's own widgets redraw through this one's cache
        self.tabs = list(tabs)
        self.views = [t for t in tabs if t.render is not None]
        self.cache: OrderedDict[Any, list] = OrderedDict()
        self.inputs = [*ctx.shared_inputs, *(c for t in self.views for c in t.inputs)]
        self.outputs = [c for t in self.views for c in t.outputs]

    def _split(self, args: Sequence[Any]) -> tuple[Any, list, list[list]]:
        n = len(self.ctx.filters)
        chosen, fvals, rest = args[0], list(args[1 : 1 + n]), list(args[1 + n :])
        own = []
        for t in self.views:
            own.append(rest[: len(t.inputs)])
            rest = rest[len(t.inputs) :]
        return chosen, fvals, own

    def view(self, i: int, chosen: Any, fvals: list, own: list) -> list:
        """View ``i``'s outputs, from the cache when the data and the inputs are the same. A copy
        of each update: Gradio pops an update's value as it sends it
        (``gradio.blocks.postprocess_update_dict``), and a cached one sent again kept its other
        properties only (the answer table and its CSV of the selection shown before)."""
        return [dict(o) if isinstance(o, dict) else o for o in self._view(i, chosen, fvals, own)]

    def _view(self, i: int, chosen: Any, fvals: list, own: list) -> list:
        key = (self.ctx.holder.version, i, _hashable(chosen), _hashable(fvals), _hashable(own))
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        try:
            t = self.views[i]
            sel, named = self.ctx.selection(chosen, fvals, t.all_rows, t.filtered)
            out = list(t.render(sel, named, *own))
        except Exception as exc:  # one view's failure must not take down the page's event
            LOG.exception("view %d failed", i)
            return failed_view(self.views[i].outputs, f"{type(exc).__name__}: {exc}")
        self.cache[key] = out
        if len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return out

    def every(self, *args) -> list:
        """Every view (the public /render endpoint)."""
        chosen, fvals, own = self._split(args)
        return [o for i in range(len(self.views)) for o in self.view(i, chosen, fvals, own[i])]

    def opened(self, tab: int, active: int, *args) -> list:
        """The tab at index ``tab`` was opened: it becomes the active one and is drawn; nothing
        happens when it already was (Gradio selects the first tab as the page starts, and the
        page's load draws it)."""
        if tab == active:
            return [gr.skip()] * (1 + len(self.outputs))
        return [tab, *self.visible(tab, *args)]

    def preset(self, active: int = 0) -> None:
        """Draw the tab at index ``active`` for the widgets' initial values into the page's
        configuration (each output's initial value): the page opens with it drawn, no event
        needed. Drawn through the cache, so a change back to it is a cache hit."""
        for component, value in zip(
            self.outputs, self.visible(active, *(c.value for c in self.inputs)), strict=True
        ):
            if not is_skip(value):
                set_initial_value(component, value)

    def visible(self, active: int, *args) -> list:
        """The outputs of the tab at index ``active`` of the app's tabs; the others unchanged."""
        chosen, fvals, own = self._split(args)
        tab = self.tabs[active] if 0 <= active < len(self.tabs) else None
        out = []
        for i, t in enumerate(self.views):
            if t is tab:
                out += self.view(i, chosen, fvals, own[i])
            else:
                out += [gr.skip()] * len(t.outputs)
        return out


def failed_view(outputs: Sequence[Any], why: str) -> list:
    """The outputs of a view that raised: each says so (a chart, a note) or is emptied (a
    table), so that no stale figure stays under a new selection; other widgets are left."""
    text = f"This view failed for this selection ({why}); the other tabs are unaffected."
    out: list[Any] = []
    for c in outputs:
        if isinstance(c, gr.HTML) and "tsweep-chart" in str(getattr(c, "html_template", "")):
            out.append(plot_value(charts.empty("This view failed", text)))
        elif isinstance(c, gr.Dataframe):
            out.append(pd.DataFrame())
        elif isinstance(c, gr.Markdown):
            out.append(f"⚠ {text}")
        else:
            out.append(gr.skip())
    return out


def is_skip(value: Any) -> bool:
    """Whether ``value`` is ``gr.skip()`` (an output left as it is)."""
    return isinstance(value, dict) and value == gr.skip()


def set_initial_value(component: Any, value: Any) -> None:
    """``component``'s value in the page's configuration, as its constructor stores it. A view
    returns a changed property as ``gr.update(...)``, never as a new component: one made while the
    page is built would be a widget of its own (a stray button under every tab)."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        for prop, v in value.items():
            if prop not in ("__type__", "value"):
                setattr(component, prop, v)
        if "value" not in value:
            return
        value = value["value"]
    value = component.postprocess(value)
    if hasattr(value, "model_dump"):  # a pydantic model (the tables' DataframeData)
        value = value.model_dump()
    component.value = move_files_to_cache(value, component, postprocess=True, keep_in_cache=True)


def url_params(ctx: Context, tabs: Sequence[Tab]) -> dict[str, Any]:
    """The query parameter of every widget the URL holds: the shared filters by field name,
    ``data`` for the datasets shown, and each tab's own (``Tab.url``)."""
    params: dict[str, Any] = {DATA_PARAM: ctx.datasets, **ctx.filters}
    for t in tabs:
        params.update(t.url)
    return params


def _choices(component: Any) -> list[str] | None:
    choices = getattr(component, "choices", None)
    return None if choices is None else [str(v) for _, v in choices]


def value_from_url(component: Any, text: str, valid: list[str] | None = None) -> Any:
    """The widget's value for the parameter's text; gr.skip() where it is not one of ``valid``
    (default: the widget's choices): a link made before the data changed must not break the
    page."""
    if isinstance(component, gr.Checkbox):
        return text.lower() in ("1", "true", "yes")
    if isinstance(component, gr.Number):  # the planner's sequence length: a number, not text
        try:
            number = float(text)
        except ValueError:
            return gr.skip()
        return int(number) if number.is_integer() else number
    if isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False):
        wanted = [v for v in text.split(",") if v]
        choices = valid if valid is not None else _choices(component)
        return [v for v in wanted if choices is None or v in choices] or gr.skip()
    choices = valid if valid is not None else _choices(component)
    if choices is not None and text not in choices:
        return gr.skip()
    return text


def link_query(query: dict[str, str], filters: Sequence[str]) -> dict[str, str]:
    """A link's query as the page reads it: a link that names a filter or the data holds a
    whole selection, so a filter it leaves out is "(any)" (links written before "(any)" was
    written into them), never the page's default; a link with neither changes no filter."""
    if not any(name in query for name in (*filters, DATA_PARAM)):
        return dict(query)
    return {**{name: ANY for name in filters}, **query}


def url_writer_js(names: list[str]) -> str:
    """Client-side: write the widgets' values into the URL's query (replaceState: no reload, no
    history entry per change); "(any)" is written (a missing filter reads as "(any)" too, see
    ``link_query``), empty and false values are left out. Nothing is written before the page has
    read its own link (``URL_READ_JS``)."""
    return (
        "(...vals) => { if (!window.tsweepUrlRead) return vals;"
        " const names = " + json.dumps(names) + ";"
        " const u = new URL(window.location.href);"
        " names.forEach((n, i) => { let v = vals[i];"
        " if (Array.isArray(v)) v = v.join(',');"
        " if (v === null || v === undefined || v === '' || v === false)"
        " u.searchParams.delete(n); else u.searchParams.set(n, String(v)); });"
        " window.history.replaceState(null, '', u.toString()); return vals; }"
    )


# Run once the page has read its link (``from_url``): until then nothing writes the URL (Gradio
# selects the first tab as the page starts, which would overwrite the link's tab= before the
# server reads it).
URL_READ_JS = "() => { window.tsweepUrlRead = true; return []; }"


def tab_writer_js(slug: str) -> str:
    """Client-side: the opened tab into the URL; the event's inputs pass through unchanged."""
    return (
        "(...args) => { if (!window.tsweepUrlRead) return args;"
        " const u = new URL(window.location.href);"
        f" u.searchParams.set({json.dumps(TAB_PARAM)}, {json.dumps(slug)});"
        " window.history.replaceState(null, '', u.toString()); return args; }"
    )
