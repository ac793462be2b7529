"""Training options that had no test (issue 22): each run on the tiny model at 32 px (seconds),
each asserting what the option changes in the run's checkpoint, metrics or messages."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import torch

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import make_folder, make_module

# conftest's data: 19 training images in batches of 8 -> 3 steps an epoch (5 validation images)
STEPS_PER_EPOCH = 3


def run(cfg: dict, *extra: str) -> int:
    from tests.conftest import cfg_argv

    return main(cfg_argv(cfg) + list(extra), CFG)


def ckpt_dir(cfg: dict) -> Path:
    return Path(cfg["output_dir"]) / cfg["run_name"] / "checkpoints"


def last(cfg: dict) -> dict:
    return load_checkpoint_file(ckpt_dir(cfg) / "last.ckpt")


def val_rows(cfg: dict) -> list[dict]:
    """The epoch-end validation rows of the run's metrics.csv."""
    with (Path(cfg["output_dir"]) / cfg["run_name"] / "logs" / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row.get("val/loss")]


def test_accumulate_grad_batches_steps_the_optimizer_every_second_batch(base_cfg):
    cfg = {**base_cfg, "accumulate_grad_batches": 2}
    assert run(cfg) == 0
    # 3 batches: an update after batches 2 and 3 (Lightning steps on an epoch's last batch)
    ckpt = last(cfg)
    assert ckpt["global_step"] == 2 and ckpt["lr_schedulers"][0]["last_epoch"] == 2
    state = ckpt["optimizer_states"][0]["state"]
    assert {float(s["step"]) for s in state.values()} == {2.0}


def test_early_stopping_stops_when_the_monitor_stops_improving(base_cfg):
    # lr 1e-9: predictions do not move, so val/macro_f1 never improves on epoch 0's; with a
    # patience of 1 the run ends after epoch 1 of 6
    cfg = {**base_cfg, "epochs": 6, "lr": 1e-9, "early_stopping_patience": 1}
    assert run(cfg) == 0
    ckpt = last(cfg)
    assert ckpt["global_step"] == 2 * STEPS_PER_EPOCH and ckpt["epoch"] == 1
    assert len({row["val/macro_f1"] for row in val_rows(cfg)}) == 1


def test_monitor_val_loss_keeps_the_checkpoint_of_the_lowest_validation_loss(base_cfg):
    cfg = {**base_cfg, "epochs": 3, "monitor": "val/loss"}
    assert run(cfg) == 0
    losses = {int(row["epoch"]): float(row["val/loss"]) for row in val_rows(cfg)}
    assert sorted(losses) == [0, 1, 2]
    (best,) = ckpt_dir(cfg).glob("best-*.ckpt")
    saved = load_checkpoint_file(best)
    assert saved["epoch"] == min(losses, key=losses.get)  # minimised, not maximised
    callback = next(v for k, v in saved["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert callback["monitor"] == "val/loss" and callback["best_model_score"].item() == min(losses.values())


def test_freeze_image_trains_the_head_and_leaves_the_image_tower(base_cfg):
    from clipcls.data.splits import load_splits

    cfg = {**base_cfg, "freeze_image": True}
    data = load_splits(cfg)
    before = make_module(cfg, data.class_names, data.descriptions).state_dict()
    assert run(cfg) == 0
    after = last(cfg)["state_dict"]
    image = [k for k in before if ".vision_model." in k or ".visual_projection." in k]
    head = [k for k in before if k.startswith("model.head.")]
    assert len(image) > 10 and head
    for key in image:
        assert torch.equal(after[key], before[key]), key
    assert any(not torch.equal(after[key], before[key]) for key in head)


def test_head_mlp_trains_a_two_layer_head(base_cfg, tmp_path):
    from clipcls.inference.trained_model import load_trained

    cfg = {**base_cfg, "head": "mlp", "head_init": "random"}  # the MLP has no zero-shot start
    assert run(cfg) == 0
    weights = {k: v for k, v in last(cfg)["state_dict"].items() if k.startswith("model.head.") and v.ndim == 2}
    assert [tuple(v.shape)[0] for v in weights.values()][-1] == 3 and len(weights) == 2
    model = load_trained(ckpt_dir(cfg).parent)
    images = [str(p) for p in sorted(Path(cfg["train_dataset_dir"]).glob("*/*.jpg"))[:4]]
    from clipcls.inference.predictor import Predictor

    prediction = Predictor(model, device="cpu").predict(images)
    assert prediction.head_logits.shape == (4, 3)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(base_cfg):
    from clipcls.data.dataset import Batch

    names, descriptions = ["green", "red", "곰팡이"], {"green": ["g"], "red": ["r"], "곰팡이": ["b"]}
    pixels = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = Batch(pixels, torch.arange(6) % 3, torch.arange(6), [])
    results = []
    for on in (False, True):
        module = make_module({**base_cfg, "gradient_checkpointing": on}, names, descriptions).train()
        assert module.model.clip.vision_model.encoder.gradient_checkpointing is on
        torch.manual_seed(0)
        loss = module.shared_step(batch)["loss"]
        loss.backward()
        grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (eager_loss, eager), (ckpt_loss, checkpointed) = results
    torch.testing.assert_close(ckpt_loss, eager_loss)
    assert eager.keys() == checkpointed.keys() and len(eager) > 10
    for name, grad in eager.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_resume_refuses_data_with_other_classes(base_cfg, capsys):
    assert run(base_cfg) == 0
    # a fourth class, described, joins the data
    make_folder(Path(base_cfg["output_dir"]).parent / "more", per_class=8)
    shutil.copytree(Path(base_cfg["output_dir"]).parent / "more" / "red", Path(base_cfg["train_dataset_dir"]) / "blue")
    with open(base_cfg["class_description_yaml_file"], "a", encoding="utf-8") as f:
        f.write('"blue": a blue square\n')
    capsys.readouterr()
    before = (ckpt_dir(base_cfg) / "last.ckpt").read_bytes()
    assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 2
    err = capsys.readouterr().err
    assert (
        "was trained on classes ['green', 'red', '곰팡이'], but the data has ['blue', 'green', 'red', '곰팡이']" in err
    )
    assert (ckpt_dir(base_cfg) / "last.ckpt").read_bytes() == before


def test_resume_from_a_run_directory_or_a_checkpoint_outside_it(base_cfg, tmp_path):
    assert run(base_cfg) == 0
    run_dir = ckpt_dir(base_cfg).parent
    # a run directory: continues its last.ckpt, in that directory
    assert run({**base_cfg, "epochs": 2, "run_name": None}, "--resume", str(run_dir)) == 0
    assert last(base_cfg)["global_step"] == 2 * STEPS_PER_EPOCH
    # a .ckpt copied elsewhere: continues from it into a new run directory under output_dir
    elsewhere = tmp_path / "kept" / "epoch2.ckpt"
    elsewhere.parent.mkdir()
    shutil.copy(ckpt_dir(base_cfg) / "last.ckpt", elsewhere)
    untouched = (ckpt_dir(base_cfg) / "last.ckpt").read_bytes()
    assert run({**base_cfg, "epochs": 3, "run_name": None}, "--resume", str(elsewhere)) == 0
    (new_run,) = [p for p in Path(base_cfg["output_dir"]).iterdir() if p != run_dir]
    assert load_checkpoint_file(new_run / "checkpoints" / "last.ckpt")["global_step"] == 3 * STEPS_PER_EPOCH
    assert (ckpt_dir(base_cfg) / "last.ckpt").read_bytes() == untouched


def test_16_mixed_on_the_cpu_is_bf16_with_lightnings_warning(base_cfg, tmp_path):
    """fp16 autocast does not exist on the CPU: Lightning runs bf16-mixed instead and says so."""
    import pytest

    from clipcls.training.trainer import build_trainer

    with pytest.warns(UserWarning, match="AMP with fp16 is not supported on CPU. Using `precision='bf16-mixed'`"):
        trainer = build_trainer({**base_cfg, "precision": "16-mixed"}, tmp_path / "run")
    assert trainer.precision == "bf16-mixed"
