"""Sweep files that try to eat the machine or mislead: each is one bounded error, fast, in little
memory, before anything is expanded or scheduled. Pure, no Ray instance."""

from __future__ import annotations

import os
import resource
import time

import pytest

from sweep.plan import sweepfile, yamlsafe
from sweep.plan.config import TrialConfig, excerpt
from sweep.plan.grid import planned_count
from sweep.plan.sweepfile import SweepFileError, parse


def _bomb(depth: int, key: str = "model") -> str:
    """The classic billion-laughs file: each anchor is nine aliases of the one before."""
    lines = ["name: bomb", "axes:", f"  {key}: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += ["fixed:"]
    for i in range(1, depth + 1):
        lines.append(f"  x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_anchor_bomb_of_depth_nine_fails_fast_in_bounded_memory():
    text = _bomb(9)
    assert len(text) < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(SweepFileError) as err:
        parse(text, origin="sweep file 'bomb.yaml'")
    assert time.perf_counter() - t0 < 2
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000  # 9**9 values expanded would be gigabytes
    msg = str(err.value)
    assert "aliases are expanded" in msg and len(msg) < 300


def _nested_bomb(depth: int) -> str:
    """One flow value whose anchors sit inside it: 9 ** (depth + 1) integers once expanded."""
    value = "&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for i in range(1, depth + 1):
        value = f"&a{i} [{value}, " + ", ".join([f"*a{i - 1}"] * 8) + "]"
    return value


def test_a_bomb_under_the_size_bound_is_quoted_as_an_excerpt():
    text = f"name: b\nfixed:\n  seed: {_nested_bomb(4)}\n"  # 59,049 values: under the bound
    assert len(text) < 1000
    with pytest.raises(SweepFileError) as err:
        parse(text)
    msg = str(err.value)
    assert "fixed.seed: expected one value" in msg and len(msg) < 300, len(msg)
    with pytest.raises(SweepFileError, match="aliases are expanded"):
        parse(f"name: b\nfixed:\n  seed: {_nested_bomb(6)}\n")


def test_a_recursive_alias_is_refused():
    with pytest.raises(SweepFileError, match="recursive"):
        parse("name: r\naxes: &a {model: [*a]}\n")


def test_a_key_given_twice_is_refused_naming_it():
    with pytest.raises(SweepFileError, match=r"line 4: key 'model' is given twice"):
        parse("name: d\naxes:\n  model: [bert-tiny]\n  model: [bert-mini]\n")
    with pytest.raises(SweepFileError, match=r"key 'name' is given twice"):
        parse("name: a\nname: b\n")
    # a merge key may still override what it merges (that is what << is for)
    spec = parse(
        "name: m\naxes: [&b {model: [bert-tiny], seq_len: [64]}, {<<: *b, seq_len: [32]}]\n"
    )
    assert [g["seq_len"] for g in spec.axes] == [[64], [32]]


def test_huge_values_are_quoted_as_short_excerpts():
    long = "x" * 200_000
    for text in (
        f"name: x\naxes: {{model: ['{long}']}}\n",
        f"name: x\nfixed: {{precision: '{long}'}}\n",
        f"name: x\nmode: '{long}'\n",
        f"name: '!{long}'\n",
        f"name: x\n'{long}': 1\n",
    ):
        with pytest.raises(SweepFileError) as err:
            parse(text)
        assert len(str(err.value)) < 600, str(err.value)[:200]
    assert len(excerpt([[["x" * 10**6] * 10] * 10] * 10)) < 80


def test_a_grid_over_max_trials_is_refused_with_its_count_before_expansion():
    values = ", ".join(str(i) for i in range(1, 101))
    text = f"name: big\naxes: {{batch_size: [{values}], steps: [{values}], seed: [{values}]}}\n"
    t0 = time.perf_counter()
    with pytest.raises(SweepFileError) as err:
        parse(text)
    assert time.perf_counter() - t0 < 1
    assert "plans 1,000,000 trials, more than --max-trials 100,000" in str(err.value)
    with pytest.raises(SweepFileError, match="plans 1,000,000 trials, more than --max-trials 10"):
        parse(text, max_trials=10)
    small = parse("name: s\naxes: {batch_size: [1, 2], seq_len: [8, 16]}\nrepeats: 3\n")
    assert planned_count(small) == 12
    with pytest.raises(SweepFileError, match="plans 12 trials, more than --max-trials 11"):
        parse("name: s\naxes: {batch_size: [1, 2], seq_len: [8, 16]}\nrepeats: 3\n", max_trials=11)


def test_repeats_seed_and_causal_lm_of_one_token_are_refused_at_validation():
    with pytest.raises(SweepFileError, match="repeats: must be at most 1000, got 10000000"):
        parse("name: x\nrepeats: 10000000\n")
    with pytest.raises(SweepFileError, match=r"seed: must be between 0 and \d+"):
        parse("name: x\nfixed: {seed: 100000000000000000000}\n")
    with pytest.raises(ValueError, match="seed"):
        TrialConfig(seed=-1)
    TrialConfig(seed=2**63 - 1)  # the largest kept exactly by every stage
    with pytest.raises(SweepFileError, match="seq_len: causal-lm needs at least 2 tokens"):
        parse("name: x\nfixed: {model: gpt2-tiny, task: causal-lm, seq_len: 1}\n")
    TrialConfig(model="gpt2-tiny", task="causal-lm", seq_len=2)
    TrialConfig(model="bert-tiny", seq_len=1)  # one token still classifies


def test_a_directory_a_fifo_and_a_large_file_say_what_they_are(tmp_path, monkeypatch):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    with pytest.raises(SweepFileError, match="is a directory, not a file"):
        sweepfile.load(str(d))
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(SweepFileError, match=r"is a FIFO \(named pipe\), not a file"):
        sweepfile.load(str(fifo))  # opening it would block until a writer came
    assert time.perf_counter() - t0 < 1
    big = tmp_path / "big.yaml"
    with open(big, "w") as fh:
        fh.write("name: big\ndescription: '")
        fh.write("x" * (yamlsafe.MAX_FILE_BYTES + 10))
        fh.write("'\n")
    with pytest.raises(SweepFileError, match="bytes, more than a sweep file may be"):
        sweepfile.load(str(big))
    with pytest.raises(SweepFileError, match="does not exist"):
        sweepfile.load(str(tmp_path / "none.yaml"))
    os.mkfifo(tmp_path / "pipe")  # no .yaml, no directory part: still a path, not a preset
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SweepFileError, match=r"sweep file 'pipe' is a FIFO"):
        sweepfile.load("pipe")
