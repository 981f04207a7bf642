"""The command line against a hostile environment: an address that is not one, a cluster with
token authentication, a stdout that cannot take the output, a grid over --max-trials. Each is one
``error:`` line and a non-zero exit, no traceback, before Ray starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cluster import ray_cluster
from sweep import cli

BIG = "name: big\naxes: {batch_size: [%s], steps: [%s]}\nfixed: {device: cpu}\n" % (
    (", ".join(str(i) for i in range(1, 401)),) * 2
)


def _sweep(*argv: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    return last


def test_an_address_that_is_not_one_is_one_error(tmp_path, capsys):
    for address in ("garbage", "http://head:8265"):
        assert cli.main(["run", "smoke", "--db", str(tmp_path / "r.db"), "--address", address]) == 2
        assert "not a Ray address" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r.db").exists()
    proc = _sweep("plan", "smoke", "--address", "garbage")  # a fresh process: no Ray yet
    assert proc.returncode == 2
    assert "--address 'garbage': not a Ray address" in _one_error_line(proc.stderr)


def test_a_cluster_that_wants_a_token_is_one_line_on_what_is_missing(monkeypatch):
    import ray._raylet
    from ray.exceptions import AuthenticationError

    class RefusingGcs:  # what the GCS of a RAY_AUTH_MODE=token head answers a driver without one
        def __init__(self, address: str, **kw):
            raise AuthenticationError("RPC error: InvalidAuthToken: token is missing")

    monkeypatch.setattr(ray._raylet, "GcsClient", RefusingGcs)
    with socket.socket() as head:  # something listens, as a head's GCS port does
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        with pytest.raises(ray_cluster.ClusterUnreachable) as err:
            ray_cluster.check_address(address)
    msg = str(err.value)
    assert "requires token authentication" in msg and "RAY_AUTH_TOKEN" in msg
    assert "\n" not in msg
    # ray.init's own form: a ConnectionError over a RuntimeError whose text names the refusal
    try:
        try:
            raise RuntimeError("Failed to connect to GCS: ... InvalidAuthToken: missing")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster") from inner
    except ConnectionError as outer:
        assert ray_cluster._auth_problem(outer)
    assert not ray_cluster._auth_problem(ConnectionError("Connection refused"))


def test_a_new_local_instance_keeps_token_auth_without_opening_on_a_warning(monkeypatch):
    import logging

    import ray
    from ray._private.authentication import authentication_token_setup as auth

    records: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = records.append
    logging.getLogger(ray_cluster.AUTH_LOGGER).addHandler(catch)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    # what ray.init does first for a new local instance, without starting one
    monkeypatch.setattr(
        auth, "_enable_token_auth", lambda: os.environ.update(RAY_AUTH_MODE="token")
    )
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: auth.enable_token_auth_by_default())
    try:
        assert ray_cluster.connect(num_cpus=1) == "local"
        assert os.environ["RAY_AUTH_MODE"] == "token"  # the protection is on
        assert not [r for r in records if ray_cluster.AUTH_ON in r.getMessage()]
        auth._warn_token_auth_disabled()  # a real alarm still gets through
        assert len(records) == 1
    finally:
        logging.getLogger(ray_cluster.AUTH_LOGGER).removeHandler(catch)
        os.environ.pop("RAY_AUTH_MODE", None)


def test_a_lost_nodes_dump_is_one_line_in_quiet_mode(monkeypatch, capsys):
    import ray._private.worker as ray_worker

    from sweep.engine import quiet

    printed = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, p: printed.append(data))
    quiet.quiet_lost_nodes()
    quiet.quiet_lost_nodes()  # once only
    dump = (
        "Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL "
        "by the user or system OOM killer, (2) ... Last 20 lines of the Raylet logs:\n"
        + "    [state-dump] NodeManager.deadline_timer.flush_free_objects - 1 total\n"
        * 20
    )
    dead = (
        "The node with node id: aed9da68818bf205c86f and address: 192.0.2.2 and node name: "
        "192.0.2.2 has been marked dead because the detector has missed too many heartbeats "
        "from it. This can happen when a \t(1) raylet crashes unexpectedly (OOM, etc.) \n"
        "\t(2) raylet has lagging heartbeats due to slow network or busy workload."
    )
    other = {"lines": ["A worker died"], "pid": "raylet", "is_err": False}
    for message in (dump, dump, dead):  # as listen_error_messages passes them: one per agent
        ray_worker.print_to_stdstream({"lines": [message], "pid": "raylet", "is_err": False}, 0)
    ray_worker.print_to_stdstream(other, False)
    out = capsys.readouterr()
    lost, marked = out.err.splitlines()
    assert out.out == ""
    assert lost.startswith("warning: a Ray node was lost (termination is unexpected; ")
    assert marked.startswith("warning: Ray marked node aed9da68818b at 192.0.2.2 dead (it missed")
    assert printed == [other]  # everything else is Ray's to print


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["status"], ["plan", "smoke", "--no-cluster"], ["export"]])
def test_a_full_stdout_is_one_error_line_and_a_non_zero_exit(tmp_path, argv):
    from sweep.results.store import Store
    from tests.test_store import make

    db = str(tmp_path / "r.db")
    with Store(db) as store:
        store.put(make())
    with open("/dev/full", "w") as full:
        proc = _sweep(*argv, "--db", db, stdout=full)
    assert proc.returncode != 0
    assert "No space left on device" in _one_error_line(proc.stderr)
    assert "Exception ignored" not in proc.stderr


def test_a_grid_over_max_trials_is_refused_by_run_and_plan_with_its_count(tmp_path, capsys):
    src = tmp_path / "big.yaml"
    src.write_text(BIG)
    db = tmp_path / "r.db"
    assert cli.main(["plan", str(src), "--no-cluster", "--db", str(db)]) == 2
    assert "plans 160,000 trials, more than --max-trials 100,000" in _one_error_line(
        capsys.readouterr().err
    )
    assert cli.main(["plan", str(src), "--no-cluster", "--max-trials", "1000"]) == 2
    assert "plans 160,000 trials, more than --max-trials 1,000" in _one_error_line(
        capsys.readouterr().err
    )
    assert cli.main(["run", str(src), "--db", str(db), "--max-trials", "1000"]) == 2
    assert "plans 160,000 trials" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["run", str(src), "--db", str(db), "--max-trials", "0"]) == 2
    assert "--max-trials: must be at least 1" in _one_error_line(capsys.readouterr().err)
    assert not db.exists()
