"""`clipcls compare`: zero-shot vs fine-tuned, per labelled set, in one table and compare.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipcls.commands.compare import main as compare_main
from clipcls.commands.zeroshot import main as zeroshot_main
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("comparerun"))


def test_compare_tabulates_zero_shot_and_the_fine_tune_per_set(run_dir, tmp_path, capsys):
    train = run_dir.parents[1] / "train"
    red_only = tmp_path / "red_only"  # a set of its own: one class's 8 images
    shutil.copytree(train / "red", red_only / "red")
    out = tmp_path / "compare.json"
    args = [str(run_dir), "--data", f"all={train}", f"red_only={red_only}", "--workers", "0", "--out", str(out)]
    assert compare_main(args) == 0
    printed = capsys.readouterr().out
    assert "all (24 images)" in printed and "red_only (8 images)" in printed
    assert printed.splitlines()[2].startswith("zero-shot")
    result = json.loads(out.read_text(encoding="utf-8"))
    assert list(result["all"]) == ["zero-shot", "head", "text", "ensemble", "num_images"]
    assert (result["all"]["num_images"], result["red_only"]["num_images"]) == (24, 8)
    # each set's zero-shot row is exactly what `clipcls zeroshot` reports on that folder at the
    # run's input size (so each set is scored on its own images, not on another set's)
    descriptions = run_dir.parents[1] / "descriptions.yaml"
    for name, folder in (("all", train), ("red_only", red_only)):
        zs_out = tmp_path / f"zs_{name}"
        zs_args = ["--model", "tiny", "--data", str(folder), "--descriptions", str(descriptions), "--size", "32", "32"]
        assert zeroshot_main([*zs_args, "--out", str(zs_out), "--workers", "0"]) == 0
        zeroshot = json.loads((zs_out / "metrics.json").read_text(encoding="utf-8"))["scorers"]["zeroshot"]
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert result[name]["zero-shot"][key] == pytest.approx(zeroshot[key]), (name, key)


def test_compare_defaults_to_the_validation_split_and_names_bad_sets(run_dir, capsys):
    assert compare_main([str(run_dir), "--workers", "0"]) == 0
    assert "val (" in capsys.readouterr().out and (run_dir / "compare.json").is_file()
    assert compare_main([str(run_dir), "--data", "a=x", "a=y"]) == 2
    assert "distinct NAME=DIR" in capsys.readouterr().err
