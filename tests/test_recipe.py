"""Issue 18, items 3-6: the text scorer where the head is not trained, LP-FT, layer-wise lr decay,
L2-SP and WiSE-FT as a config option, each checked where the tiny CLIP can show its mechanism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import WALL_CLASSES as CLASSES
from tests.conftest import WALL_DESCRIPTIONS as DESCRIPTIONS
from tests.conftest import cfg_argv, make_module


def fit(cfg: dict, callbacks: list | None = None):
    """Train in-process as `clipcls train` does, with extra Lightning callbacks."""
    from clipcls.data.splits import load_splits
    from clipcls.training.datamodule import ClipDataModule
    from clipcls.training.module import build_module
    from clipcls.training.trainer import build_trainer

    data = load_splits(cfg)
    module = build_module(cfg, data.class_names, data.descriptions, data.train.counts().tolist())
    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    trainer = build_trainer(cfg, Path(cfg["output_dir"]) / cfg["run_name"])
    trainer.callbacks.extend(callbacks or [])
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


def image_tower(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.model.clip.named_parameters() if n.startswith("vision_model.")}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> int:
    return sum(not torch.equal(before[n], after[n]) for n in before)


# --- item 5: the text scorer where the head is not trained ---
def test_default_scorer_is_text_exactly_when_the_head_gets_no_loss():
    from clipcls.inference.scoring import default_scorer

    assert default_scorer({"fc_weight": 0.0, "freeze_text": False}) == "text"
    assert default_scorer({"fc_weight": 0}) == "text"
    assert default_scorer({"fc_weight": 0.5}) == "head"
    assert default_scorer({}) == "head"  # cfg.py's default trains the head


def test_a_text_tower_run_without_head_loss_predicts_with_the_text_scorer(base_cfg):
    """`freeze_text: false, fc_weight: 0` (FLYP): the text tower moves while the head keeps its
    initial weights, so validation, the checkpoint choice and predict must read the text scorer."""
    from cfg import CFG
    from clipcls.commands.train import main
    from clipcls.inference.predictor import Predictor
    from clipcls.inference.trained_model import load_trained

    cfg = {**base_cfg, "freeze_text": False, "sim_weight": 1.0, "fc_weight": 0.0, "epochs": 1}
    assert main(cfg_argv(cfg), CFG) == 0
    model = load_trained(Path(cfg["output_dir"]) / "test")
    with torch.no_grad():  # a head that would call every image class 0: only text may decide
        model.classifier.head.bias[0] += 1e4
    predictor = Predictor(model, "cpu")
    assert predictor.scorer == "text"
    images = sorted(Path(cfg["train_dataset_dir"]).rglob("*.jpg"))
    prediction = predictor.predict(images)
    pixels = torch.stack([predictor.transform(__import__("PIL.Image").Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        text = model.classifier(pixels)["text_logits"].argmax(1)
    assert [predictor.class_names[int(i)] for i in text] == list(prediction.labels)
    assert len(set(prediction.labels)) > 1  # not the sabotaged head's single class
    # the module's validation predictions read the same scorer
    module = make_module(cfg, CLASSES, DESCRIPTIONS).eval()
    assert module.scorer == "text"
    with torch.no_grad():
        module.model.head.bias[0] += 1e4
        batch = type("B", (), {"pixels": pixels[:6], "labels": torch.zeros(6, dtype=torch.long), "positions": None})
        out = module.shared_step(batch)
    assert torch.equal(out["preds"], out["text_logits"].argmax(1))


# --- item 3: LP-FT ---
def test_lp_ft_freezes_the_image_tower_for_the_probe_epochs_then_trains_it(base_cfg):
    import pytorch_lightning as pl

    snapshots: list[dict[str, torch.Tensor]] = []

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            snapshots.append(image_tower(module) | {"head": module.model.head.weight.detach().clone()})

    cfg = {**base_cfg, "lp_epochs": 1, "epochs": 2, "lr": 1e-3}
    start = make_module(cfg, CLASSES, DESCRIPTIONS)
    initial = image_tower(start) | {"head": start.model.head.weight.detach().clone()}
    _, module = fit(cfg, [Snapshot()])
    assert len(snapshots) == 2
    tower = [n for n in initial if n != "head"]
    after_probe, after_ft = snapshots
    assert changed({n: initial[n] for n in tower}, after_probe) == 0  # the image tower stood still
    assert not torch.equal(initial["head"], after_probe["head"])  # while the head trained
    assert changed({n: after_probe[n] for n in tower}, after_ft) > len(tower) // 2  # then it trains
    assert all(p.requires_grad for n, p in module.model.clip.named_parameters() if n.startswith("vision_model."))


def test_lp_ft_schedule_holds_the_towers_at_zero_then_warms_up():
    from clipcls.training.module import lp_ft_schedule

    factor = lp_ft_schedule(total=100, warmup=5, lp_steps=40)
    assert [factor(s) for s in (0, 20, 39)] == [0.0, 0.0, 0.0]
    assert factor(40) == pytest.approx(1 / 5) and factor(44) == pytest.approx(1.0)
    assert factor(99) < 0.01


# --- item 6: layer-wise lr decay ---
def test_layer_decay_gives_each_image_block_its_own_learning_rate(base_cfg):
    from clipcls.training.module import param_groups

    cfg = {**base_cfg, "lr": 1e-4, "layer_decay": 0.5}
    module = make_module(cfg, CLASSES, DESCRIPTIONS)
    depth = module.model.clip.config.vision_config.num_hidden_layers
    lr_of = {}
    for group in param_groups(module.model, cfg):
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    named = dict(module.model.clip.named_parameters())
    last = f"vision_model.encoder.layers.{depth - 1}.mlp.fc1.weight"
    assert lr_of[id(named[last])] == pytest.approx(1e-4 * 0.5)
    assert lr_of[id(named["vision_model.encoder.layers.0.mlp.fc1.weight"])] == pytest.approx(1e-4 * 0.5**depth)
    assert lr_of[id(named["vision_model.embeddings.patch_embedding.weight"])] == pytest.approx(
        1e-4 * 0.5 ** (depth + 1)
    )
    assert lr_of[id(named["visual_projection.weight"])] == pytest.approx(1e-4)
    assert lr_of[id(module.model.head.weight)] == pytest.approx(1e-4 * cfg["head_lr_multiplier"])
    # off (1.0): the groups of before, every parameter once
    plain = param_groups(module.model, {**cfg, "layer_decay": 1.0})
    assert {g["kind"] for g in plain} == {"towers", "head"}
    assert sum(len(g["params"]) for g in plain) == sum(p.requires_grad for p in module.model.parameters())


# --- item 6: L2-SP ---
def test_l2sp_penalises_the_distance_from_the_pretrained_image_tower(base_cfg):
    module = make_module({**base_cfg, "l2sp_weight": 0.5}, CLASSES, DESCRIPTIONS)
    assert float(module.l2sp_penalty()) == 0.0  # at the start
    weight = module.model.clip.vision_model.encoder.layers[0].mlp.fc1.weight
    with torch.no_grad():
        weight.add_(0.1)
    assert float(module.l2sp_penalty()) == pytest.approx(0.5 * 0.01 * weight.numel(), rel=1e-4)
    module.l2sp_penalty().backward()  # its gradient pulls the weight back: 2 * 0.5 * 0.1
    assert torch.allclose(weight.grad, torch.full_like(weight, 0.1), atol=1e-6)
    assert not any(k.startswith("l2sp") for k in module.state_dict())  # the anchor is never saved
    assert make_module(base_cfg, CLASSES, DESCRIPTIONS).l2sp_penalty() is None  # off by default


# --- item 6: WiSE-FT as a config option ---
def test_wise_alpha_mixes_the_loaded_run_with_its_start(tmp_path, base_cfg):
    from cfg import CFG
    from clipcls.commands.train import main
    from clipcls.inference.trained_model import load_trained

    cfg = {**base_cfg, "epochs": 1, "wise_alpha": 0.25}
    assert main(cfg_argv(cfg), CFG) == 0
    run = Path(cfg["output_dir"]) / "test"
    mixed = load_trained(run)
    assert mixed.wise_alpha == 0.25
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    tuned = ckpt["state_dict"]["model.head.weight"]
    start = make_module({**cfg, "wise_alpha": None}, mixed.class_names, mixed.descriptions).model.head.weight.detach()
    assert not torch.equal(tuned, start)
    assert torch.allclose(mixed.classifier.head.weight, torch.lerp(start, tuned, 0.25), atol=1e-6)
