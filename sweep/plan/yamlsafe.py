"""YAML for files a user hands us: PyYAML's safe loader with bounds on what a small file can cost.

Three things a few hundred bytes of YAML can do, and what this loader does instead:
- an anchor bomb (an anchor holding nine aliases of the previous one, nine deep) is a tiny graph
  of shared nodes that expands to 9**9 values wherever something walks it (a ``repr`` in an
  error message, a copy): the document's size with every alias expanded is counted on the node
  graph, with a memo, and a document over ``MAX_NODES`` is refused before anything is built;
- an alias of an anchor inside itself builds a recursive structure: refused;
- a key written twice in one mapping silently keeps the last value: refused, naming the key.
- a value nested 500 deep in 1 KB (PyYAML composes recursively: a RecursionError and 3,000
  lines of traceback): a document nested deeper than ``MAX_DEPTH`` is refused as it is composed.
Files over ``MAX_FILE_BYTES`` are refused before they are parsed (sweep.plan.sweepfile).
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sweep.plan.config import excerpt

# A sweep file is a few hundred lines; a few MB is already far more than any grid needs.
MAX_FILE_BYTES = 4 * 1024 * 1024
# Values of the document with every alias expanded (each scalar, list and mapping counts one).
MAX_NODES = 200_000
# Levels of nesting: a sweep file nests 4 or 5 deep (axes, a group, a list).
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(ValueError):
    """A document that is refused for its shape (too large expanded, recursive, duplicate key)."""


def expanded_size(root: Node, limit: int = MAX_NODES) -> int:
    """Number of values in the document with every alias expanded, counted on the shared node
    graph (a memo per node, so a bomb costs its number of nodes, not its expansion). Raises
    YamlLimitError for a recursive alias; stops counting past ``limit``."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise YamlLimitError(
                f"line {node.start_mark.line + 1}: an alias refers to the anchor it is inside "
                "(a recursive structure)"
            )
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break  # large enough to refuse; min() below keeps the memo bounded too
        active.discard(key)
        memo[key] = min(total, limit + 1)
        return memo[key]

    return size(root)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (the merge key ``<<`` may still override) and
    documents nested deeper than MAX_DEPTH."""

    _depth = 0
    _keys: tuple[str, ...] = ()  # the mapping keys above the node being composed

    def compose_node(self, parent, index):  # type: ignore[override]
        keys = self._keys
        if isinstance(index, ScalarNode):  # a mapping's value: index is its key
            self._keys = (*keys, index.value)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                field = excerpt(".".join(self._keys[:4]))
                raise YamlLimitError(f"line {line}: {field} nests deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._keys = keys

    def construct_mapping(self, node: MappingNode, deep: bool = False):  # type: ignore[override]
        if isinstance(node, MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: SafeLoader says so itself
                    continue
                if duplicate:
                    raise YamlLimitError(
                        f"line {key_node.start_mark.line + 1}: key {excerpt(key)} is given twice "
                        "in one mapping"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str, max_nodes: int = MAX_NODES):
    """The YAML document in ``text`` as Python values. Raises yaml.YAMLError for YAML that does
    not parse and YamlLimitError for a document refused for its shape."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        n = expanded_size(root, max_nodes)
        if n > max_nodes:
            raise YamlLimitError(
                f"holds more than {max_nodes:,} values once its aliases are expanded "
                "(an anchor bomb?); write the lists out"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()
