"""Issue 4, items 6, 8 and 10: loading runs no foreign code, checkpoints hold only plain data,
the decompression-bomb limit stays on, and YAML is read safely -- through the real loaders and
the training pipeline (the unit tests of images.py and descriptions.py cover the rest)."""

from __future__ import annotations

import ast
import dataclasses
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import CheckpointError, load_checkpoint_file
from clipcls.inference.trained_model import load_trained
from tests.conftest import cfg_argv

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_CODE = sorted([*(ROOT / "clipcls").rglob("*.py"), ROOT / "train.py", ROOT / "cfg.py"])


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


class Payload:
    """Unpickling this calls open(marker, "w"): the file appearing means foreign code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


# --- item 6 ------------------------------------------------------------------------------------
def test_checkpoint_with_pickle_payload_is_refused_by_every_loader(base_cfg, tmp_path, capsys):
    assert run(base_cfg) == 0
    ckpt_dir = Path(base_cfg["output_dir"]) / "test" / "checkpoints"
    evil = load_checkpoint_file(ckpt_dir / "last.ckpt")
    marker = tmp_path / "payload-ran"
    evil["clipcls"]["class_names"] = [Payload(marker), "red", "곰팡이"]
    evil_path = tmp_path / "evil.ckpt"
    torch.save(evil, evil_path)
    (ckpt_dir / "last.ckpt").write_bytes(evil_path.read_bytes())  # also the file --resume reads

    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {evil_path}: .*refused.*open"):
        load_checkpoint_file(evil_path)
    with pytest.raises(CheckpointError, match="refused"):
        load_trained(evil_path)
    capsys.readouterr()
    assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 2
    err = capsys.readouterr().err
    assert f"error: cannot load checkpoint {ckpt_dir / 'last.ckpt'}" in err and "refused" in err
    assert "weights_only=False" not in err  # torch's advice to switch the check off is not passed on
    assert not marker.exists()

    # the payload is live: an unsafe load would have run it
    torch.load(evil_path, weights_only=False)
    assert marker.exists()


def test_export_with_pickle_in_place_of_safetensors_is_refused(base_cfg, tmp_path):
    from clipcls.export.huggingface import export_model

    assert run(base_cfg) == 0
    marker = tmp_path / "payload-ran"
    payload = tmp_path / "payload.pt"
    torch.save({"weight": Payload(marker)}, payload)
    export = export_model(load_trained(Path(base_cfg["output_dir"]) / "test"), tmp_path / "export")
    assert load_trained(export).class_names == ["green", "red", "곰팡이"]

    (export / "head.safetensors").write_bytes(payload.read_bytes())
    with pytest.raises(CheckpointError, match="cannot load export"):
        load_trained(export)
    # CLIP weights as a pickle (pytorch_model.bin) instead of model.safetensors
    export = export_model(load_trained(Path(base_cfg["output_dir"]) / "test"), tmp_path / "export2")
    (export / "model.safetensors").unlink()
    (export / "pytorch_model.bin").write_bytes(payload.read_bytes())
    with pytest.raises(CheckpointError, match=r"cannot load export .*could run code; refused \(io.open\)"):
        load_trained(export)
    assert not marker.exists()


PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def non_plain(value, where: str = "checkpoint") -> list[str]:
    """Paths inside `value` to anything other than dict/list/tuple of plain values and tensors."""
    if isinstance(value, (dict, OrderedDict)):
        return [
            bad
            for key, item in value.items()
            for bad in non_plain(key, f"{where} key") + non_plain(item, f"{where}[{key!r}]")
        ]
    if isinstance(value, (list, tuple)):
        return [bad for i, item in enumerate(value) for bad in non_plain(item, f"{where}[{i}]")]
    return [] if isinstance(value, PLAIN) else [f"{where}: {type(value).__name__}"]


def test_checkpoints_hold_only_plain_types_and_tensors(base_cfg):
    cfg = {**base_cfg, "checkpoint_every_n_steps": 2, "early_stopping_patience": 3}  # every callback's state
    assert run(cfg) == 0
    ckpts = sorted((Path(cfg["output_dir"]) / "test" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["best-epoch000.ckpt", "last.ckpt"]
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # no allow-listed globals needed
        assert non_plain(ckpt) == []
        assert {"state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks", "clipcls"} <= set(ckpt)


def safety_problems(source: str, where: str) -> list[str]:
    """Calls and assignments in `source` that would switch off a safety check."""
    problems = []
    tree = ast.parse(source, filename=where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func, kwargs = ast.unparse(node.func), {k.arg: ast.unparse(k.value) for k in node.keywords}
            if func == "torch.load" and kwargs.get("weights_only") != "True":
                problems.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            if kwargs.get("weights_only") == "False" or kwargs.get("trust_remote_code") == "True":
                problems.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            if func in ("pickle.load", "pickle.loads", "yaml.unsafe_load", "yaml.full_load", "dill.load"):
                problems.append(f"{where}:{node.lineno}: {func}")
            if func == "yaml.load" and kwargs.get("Loader", "Loader").split(".")[-1] in (
                "Loader",
                "UnsafeLoader",
                "FullLoader",
            ):
                problems.append(f"{where}:{node.lineno}: yaml.load with an unsafe loader")
            if func == "setattr" and len(node.args) > 1 and "MAX_IMAGE_PIXELS" in ast.unparse(node.args[1]):
                problems.append(f"{where}:{node.lineno}: setattr of MAX_IMAGE_PIXELS")
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in ("MAX_IMAGE_PIXELS", "LOAD_TRUNCATED_IMAGES"):
                problems.append(f"{where}:{node.lineno}: assigns {ast.unparse(target)}")
    return problems


def test_safety_check_finds_what_it_looks_for():
    bad = (
        "torch.load(f)\ntorch.load(f, weights_only=False)\nImage.MAX_IMAGE_PIXELS = None\n"
        "PIL.Image.MAX_IMAGE_PIXELS += 1\nyaml.load(t)\nyaml.load(t, Loader=yaml.FullLoader)\n"
        "pickle.loads(b)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n"
    )
    assert len(safety_problems(bad, "bad.py")) == 9  # the weights_only=False line counts twice
    good = "torch.load(f, weights_only=True)\nyaml.load(t, Loader=SafeLoader)\nlimit = Image.MAX_IMAGE_PIXELS\n"
    assert safety_problems(good, "good.py") == []


def test_product_code_never_disables_the_safety_checks():
    """torch.load always weights_only=True, no unsafe YAML or pickle, no remote code, and the
    decompression-bomb limit is never assigned (let alone set to None)."""
    problems = [
        problem
        for path in PRODUCT_CODE
        for problem in safety_problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert len(PRODUCT_CODE) > 20 and problems == []


# --- item 8 ------------------------------------------------------------------------------------
def test_oversized_image_is_skipped_by_the_training_loader_with_its_path(base_cfg, monkeypatch, caplog):
    from clipcls.data.splits import load_splits as prepare_data
    from clipcls.training.datamodule import ClipDataModule

    big = Path(base_cfg["train_dataset_dir"]) / "red" / "huge.png"
    Image.new("RGB", (80, 80), (200, 30, 30)).save(big)  # 6400 pixels; the others have 576
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # over twice the limit: Pillow's bomb error
    cfg = {**base_cfg, "test_size": 0.125}  # 25 images: 21 train, 4 validation
    data = prepare_data(cfg)
    assert str(big) in [data.train.paths[i] for i in range(len(data.train.labels))]
    datamodule = ClipDataModule(data, cfg, [0.5] * 3, [0.5] * 3)
    batches = list(datamodule.train_dataloader())
    assert sum(len(b.labels) for b in batches if b.pixels is not None) == len(data.train.labels) - 1
    assert all(b.pixels.shape[1:] == (3, 32, 32) for b in batches if b.pixels is not None)
    failures = [failure for b in batches for failure in b.failures]
    assert len(failures) == 1 and "DecompressionBomb" in failures[0][1]
    assert datamodule.train_set.paths[failures[0][0]] == str(big)
    assert Image.MAX_IMAGE_PIXELS == 3000  # the loader tightened nothing and relaxed nothing


# --- item 10 -----------------------------------------------------------------------------------
def test_yaml_11_keys_match_folders_named_no_on_010_null(tmp_path):
    from clipcls.data.splits import load_splits as prepare_data

    names = ["no", "on", "010", "null"]
    for i, name in enumerate(names):
        (tmp_path / "train" / name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i + j, np.uint8)).save(tmp_path / "train" / name / f"{j}.png")
    yaml_file = tmp_path / "descriptions.yaml"
    yaml_file.write_text("".join(f"{name}: a photo of {name}\n" for name in names))  # unquoted on purpose
    cfg = {
        **dataclasses.asdict(CFG()),
        "class_description_yaml_file": str(yaml_file),
        "train_dataset_dir": str(tmp_path / "train"),
        "test_size": 0.5,
    }
    data = prepare_data(cfg)
    assert data.class_names == sorted(names) and all(isinstance(n, str) for n in data.class_names)
    assert data.descriptions == {name: [f"a photo of {name}"] for name in sorted(names)}


def test_unsafe_or_duplicate_yaml_stops_training_naming_the_file(base_cfg, tmp_path, capsys):
    yaml_file = Path(base_cfg["class_description_yaml_file"])
    marker = tmp_path / "yaml-payload-ran"
    yaml_file.write_text(f'red: !!python/object/apply:builtins.open ["{marker}", "w"]\ngreen: g\n곰팡이: b\n')
    assert run(base_cfg) == 2
    err = capsys.readouterr().err
    assert f"error: {yaml_file}: cannot read class descriptions" in err and "python/object/apply" in err
    assert not marker.exists()

    yaml_file.write_text("red: a red square\ngreen: a green square\nred: again\n곰팡이: blue\n")
    assert run(base_cfg) == 2
    err = capsys.readouterr().err
    assert str(yaml_file) in err and "red" in err and "duplicate" in err.lower()
    assert not (Path(base_cfg["output_dir"]) / "test").exists()  # refused before anything was written
