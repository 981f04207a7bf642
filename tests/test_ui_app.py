"""The web app: launch rules, bad input, and the running app driven with gradio_client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from tests.test_views import FIXTURE
from ui.local import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=REPO)


def fixture_trials():
    from sweep.results.frame import read_jsonl

    trials, _ = read_jsonl(FIXTURE)
    return trials


def make_db(path, trials):
    from sweep.results.store import Store

    with Store(path) as store:
        for t in trials:
            store.put(t)
    return str(path)


# -- launching -------------------------------------------------------------------------------


def test_app_imports_neither_torch_nor_ray():
    code = (
        "import sys, ui.app, ui.__main__; "
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
        "print('loaded:', bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_public_address_without_password_is_refused(capsys):
    from ui.__main__ import main

    assert main(["--host", "0.0.0.0"], environ={}) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without a password" in err and "--auth" in err
    assert main(["--host", "10.1.2.3", "--auth", "admin"], environ={}) == 2
    assert "expected user:password" in capsys.readouterr().err
    assert main(["--host", "0.0.0.0"], environ={"TSWEEP_UI_AUTH": ":pw"}) == 2
    assert "TSWEEP_UI_AUTH" in capsys.readouterr().err
    assert main(["--port", "70000"], environ={}) == 2


def test_refusal_from_the_real_command_line():
    run = subprocess.run(
        [sys.executable, "-m", "ui", "--host", "0.0.0.0"],
        cwd=REPO,
        env={k: v for k, v in ENV.items() if k != "TSWEEP_UI_AUTH"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: refusing to serve on 0.0.0.0")
    assert "Traceback" not in run.stderr


def test_the_server_does_gradios_first_event_work_before_it_serves(tmp_path, monkeypatch):
    """Gradio wraps every event in a look at matplotlib's backend; the first imports matplotlib
    and resolves it (0.2-0.5 s that the first page waited for): ``warm_up`` does it, before the
    launch, and the page patch for links goes to the server."""
    import gradio as gr

    import ui.server

    calls: list = []

    def launch(self, **kwargs):
        calls.append(("launch", kwargs["app_kwargs"]))
        raise KeyboardInterrupt  # no server: main stops here

    monkeypatch.setattr(ui.server, "warm_up", lambda: calls.append("warm_up"))
    monkeypatch.setattr(gr.Blocks, "launch", launch)
    from ui.__main__ import main

    with pytest.raises(KeyboardInterrupt):
        main(["--db", str(tmp_path / "none.db")], environ={})
    assert calls[0] == "warm_up" and calls[1][0] == "launch"
    middleware = [m.cls.__name__ for m in calls[1][1]["middleware"]]
    assert middleware == ["GzipPages", "PagePatch"]
    code = (
        "import sys; from ui.server import warm_up; warm_up(); import matplotlib; "
        "sys.exit(matplotlib.rcParams._get_backend_or_none() is None)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_loopback_rules():
    from ui.__main__ import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("myhost.example")  # a name may resolve anywhere


# -- bad input -------------------------------------------------------------------------------


def test_missing_database_gives_reference_rows_and_a_message(tmp_path):
    from sweep.analysis.sources import Data

    data = Data.load(str(tmp_path / "nope.db"))
    assert data.measured is None and "seed_v100_a100" in data.references
    assert any("does not exist yet" in m for m in data.messages)


def test_file_that_is_not_a_database(tmp_path):
    from sweep.analysis.sources import Data

    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 200)
    data = Data.load(str(bad))
    assert data.measured is None and data.references
    assert any("is not a results database" in m for m in data.messages), data.messages


def test_empty_database(tmp_path):
    from sweep.analysis.sources import Data
    from sweep.results.store import Store

    Store(tmp_path / "empty.db").close()
    data = Data.load(str(tmp_path / "empty.db"))
    assert data.measured is None and any("is empty" in m for m in data.messages)


def test_unreadable_and_older_rows(tmp_path):
    """A row written by a newer program is left out with a message; the others are read."""
    import sqlite3

    from sweep.analysis.sources import Data

    path = make_db(tmp_path / "r.db", fixture_trials())
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE trials SET record = replace(record, '\"schema_version\": 1', "
            "'\"schema_version\": 99') WHERE rowid = 1"
        )
    data = Data.load(path)
    assert data.n_measured == len(fixture_trials()) - 1
    text = " ".join(data.messages)
    assert "1 row(s)" in text and "version 99" in text
    assert "older version of the record" in text


# -- the running app -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on 127.0.0.1 (a free port) over a database made from the fixture; every outgoing
    connection to a non-loopback address made meanwhile is recorded."""
    from ui.__main__ import serve
    from ui.app import Holder, build_app

    outbound: list = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            outbound.append(address)
        return real_connect(self, address)

    socket.socket.connect = guarded
    db = make_db(tmp_path_factory.mktemp("db") / "results.db", fixture_trials())
    holder = Holder(db)
    demo = build_app(holder, refresh_s=1.0)
    port = free_port()
    serve(demo, "127.0.0.1", port)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "holder": holder, "db": db, "outbound": outbound}
    finally:
        demo.close()
        socket.socket.connect = real_connect


def _frame(value) -> pd.DataFrame:
    value = value["value"] if "__type__" in value else value  # the answer table: with its widths
    return pd.DataFrame(value["data"], columns=value["headers"])


PLAN = 2  # the planner's outputs (note, table) come first in /render's


def _render(client, **changes):
    """Call /render with the app's defaults, changing the named inputs."""
    info = client.view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"]["/render"]["parameters"]
    from sweep.analysis.selection import FILTER_FIELDS

    names = [
        "datasets",
        *FILTER_FIELDS,  # every match and option field
        "plan_model",  # the planner, the first tab
        "plan_seq",
        "plan_tokens",
        "plan_methods",
        "plan_prices",
        "tp_metric",
        "answer_baseline",
        "gpus",
        "strict",
        "more_columns",
        "mem_metric",
        "prices",
        "target",
        "baseline",
        "search",
        "status",
    ]
    assert len(params) == len(names)
    args = [changes.get(n, p.get("parameter_default")) for n, p in zip(names, params, strict=True)]
    return client.predict(*args, api_name="/render")


def test_filters_change_the_returned_data(served):
    from gradio_client import Client

    client = Client(served["url"], verbose=False)
    more = ["Largest batch run"]  # a column beyond the primary ones, chosen
    out128 = _render(
        client, datasets=["measured"], seq_len="128", compile="False", more_columns=more
    )
    out512 = _render(client, datasets=["measured"], seq_len="512", compile="False")
    fit128, fit512 = (
        _frame(out128[PLAN + 4]).set_index("Series"),
        _frame(out512[PLAN + 4]).set_index("Series"),
    )
    # the L4 fits batch 128 at 128 tokens, only 32 at 512 (fixture: 22 GiB usable)
    assert fit128.loc["NVIDIA L4", "Largest batch that fits"] == 128
    assert fit512.loc["NVIDIA L4", "Largest batch that fits"] == 32
    # an interactive chart: Plotly's JSON, one trace per GPU, hover text with the row's figures
    chart = json.loads(out128[PLAN + 3])
    l4 = [t for t in chart["data"] if t.get("name", "").startswith("L4")][0]
    assert "GPU busy" in l4["hovertext"][0] and "step CV" in l4["hovertext"][0]
    assert out128[PLAN + 3] != out512[PLAN + 3]
    # the answer table: one row per GPU, the L4's largest batch run 128 at 128 tokens
    answer = _frame(out128[PLAN + 1]).set_index("GPU")
    assert answer.loc["L4", "Largest batch run"] == 128 and answer.index.is_unique
    table128 = _frame(out128[PLAN + 17])  # headers for people
    assert set(table128["Sequence length (tokens)"].astype(int)) == {128}
    # the CSV behind the download button holds the same rows as the table
    download = out128[PLAN + 18]
    csv = pd.read_csv(download["value"] if isinstance(download, dict) else download)
    assert len(csv) == len(table128) and set(csv["key"]) == set(table128["Key"])
    # reference rows join the same chart when switched on
    both = _render(
        client,
        datasets=["measured", "seed_v100_a100"],
        model="(any)",
        precision="(any)",
        seq_len="128",
    )
    series = set(_frame(both[PLAN + 4])["Series"])
    assert any("(ref seed-2020)" in s for s in series) and any("NVIDIA H200" in s for s in series)
    assert served["outbound"] == []


def test_the_time_breakdown_shows_cuda_graph_against_eager(served):
    # the shipped H200 rows of 2026-12-02: seed and seed-graph, side by side per batch
    from gradio_client import Client

    client = Client(served["url"], verbose=False)
    out = _render(
        client, datasets=["h200_graph"], model="roberta-base", seq_len="128", compile="False"
    )
    pairs = _frame(out[PLAN + 9]).set_index("Batch size")
    assert pairs.index.astype(int).tolist() == [1, 8, 32, 64, 128, 256]
    b8 = pairs.loc[pairs.index.astype(int) == 8].iloc[0]
    assert float(b8["Graph/eager"]) == pytest.approx(7.40, abs=0.01)  # 6.15 ms against 45.50
    assert float(b8["Graph busy %"]) >= 90 > float(b8["Eager busy %"])
    # no graphed rows in the selection: an empty table, not an error
    mine = _render(client, datasets=["measured"], seq_len="128", compile="False")
    assert _frame(mine[PLAN + 9]).empty


def test_malformed_price_gets_a_clear_message(served):
    from gradio_client import Client

    client = Client(served["url"], verbose=False)
    prices = {
        "headers": ["gpu_name_contains", "usd_per_gpu_hour", "source"],
        "data": [["H200", "five dollars", ""], ["L4", 0.8, "mine"]],
        "metadata": None,
    }
    out = _render(
        client, datasets=["measured"], seq_len="128", compile="False", prices=prices, target=1000
    )
    message = out[PLAN + 12]
    assert "'five dollars' is not a number" in message
    assert "No price for: NVIDIA A100-SXM4-80GB, NVIDIA H200" in message
    assert "Cheapest GPU reaching 1,000 tokens/s: **NVIDIA L4**" in message


def test_selecting_a_row_shows_its_command_and_environment(served):
    from sweep.analysis.table import environment
    from sweep.plan.flags import reproduce_command

    holder = served["holder"]
    row = holder.frame[
        (holder.frame["gpu"] == "NVIDIA H200") & (holder.frame["batch_size"] == 64)
    ].iloc[0]
    cmd = reproduce_command(row.to_dict())
    assert "--model bert-base-uncased" in cmd and "--batch-size 64" in cmd
    env = dict(environment(row).values.tolist())
    assert env["gpu_name"] == "NVIDIA H200" and env["torch_version"].startswith("2.11")


def test_progress_counts_follow_the_database(served):
    from gradio_client import Client

    from sweep.results.record import Trial
    from sweep.results.store import Store

    client = Client(served["url"], verbose=False)
    before, holder = _frame(client.predict(0, api_name="/progress")[1]), served["holder"]
    total = int(before.set_index("status").loc["total", "trials"])
    assert total == len(fixture_trials())
    new = Trial(
        config=fixture_trials()[0].config | {"batch_size": 3},
        status="crashed",
        sweep="live",
        error="node lost",
    )
    with Store(served["db"]) as store:
        store.put(new)
    after = _frame(client.predict(0, api_name="/progress")[1]).set_index("status")
    assert int(after.loc["total", "trials"]) == total + 1
    assert holder.data.n_measured == total + 1  # reloaded for the charts too
    assert "md" not in after.index


def test_choices_follow_results_that_arrive_after_launch(tmp_path):
    """Launched before the sweep wrote anything, the app offered only the reference rows' models,
    precisions and GPUs, and kept offering only those once results arrived: the user's model
    could not be chosen, nor their GPU as the speedup baseline. After a reload the dropdowns hold
    the new values, and the filters move to the user's rows."""
    from ui.app import Holder, build_app

    db = tmp_path / "later.db"
    holder = Holder(str(db))
    demo = build_app(holder)
    (refresh,) = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "refresh_choices"]
    make_db(db, fixture_trials())
    holder.reload()
    values = [c.value for c in refresh.inputs]
    out = dict(zip(refresh.outputs, refresh.fn(*values), strict=True))
    by_id = {c.elem_id: u for c, u in out.items() if getattr(c, "elem_id", None)}
    assert "filter-model" in by_id, "the model dropdown is not refreshed"
    models = [v for _, v in by_id["filter-model"].choices]
    assert "bert-base-uncased" in models and "roberta-large" in models
    assert by_id["filter-model"].value == "bert-base-uncased"
    assert by_id["filter-precision"].value == "bf16-mixed"
    baseline = [u for c, u in out.items() if getattr(c, "label", "") == "Baseline GPU"][0]
    assert "NVIDIA H200" in [v for _, v in baseline.choices]


def test_progress_reloads_when_rows_change_and_only_then(tmp_path):
    """The charts were reloaded when the number of stored trials differed from the number read:
    with one unreadable row that is every tick (every chart redrawn every few seconds, forever),
    and a trial run again in place (a crashed row replaced by its ok result) was never shown."""
    import sqlite3

    from sweep.results.record import Trial
    from sweep.results.store import Store
    from ui.app import Holder, build_app

    trials = fixture_trials()
    crashed = Trial(config=trials[0].config | {"batch_size": 3}, status="crashed", error="lost")
    path = make_db(tmp_path / "r.db", [*trials, crashed])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE trials SET record = replace(record, '\"schema_version\": 1', "
            "'\"schema_version\": 99') WHERE rowid = 1"
        )
    holder = Holder(path)
    demo = build_app(holder)
    (tick,) = {f.fn for f in demo.fns.values() if f.fn and f.fn.__name__ == "tick"}
    start = holder.version
    tick(start)
    tick(start)
    assert holder.version == start, "reloaded although nothing changed"
    with Store(path) as store:
        assert store.put(crashed.replace(status="ok", error=None, metrics={"tokens_per_s": 9.0}))
    tick(start)
    assert holder.version == start + 1
    row = holder.frame[holder.frame["key"] == crashed.key].iloc[0]
    assert row["status"] == "ok"


def test_a_tabs_own_widget_redraws_that_tab_only(tmp_path):
    """A tab's own widgets (throughput unit, memory metric, prices, baseline, search) redraw that
    tab's outputs from the current filters; the shared filters redraw every tab (/render)."""
    from ui.app import Holder, build_app

    holder = Holder(make_db(tmp_path / "r.db", fixture_trials()))
    demo = build_app(holder)
    redraws = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "redraw"]
    (render,) = [f for f in demo.fns.values() if f.api_name == "render"]
    own = {c._id for f in redraws for c in f.outputs}
    # every view's outputs belong to /render; those with own widgets also to their own redraw
    assert own < {c._id for c in render.outputs}
    assert all(len(f.outputs) < len(render.outputs) for f in redraws)
    (compare,) = [f for f in redraws if any(c.elem_id == "compare-plot" for c in f.outputs)]
    values = [c.value for c in compare.inputs]
    values[0] = ["measured"]
    # the compare tab's own inputs: unit, baseline, GPUs, strict, more columns
    values[-5] = "tokens_per_s"
    values[-2], values[-1] = False, []
    _note, _answer, _download, plot, fit = compare.fn(*values)
    assert "Best tokens/s" in fit.columns and len(fit)
    assert json.loads(plot)["layout"]["yaxis"]["title"]["text"] == "tokens / s"
    # the GPU choice narrows the answer table and the chart alike
    values[-3] = ["H200"]
    _note, answer, _download, plot, _fit = compare.fn(*values)
    assert answer["value"]["GPU"].tolist() == ["H200"]
    names = {t["name"] for t in json.loads(plot)["data"] if t.get("mode") == "lines+markers"}
    assert names and all(n.startswith("H200") for n in names)


def test_the_page_opens_drawn_and_a_link_is_drawn_in_one_event(tmp_path):
    """The page's configuration carries the first tab drawn for the initial selection (no round
    trip before the answer table and the chart); the page's one first event changes nothing for
    a bare link, and for a pasted link sets the link's selection and tab and draws that tab."""
    from types import SimpleNamespace

    from ui.app import Holder, build_app
    from ui.render import is_skip

    holder = Holder(make_db(tmp_path / "r.db", fixture_trials()))
    demo = build_app(holder)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    plan = by_id["plan"].value  # the first tab: the fine-tune planner
    assert plan["data"] and plan["headers"][:3] == ["Card", "Method", "Fits"]
    assert by_id["plan-model"].value in by_id["plan-note"].value
    # the answer table is drawn into the page too (a link to its tab shows it without a round
    # trip to draw it)
    assert by_id["answer-table"].value and by_id["answer-table"].value.get("data")
    (first,) = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "first_view"]
    current = [c.value for c in first.inputs]
    bare = first.fn(SimpleNamespace(query_params={}), *current)
    assert len(bare) == len(first.outputs) and all(is_skip(v) for v in bare)
    link = {"model": "bert-base-uncased", "seq_len": "512", "tab": "memory"}
    drawn = first.fn(SimpleNamespace(query_params=link), *current)
    out = dict(zip(first.outputs, drawn, strict=True))
    got = {getattr(c, "elem_id", None): v for c, v in out.items()}
    assert got["filter-model"] == "bert-base-uncased" and got["filter-seq_len"] == "512"
    assert got["tabs"].selected == 2  # the Memory tab, selected and drawn; the others left
    assert is_skip(got["plan"]) and is_skip(got["compare-plot"])
    assert not is_skip(got["memory-plot"])
    assert "seq_len 512" in json.loads(got["memory-plot"])["layout"]["title"]["text"]
    # a link naming only a tab drawn into the page selects it and draws nothing
    only_tab = first.fn(SimpleNamespace(query_params={"tab": "compare-gpus"}), *current)
    got = {getattr(c, "elem_id", None): v for c, v in zip(first.outputs, only_tab, strict=True)}
    assert got["tabs"].selected == 1 and is_skip(got["answer-table"])


def test_the_app_filters_on_every_match_and_option_field(tmp_path):
    """Task, CUDA graph and GPUs per trial among them (gpt2's causal-LM rows could not be
    chosen), each labelled from the field's metadata."""
    from sweep.plan.config import field_label, match_fields, option_fields
    from ui.app import Holder, build_app

    holder = Holder(make_db(tmp_path / "r.db", fixture_trials()))
    demo = build_app(holder)
    dropdowns = {
        b.elem_id.removeprefix("filter-"): b
        for b in demo.blocks.values()
        if (getattr(b, "elem_id", None) or "").startswith("filter-")
    }
    for name in ("task", "cuda_graph", "gpus_per_trial", *match_fields(), *option_fields()):
        assert name in dropdowns, f"no filter on {name}"
        assert dropdowns[name].label == field_label(name)
    assert "seq-cls" in [v for _, v in dropdowns["task"].choices]
