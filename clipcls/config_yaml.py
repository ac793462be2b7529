"""`--config run.yaml` is read as safely as the class-description file.

jsonargparse parses config files with PyYAML, which takes the last of two equal keys without a
word, and resolves plain scalars by YAML 1.1: `no`, `off` and `y` become booleans, `010` the
octal 8 and `1:20` the sexagesimal 80. A config key typed `no` or a run name `010` would then
silently mean something else. Before jsonargparse sees a file, each is an error naming the file,
the key and the line, as is a tag that is not plain data (`!!python/object/...`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from clipcls.errors import ClipclsError

_CORE_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "binary", "timestamp")
}
_BOOL_12 = {"true", "false"}  # YAML 1.2's only booleans
_INT_11_ONLY = re.compile(r"^[-+]?(0[0-7_]+|0b[01_]+|[0-9][0-9_]*(:[0-5]?[0-9])+|[0-9]+_[0-9_]*)$")
_FLOAT_11_ONLY = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*$")


class ConfigFileError(ClipclsError, ValueError):
    """A config file that would not mean what it says, naming the file, key and line."""


def config_files(argv: list[str] | None) -> list[str]:
    """The files given with `--config FILE` or `--config=FILE`, in order."""
    argv = sys.argv[1:] if argv is None else argv
    files = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def check_config_file(path: str | Path) -> None:
    """Raise ConfigFileError for a duplicate key, a non-data tag or a YAML 1.1-only scalar."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except FileNotFoundError:
        return  # jsonargparse reports a missing file in its own words
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigFileError(f"{path}: cannot read config: {err}") from None
    if root is not None:
        _check_node(root, str(path), key="(top level)")


def _check_node(node: Node, source: str, key: str) -> None:
    where = f"{source}: key {key!r} (line {node.start_mark.line + 1})"
    if node.tag not in _CORE_TAGS:
        raise ConfigFileError(f"{where}: tag {node.tag!r} is not plain data; config values are text, numbers or lists")
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = str(key_node.value)
            if name in seen:
                raise ConfigFileError(
                    f"{source}: key {name!r} appears twice (again on line {key_node.start_mark.line + 1})"
                )
            seen.add(name)
            _check_node(value_node, source, name)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_node(item, source, key)
    elif isinstance(node, ScalarNode) and node.style is None:  # plain, i.e. unquoted
        _check_plain_scalar(node, where)


def _check_plain_scalar(node: ScalarNode, where: str) -> None:
    value, tag = node.value, node.tag.rsplit(":", 1)[1]
    surprise = (
        (tag == "bool" and value.lower() not in _BOOL_12)
        or (tag == "int" and _INT_11_ONLY.match(value))
        or (tag == "float" and _FLOAT_11_ONLY.match(value))
    )
    if surprise:
        meant = yaml.safe_load(value)
        raise ConfigFileError(
            f"{where}: {value} would be read as the {tag} {meant!r} (a YAML 1.1 rule); "
            f"write {value!r} in quotes for text, or {'true/false' if tag == 'bool' else 'the plain number'}"
        )
