"""Connect to (or start) Ray, read what GPUs the cluster has, build a trial's resource request.

GPU types are Ray accelerator types: every GPU node advertises a custom resource
``accelerator_type:<T>`` (Ray detects T from the GPU name: "NVIDIA H100 80GB HBM3" -> "H100";
https://docs.ray.io/en/latest/ray-core/accelerator-types.html). A trial asks for a small fraction
of it (0.001), so any number of one-GPU trials fit on a node of that type, and the ``GPU: 1`` it
also asks for is what limits them to one per GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)

ACCELERATOR_PREFIX = "accelerator_type:"
# Requesting this fraction of a node's accelerator_type resource pins a trial to that GPU type
# without limiting how many trials the node runs (Ray's own idiom for accelerator_type).
ACCELERATOR_FRACTION = 0.001
# Ray writes the autoscaler's cluster config here on the head node of a `ray up` cluster.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"

# Environment every worker runs with: offline (no model hub), no telemetry.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class ClusterUnreachable(ConnectionError):
    """Nothing answers at the Ray address given: the message names it."""


AUTH_HELP = (
    "the Ray cluster at {address!r} requires token authentication and this driver has no "
    "token (or a wrong one): set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, "
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head prints it); "
    "https://docs.ray.io/en/latest/ray-security/token-auth.html"
)
# How long the authentication probe waits for the GCS to answer before leaving it to ray.init.
AUTH_PROBE_S = 5.0


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address, when the Ray address cannot be used: not of a form Ray
    takes, nothing listening at its "host:port" (or "ray://host:port"), or a cluster with token
    authentication that this driver has no token for. ``ray.init`` would otherwise retry for
    tens of seconds, printing only its own warnings, then raise a traceback."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or address in ("auto", "local"):
        return
    scheme, _, rest = address.rpartition("://")
    host, sep, port = rest.rpartition(":")
    if scheme not in ("", "ray") or (scheme == "" and not (sep and host and port.isdigit())):
        raise ClusterUnreachable(
            f"--address {address!r}: not a Ray address (host:port of the head, ray://host:port, "
            "auto or local)"
        )
    if not sep or not host or not port.isdigit():
        return  # ray://host: the client's default port, left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"--address {address!r}: no Ray cluster answers there ({exc}); start one with "
            "`ray up cluster.yaml` or `ray start --head`, or leave --address out for a local one"
        ) from None
    if scheme == "":
        _check_auth(address, f"{host}:{port}")


def _auth_problem(exc: BaseException | None) -> bool:
    """Whether an exception, or one in its chain, is Ray's token authentication refusing us."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _check_auth(address: str, gcs: str) -> None:
    """Ask the head's GCS for the cluster id, as ray.init does first: a cluster with token
    authentication refuses at once (ray.exceptions.AuthenticationError). The probe runs in a
    daemon thread (the client releases the GIL) and is abandoned after AUTH_PROBE_S, leaving
    other answers to ray.init; the GCS client's own warning line is kept off stderr meanwhile."""
    import threading

    try:
        from ray._raylet import GcsClient  # ray.init's first call too (ray/_private/node.py)
    except ImportError:
        return
    refused = threading.Event()

    def probe() -> None:
        try:
            GcsClient(address=gcs)
        except Exception as exc:  # refused, timed out: only a refusal of the token matters here
            if _auth_problem(exc):
                refused.set()

    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        thread = threading.Thread(target=probe, name="ray-auth-probe", daemon=True)
        thread.start()
        thread.join(AUTH_PROBE_S)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if refused.is_set():
        raise ClusterUnreachable(f"--address {address!r}: " + AUTH_HELP.format(address=address))


def runtime_env(setup_hook: str | None = None) -> dict[str, Any]:
    """The job's runtime environment: offline env vars, and ``setup_hook`` (a dotted path the
    caller names: the cluster helpers know nothing of what a trial imports) run as each worker
    process starts (``worker_process_setup_hook``)."""
    env: dict[str, Any] = {"env_vars": dict(WORKER_ENV)}
    if setup_hook:
        env["worker_process_setup_hook"] = setup_hook
    return env


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    setup_hook: str | None = None,
    log_to_driver: bool = False,
) -> str:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start a local Ray instance.

    Returns a short description ("joined ray://..." / "local"). Does nothing if Ray is already
    initialized in this process (a test fixture, a notebook): that instance is used as it is.
    """
    import ray

    # No usage statistics leave the machine (MISSION: no telemetry). Must be set before init.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return "already connected"
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_address(address)
    kwargs: dict[str, Any] = dict(
        runtime_env=runtime_env(setup_hook),
        log_to_driver=log_to_driver,
        logging_level=logging.WARNING,
        include_dashboard=False,
        configure_logging=True,
    )
    if address:
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ray.init raises ConnectionError over the refusal
            if _auth_problem(exc):
                raise ClusterUnreachable(AUTH_HELP.format(address=address)) from None
            raise
        return f"joined {address}"
    # address "local": a new instance even where another Ray runs on this machine (without it,
    # ray.init joins that one, or refuses num_cpus with a traceback)
    with _quiet_auth_default():
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    return "local"


# Ray 2.60 turns token authentication on for every new local instance when RAY_AUTH_MODE is
# unset (a token made once in ~/.ray/auth_token) and says so in a WARNING, the first line a first
# run would print (ray/_private/authentication/authentication_token_setup.py,
# enable_token_auth_by_default). The protection stays; the alarm is not printed.
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_ON = "Token authentication is enabled for this Ray cluster"


class _DropAuthOn(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(AUTH_ON)


@contextlib.contextmanager
def _quiet_auth_default():
    drop = _DropAuthOn()
    auth_log = logging.getLogger(AUTH_LOGGER)
    auth_log.addFilter(drop)
    try:
        yield
    finally:
        auth_log.removeFilter(drop)


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def gpu_types_of_nodes(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """GPU type -> number of GPUs, from ``ray.nodes()`` entries (pure, for tests)."""
    out: dict[str, int] = {}
    for node in nodes:
        _count_accelerators(node.get("Resources", {}), out)
    return out


def _count_accelerators(resources: dict, out: dict[str, int]) -> None:
    """Add a node's GPUs to ``out`` under each ``accelerator_type:<T>`` resource it declares."""
    gpus = int(resources.get("GPU", 0))
    for key in resources:
        if key.startswith(ACCELERATOR_PREFIX) and gpus:
            t = key[len(ACCELERATOR_PREFIX) :]
            out[t] = out.get(t, 0) + gpus


def autoscaler_node_resources(path: str = BOOTSTRAP_CONFIG) -> list[dict[str, Any]]:
    """The declared resources of each node type the autoscaler can start (max_workers > 0), read
    from the cluster config Ray leaves on the head node; [] without one."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return []
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read the autoscaler config %s: %s", path, exc)
        return []
    return [
        dict(node_type.get("resources") or {})
        for node_type in (config.get("available_node_types") or {}).values()
        if node_type.get("max_workers", config.get("max_workers", 0))
    ]


def autoscaler_gpu_types(path: str = BOOTSTRAP_CONFIG) -> dict[str, int]:
    """GPU types the autoscaler can start. A cluster that scales from zero has no GPU node
    yet, but its types are not missing: trials for them wait for the autoscaler."""
    out: dict[str, int] = {}
    for resources in autoscaler_node_resources(path):
        _count_accelerators(resources, out)
    return out


def most_cpus_of_a_node(
    nodes: list[dict[str, Any]], node_types: list[dict[str, Any]], gpu: bool
) -> float | None:
    """The most CPUs one node offers (a node with a GPU where ``gpu``), over the running nodes
    (``ray.nodes()`` entries) and the node types the autoscaler can add (their declared
    resources; one that declares CPUs but no GPUs is taken as a CPU node). None where that is not
    known: an autoscaler type that does not declare its CPUs (Ray fills them in from the instance
    type when it starts one). Pure, for tests."""
    most = 0.0
    for node in nodes:  # ray.nodes() leaves out resources a node has none of
        resources = node.get("Resources", {})
        if not gpu or resources.get("GPU", 0) > 0:
            most = max(most, float(resources.get("CPU", 0)))
    for resources in node_types:
        if "CPU" not in resources:
            return None  # a type that does not declare its CPUs might be large enough
        if not gpu or resources.get("GPU", 0) > 0:  # declared without GPUs: a CPU node
            most = max(most, float(resources["CPU"]))
    return most


def most_cpus_per_trial(gpu: bool) -> float | None:
    """The most CPUs a trial can reserve on this cluster (with a GPU where ``gpu``); see
    most_cpus_of_a_node."""
    return most_cpus_of_a_node(_alive_nodes(), autoscaler_node_resources(), gpu)


def gpu_types() -> dict[str, int]:
    """GPU type -> GPUs the cluster has now, plus the types its autoscaler can add (count 0 when
    none is running yet)."""
    now = gpu_types_of_nodes(_alive_nodes())
    for t in autoscaler_gpu_types():
        now.setdefault(t, 0)
    return now


def capacity(cpus_per_trial: int):
    """What the live nodes can run at once now (cluster.placement.Capacity)."""
    from cluster.placement import capacity_of_nodes

    return capacity_of_nodes(_alive_nodes(), cpus_per_trial, set(autoscaler_gpu_types()))


def total_gpus() -> int:
    """GPUs in the cluster now (any type), plus 1 if the autoscaler can add GPU nodes."""
    import ray

    n = int(ray.cluster_resources().get("GPU", 0))
    return n if n or not autoscaler_gpu_types() else 1


def free_gpus() -> dict[str, float]:
    """Free GPUs now: {"GPU": all free GPUs, "<type>": free GPUs on nodes of that type}.

    Per-node availability has no public API in Ray 2.60 besides the state API (which needs the
    dashboard, off here), so this reads ray._private.state; it is only used for display.
    """
    import ray

    out: dict[str, float] = {"GPU": float(ray.available_resources().get("GPU", 0))}
    try:
        from ray._private.state import available_resources_per_node

        per_node = available_resources_per_node()
    except Exception:  # a private API: degrade to the total only
        return out
    for node in _alive_nodes():
        free = per_node.get(node["NodeID"], {})
        for key in node.get("Resources", {}):
            if key.startswith(ACCELERATOR_PREFIX):
                t = key[len(ACCELERATOR_PREFIX) :]
                out[t] = out.get(t, 0.0) + float(free.get("GPU", 0))
    return out


def resource_request(gpu: bool, gpu_type: str | None = None, cpus: int = 1, gpus: int = 1):
    """The placement group of one trial: ``cpus`` CPUs, plus one GPU (of ``gpu_type`` if given).
    An N-GPU trial (``gpus`` > 1) asks for N GPUs and ``cpus`` per GPU (one rank process per
    GPU) in ONE bundle: Ray places a bundle on a single node, and the trainable (the bundle's
    owner) sees all N GPUs; STRICT_PACK says the same for the group."""
    from ray.tune import PlacementGroupFactory

    bundle: dict[str, float] = {"CPU": float(cpus * gpus)}
    if gpu:
        bundle["GPU"] = float(gpus)
        if gpu_type:
            bundle[ACCELERATOR_PREFIX + gpu_type] = ACCELERATOR_FRACTION
    return PlacementGroupFactory([bundle], strategy="STRICT_PACK")


def max_gpus_per_node() -> dict:
    """The most GPUs one live node has, per GPU type and (None) of any type."""
    from cluster.placement import max_gpus_per_node as of_nodes

    return of_nodes(_alive_nodes())


def describe() -> str:
    """One line: nodes, CPUs, GPUs by type."""
    import ray

    res = ray.cluster_resources()
    types = gpu_types()
    by_type = ", ".join(f"{n} {t}" for t, n in sorted(types.items())) or "no GPU"
    return (
        f"{len(_alive_nodes())} node(s), {int(res.get('CPU', 0))} CPU, "
        f"{int(res.get('GPU', 0))} GPU ({by_type})"
    )
