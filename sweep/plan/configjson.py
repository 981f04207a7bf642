"""A user's ``config.json``, read with bounds on what a small file can cost.

What a few bytes of JSON can do, and what this reader does instead (each refusal is one
ValueError naming the file and the field):
- nest 100,000 levels deep (Python's JSON parser recurses: a RecursionError): the nesting is
  counted on the text before it is parsed, and a file deeper than ``MAX_DEPTH`` is refused;
- write ``Infinity``, ``NaN`` or ``1e999`` where a size goes (int() of them raises
  OverflowError): refused, JSON has no such numbers;
- write a 100,000-digit integer (Python refuses to convert it, without saying where): every
  number is read as text first and one longer than ``MAX_DIGITS`` is refused;
- ask for a model no machine could hold (``num_hidden_layers: 1e9`` with a tiny width grows the
  trial's memory until its timeout; ``hidden_size: 1e9`` fails late): the sizes are bounded one
  by one (``SIZE_LIMITS``) and the parameters they add up to (``MAX_PARAMETERS``), before
  anything is built.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

MAX_FILE_BYTES = 4 * 1024 * 1024  # a real config.json is a few KB (id2label tables: tens)
MAX_DEPTH = 32  # a real one nests 3 or 4 deep (rope_scaling, quantization_config)
MAX_DIGITS = 40  # a float64 is written in 17 significant digits; an int64 in 19

# The largest value a field may hold: several times the largest published model's
# (Llama-3.1-405B: 126 layers, width 16384, 53248 MLP width, 128 heads; Gemma-3: 262,144 tokens
# of vocabulary; Qwen2.5-1M: 1,010,000 positions).
SIZE_LIMITS: dict[str, int] = {
    "num_hidden_layers": 1_000,
    "n_layer": 1_000,
    "n_layers": 1_000,
    "num_layers": 1_000,
    "hidden_size": 65_536,
    "n_embd": 65_536,
    "dim": 65_536,
    "d_model": 65_536,
    "intermediate_size": 262_144,
    "n_inner": 262_144,
    "hidden_dim": 262_144,
    "ffn_dim": 262_144,
    "num_attention_heads": 1_024,
    "n_head": 1_024,
    "n_heads": 1_024,
    "num_key_value_heads": 1_024,
    "vocab_size": 4_194_304,
    "type_vocab_size": 65_536,
    "max_position_embeddings": 16_777_216,
    "n_positions": 16_777_216,
    "max_seq_len": 16_777_216,
    "seq_length": 16_777_216,
    "num_local_experts": 1_024,
}
# Parameters estimated from the sizes alone (``estimate_parameters``): 200 billion, 25 times the
# 8B models (Llama-3.1-8B, Qwen2.5-7B) that the largest card of this project's fleet can train.
MAX_PARAMETERS = 200_000_000_000

_LAYERS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
_HIDDEN = ("hidden_size", "n_embd", "dim", "d_model")
_INNER = ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim")
_POSITIONS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
# A JSON string, a key (a string and its colon), or a bracket: enough to count nesting.
_TOKENS = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:|"(?:[^"\\]|\\.)*"|[\[\]{}]')


class _Number(str):
    """A JSON number as its text: converted (and bounded) where its field is known."""


def _fail(path: str, where: str, what: str) -> ValueError:
    field = f" field {where!r}:" if where else ""
    return ValueError(f"model: config file {_cut(path)}:{field} {what}")


def _cut(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _check_depth(path: str, text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, naming the top-level key it is under, before
    Python's recursive parser sees it."""
    depth, key = 0, ""
    for m in _TOKENS.finditer(text):
        token = m.group(0)
        if m.group(1) is not None:
            if depth == 1:
                key = m.group(1)
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(path, key, f"nests deeper than {MAX_DEPTH} levels")
        elif token in "]}":
            depth -= 1


def _convert(path: str, where: str, value: Any) -> Any:
    """``value`` with its numbers converted, each bounded, naming the field of a bad one."""
    if isinstance(value, dict):
        return {k: _convert(path, f"{where}.{k}" if where else k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(path, f"{where}[{i}]", v) for i, v in enumerate(value)]
    if not isinstance(value, _Number):
        return value
    text = str(value)
    if text in ("NaN", "Infinity", "-Infinity"):
        raise _fail(path, where, f"{text} is not a number (JSON has no {text})")
    if len(text) > MAX_DIGITS:
        raise _fail(path, where, f"a number of {len(text):,} characters (at most {MAX_DIGITS})")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    number = float(text)
    if not math.isfinite(number):
        raise _fail(path, where, f"{text} is beyond the largest number a float holds")
    return number


def read_config(path: str) -> dict[str, Any]:
    """The JSON object in ``path``, bounded as the module says. Raises ValueError naming the
    file (and the field where there is one)."""
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise _fail(path, "", f"is {size:,} bytes, more than {MAX_FILE_BYTES:,}")
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, "", f"cannot be read ({exc})") from None
    _check_depth(path, text)
    try:
        raw = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _fail(path, "", f"does not parse as JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "", f"holds a JSON {type(raw).__name__}, not an object")
    return _convert(path, "", raw)


def _size(path: str, raw: dict[str, Any], name: str) -> int | None:
    """The value of size field ``name``, checked against its limit; None where absent."""
    if name not in raw:
        return None
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, name, f"expected an integer, got {_cut(json.dumps(value), 40)}")
    limit = SIZE_LIMITS[name]
    if not 1 <= value <= limit:
        raise _fail(path, name, f"must be between 1 and {limit:,}, got {value:,}")
    return value


def _first(path: str, raw: dict[str, Any], names: tuple[str, ...]) -> tuple[str, int] | None:
    for name in names:
        value = _size(path, raw, name)
        if value is not None:
            return name, value
    return None


def estimate_parameters(raw: dict[str, Any]) -> int:
    """Parameters of a transformer of these sizes: per layer, attention's four h x h
    projections and an MLP of three h x inner matrices (a gated MLP), plus the token and
    position tables. An upper bound within a few percent for gated models (Llama-3.1-8B: 8.3e9
    estimated, 8.0e9 published) and a quarter above for a two-matrix MLP (bert-base: 1.37e8 for
    1.10e8). Missing sizes count as 0 (an inner size defaults to 4 h)."""
    hidden = next((raw[k] for k in _HIDDEN if isinstance(raw.get(k), int)), 0)
    layers = next((raw[k] for k in _LAYERS if isinstance(raw.get(k), int)), 0)
    inner = next((raw[k] for k in _INNER if isinstance(raw.get(k), int)), 4 * hidden)
    positions = next((raw[k] for k in _POSITIONS if isinstance(raw.get(k), int)), 0)
    experts = raw.get("num_local_experts") if isinstance(raw.get("num_local_experts"), int) else 1
    vocab = raw.get("vocab_size") if isinstance(raw.get("vocab_size"), int) else 0
    per_layer = 4 * hidden * hidden + 3 * hidden * inner * max(1, experts)
    return layers * per_layer + (vocab + positions) * hidden


def check_sizes(path: str, raw: dict[str, Any]) -> None:
    """Refuse a configuration that asks for more than any machine could build (see the module
    docstring), naming the field; from the configuration alone, before anything is built."""
    for name in SIZE_LIMITS:
        _size(path, raw, name)
    n = estimate_parameters(raw)
    if n > MAX_PARAMETERS:
        fields = [k for k in (*_LAYERS, *_HIDDEN, *_INNER, "vocab_size") if k in raw]
        raise _fail(
            path,
            "+".join(fields),
            f"these sizes make about {n / 1e9:,.0f} billion parameters, more than the "
            f"{MAX_PARAMETERS / 1e9:g} billion a trial may ask for",
        )
