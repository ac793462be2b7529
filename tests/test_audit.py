"""`clipcls audit` and `python train.py --audit` (issue 21): label errors ranked first, duplicates
and leakage found (and none on distinct images), bad input as findings, exit statuses 0/1/2."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from clipcls.audit.report import write_audit
from clipcls.audit.run import AuditInputs, run_audit
from clipcls.commands.audit import main as audit_main

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
YAML = '"red": a red picture\n"green": a green picture\n"blue": a blue picture\n'


def draw(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A picture of the class colour: shapes at random places on a random light background, so
    every image is distinct (no two share a perceptual hash) and the colour tells the class."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 256, 3)))
    pen = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, size - 12, 2)
        w, h = rng.integers(8, 24, 2)
        shade = np.clip(np.array(colour) + rng.integers(-30, 30, 3), 0, 255)
        box = [int(x), int(y), int(x + w), int(y + h)]
        (pen.ellipse if rng.random() < 0.5 else pen.rectangle)(box, fill=tuple(int(v) for v in shade))
    return image


def make_split(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(colour, rng).save(root / name / f"{name}_{seed}_{i}.jpg", quality=92)
    return root


def audit(tmp_path: Path, data: Path, val: Path | None = None, descriptions: str | None = None, model: str = "tiny"):
    inputs = AuditInputs(
        data=str(data), out=tmp_path / "out", val=str(val) if val else None, descriptions=descriptions,
        model=model, workers=0, progress=False,
    )  # fmt: skip
    result = run_audit(inputs)
    write_audit(result, tmp_path / "out", "test audit")
    return result


def checks(result) -> dict[str, str]:
    return {f["check"]: f["severity"] for f in result.findings}


def test_flipped_labels_are_ranked_first(tmp_path: Path) -> None:
    train = make_split(tmp_path / "train", per_class=14, seed=0)
    moved = []
    for src, dest in (("red", "green"), ("blue", "red")):  # two images put in the wrong folder
        path = sorted((train / src).iterdir())[3]
        moved.append(str(shutil.move(path, train / dest / path.name)))
    result = audit(tmp_path, train, model="mini")
    ranked = list(csv.DictReader((tmp_path / "out" / "label_quality.csv").open(encoding="utf-8")))
    assert len(ranked) == 42 and {r["path"] for r in ranked[:2]} == set(moved)  # the two lowest scores
    assert {r["path"]: r["suggested"] for r in ranked[:2]} == {
        moved[0]: "red",
        moved[1]: "blue",
    }  # where they came from
    assert float(ranked[1]["label_quality"]) < 0.5 < float(ranked[2]["label_quality"])
    flagged = result.tables["label_issues"]
    assert flagged and flagged[0]["path"] in moved and ranked[0]["flagged"] == "True"
    assert set(moved) >= {r["path"] for r in flagged[:2]}
    assert checks(result)["label issues"] == "warning"


def test_duplicates_across_train_and_val_found_none_on_distinct_images(tmp_path: Path) -> None:
    train = make_split(tmp_path / "train", per_class=6, seed=1)
    val = make_split(tmp_path / "val", per_class=3, seed=2)
    clean = audit(tmp_path, train, val)
    assert clean.tables["duplicates"] == []
    assert not any(f["check"].startswith("duplicates") for f in clean.findings)

    sources = [sorted((train / c).iterdir())[k] for c, k in (("red", 0), ("green", 1), ("blue", 2))]
    exact = val / "red" / "exact.jpg"
    shutil.copyfile(sources[0], exact)
    shutil.copyfile(sources[0], val / "red" / "exact2.jpg")  # a group of three byte copies
    reencoded = val / "green" / "reencoded.jpg"
    Image.open(sources[1]).save(reencoded, quality=40)
    resized = val / "blue" / "resized.png"  # another format too
    Image.open(sources[2]).resize((36, 36), Image.LANCZOS).save(resized)
    result = audit(tmp_path, train, val)
    found = {frozenset((r["path_a"], r["path_b"])): r for r in result.tables["duplicates"]}
    expected = {
        frozenset((str(sources[0]), str(exact))): "exact",
        frozenset((str(sources[0]), str(val / "red" / "exact2.jpg"))): "exact",  # listed once, not also as near
        frozenset((str(sources[1]), str(reencoded))): "near",
        frozenset((str(sources[2]), str(resized))): "near",
    }
    assert {pair: row["kind"] for pair, row in found.items()} == expected
    assert {row["where"] for row in found.values()} == {"across splits"}
    assert checks(result)["duplicates across splits"] == "severe"
    csv_text = (tmp_path / "out" / "duplicates.csv").read_text(encoding="utf-8")
    assert csv_text.splitlines()[0].startswith("where,kind,path_a") and str(exact) in csv_text


def test_bad_input_is_reported_not_fatal(tmp_path: Path) -> None:
    train = make_split(tmp_path / "train", per_class=6, seed=3)
    (train / "empty").mkdir()
    (train / "=HYPERLINK(1)").mkdir()  # a class name a spreadsheet would run as a formula
    broken = train / "broken"
    broken.mkdir()
    (broken / "garbage.jpg").write_bytes(b"not an image at all")
    whole = (train / "red" / "red_3_0.jpg").read_bytes()
    (broken / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    descriptions = tmp_path / "descriptions.yaml"
    descriptions.write_text(YAML, encoding="utf-8")  # no description for "empty" or "broken"
    out = tmp_path / "out"
    status = audit_main([str(train), "--out", str(out), "--model", "tiny", "--descriptions", str(descriptions)])
    assert status == 1
    report = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    severe = [f for f in report["findings"] if f["severity"] == "severe"]
    assert {f["subject"] for f in severe if f["check"] == "empty class"} == {"empty", "broken", "=HYPERLINK(1)"}
    missing = next(f for f in severe if f["check"] == "missing description")
    assert "broken" in missing["message"] and "empty" in missing["message"]
    problems = {Path(r["path"]).name: r["problem"] for r in report["tables"]["files"]}
    assert problems == {"garbage.jpg": "unreadable", "cut.jpg": "truncated"}
    assert report["summary"]["severe"] == len(severe)
    page = (out / "audit.html").read_text(encoding="utf-8")
    assert "missing description" in page and "garbage.jpg" in page and "<script" not in page
    assert {r["class"] for r in report["tables"]["zeroshot_recall"]} == set(report["class_names"])
    assert len(report["class_names"]) == 6
    assert "train,'=HYPERLINK(1),0,0" in (out / "classes.csv").read_text(encoding="utf-8").splitlines()


def test_exit_status_clean_and_usage(tmp_path: Path, capsys) -> None:
    train = make_split(tmp_path / "train", per_class=6, seed=4)
    out = tmp_path / "out"
    assert audit_main([str(train), "--out", str(out), "--model", "tiny"]) == 0
    assert "0 severe" in capsys.readouterr().out
    assert (out / "audit.html").is_file() and (out / "label_issues.csv").is_file()
    first = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert first["facts"]["embeddings"].startswith("written to")
    assert audit_main([str(train), "--out", str(out), "--model", "tiny"]) == 0  # again: cached embeddings
    assert json.loads((out / "audit.json").read_text(encoding="utf-8"))["facts"]["embeddings"].startswith("reused")
    assert audit_main([str(train)]) == 2  # --out missing
    assert audit_main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert audit_main([str(train), "--out", str(out), "--test-size", "1.5"]) == 2


def test_train_audit_refuses_on_severe_findings_and_trains_when_clean(tmp_path: Path) -> None:
    from cfg import CFG
    from clipcls.commands.train import main as train_main
    from tests.conftest import cfg_argv, tiny_cfg

    train = make_split(tmp_path / "train", per_class=6, seed=5)
    yaml_file = tmp_path / "descriptions.yaml"
    yaml_file.write_text(YAML, encoding="utf-8")
    cfg = tiny_cfg(train, yaml_file, tmp_path / "runs")
    val = make_split(tmp_path / "val", per_class=2, seed=6)
    cfg["val_dataset_dir"] = str(val)
    leaked = sorted((train / "red").iterdir())[0]
    shutil.copyfile(leaked, val / "red" / "leaked.jpg")  # train/val leakage: severe
    assert train_main([*cfg_argv(cfg), "--audit"], CFG) == 1
    assert (tmp_path / "runs" / "audit" / "audit.html").is_file()
    assert not (tmp_path / "runs" / "test").exists()  # nothing trained
    (val / "red" / "leaked.jpg").unlink()
    assert train_main([*cfg_argv(cfg), "--audit"], CFG) == 0
    assert (tmp_path / "runs" / "test" / "checkpoints").is_dir()
    report = json.loads((tmp_path / "runs" / "audit" / "audit.json").read_text(encoding="utf-8"))
    assert report["summary"]["severe"] == 0


@pytest.mark.parametrize("bits", [0, 3])
def test_phash_candidates_pairs_each_once(bits: int) -> None:
    from clipcls.audit.duplicates import phash_candidates

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    flipped = hashes[10] ^ np.uint64((1 << bits) - 1)  # `bits` low bits changed
    hashes = np.append(hashes, [hashes[10], flipped])
    pairs = phash_candidates(hashes, np.ones(len(hashes), bool), max_bits=3)
    found = {(int(i), int(j)): int(d) for i, j, d in pairs}
    assert found[(10, 5000)] == 0 and found[(10, 5001)] == bits and found[(5000, 5001)] == bits
    assert all(i < j for i, j in found) and len(found) == 3  # random 64-bit hashes are > 3 bits apart


def test_a_trained_model_embeds_at_its_own_size(tmp_path: Path) -> None:
    """--model may be a run, checkpoint or export: its fine-tuned image tower and input size."""
    from tests.conftest import tiny_hf_export

    export = tiny_hf_export(tmp_path)
    train = make_split(tmp_path / "train", per_class=6, seed=7)
    result = audit(tmp_path, train, model=str(export))
    assert result.facts["model"] == str(export) and result.facts["input size"] == "32x32"
    assert result.facts["embedded"] == 18
