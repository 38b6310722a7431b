"""The one YAML loader of the product: safe tags only, and bounded.

Every YAML file we read (pipelines, policies, approval ladders, event subscribers) comes through
``load_yaml``. PyYAML's ``safe_load`` already refuses arbitrary objects, but not:

- duplicate keys, which it resolves silently to the last one (a reviewer reads the first);
- alias bombs ("billion laughs"): aliases are shared nodes, so loading is cheap, but the first
  walk over the result (``${VAR}`` interpolation, validation) expands them to billions of items;
- deep nesting, which its recursive composer turns into a ``RecursionError``;
- documents of any size.

Each is refused with its own code, the file, and the line where it happens.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from governance_pipeline.contracts.errors import (
    YAML_ALIASES,
    YAML_DUPLICATE_KEY,
    YAML_TOO_DEEP,
    YAML_TOO_LARGE,
    ConfigError,
)

#: Largest document read, in characters: configuration, not data.
MAX_DOCUMENT_CHARS = 2_000_000
#: Deepest nesting of mappings and sequences.
MAX_DEPTH = 64
#: Most alias uses (``*name``) in one document.
MAX_ALIASES = 1_000
#: Most nodes the document may stand for with every alias expanded.
MAX_EXPANDED_NODES = 200_000


def load_yaml(text: str, *, source: str) -> Any:
    """Parse one YAML document with the safe tags; ``ConfigError`` (GP-YAML-*) on hostile input.

    Plain syntax errors stay ``yaml.YAMLError``, for callers to report with their own code.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise ConfigError(f"{source}: the YAML document is {len(text):,} characters long; at "
                          f"most {MAX_DOCUMENT_CHARS:,} are read", code=YAML_TOO_LARGE,
                          details={"file": source, "size": len(text)})
    loader = _BoundedLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _line(node_or_mark: Any) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1 if mark is not None else 0


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader with limits checked while the document is composed."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._source = source
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise ConfigError(
                    f"{self._source}: more than {MAX_ALIASES} aliases (line "
                    f"{_line(event.start_mark)})", code=YAML_ALIASES,
                    details={"file": self._source, "line": _line(event.start_mark)})
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        if self.check_event(ScalarEvent):
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = _line(self.peek_event().start_mark)
                raise ConfigError(f"{self._source}: nested deeper than {MAX_DEPTH} levels at "
                                  f"line {line}", code=YAML_TOO_DEEP,
                                  details={"file": self._source, "line": line})
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node: MappingNode = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode):
                continue
            first = seen.get((key.tag, key.value))
            if first is not None:
                raise ConfigError(
                    f"{self._source}: duplicate key {key.value!r} at line {_line(key)} (first "
                    f"at line {first})", code=YAML_DUPLICATE_KEY,
                    details={"file": self._source, "key": key.value, "line": _line(key),
                             "first_line": first})
            seen[(key.tag, key.value)] = _line(key)
        return node


def _check_expansion(root: Node, source: str) -> None:
    """Refuse a document whose aliases, expanded, stand for too many nodes, or for a cycle."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            on_path.discard(ident)
            sizes[ident] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[ident] > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{source}: with its aliases expanded the document holds more than "
                    f"{MAX_EXPANDED_NODES:,} values (an alias bomb?) at line {_line(node)}",
                    code=YAML_ALIASES, details={"file": source, "line": _line(node)})
            continue
        if ident in sizes:
            continue
        if ident in on_path:
            raise ConfigError(f"{source}: an alias refers to a value that contains it (line "
                              f"{_line(node)})", code=YAML_ALIASES,
                              details={"file": source, "line": _line(node)})
        on_path.add(ident)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []
