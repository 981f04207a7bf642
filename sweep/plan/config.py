"""The configuration of one trial: a frozen dataclass that validates itself.

Every field is something a user can sweep. Validation happens in ``__post_init__`` and raises
``ValueError`` naming the field and the allowed values, before any model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sweep.plan.catalog import DECODER, get_spec

TASKS = ("seq-cls", "causal-lm")
MODES = ("train", "inference")
# bf16-true: weights, gradients and optimizer state in bf16, no fp32 master copy (torchtune's and
# LLaMA-Factory's pure_bf16); *-mixed: fp32 weights under autocast.
PRECISIONS = ("fp32", "tf32", "fp16-mixed", "bf16-mixed", "bf16-true")
ATTENTIONS = ("sdpa", "eager", "flash_attention_2")
# adamw-8bit / paged-adamw-8bit: bitsandbytes' block-wise 8-bit AdamW (the paged one keeps its
# state in CUDA unified memory, which the driver can page out to the host).
OPTIMIZERS = ("adamw", "adamw-fused", "apex-fused-adam", "adamw-8bit", "paged-adamw-8bit")
# full: every weight trains; lora: low-rank adapters over a frozen base (peft); qlora: the same
# over a base whose linear layers are 4-bit NF4 (bitsandbytes), computed in bf16.
FINETUNES = ("full", "lora", "qlora")
# all-linear: every linear layer of the transformer blocks (peft's "all-linear": not the output
# head); attention: the attention projections only (q, k, v, o).
LORA_TARGETS = ("all-linear", "attention")
MAX_LORA_RANK = 4096
# default: PyTorch's caching allocator as it starts; expandable: with expandable_segments:True
# (segments grow in place: less fragmentation near the limit, a little slower:
# sweep/trial/allocator.py)
ALLOCATORS = ("default", "expandable")
HARNESSES = ("native", "lightning")
DEVICES = ("auto", "cuda", "cpu")
# torch.compile modes (torch.compile's ``mode``). ``compile: true`` is the default mode; the name
# "default" is normalised to true, so that a stored ``compile: true`` keeps its meaning and key.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# compile modes that replay CUDA graphs of their own (torch's cudagraph trees)
COMPILE_MODES_WITH_GRAPHS = ("reduce-overhead", "max-autotune")

_CHOICES = {
    "task": TASKS,
    "mode": MODES,
    "precision": PRECISIONS,
    "attention": ATTENTIONS,
    "optimizer": OPTIMIZERS,
    "harness": HARNESSES,
    "device": DEVICES,
    "finetune": FINETUNES,
    "lora_targets": LORA_TARGETS,
    "allocator": ALLOCATORS,
}


# torch.manual_seed takes up to 2**64 - 1, but the results frame and SQLite hold signed 64-bit
# integers: the largest seed every stage keeps exactly.
MAX_SEED = 2**63 - 1

# A trial's GPUs are on one node; no node has more than this many.
MAX_GPUS_PER_TRIAL = 64

# The role of each field: where it must appear, so that no list of fields is typed twice.
MATCH = "match"  # what is measured: two rows are compared only where these are equal
BATCH = "batch"  # the batch size: the axis of a series, of the memory model and max-batch
# how the workload runs: may differ between rows of relaxed matching, and is then named in the
# answer's "Differs in"; a filter of the app and a flag of ``sweep compare``
OPTION = "option"
# where the trial runs (auto, cuda, cpu): not the workload (the row's gpu column says where it
# ran), but kept with its shape (shape_fields) so that a CPU trial and a GPU trial of one workload
# are never one memory fit, one FLOPs count or one chart series
PLACEMENT = "placement"
MEASUREMENT = "measurement"  # how it was measured: steps, warm-up, profiling, seed
ROLES = (MATCH, BATCH, OPTION, PLACEMENT, MEASUREMENT)
# The match fields a comparison is chosen by first: the answer's model, sequence length and
# precision, the app's first filters, the flags ``sweep compare`` asks for.
MAIN_FIELDS = ("model", "seq_len", "precision")


def _field(default: Any, help: str, role: str, label: str | None = None) -> Any:
    """A TrialConfig field with its help text (what ``--help`` prints), its role (one of ROLES)
    and its short human label (the app's filter, the answer's "Differs in")."""
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    return dataclasses.field(default=default, metadata={"help": help, "role": role, "label": label})


@dataclass(frozen=True)
class TrialConfig:
    """What one trial measures. Times in seconds; lengths in tokens."""

    model: str = _field("bert-tiny", "a catalog name or a path to a config.json", MATCH, "Model")
    task: str = _field("seq-cls", "seq-cls (2 labels) or causal-lm (decoders only)", MATCH, "Task")
    mode: str = _field(
        "train",
        "train: forward+backward+optimizer; inference: forward, no grad",
        MATCH,
        "Mode",
    )
    batch_size: int = _field(8, "sequences per step", BATCH, "Batch size")
    seq_len: int = _field(128, "tokens per sequence", MATCH, "Sequence length (tokens)")
    precision: str = _field(
        "fp32", "numeric precision of the step (autocast for *-mixed)", MATCH, "Precision"
    )
    attention: str = _field(
        "sdpa", "transformers' attention implementation", OPTION, "Attention kernel"
    )
    compile: bool | str = _field(
        False,
        "torch.compile the model: false, true (the default mode) or a mode name "
        "(reduce-overhead, max-autotune, max-autotune-no-cudagraphs)",
        OPTION,
        "torch.compile",
    )
    cuda_graph: bool = _field(
        False,
        "capture the step as CUDA graphs after the warm-up and replay them for the measured steps "
        "(one graph per phase; CUDA only)",
        OPTION,
        "CUDA graph",
    )
    optimizer: str = _field("adamw-fused", "optimizer of the training step", OPTION, "Optimizer")
    gradient_checkpointing: bool = _field(
        False, "recompute activations in the backward", OPTION, "Gradient checkpointing"
    )
    harness: str = _field(
        "native", "the training loop: a plain loop or PyTorch Lightning", OPTION, "Harness"
    )
    # MATCH, not OPTION: an N-GPU trial's rate is N GPUs'
    gpus_per_trial: int = _field(
        1,
        "GPUs of one node for one trial: N > 1 trains with DistributedDataParallel across N GPUs "
        "(N gloo processes on the CPU), the same batch on each (batch_size is per GPU)",
        MATCH,
        "GPUs per trial",
    )
    # what trains: a full fine-tune and an adapter one are different workloads (never compared
    # as one GPU against another); the adapters' shape and the kernels are options
    finetune: str = _field(
        "full",
        "full fine-tuning, or adapters over a frozen base: lora, qlora (4-bit NF4 base)",
        MATCH,
        "Fine-tuning",
    )
    lora_rank: int = _field(16, "rank of the LoRA adapters (lora and qlora)", OPTION, "LoRA rank")
    lora_targets: str = _field(
        "all-linear",
        "layers that get adapters: all-linear (not the output head) or attention",
        OPTION,
        "LoRA targets",
    )
    liger: bool = _field(
        False,
        "Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy: no "
        "full-vocabulary logits); CUDA only",
        OPTION,
        "Liger kernels",
    )
    allocator: str = _field(
        "default",
        "PyTorch's CUDA caching allocator: default, or expandable (expandable_segments:True: "
        "segments grow in place, so less is lost to fragmentation near the memory limit; a "
        "few % slower)",
        OPTION,
        "CUDA allocator",
    )
    # MATCH, not OPTION: a capped run measures memory on a card of that size, emulated on a
    # bigger one; its speed is the bigger card's, so it is never compared with an uncapped row
    # (the read side leaves capped rows out of every rate: sweep/analysis/selection.py, capped)
    capacity_gb: float | None = _field(
        None,
        "emulate a card of this many GB (as sold) by capping the allocator on a bigger one: what "
        "fits, never a speed; none: the whole card",
        MATCH,
        "Card memory (GB, emulated)",
    )
    warmup_steps: int = _field(
        3,
        "steps run first and reported apart (compilation, first optimizer step)",
        MEASUREMENT,
        "Warm-up steps",
    )
    steps: int = _field(10, "measured steps, at least", MEASUREMENT, "Measured steps")
    min_measure_s: float = _field(
        0.0,
        "keep measuring until this many seconds have passed too",
        MEASUREMENT,
        "Minimum measuring time (s)",
    )
    profile_step: bool = _field(
        True,
        "after the measured steps, profile one step (torch.profiler, CUDA kernels) for the "
        "launch overhead; nothing on the CPU",
        MEASUREMENT,
        "Profiled step",
    )
    device: str = _field(
        "auto",
        "where the trial runs: auto (a GPU if there is one), cuda, cpu",
        PLACEMENT,
        "Device",
    )
    seed: int = _field(0, "seed of the random weights and the synthetic batch", MEASUREMENT, "Seed")

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}: {excerpt(value)} is not one of {', '.join(allowed)}")
        for name in ("batch_size", "seq_len", "warmup_steps", "steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: expected an integer, got {excerpt(value)}")
        for name in ("batch_size", "seq_len", "warmup_steps", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if isinstance(self.gpus_per_trial, bool) or not isinstance(self.gpus_per_trial, int):
            raise ValueError(
                f"gpus_per_trial: expected an integer, got {excerpt(self.gpus_per_trial)}"
            )
        if not 1 <= self.gpus_per_trial <= MAX_GPUS_PER_TRIAL:
            raise ValueError(
                f"gpus_per_trial: must be between 1 and {MAX_GPUS_PER_TRIAL} (the GPUs of one "
                f"node), got {self.gpus_per_trial}"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be between 0 and {MAX_SEED} (2**63 - 1), got {self.seed}")
        if self.compile == "default":
            object.__setattr__(self, "compile", True)
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(
                f"compile: expected true or false or a mode ({', '.join(COMPILE_MODES)}), "
                f"got {excerpt(self.compile)}"
            )
        for name in ("cuda_graph", "gradient_checkpointing", "profile_step", "liger"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name}: expected true or false, got {excerpt(getattr(self, name))}"
                )
        if (
            isinstance(self.min_measure_s, bool)
            or not isinstance(self.min_measure_s, (int, float))
            or not 0 <= self.min_measure_s < float("inf")  # nan fails too
        ):
            raise ValueError(
                f"min_measure_s: must be a finite number >= 0, got {excerpt(self.min_measure_s)}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model: expected a model name, got {excerpt(self.model)}")
        spec = get_spec(self.model)  # raises ValueError("model: ...")
        if self.seq_len > spec.max_seq_len:
            raise ValueError(
                f"seq_len: {self.seq_len} is longer than {self.model} supports "
                f"({spec.max_seq_len} tokens)"
            )
        if self.task == "causal-lm" and spec.family != DECODER:
            raise ValueError(
                f"task: causal-lm needs a decoder; {self.model} is an encoder (use seq-cls)"
            )
        self._check_finetune(spec)
        self._check_capacity()
        if self.task == "causal-lm" and self.seq_len < 2:
            # the loss predicts token i+1 from tokens up to i: one token leaves nothing to predict
            raise ValueError("seq_len: causal-lm needs at least 2 tokens (1 has no next token)")

    def _check_finetune(self, spec) -> None:
        rank = self.lora_rank
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise ValueError(f"lora_rank: expected an integer, got {excerpt(rank)}")
        if not 1 <= rank <= min(MAX_LORA_RANK, spec.hidden_size or MAX_LORA_RANK):
            raise ValueError(
                f"lora_rank: must be between 1 and {min(MAX_LORA_RANK, spec.hidden_size or 0)} "
                f"(the hidden size of {self.model}), got {rank}"
            )
        if self.finetune == "full":
            return
        if self.mode != "train":
            raise ValueError(f"finetune: {self.finetune} trains adapters; it needs mode train")
        if self.finetune == "qlora" and self.precision not in ("bf16-mixed", "bf16-true"):
            raise ValueError(
                f"finetune: qlora computes its 4-bit base in bf16; precision {self.precision} "
                "cannot be used with it (use bf16-mixed or bf16-true)"
            )

    def _check_capacity(self) -> None:
        cap = self.capacity_gb
        if cap is None:
            return
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < 1e6:
            raise ValueError(
                f"capacity_gb: expected a positive number of GB (or none), got {excerpt(cap)}"
            )
        object.__setattr__(self, "capacity_gb", float(cap))  # 24 and 24.0: one key

    @property
    def adapters(self) -> bool:
        """Whether the base is frozen and adapters train (lora, qlora)."""
        return self.finetune != "full"

    @property
    def compile_mode(self) -> str | None:
        """torch.compile's mode, or None when the model is not compiled."""
        if self.compile is False:
            return None
        return "default" if self.compile is True else self.compile

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        """Build from a dict; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown trial field(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)


def excerpt(value: Any, limit: int = 60) -> str:
    """A repr of ``value`` of at most about ``limit`` characters, computed in bounded time and
    memory whatever the value's size or depth (reprlib truncates as it goes): what an error
    message quotes of a value from a user's file."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrialConfig)]


def _with_role(*roles: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrialConfig) if f.metadata["role"] in roles)


def match_fields() -> tuple[str, ...]:
    """The fields two rows must agree in to be compared (role MATCH), in field order."""
    return _with_role(MATCH)


def option_fields() -> tuple[str, ...]:
    """How the workload runs (role OPTION), in field order: each is an answer option named in
    "Differs in", a filter of the app and a flag of ``sweep compare``."""
    return _with_role(OPTION)


def workload_fields() -> tuple[str, ...]:
    """The fields that define a workload (roles MATCH, BATCH and OPTION), in field order: the
    summary, the views and the reports tell rows apart by these."""
    return _with_role(MATCH, BATCH, OPTION)


def shape_fields() -> tuple[str, ...]:
    """The workload without its batch size, and where it runs (roles MATCH, OPTION and
    PLACEMENT), in field order: rows equal here differ only in the batch, so they are one
    memory-model fit, one max-batch search's shape, one FLOPs count per sequence, one series."""
    return _with_role(MATCH, OPTION, PLACEMENT)


def filter_fields() -> tuple[str, ...]:
    """What the rows can be narrowed by (the app's filters, ``sweep compare``'s flags): the main
    fields, then every other match and option field in field order."""
    rest = (f for f in _with_role(MATCH, OPTION) if f not in MAIN_FIELDS)
    return (*MAIN_FIELDS, *rest)


def field_role(name: str) -> str:
    """The role of a field (one of ROLES)."""
    return _metadata(name)["role"]


def field_label(name: str) -> str:
    """The short human label of a field ("CUDA graph", "Sequence length (tokens)")."""
    return _metadata(name)["label"] or name


def _metadata(name: str) -> Any:
    for f in dataclasses.fields(TrialConfig):
        if f.name == name:
            return f.metadata
    raise KeyError(f"{name!r} is not a TrialConfig field")


def field_help(name: str) -> str:
    """The help text of a field (what ``python -m sweep trial --help`` prints)."""
    return _metadata(name)["help"]


def choices(name: str) -> tuple[str, ...] | None:
    """The allowed values of an enumerated field, or None for a free field."""
    return _CHOICES.get(name)
