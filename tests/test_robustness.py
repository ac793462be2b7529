"""Issue 4, items 7, 9, 11 and 12: broken image files do not stop training (and are named),
every pixel mode reaches the model as RGB, a non-finite loss leaves the weights alone, and a
trained model keeps its class indices on any folder layout."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import cfg_argv, make_folder
from tests.faults import run_train_py


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


# --- item 7 ------------------------------------------------------------------------------------
def test_broken_files_with_two_workers_are_skipped_and_named(base_cfg):
    from clipcls.data.splits import load_splits as prepare_data

    root = Path(base_cfg["train_dataset_dir"])
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(jpeg, "JPEG")
    bad = {
        root / "red" / "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        root / "green" / "empty.jpg": b"",
        root / "곰팡이" / "notes.png": "이건 그림이 아닙니다 - not an image\n".encode(),
    }
    for path, content in bad.items():
        path.write_bytes(content)
    cfg = {**base_cfg, "num_workers": 2, "epochs": 1}
    result = run_train_py(cfg)  # a child process: worker processes log to its stderr
    assert result.returncode == 0, result.stderr[-3000:]
    for path in bad:
        assert f"skipping unreadable image: cannot load image {path}" in result.stderr
    # the run is complete, and scored every readable validation image
    data = prepare_data(cfg)
    val_paths = [data.val.paths[i] for i in range(len(data.val.labels))]
    metrics = json.loads((Path(cfg["output_dir"]) / "test" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_images"] == len(val_paths) - len(set(map(str, bad)) & set(val_paths))
    steps = -(-len(data.train.labels) // cfg["batch_size"])  # every batch trained, bad files or not
    assert load_checkpoint_file(Path(cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt")["global_step"] == steps


# --- item 9 ------------------------------------------------------------------------------------
def mode_zoo(folder: Path) -> dict[str, Path]:
    """One file per awkward pixel mode, plus a sideways phone photo (EXIF orientation 6)."""
    folder.mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 65535, 48), (32, 1)).astype(np.uint16)
    palette = Image.new("P", (48, 32), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 254 * 3)
    palette.paste(1, (0, 0, 24, 32))
    sideways = Image.new("RGB", (64, 32), (0, 0, 0))
    sideways.paste((255, 255, 255), (0, 0, 16, 16))  # white in the stored top-left corner
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    files = {
        "L": (Image.new("L", (48, 32), 90), "png", {}),
        "LA": (Image.new("LA", (48, 32), (90, 128)), "png", {}),
        "P": (palette, "png", {"transparency": 0}),
        "RGBA": (Image.new("RGBA", (48, 32), (10, 200, 30, 64)), "png", {}),
        "CMYK": (Image.new("CMYK", (48, 32), (0, 255, 255, 0)), "jpg", {}),
        "I;16": (Image.fromarray(ramp), "png", {}),
        "exif6": (sideways, "jpg", {"exif": exif, "quality": 95}),
    }
    paths = {}
    for name, (image, ext, params) in files.items():
        paths[name] = folder / f"{name.replace(';', '_')}.{ext}"
        image.save(paths[name], **params)
    return paths


def test_every_pixel_mode_reaches_the_model_as_three_channels(tmp_path):
    from clipcls.data.dataset import ImageDataset
    from clipcls.data.index import index_folder
    from clipcls.data.loaders import make_loader
    from clipcls.data.transforms import build_transform

    paths = mode_zoo(tmp_path / "data" / "modes")
    index = index_folder(tmp_path / "data")
    size = (32, 32)
    dataset = ImageDataset.from_index(index, build_transform(size, [0.5] * 3, [0.5] * 3, "none"), draft_size=size)
    ((pixels, labels, positions, failures),) = list(make_loader(dataset, batch_size=len(paths), workers=0))
    assert failures == []
    assert pixels.shape == (len(paths), 3, 32, 32) and pixels.dtype == torch.float32
    by_name = {Path(index.paths[int(p)]).stem.replace("_", ";"): pixels[i] for i, p in enumerate(positions)}
    assert set(by_name) == set(paths)
    # the 16-bit ramp keeps a ramp, not the 2 levels of a clipped conversion; grey stays grey
    grey = by_name["I;16"]
    assert len(torch.unique(grey[0, 16])) > 16 and torch.equal(grey[0], grey[1])
    # the sideways photo is upright: its white corner is now top-right
    upright = by_name["exif6"].mean(0)  # normalised: white is +1, black -1
    assert upright[:4, -4:].mean() > 0.8 and upright[:4, :4].mean() < -0.8
    # transparent areas are composited on white, CMYK red stays red
    assert torch.allclose(by_name["P"][:, :, -4:], torch.ones(3, 32, 4))
    assert by_name["CMYK"][0].mean() > 0.9 and by_name["CMYK"][1:].mean() < -0.9


# --- item 11 -----------------------------------------------------------------------------------
class WeightWatcher(pl.Callback):
    """Records, for every training batch, whether the trainable weights changed."""

    def __init__(self) -> None:
        self.changed: list[bool] = []

    def _weights(self, module: pl.LightningModule) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in module.parameters() if p.requires_grad])

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before = self._weights(module).clone()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.changed.append(not torch.equal(self.before, self._weights(module)))


def poison_steps(monkeypatch, steps: set[int] | None) -> None:
    """Make the training loss NaN at these global steps (all of them for None)."""
    from clipcls.training.module import ClipClassifierModule

    shared_step = ClipClassifierModule.shared_step

    def poisoned(self, batch):
        out = shared_step(self, batch)
        if self.training and (steps is None or self.global_step in steps):
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(ClipClassifierModule, "shared_step", poisoned)


def test_non_finite_loss_skips_the_step_and_keeps_weights(base_cfg, monkeypatch):
    import clipcls.training.trainer

    watcher = WeightWatcher()
    build = clipcls.training.trainer.build_callbacks
    monkeypatch.setattr(clipcls.training.trainer, "build_callbacks", lambda c, d: [*build(c, d), watcher])
    poison_steps(monkeypatch, {1})
    with pytest.warns(UserWarning, match=r"non-finite loss at step 1 \(batch 1\): step skipped, weights unchanged"):
        assert run(base_cfg) == 0
    assert watcher.changed == [True, False, True]
    ckpt = load_checkpoint_file(Path(base_cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(w).all() for w in ckpt["state_dict"].values())


def test_loss_non_finite_for_many_steps_stops_with_an_error_and_keeps_the_checkpoint(base_cfg, monkeypatch, capsys):
    import clipcls.training.module

    assert run(base_cfg) == 0
    last = Path(base_cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    monkeypatch.setattr(clipcls.training.module, "MAX_SKIPPED_STEPS_IN_A_ROW", 2)
    poison_steps(monkeypatch, None)
    capsys.readouterr()
    with pytest.warns(UserWarning, match="non-finite loss"):
        assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 2
    err = capsys.readouterr().err
    assert "error: training diverged: the loss was not finite for 2 steps in a row (steps 3 to 4)" in err
    assert f"{last} holds the state from before" in err
    assert last.read_bytes() == before


# --- item 12 -----------------------------------------------------------------------------------
def predictions_by_file(model, folder: Path, class_names: list[str]) -> dict[str, tuple[str, str]]:
    """file name -> (labelled class, predicted class), through index_folder and run_inference."""
    from clipcls.data.index import index_folder
    from clipcls.evaluation.evaluation import eval_loader
    from clipcls.inference.scoring import run_inference

    index = index_folder(folder, class_names=class_names)
    loader = eval_loader(index, model.image_size, model.image_mean, model.image_std, 64, 0, "cpu")
    out = run_inference(model.classifier, loader)
    return {
        f"{Path(index.paths[int(p)]).parent.name}/{Path(index.paths[int(p)]).name}": (
            model.class_names[int(t)],
            model.class_names[int(k)],
        )
        for p, t, k in zip(out["positions"], out["targets"], out["head_logits"].argmax(1))
    }


def test_class_indices_follow_the_model_not_the_folder(base_cfg, tmp_path, capsys):
    from clipcls.commands.evaluate import main as evaluate
    from clipcls.commands.predict import main as predict
    from clipcls.data.index import DatasetError, index_folder
    from clipcls.inference.trained_model import load_trained

    assert run(base_cfg) == 0
    run_dir = Path(base_cfg["output_dir"]) / "test"
    model = load_trained(run_dir)
    assert model.class_names == ["green", "red", "곰팡이"]
    reference = predictions_by_file(model, Path(base_cfg["train_dataset_dir"]), model.class_names)

    # "green" missing: a fresh folder listing would make red 0 and 곰팡이 1
    partial = make_folder(tmp_path / "partial")
    for image in (partial / "green").iterdir():
        image.unlink()
    (partial / "green").rmdir()
    index = index_folder(partial, class_names=model.class_names)
    assert index.class_names == model.class_names and sorted(set(index.labels.tolist())) == [1, 2]
    scored = predictions_by_file(model, partial, model.class_names)
    assert len(scored) == 16 and all(truth == name.split("/")[0] for name, (truth, _) in scored.items())
    assert scored == {name: reference[name] for name in scored}  # same files, same predicted classes
    assert {guess for _, guess in scored.values()} == {"red", "곰팡이"}  # (trivially separable colours)

    # the same through `clipcls evaluate`
    assert (
        evaluate(
            [str(run_dir), "--data", str(partial), "--out", str(tmp_path / "eval"), "--workers", "0", "--device", "cpu"]
        )
        == 0
    )
    evaluation = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert evaluation["class_names"] == ["green", "red", "곰팡이"] and evaluation["missing_classes"] == ["green"]
    with (tmp_path / "eval" / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {f"{Path(r['path']).parent.name}/{Path(r['path']).name}": (r["true"], r["head"]) for r in rows} == scored
    # and through `clipcls predict`, which reads no labels at all
    assert (
        predict([str(run_dir), str(partial), "--out", str(tmp_path / "pred.csv"), "--workers", "0", "--device", "cpu"])
        == 0
    )
    with (tmp_path / "pred.csv").open(newline="", encoding="utf-8") as handle:
        predicted = {
            f"{Path(r['path']).parent.name}/{Path(r['path']).name}": r["prediction"] for r in csv.DictReader(handle)
        }
    assert predicted == {name: guess for name, (_, guess) in scored.items()}

    # an extra class the model never saw ("blue" sorts first) is refused by name
    (partial / "blue").mkdir()
    Image.new("RGB", (24, 24), (0, 0, 255)).save(partial / "blue" / "0.jpg")
    with pytest.raises(DatasetError, match=r"class folders the model does not know: \['blue'\]"):
        index_folder(partial, class_names=model.class_names)
    capsys.readouterr()
    assert (
        evaluate(
            [
                str(run_dir),
                "--data",
                str(partial),
                "--out",
                str(tmp_path / "eval2"),
                "--workers",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "blue" in capsys.readouterr().err
