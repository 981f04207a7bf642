"""``python -m sweep fits`` (the planner on the command line) and the pooled results files
(``--data FILE``) that ``fits``, ``compare`` and the app read beside the reference rows."""

from __future__ import annotations

import pytest
from test_planner import A100, H200, MODEL, row

from sweep.analysis.sources import Data, load_data_files
from sweep.fits import UsageError, parse_methods, parse_tokens, price_table
from sweep.results.store import Store


def export_jsonl(path, trials):
    """A results file as ``export --format jsonl`` writes it: one Trial JSON per line."""
    path.write_text("".join(t.to_json() + "\n" for t in trials), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "value"),
    [("50M", 50e6), ("1.5B", 1.5e9), ("2e9", 2e9), ("500k", 5e5), ("1,000,000", 1e6), ("7", 7)],
)
def test_token_counts_parse(text, value):
    assert parse_tokens(text) == value


@pytest.mark.parametrize("text", ["5X", "-3", "0", "", "M", "nan", "1e999", "1.2.3M"])
def test_bad_token_counts_name_the_flag(text):
    with pytest.raises(UsageError, match="^--tokens: "):
        parse_tokens(text)


def test_methods_and_prices():
    assert parse_methods(None) == ["full", "lora", "qlora"]
    assert parse_methods(["qlora,lora", "lora"]) == ["qlora", "lora"]
    with pytest.raises(UsageError, match="^--method: 'dora'"):
        parse_methods(["dora"])
    table = price_table(None, ["H200=2.5", "L40S=1.1"])
    assert dict(zip(table["gpu_name_contains"], table["usd_per_gpu_hour"], strict=True)) == {
        "A100": 1.844,
        "H100": 4.916,
        "H200": 2.5,
        "L40S": 1.1,
    }
    with pytest.raises(UsageError, match="^--price: 'H200'"):
        price_table(None, ["H200"])


def test_prices_file(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("gpu,usd\nH200,3.0\n", encoding="utf-8")
    assert list(price_table(str(f), None)["usd_per_gpu_hour"]) == [3.0]
    f.write_text("gpu,usd\nH200,free\n", encoding="utf-8")
    with pytest.raises(UsageError, match="^--prices: .*not a number"):
        price_table(str(f), None)


def test_fits_prints_the_plan_from_the_database(tmp_path, capsys):
    from sweep.cli import main

    db = tmp_path / "r.db"
    with Store(db) as store:
        for b, tps in ((4, 3000.0), (8, 3200.0)):
            store.put(row(H200, b, tps, mem=30.0 + 5 * b))
    argv = ["fits", "--model", MODEL, "--seq-len", "4096", "--tokens", "50M", "--db", str(db)]
    assert main([*argv, "--no-reference", "--method", "lora"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"Fine-tuning {MODEL} on 50,000,000 tokens of 4096 tokens per sequence"
    h200 = next(x for x in lines if x.startswith("H200 "))
    assert "measured on H200" in h200 and "3,200" in h200 and "4.34" in h200  # hours
    assert "23.47" in h200  # $ = 4.34 h x $5.408
    assert main([*argv, "--no-reference", "--format", "csv", "--price", "H200=1"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("Card,Method,Fits,Known from")
    h200 = [x for x in csv if x.startswith("H200,LoRA,yes,measured on H200")]
    assert len(h200) == 1 and ",4.34,1.0,4.34," in h200[0]  # hours, $ per GPU-hour, $
    assert main([*argv, "--tokens", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --tokens: 'lots'") and err.count("\n") == 1


def test_fits_says_not_measured_without_rows(tmp_path, capsys):
    from sweep.fits import main

    argv = ["--model", MODEL, "--seq-len", "4096", "--tokens", "1B"]
    assert main([*argv, "--db", str(tmp_path / "none.db"), "--no-reference"]) == 0
    out = capsys.readouterr().out
    assert out.count("not measured") == 18 + 1 and "No training rows" in out


def test_data_files_are_data_sets_of_their_own(tmp_path, capsys):
    from sweep.fits import main

    a100 = export_jsonl(tmp_path / "team_a100.jsonl", [row(A100, 1, 900.0)])
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"not": "a trial"}\n', encoding="utf-8")
    argv = ["--model", MODEL, "--seq-len", "4096", "--tokens", "1B", "--no-reference"]
    argv += ["--db", str(tmp_path / "none.db"), "--data", a100, "--data", str(bad)]
    argv += ["--data", str(tmp_path / "missing.jsonl")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "measured on A100-SXM4-40GB" in out and "Data sets: team_a100." in out
    notes = [x for x in err.splitlines() if "left out" in x]
    assert len(notes) == 2
    assert "broken.jsonl" in notes[0] and "missing.jsonl" in notes[1]


def test_load_data_files_leaves_a_bad_file_out_whole(tmp_path):
    good = export_jsonl(tmp_path / "h200.jsonl", [row(H200, 4, 3000.0)])
    half = tmp_path / "half.jsonl"
    half.write_text(row(H200, 8, 1.0).to_json() + "\n{truncated\n", encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    frames, msgs = load_data_files([good, str(half), str(empty), str(tmp_path)], taken={"h200"})
    assert list(frames) == ["h200-2"]  # the name of a shipped reference set is taken
    assert len(frames["h200-2"]) == 1
    assert len(msgs) == 3 and all(m.startswith("--data ") for m in msgs)
    assert "half.jsonl" in msgs[0] and "line 2" in msgs[0]
    assert "no record" in msgs[1]


def test_data_holds_the_files_beside_the_references(tmp_path):
    f = export_jsonl(tmp_path / "team.jsonl", [row(A100, 1, 900.0)])
    data = Data.load(str(tmp_path / "none.db"), data_files=[f])
    assert data.datasets()[0] == "team" and len(data.datasets()) == 1 + len(data.references)
    frame = data.frame()
    assert set(frame.loc[frame["dataset"] == "team", "gpu"]) == {A100}
    none = Data.load(None, data_files=[f], references=False)
    assert none.datasets() == ["team"] and len(none.frame()) == 1


def test_compare_reads_data_files(tmp_path, capsys):
    from sweep.compare import main

    f = export_jsonl(tmp_path / "team.jsonl", [row(A100, 1, 900.0), row(A100, 2, 1000.0, mem=30.0)])
    argv = ["--model", MODEL, "--seq-len", "4096", "--db", str(tmp_path / "no.db")]
    assert main([*argv, "--no-reference", "--data", f]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("A100-SXM4-40GB") and "team" in out


def test_a_data_file_is_labelled_as_a_data_set_not_a_reference(tmp_path, capsys):
    from sweep.analysis.colors import series_gpu
    from sweep.analysis.selection import is_reference, select, series_labels
    from sweep.compare import main

    f = export_jsonl(tmp_path / "team.jsonl", [row(A100, 1, 900.0), row(A100, 2, 1000.0, mem=30.0)])
    frame = Data.load(None, data_files=[f]).frame()  # beside the shipped references
    team, shipped = frame[frame["dataset"] == "team"], frame[frame["dataset"] != "team"]
    assert set(series_labels(team)) == {f"{A100} (data team)"}  # not "(ref s)"
    assert not is_reference(team).any() and is_reference(shipped).all()  # solid, not dashed
    shipped = select(shipped, {"model": "roberta-large", "seq_len": 512})
    assert series_labels(shipped).str.contains(r" \(ref ").all()  # the shipped keep theirs
    assert series_gpu(f"{A100} (data team) · seq_len=4096") == "A100-SXM4-40GB"  # its colour
    argv = ["--model", MODEL, "--seq-len", "4096", "--db", str(tmp_path / "no.db"), "--data", f]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert any(x.startswith("A100-SXM4-40GB: data team (s)") for x in out.splitlines())
    assert "reference team" not in out
