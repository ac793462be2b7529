"""Read the class-description YAML and check it against the class folders.

The file maps each class name to one description or a list of them::

    곰팡이: a photo of mould on wallpaper
    no_defect:
      - a photo of clean wallpaper
      - a photo of undamaged wallpaper

Class names must equal folder names character for character, so keys are taken as
written: plain YAML would turn ``no`` into ``False``, ``010`` into ``8`` and ``null``
into ``None``, silently breaking the match with a folder of that name.
"""

from __future__ import annotations

import os
import unicodedata

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from clipcls.errors import ClipclsError


class DescriptionError(ClipclsError, ValueError):
    """The class-description file is missing, malformed or disagrees with the folders."""


class _DescriptionLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps mapping keys as literal text and rejects duplicates.

    Subclassing ``SafeLoader`` (not ``Loader``) means tags such as
    ``!!python/object/apply`` have no constructor and fail instead of running code.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, object]:
        """Build a dict whose keys are the scalar keys' source text, in file order."""
        mapping: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = _literal_key(key_node, node)
            if key in mapping:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate class name {key!r}",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _literal_key(key_node: yaml.Node, mapping_node: MappingNode) -> str:
    """Return a mapping key's text exactly as written, refusing non-scalar keys."""
    if not isinstance(key_node, ScalarNode):
        raise ConstructorError(
            "while reading a mapping",
            mapping_node.start_mark,
            "class names must be plain text, not a list or mapping",
            key_node.start_mark,
        )
    return key_node.value


def read_descriptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read class name -> descriptions from a YAML file, in file order.

    Every value becomes a list of stripped, non-empty strings. Any problem raises
    ``DescriptionError`` naming the file (and the class, where one is to blame).
    """
    source = os.fspath(path)
    data = _load_yaml(source)
    if data is None:
        raise DescriptionError(f"{source}: the class-description file is empty")
    if not isinstance(data, dict):
        raise DescriptionError(
            f"{source}: expected a mapping of class name -> description(s), got {type(data).__name__}"
        )
    return {name: _descriptions_of(name, value, source) for name, value in data.items()}


def _load_yaml(source: str) -> object:
    """Parse the file safely, turning I/O, encoding and YAML errors into DescriptionError."""
    try:
        # utf-8-sig also accepts the byte-order mark some Windows editors write.
        with open(source, encoding="utf-8-sig") as stream:
            text = stream.read()
        loader = _DescriptionLoader(text)  # a SafeLoader: no Python tags are ever constructed
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DescriptionError(f"{source}: cannot read class descriptions: {exc}") from exc


def _descriptions_of(name: str, value: object, source: str) -> list[str]:
    """Normalise one class's value to a non-empty list of non-empty stripped strings."""
    if name == "":
        raise DescriptionError(f"{source}: a class name is empty")
    items = value if isinstance(value, list) else [value]
    texts = [item.strip() for item in items if isinstance(item, str)]
    if not items or len(texts) != len(items) or not all(texts):
        raise DescriptionError(
            f"{source}: class {name!r} needs a non-empty description or a non-empty "
            f"list of them (quote text YAML would read as a number, boolean or null); "
            f"got {value!r}"
        )
    return texts


def check_classes(folder_classes: list[str], descriptions: dict[str, list[str]], source: str) -> None:
    """Require a description for every class folder and a folder for every description.

    Both directions are reported in one message so the user fixes everything at once.
    """
    missing = sorted(set(folder_classes) - set(descriptions))
    unused = sorted(set(descriptions) - set(folder_classes))
    if not missing and not unused:
        return
    lines = [f"{source}: class descriptions do not match the class folders"]
    if missing:
        lines.append(f"  folders without a description: {', '.join(missing)}")
    if unused:
        lines.append(f"  descriptions without a folder: {', '.join(unused)}")
    lines.extend(_normalisation_hints(missing, unused))
    raise DescriptionError("\n".join(lines))


def _normalisation_hints(missing: list[str], unused: list[str]) -> list[str]:
    """Explain names that differ only in Unicode normalisation.

    macOS stores file names decomposed (NFD) while editors write YAML composed (NFC),
    so a Korean folder and its YAML key can look identical yet not be equal.
    """
    composed_unused = {unicodedata.normalize("NFC", name): name for name in unused}
    return [
        f"  {name!r} and {composed_unused[key]!r} differ only in Unicode normalisation (NFC vs NFD); retype one of them"
        for name in missing
        if (key := unicodedata.normalize("NFC", name)) in composed_unused
    ]
