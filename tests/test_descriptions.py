"""Tests for clipcls.data.descriptions: safe, literal-key YAML and folder checks."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from clipcls.data.descriptions import DescriptionError, check_classes, read_descriptions


def _write(tmp_path: Path, text: str, name: str = "descriptions.yaml") -> Path:
    """Write ``text`` as UTF-8 to a YAML file in ``tmp_path`` and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_strings_and_lists_in_file_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "zeta: '  a photo of zeta  '\nalpha:\n  - a photo of alpha\n  - ' alpha again '\nmid: >\n  folded\n  text\n",
    )

    result = read_descriptions(path)

    assert list(result) == ["zeta", "alpha", "mid"]
    assert result == {
        "zeta": ["a photo of zeta"],
        "alpha": ["a photo of alpha", "alpha again"],
        "mid": ["folded text"],
    }


def test_yaml_11_keys_stay_literal_text(tmp_path: Path) -> None:
    keys = ["no", "on", "yes", "010", "null", "1.0", "~", "0x1F", "2024-01-01"]
    path = _write(tmp_path, "".join(f"{key}: a photo of {key}\n" for key in keys))

    result = read_descriptions(path)

    assert list(result) == keys
    assert result["no"] == ["a photo of no"]
    assert result["~"] == ["a photo of ~"]


def test_unicode_class_names(tmp_path: Path) -> None:
    path = _write(tmp_path, "곰팡이: 곰팡이가 핀 벽지\n오염:\n  - 얼룩진 벽지\n")

    result = read_descriptions(path)

    assert result == {"곰팡이": ["곰팡이가 핀 벽지"], "오염": ["얼룩진 벽지"]}


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeff곰팡이: mould\n".encode("utf-8"))
    assert read_descriptions(path) == {"곰팡이": ["mould"]}


def test_python_tag_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = _write(tmp_path, f'cls: !!python/object/apply:os.system ["touch {marker}"]\n')

    with pytest.raises(DescriptionError, match="python/object/apply") as info:
        read_descriptions(path)

    assert str(path) in str(info.value)
    assert not marker.exists()


def test_duplicate_key_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "stain: a\nmould: b\nstain: c\n")

    with pytest.raises(DescriptionError, match="duplicate class name 'stain'") as info:
        read_descriptions(path)

    assert str(path) in str(info.value)


def test_keys_duplicate_by_text_not_by_yaml_value(tmp_path: Path) -> None:
    # "no" and "false" both mean False in YAML 1.1, but they are different folder names.
    path = _write(tmp_path, "no: a\nfalse: b\n")
    assert read_descriptions(path) == {"no": ["a"], "false": ["b"]}


def test_non_scalar_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "? [a, b]\n: text\n")

    with pytest.raises(DescriptionError, match="plain text") as info:
        read_descriptions(path)

    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["", "'   '", "[]", "[ok, '']", "[ok, 3]", "123", "yes", "{a: b}", "[[nested]]"],
)
def test_bad_value_names_class_and_file(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"good: fine\nbroken: {value}\n")

    with pytest.raises(DescriptionError, match="class 'broken'") as info:
        read_descriptions(path)

    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- a\n- b\n", "got list"),
        ("just text\n", "got str"),
        ("a: [unclosed\n", "cannot read"),
    ],
)
def test_bad_file_names_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(DescriptionError, match=expected) as info:
        read_descriptions(path)

    assert str(path) in str(info.value)


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(DescriptionError) as info:
        read_descriptions(path)
    assert str(path) in str(info.value)


def test_check_classes_accepts_matching_sets() -> None:
    assert check_classes(["b", "a"], {"a": ["x"], "b": ["y"]}, "d.yaml") is None


def test_check_classes_lists_both_kinds_sorted() -> None:
    descriptions = {"stain": ["x"], "zeta": ["y"], "alpha": ["z"], "mould": ["w"]}

    with pytest.raises(DescriptionError) as info:
        check_classes(["mould", "tear", "crack"], descriptions, "info/d.yaml")

    message = str(info.value)
    assert "info/d.yaml" in message
    assert "folders without a description: crack, tear" in message
    assert "descriptions without a folder: alpha, stain, zeta" in message


def test_check_classes_explains_unicode_normalisation() -> None:
    folder = unicodedata.normalize("NFD", "곰팡이")  # how macOS stores the folder name
    yaml_key = unicodedata.normalize("NFC", "곰팡이")
    assert folder != yaml_key

    with pytest.raises(DescriptionError, match="Unicode normalisation"):
        check_classes([folder], {yaml_key: ["mould"]}, "d.yaml")
