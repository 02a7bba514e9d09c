"""Reading manifest YAML the way the API server (through kubectl) reads it, with its limits.

- YAML 1.2 numbers: ``1e-4`` is a float (PyYAML's YAML 1.1 resolver leaves it a string).
- A key given twice in one mapping is refused (kubectl refuses it too; PyYAML lets the later one
  win silently).
- Size: at most ``MAX_BYTES`` (3 MiB, the API server's request body limit).
- Nesting at most ``MAX_DEPTH`` levels and alias expansion at most ``MAX_EXPANDED`` values (or
  ``ALIAS_RATIO`` times the document's own size): a "billion laughs" file or 1,000 nested lists
  is refused with a message, not a memory blow-up or a RecursionError.

Every refusal is a ``ManifestError`` naming the file (and document), the field path in the API
server's notation (``spec.parameters[lr].min``) and the reason.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hwtune.api._base import FieldError, ManifestError, join_key, join_path

__all__ = ["ALIAS_RATIO", "MAX_BYTES", "MAX_DEPTH", "MAX_EXPANDED", "load_manifests",
           "read_manifest_file"]

MAX_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 100
MAX_EXPANDED = 100_000
ALIAS_RATIO = 10

# Fields whose value is a map keyed by names the user chooses: their entries are written
# ``[key]`` in field paths, as the API server does (``spec.parameters[lr]``).
_MAPS = frozenset({"parameters", "overrides", "mapping", "nodeSelector", "labels", "annotations",
                   "bestPerObjective"})


class _TooDeep(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and a bound on nesting while composing (PyYAML's
    composer recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event())  # type: ignore[arg-type]
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _line(node_or_event: Any) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


class _Builder:
    """Turns a composed node tree into Python values, tracking the field path, refusing
    duplicate keys and counting values so that aliases cannot multiply a document's size."""

    def __init__(self, loader: _Loader, source: str, distinct: int) -> None:
        self.loader = loader
        self.source = source
        self.budget = max(MAX_EXPANDED, ALIAS_RATIO * distinct)
        self.built = 0

    def fail(self, path: str, reason: str) -> ManifestError:
        return ManifestError([FieldError(path, reason)], self.source)

    def build(self, node: Node, path: str, depth: int = 0) -> Any:
        self.built += 1
        if self.built > self.budget:
            raise self.fail(path, f"aliases expand the document past {self.budget} values "
                                  "(a YAML bomb?); write the values out instead")
        if depth > MAX_DEPTH:
            raise self.fail(path, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ScalarNode):
            if node.tag == "tag:yaml.org,2002:timestamp":
                return node.value  # kubectl keeps a timestamp-like scalar a string
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise self.fail(path, f"{_line(node)}: {getattr(exc, 'problem', exc)}") from None
        if isinstance(node, SequenceNode):
            return [self.build(item, join_path(path, i), depth + 1)
                    for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            # The field this mapping is the value of ("" for a list item or a map entry).
            field = "" if not path or path.endswith("]") else path.rsplit(".", 1)[-1]

            def key_path(key: Any) -> str:
                return join_key(path, key) if field in _MAPS else join_path(path, str(key))

            # Duplicates among the keys written here; a key merged in with "<<" may be
            # overridden (YAML's merge rule, kubectl's too).
            first_line: dict[Any, str] = {}
            merges = False
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merges = True
                    continue
                key = self.build(key_node, path, depth + 1)
                if not isinstance(key, (str, int, float, bool)):
                    raise self.fail(path, f"{_line(key_node)}: a mapping key must be a scalar")
                if key in first_line:
                    raise self.fail(key_path(key), f"duplicate key {key!r} ({_line(key_node)}; "
                                                   f"first at {first_line[key]}): the API server "
                                                   "refuses it, and one of the two values would "
                                                   "be lost")
                first_line[key] = _line(key_node)
            if merges:
                self.loader.flatten_mapping(node)  # merged pairs first, then the written ones
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path, depth + 1)
                if not isinstance(key, (str, int, float, bool)):
                    raise self.fail(path, f"{_line(key_node)}: a mapping key must be a scalar")
                out[key] = self.build(value_node, key_path(key), depth + 1)
            return out
        raise self.fail(path, f"{_line(node)}: unsupported YAML node")


def _count(node: Node, seen: set[int]) -> int:
    if id(node) in seen:
        return 0
    seen.add(id(node))
    if isinstance(node, SequenceNode):
        return 1 + sum(_count(n, seen) for n in node.value)
    if isinstance(node, MappingNode):
        return 1 + sum(_count(k, seen) + _count(v, seen) for k, v in node.value)
    return 1


def load_manifests(text: str | bytes, source: str = "") -> list[Any]:
    """The documents of a YAML stream (empty ones skipped), read as kubectl reads them.
    Raises ``ManifestError`` naming ``source``, the document, the field path and the reason."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise ManifestError([FieldError("", f"{size} bytes: larger than the API server's request "
                                            f"limit of {MAX_BYTES} bytes (3 MiB)")], source)
    loader = _Loader(text)
    nodes: list[Node] = []
    try:
        while loader.check_node():
            try:
                node = loader.get_node()
            except _TooDeep as exc:
                raise ManifestError([FieldError("", f"{_line(exc.node)}: nested more than "
                                                    f"{MAX_DEPTH} levels deep")], source) from None
            if node is not None:
                nodes.append(node)
        docs: list[Any] = []
        for index, node in enumerate(nodes, 1):
            # Name the document when the file holds several.
            where = source if len(nodes) == 1 else (
                f"{source}, document {index}" if source else f"document {index}")
            doc = _Builder(loader, where, _count(node, set())).build(node, "")
            if doc is not None:
                docs.append(doc)
        return docs
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([FieldError("", f"{at}not valid YAML: {problem}")], source) from None
    finally:
        loader.dispose()


def read_manifest_file(path: str) -> list[Any]:
    """``load_manifests`` of a file, refusing an unreadable or oversized one by name."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError([FieldError("", "no such file")], str(path)) from None
    except OSError as exc:
        raise ManifestError([FieldError("", f"cannot read: {exc.strerror or exc}")],
                            str(path)) from None
    if len(data) > MAX_BYTES:
        raise ManifestError([FieldError("", f"larger than the API server's request limit of "
                                            f"{MAX_BYTES} bytes (3 MiB)")], str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError([FieldError("", f"not UTF-8 text: {exc.reason} at byte "
                                            f"{exc.start}")], str(path)) from None
    return load_manifests(text, str(path))
