"""The web app with hostile conditions: a password (nothing of the data before login), a damaged
database, a bad --refresh; and rows it must not mix up (a key both in the user's rows and in a
reference set; a reference set of several sweeps)."""

from __future__ import annotations

import os
import urllib.request

import pandas as pd
import pytest

from tests.test_ui_app import fixture_trials, make_db
from ui.local import free_port

# Words of the fixture's data that a login page must not show.
DATA_WORDS = ("bert-base-uncased", "gpt2", "skipped_oom", "seed-2020", "roberta-large", "NVIDIA L4")
# (the default price list names GPU types: public, not the data)


def test_login_page_holds_no_data_and_choices_come_after_login(tmp_path):
    from ui.app import THEME, Holder, build_app

    holder = Holder(make_db(tmp_path / "r.db", fixture_trials()))
    demo = build_app(holder, refresh_s=60, private=True).queue()
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        auth=("u", "secret"),
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        theme=THEME,
    )
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
    finally:
        demo.close()
    assert '"auth_required":true' in page  # the login page, with its embedded configuration
    leaked = [w for w in DATA_WORDS if w in page]
    assert leaked == [], f"the login page shows {leaked}"
    assert str(tmp_path) not in page  # nor where the results are
    # after login, the page's first event fills every choice from the data
    (fill,) = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "after_login"]
    out = dict(zip(fill.outputs, fill.fn(*[c.value for c in fill.inputs]), strict=True))
    by_id = {getattr(c, "elem_id", None): u for c, u in out.items()}
    assert "bert-base-uncased" in [v for _, v in by_id["filter-model"].choices]
    assert by_id["filter-model"].value == "bert-base-uncased"
    assert "seed-2020" in by_id["about"]  # each reference sweep's provenance
    assert "H200" in [v for _, v in by_id["baseline"].choices]


def test_a_damaged_database_opens_with_the_reference_rows_and_says_why(tmp_path):
    from ui.app import Holder

    path = make_db(tmp_path / "r.db", fixture_trials())
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # the header stays valid; the pages after it do not
        fh.seek(4096)
        fh.write(b"\xff" * (size - 4096 - 16))
    holder = Holder(path)
    assert holder.data.measured is None and len(holder.frame) > 100  # the shipped rows
    (msg,) = holder.data.messages
    assert "r.db" in msg and "malformed" in msg and "reference rows only" in msg


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_refresh_must_be_a_positive_finite_number(value, capsys):
    from ui.__main__ import main

    assert main(["--refresh", value], environ={}) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --refresh: must be a positive number") and err.count("\n") == 1


def test_a_selected_row_is_found_by_key_and_dataset():
    from ui.tabs.table import row_by_identity

    frame = pd.DataFrame(
        {"key": ["k1", "k1"], "dataset": ["h200", "measured"], "node": ["ref-node", "mine"]}
    )
    # the cells as the Table tab shows them: headers for people
    mine = row_by_identity(frame, {"Key": "k1", "Dataset": "measured"})
    assert mine["node"] == "mine"
    ref = row_by_identity(frame, {"Key": "k1", "Dataset": "h200"})
    assert ref["node"] == "ref-node"
    assert row_by_identity(frame, {"Key": "k9", "Dataset": "h200"}) is None


def test_about_gives_each_sweep_its_own_method():
    from ui.tabs.about import provenance

    refs = {
        "h200": pd.DataFrame(
            {
                "sweep": ["seed", "seed", "families"],
                "provenance": ["3 warm-up, 10 steps", "3 warm-up, 10 steps", "5 warm-up, 20"],
            }
        )
    }
    text = provenance(refs)
    assert "**h200, sweep families** (1 rows): 5 warm-up, 20" in text
    assert "**h200, sweep seed** (2 rows): 3 warm-up, 10 steps" in text
