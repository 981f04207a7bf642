"""The command line's flag handling (no Ray, no torch: plan --no-cluster, status)."""

import subprocess
import sys

from sweep.plan.config import TrialConfig
from sweep.results.record import Trial, flatten
from sweep.results.store import Store


def _sweep(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_db_flag_works_before_and_after_the_subcommand(tmp_path):
    db = tmp_path / "mine.db"
    with Store(db) as store:
        store.put(Trial(config=TrialConfig(device="cpu").to_dict(), status="ok", sweep="s"))
    before = _sweep("--db", str(db), "status", cwd=tmp_path)
    after = _sweep("status", "--db", str(db), cwd=tmp_path)
    for out in (before, after):
        assert out.returncode == 0, out.stderr
        assert "mine.db: 1 trials" in out.stdout
    assert not (tmp_path / "results.db").exists()  # the default was not used behind our back


def test_status_says_what_a_running_sweep_planned_and_runs(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.put(Trial(config=TrialConfig(device="cpu").to_dict(), status="ok", sweep="s"))
        store.put_plan("s", 6)
        store.set_running("s", 2)
        store.put_plan("next", None)  # a max-batch search: nothing planned in advance, none yet
    out = _sweep("status", "--db", str(db), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  s: 1 (ok 1) of 6 planned, 2 running (as of " in out.stdout
    assert "  next: 0\n" in out.stdout + "\n" and "next: 0 of" not in out.stdout


def test_engine_made_cpu_rows_are_labelled_cpu():
    row = flatten(Trial(config=TrialConfig(device="cpu").to_dict(), status="skipped_oom"))
    assert row["gpu"] == "cpu"
    row = flatten(
        Trial(config=TrialConfig(device="cuda").to_dict(), status="crashed", gpu_type="A100")
    )
    assert row["gpu"] == "A100"


def test_export_to_a_path_that_cannot_be_written_is_one_clear_error(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.put(Trial(config=TrialConfig(device="cpu").to_dict(), status="ok", sweep="s"))
    for fmt in ("csv", "jsonl", "parquet"):
        out = _sweep(
            "export",
            "--db",
            str(db),
            "--format",
            fmt,
            "-o",
            str(tmp_path / "no" / "x"),
            cwd=tmp_path,
        )
        assert out.returncode == 2, (fmt, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("error: ") and "no/x" in out.stderr


def test_an_address_where_no_cluster_answers_is_one_clear_error(tmp_path):
    # ray.init retried for minutes, printing only its own warnings
    for args in (("plan", "smoke"), ("run", "smoke"), ()):
        out = _sweep(
            *args, "--address", "127.0.0.1:9", "--db", str(tmp_path / "r.db"), cwd=tmp_path
        )
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("error: --address '127.0.0.1:9': no Ray cluster answers")
    assert not (tmp_path / "r.db").exists()  # refused before the database


def test_num_cpus_below_one_trial_is_refused_before_ray(tmp_path):
    # 0 CPUs: no trial could ever be scheduled and the sweep waited forever; negative: a traceback
    for n in ("0", "-2"):
        out = _sweep("run", "smoke", "--num-cpus", n, "--db", str(tmp_path / "r.db"), cwd=tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        assert out.stderr.startswith("error: --num-cpus: must be at least 1")
    assert not (tmp_path / "r.db").exists()


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    # `python -m sweep plan seed | head` printed a BrokenPipeError traceback after head exited
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", "presets"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    proc.stdout.close()  # before the command has imported anything, let alone printed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch):
    import argparse

    import pytest

    from sweep import cli

    def fails(args):
        raise BrokenPipeError("a socket, not stdout")

    parser = cli.build_parser()
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: argparse.Namespace(func=fails))
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(BrokenPipeError):  # stdout (pytest's capture) is still open
        cli.main([])


def test_reproduce_command_parses_back_to_its_config():
    """parse(command(c)) == c: every field the trial parser reads comes back as given (a flag
    renamed or a value printed in a form the parser refuses would change what is run again)."""
    import dataclasses
    import shlex

    from sweep.cli import build_parser
    from sweep.plan.flags import reproduce_command

    def parsed(command: str) -> dict:
        words = shlex.split(command)
        assert words[:4] == ["python", "-m", "sweep", "trial"]
        args = build_parser().parse_args(words[3:])
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrialConfig)}

    configs = [
        TrialConfig().to_dict(),
        TrialConfig(
            model="roberta-large",
            task="seq-cls",
            batch_size=256,
            seq_len=512,
            precision="bf16-mixed",
            attention="eager",
            compile=True,
            optimizer="adamw",
            gradient_checkpointing=True,
            harness="lightning",
            warmup_steps=5,
            steps=20,
            min_measure_s=2.5,
            device="cuda",
            seed=7,
        ).to_dict(),
        TrialConfig(mode="inference", precision="fp16-mixed", min_measure_s=0.1).to_dict(),
        # a config.json path with a space and a quote: quoted, read back whole (the parser does
        # not open it; TrialConfig would)
        TrialConfig(device="cpu").to_dict() | {"model": "/data/my models/o'brien/config.json"},
    ]
    for c in configs:
        assert parsed(reproduce_command(c)) == c
    # A frame row: numbers as floats, booleans as text, a missing field as NaN (its default).
    row = configs[1] | {"batch_size": 256.0, "compile": "True", "seed": float("nan")}
    assert parsed(reproduce_command(row)) == configs[1] | {"seed": TrialConfig().seed}


def test_engine_flags_take_their_defaults_and_help_from_engine_options():
    import dataclasses

    from sweep.cli import _options, build_parser
    from sweep.engine.options import EngineOptions

    parser = build_parser()
    assert _options(parser.parse_args(["run", "smoke"])) == EngineOptions()
    assert not _options(parser.parse_args(["--no-isolate", "run", "smoke"])).isolate
    run = parser._subparsers._group_actions[0].choices["run"]
    help_text = "".join(run.format_help().split())  # argparse wraps lines, at hyphens too
    for f in dataclasses.fields(EngineOptions):
        if f.name not in ("trial_fn", "kill_grace_s", "storage_path"):  # no (visible) flag
            text = f.metadata["off_help"] if f.default is True else f.metadata["help"]
            assert "".join(text.split()) in help_text, f.name
    assert "(default:120)" in help_text and "(default:results.db)" in help_text


def test_engine_options_refuse_a_bad_value_naming_the_field():
    import pytest

    from sweep.engine.options import EngineOptions, OptionError

    for kw, needle in [
        ({"retries": -1}, "retries: must be >= 0, got -1"),
        ({"retries": True}, "retries: must be >= 0"),
        ({"node_wait_s": float("inf")}, "node_wait_s: must be a finite number >= 0"),
        ({"kill_grace_s": 0}, "kill_grace_s: must be a finite number > 0"),
        ({"num_cpus": 0}, "num_cpus: must be at least 1, got 0"),
        ({"trial_fn": ""}, 'trial_fn: expected "module:function"'),
    ]:
        with pytest.raises(OptionError, match=needle.replace("(", r"\(")) as err:
            EngineOptions(**kw)
        assert err.value.field == next(iter(kw))


def test_help_of_every_command_prints_the_fields_text_not_argparse_internals():
    # "a few % slower" in the allocator field's help made argparse print its own internals
    for command in ("trial", "compare"):
        out = subprocess.run(
            [sys.executable, "-m", "sweep", command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        text = " ".join(out.stdout.split())
        assert "few % slower" in text and "option_strings" not in text, command
