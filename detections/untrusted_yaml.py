"""YAML someone else wrote (a rule pack's files, the rule exceptions file): read with a size limit, without aliases,
and with nesting errors reported as errors.

Why aliases are refused: PyYAML builds an alias as a reference to the same node, so a few hundred bytes ("billion
laughs") make a structure whose walk — by pySigma, by validation, by anyone — takes exponential time. Neither
SigmaHQ's rules nor the suite's files use them.

The text is parsed once, and what is checked is what is used: the parser composes each document's node graph, the
graph is walked once (an alias is a node reached a second time: refused), and the same nodes are then made into
Python data. pySigma is handed that data (``SigmaCollection.from_dicts``), never the text, so no second parser with
other rules of its own (PyYAML's pure-Python one accepts text libyaml refuses) sees anything this module did not
check. Deep nesting is refused by libyaml with a YAMLError, and a RecursionError (the pure-Python parser's, or the
constructor's) becomes an error of that text too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# The safe loader, libyaml's when present: as safe as yaml.safe_load, several times faster on a large file.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ALIASES_REFUSED = "YAML aliases are not accepted (an alias bomb makes reading it take exponential time)"


class UntrustedYamlError(ValueError):
    """The text is not YAML we accept; the message says why."""


def _refuse_aliases(root: yaml.Node) -> None:
    """UntrustedYamlError when a node is reached twice (what an alias is, once composed). Linear in the nodes:
    the walk never enters a node twice, and keeps its own stack (no recursion)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            mark = node.start_mark
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise UntrustedYamlError(ALIASES_REFUSED + where)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _failed(exc: yaml.YAMLError) -> UntrustedYamlError:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return UntrustedYamlError(f"not valid YAML: {where}{getattr(exc, 'problem', None) or exc}")


def load_all(text: str) -> list[Any]:
    """Every document of the text (an empty one is None), or UntrustedYamlError saying where and why."""
    loader = _LOADER(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                documents.append(None)
                continue
            _refuse_aliases(node)
            documents.append(loader.construct_document(node))
        return documents
    except yaml.YAMLError as exc:
        raise _failed(exc) from exc
    except RecursionError as exc:
        raise UntrustedYamlError("the YAML is nested too deeply") from exc
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The one YAML document of the text (None when empty), or UntrustedYamlError saying where and why."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _failed(exc) from exc
    except RecursionError as exc:
        raise UntrustedYamlError("the YAML is nested too deeply") from exc
    finally:
        loader.dispose()


def read_text(path: str | Path, max_bytes: int) -> str:
    """A file's text, refused when it is larger than ``max_bytes`` (it is never read whole first)."""
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UntrustedYamlError(f"the file is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedYamlError(f"the file is not UTF-8 text (byte {exc.start})") from exc
