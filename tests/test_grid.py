"""Sweep files, presets, grid expansion and the searcher's decisions: pure, no Ray instance."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sweep.plan import sweepfile
from sweep.plan.grid import SweepSpec, expand, groups
from sweep.plan.sweepfile import SweepFileError, parse
from sweep.results.record import trial_key

GOOD = """
name: bert-cpu
axes:
  model: [bert-tiny, bert-mini]
  batch_size: [8, 32]
  seq_len: [128]
fixed:
  precision: fp32
  device: cpu
gpu_types: []
repeats: 2
timeout_s: 600
"""


def test_expansion_is_the_product_in_a_deterministic_order():
    spec = parse(GOOD)
    planned = expand(spec)
    assert len(planned) == 2 * 2 * 1 * 2
    got = [(t.config.model, t.config.batch_size, t.repeat) for t in planned]
    assert got == [
        ("bert-tiny", 8, 0),
        ("bert-tiny", 8, 1),
        ("bert-tiny", 32, 0),
        ("bert-tiny", 32, 1),
        ("bert-mini", 8, 0),
        ("bert-mini", 8, 1),
        ("bert-mini", 32, 0),
        ("bert-mini", 32, 1),
    ]
    assert all(t.config.precision == "fp32" and t.config.device == "cpu" for t in planned)
    # keys: stable, distinct per repeat, the record module's own hash
    assert [t.key for t in planned] == [t.key for t in expand(parse(GOOD))]
    assert len({t.key for t in planned}) == 8
    assert planned[0].key == trial_key(planned[0].config.to_dict(), None, 0)


def test_gpu_types_multiply_and_groups_sort_by_batch():
    spec = parse(
        """
axes: {batch_size: [64, 8, 32], model: [bert-tiny]}
fixed: {device: cuda}
gpu_types: [V100, A100]
""",
        default_name="g",
    )
    planned = expand(spec)
    assert [t.gpu_type for t in planned] == ["V100"] * 3 + ["A100"] * 3
    gs = groups(planned)
    assert len(gs) == 2  # one per GPU type
    for members in gs.values():
        assert [t.config.batch_size for t in members] == [8, 32, 64]


def test_sub_grids_are_a_union_without_duplicates():
    spec = parse("""
name: u
axes:
  - {model: [bert-tiny], seq_len: [128, 512]}
  - {model: [gpt2-tiny], seq_len: [128, 1024]}
  - {model: [bert-tiny], seq_len: [128]}
fixed: {device: cpu}
""")
    got = [(t.config.model, t.config.seq_len) for t in expand(spec)]
    assert got == [("bert-tiny", 128), ("bert-tiny", 512), ("gpt2-tiny", 128), ("gpt2-tiny", 1024)]


def test_every_preset_loads_and_seed_is_the_original_grid():
    names = sweepfile.preset_names()
    assert {"smoke", "seed", "seed-fp16", "families", "llama", "max-batch"} <= set(names)
    for name in names:
        assert expand(sweepfile.load(name))
    seed = expand(sweepfile.load("seed"))
    assert len(seed) == 3 * 6 * 3
    assert {t.config.model for t in seed} == {"distilroberta-base", "roberta-base", "roberta-large"}
    assert {t.config.batch_size for t in seed} == {1, 8, 32, 64, 128, 256}
    assert {t.config.seq_len for t in seed} == {128, 256, 512}
    assert {t.config.precision for t in seed} == {"bf16-mixed"}
    assert {t.config.precision for t in expand(sweepfile.load("seed-fp16"))} == {"fp16-mixed"}
    smoke = expand(sweepfile.load("smoke"))
    assert all(t.config.device == "cpu" and t.config.model.endswith("-tiny") for t in smoke)
    fam = expand(sweepfile.load("families"))
    assert max(t.config.seq_len for t in fam if t.config.model.startswith("bert")) == 512
    assert max(t.config.seq_len for t in fam if t.config.model == "gpt2") == 1024


@pytest.mark.parametrize(
    "text, needle",
    [
        ("axes: [model: bert-tiny", "does not parse as YAML"),
        ("- just\n- a list", "expected a mapping"),
        ("name: x\naxes: {batch_size: [8]}\nbogus: 1", "unknown key(s) bogus"),
        ("name: x\naxes: {batchsize: [8]}", "unknown field 'batchsize'; known: model"),
        ("name: x\nfixed: {colour: red}", "unknown field 'colour'"),
        ("name: x\naxes: {batch_size: []}", "axes.batch_size: is empty"),
        ("name: x\naxes: {batch_size: 8}", "axes.batch_size: expected a list"),
        ("name: x\naxes: {batch_size: [8, '32']}", "batch_size: expected an integer, got '32'"),
        ("name: x\naxes: {batch_size: [8, -1]}", "batch_size=-1"),
        ("name: x\naxes: {model: [bert-tiny, bert-giant]}", "unknown model 'bert-giant'"),
        ("name: x\naxes: {precision: [fp8]}", "axes.precision: 'fp8' is not one of"),
        ("name: x\naxes: {compile: [maybe]}", "compile"),
        ("name: x\naxes: {seq_len: [2048]}", "seq_len: 2048 is longer than bert-tiny supports"),
        ("name: x\ntimeout_s: -5", "timeout_s: must be positive, got -5"),
        ("name: x\ntimeout_s: soon", "timeout_s: expected a number"),
        ("name: x\ntimeout_s: .inf", "timeout_s: must be at most 604800"),
        ("name: x\ntimeout_s: 1.0e+9", "timeout_s: must be at most 604800"),
        ("name: x\nfixed: {min_measure_s: .inf}", "min_measure_s: must be a finite number"),
        ("name: x\nfixed: {min_measure_s: .nan}", "min_measure_s: must be a finite number"),
        ("name: x\nrepeats: 0", "repeats: must be at least 1"),
        ("name: x\nrepeats: 1.5", "repeats: expected an integer"),
        ("name: x\ngpu_types: A100", "gpu_types: expected a list"),
        ("name: x\ngpu_types: [A100, A100]", "lists a type twice"),
        ("name: x\nmode: random", "mode: 'random' is not one of grid, max-batch"),
        ("name: x\nmode: max-batch\naxes: {batch_size: [8]}", "batch size is searched"),
        ("name: x\naxes: {batch_size: [8]}\nfixed: {batch_size: 4}", "given both"),
        ("name: x\nfixed: {device: cpu}\ngpu_types: [A100]", "device is cpu"),
        ("name: 'bad name!'", "name:"),
        ("name: x\nfixed: {seq_len: [1, 2]}", "put lists under axes"),
    ],
)
def test_bad_sweep_file_is_one_clear_error(text, needle):
    with pytest.raises(SweepFileError) as err:
        parse(text, origin="sweep file 'bad.yaml'")
    msg = str(err.value)
    assert msg.startswith("sweep file 'bad.yaml': ")
    assert needle in msg, msg


def test_a_sweep_file_takes_the_specs_own_defaults():
    assert parse("name: x") == SweepSpec("x")
    spec = SweepSpec("x", axes={"batch_size": [8]}, gpu_types=["A100"], timeout_s=5)
    assert spec.axes == ({"batch_size": [8]},) and spec.gpu_types == ("A100",)
    assert spec.timeout_s == 5.0 and isinstance(spec.timeout_s, float)
    assert SweepSpec("x", mode="max-batch").fixed == {"batch_size": 1}  # the first batch


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"name": "a b"}, "name: expected a name"),
        ({"mode": "random"}, "mode: 'random' is not one of grid, max-batch"),
        ({"repeats": 0}, "repeats: must be at least 1, got 0"),
        ({"cpus_per_trial": 1.5}, "cpus_per_trial: expected an integer"),
        ({"batch_tolerance": 1.0}, "batch_tolerance: must be at least 0 and below 1"),
        ({"timeout_s": float("nan")}, "timeout_s: must be positive"),
        ({"axes": ({"batch_size": [8]}, {"colour": [1]})}, "axes[1]: unknown field 'colour'"),
        ({"fixed": {"seq_len": [1]}}, "fixed.seq_len: expected one value"),
        ({"pin_cpus": "yes"}, "pin_cpus: expected true or false"),
        ({"mode": "max-batch", "batch_limit": 4, "fixed": {"batch_size": 8}}, "batch_limit: 4"),
        ({"interference": {"model": "bert-tiny"}, "mode": "max-batch"}, "grid mode only"),
    ],
)
def test_a_sweep_spec_refuses_a_bad_field_naming_it(kwargs, needle):
    kwargs = {"name": "x", **kwargs}
    with pytest.raises(ValueError) as err:
        SweepSpec(**kwargs)
    assert needle in str(err.value)


def test_combination_error_names_the_combination():
    with pytest.raises(SweepFileError, match=r"combination \(model='bert-tiny', seq_len=1024\)"):
        parse("name: x\naxes: {model: [gpt2-tiny, bert-tiny], seq_len: [128, 1024]}")


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(SweepFileError, match="unknown preset 'seeed'; presets: .*seed"):
        sweepfile.load("seeed")
    with pytest.raises(SweepFileError, match="does not exist"):
        sweepfile.load(str(tmp_path / "nope.yaml"))
    f = tmp_path / "mine.yaml"
    f.write_text("axes: {batch_size: [1]}\nfixed: {device: cpu}\n")
    assert sweepfile.load(str(f)).name == "mine"  # the file name when the file has none


def test_cli_bad_input_exits_2_and_leaves_no_database(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\naxes: {model: [nope]}\n")
    db = tmp_path / "r.db"
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(bad), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: sweep file")
    assert "unknown model 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists()  # untouched: validation comes before the database
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "run", "smoke", "--db", str(tmp_path / "no" / "dir.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "ray" not in proc.stderr.lower()  # refused before Ray started


# -- the searcher's decisions, driven by hand (no Ray instance: Tune calls these methods) -----


class _Progress:
    def __init__(self):
        self.already = 0
        self.added = []

    def add(self, status, ran):
        self.added.append(status)


def _searcher(text, stored=None, rerun=False):
    from tests.engine_helpers import make_searcher

    spec = parse(text, default_name="s")
    written = []
    s = make_searcher(spec, stored, rerun, written.append, _Progress())
    return s, written


def _drive(searcher, outcome):
    """Run the searcher to the end: outcome(batch) -> status. Returns the batches handed out."""
    from ray.tune.search import Searcher

    ran, n = [], 0
    while True:
        n += 1
        cfg = searcher.suggest(f"t{n}")
        if cfg == Searcher.FINISHED:
            return ran
        assert cfg is not None, "nothing in flight, so the searcher must hand out or finish"
        batch = cfg["config"]["batch_size"]
        ran.append(batch)
        searcher.on_trial_complete(f"t{n}", {"status": outcome(batch)})


@pytest.mark.parametrize(
    "limit, start, cap, expected",
    [
        (5, 4, 64, 5),
        (64, 8, 4096, 64),
        (100, 1, 4096, 100),
        (0, 8, 4096, 0),
        (4096, 8, 4096, 4096),
        (3, 1, 2, 2),
        (1, 1, 4096, 1),
    ],
)
def test_max_batch_search_finds_the_exact_limit(limit, start, cap, expected):
    s, _ = _searcher(f"""
mode: max-batch
fixed: {{device: cpu, batch_size: {start}}}
batch_limit: {cap}
""")
    ran = _drive(s, lambda b: "ok" if b <= limit else "oom")
    assert len(ran) == len(set(ran))  # no batch probed twice
    assert s.answers() and s.answers()[-1][1] == expected
    assert len(ran) <= 2 * 13 + 1  # doubling then bisection: logarithmic


def test_grid_prunes_after_oom_including_the_same_batch_of_later_repeats():
    s, written = _searcher("""
axes: {batch_size: [8, 16, 32, 64]}
fixed: {device: cpu}
repeats: 2
""")
    ran = _drive(s, lambda b: "ok" if b <= 16 else "oom")
    assert ran == [8, 8, 16, 16, 32]  # one at a time, ascending; stops at the first OOM
    assert sorted((t.config["batch_size"], t.repeat) for t in written) == [
        (32, 1),
        (64, 0),
        (64, 1),
    ]
    assert {t.status for t in written} == {"skipped_oom"}


def test_resume_skips_stored_keys_and_a_stored_oom_still_prunes():
    text = "axes: {batch_size: [8, 16, 32, 64]}\nfixed: {device: cpu}\n"
    spec = parse(text, default_name="s")
    key = {t.config.batch_size: t.key for t in expand(spec)}
    stored = {key[8]: "ok", key[32]: "oom", key[16]: "crashed"}  # crashed is not final
    s, written = _searcher(text, stored)
    ran = _drive(s, lambda b: "ok")
    assert ran == [16]
    assert [t.config["batch_size"] for t in written] == [64]
    s, written = _searcher(text, stored, rerun=True)
    assert _drive(s, lambda b: "ok") == [8, 16, 32, 64] and written == []


def test_engine_module_does_not_import_torch_or_gradio():
    code = (
        "import sys, sweep.engine.run, sweep.cli, cluster.ray_cluster; "
        "bad = [m for m in ('torch', 'transformers', 'gradio') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_seed_graph_and_seed_2020_presets():
    def shape(name):
        return sorted(
            (t.config.model, t.config.batch_size, t.config.seq_len)
            for t in expand(sweepfile.load(name))
        )

    seed = {t.key: t.config for t in expand(sweepfile.load("seed"))}
    graph = expand(sweepfile.load("seed-graph"))
    # the same grid, only the step captured: each config is seed's with cuda_graph true
    assert shape("seed-graph") == shape("seed") == shape("seed-2020")
    assert {t.config.replace(cuda_graph=False) for t in graph} == set(seed.values())
    assert not {t.key for t in graph} & set(seed)
    old = expand(sweepfile.load("seed-2020"))
    assert {
        (t.config.precision, t.config.attention, t.config.harness, t.config.optimizer) for t in old
    } == {("fp16-mixed", "eager", "lightning", "adamw-fused")}
    assert "apex" in sweepfile.load("seed-2020").description
