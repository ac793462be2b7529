"""The procedural world, its held-out task and the shipped miniature CLIP `mini` (CPU, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from clipcls.model.mini import MINI_SHA256, file_sha256, mini_clip_path, verify_mini
from clipcls.world import evaluate_zeroshot as ez
from clipcls.world import task as task_mod
from clipcls.world.captions import RARE_SAY, caption
from clipcls.world.model import EOT, build_clip, build_tokenizer
from clipcls.world.novel import NOVEL_PAINTERS
from clipcls.world.pretrain import mirrored
from clipcls.world.render import render_scene
from clipcls.world.scene import Mark, is_held_out, pretraining_scene
from clipcls.world.vocab import vocabulary, words

DESCRIPTIONS = "info/mini_task_descriptions.yaml"
SHUFFLED = "info/mini_task_descriptions_shuffled.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    """The machine is shared: keep every test on one CPU thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- The world ---


def test_world_is_deterministic_by_seed():
    for index in range(20):
        scene = pretraining_scene(0, index)
        assert scene == pretraining_scene(0, index)
        assert np.array_equal(render_scene(scene), render_scene(pretraining_scene(0, index)))
        rng_a, rng_b = np.random.default_rng([0, index]), np.random.default_rng([0, index])
        assert caption(scene, rng_a) == caption(scene, rng_b)
    image = render_scene(pretraining_scene(0, 3))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert not np.array_equal(image, render_scene(pretraining_scene(1, 3)))
    assert pretraining_scene(0, 3) != pretraining_scene(1, 3)


def test_captions_vary_in_wording_and_use_only_world_words():
    scene = pretraining_scene(0, 5)
    wordings = {caption(scene, np.random.default_rng(i)) for i in range(200)}
    assert len(wordings) >= 100  # one picture, many true captions
    stream = [caption(pretraining_scene(0, i), np.random.default_rng(i)) for i in range(1000)]
    assert len(set(stream)) >= 950  # 10^5 distinct pairs are easily reached
    known = set(vocabulary())
    assert {w for text in stream for w in words(text)} <= known


def test_held_out_combinations_never_appear_in_pretraining():
    scenes = [pretraining_scene(0, i) for i in range(4000)]
    assert not any(is_held_out(s) for s in scenes)
    for material in ("wallpaper", "painted wall"):  # painted wall is wallpaper's look-alike
        on_it = {s.mark.kind for s in scenes if s.material == material and s.mark}
        assert "dent" in on_it and not on_it & {"tear", "hole", "bubble", "stain", "cluster", "seam"}
        assert all(s.mark is not None for s in scenes if s.material == material)  # never clean
    kinds = {s.mark.kind for s in scenes if s.mark}
    assert {"tear", "bubble", "hole"} <= kinds  # each part of the task's marks exists, elsewhere
    assert not kinds & set(NOVEL_PAINTERS)  # the subtle classes' marks exist nowhere
    for name in task_mod.TASK_KINDS:
        for split in ("train", "val", "test"):
            assert all(is_held_out(task_mod.task_scene(name, split, 0, i)) for i in range(10))


def test_subtle_classes_are_the_novel_marks_and_the_rarest():
    train = task_mod.SPLIT_COUNTS["train"]
    assert set(task_mod.SUBTLE_CLASSES) == {n for n, k in task_mod.TASK_KINDS.items() if k in NOVEL_PAINTERS}
    assert len(task_mod.SUBTLE_CLASSES) == 5 and len(task_mod.TASK_KINDS) == 10
    assert all(8 <= train[n] <= 16 for n in task_mod.SUBTLE_CLASSES)
    assert max(train[n] for n in task_mod.SUBTLE_CLASSES) <= min(
        train[n] for n in task_mod.TASK_KINDS if n not in task_mod.SUBTLE_CLASSES
    )


def test_shifted_split_is_the_test_scenes_through_another_camera():
    for name in ("clean", "hairline"):
        assert task_mod.task_scene(name, "shifted", 0, 3) == task_mod.task_scene(name, "test", 0, 3)
        test = task_mod.render_task_image(name, "test", 0, 3).astype(float)
        shifted = task_mod.render_task_image(name, "shifted", 0, 3).astype(float)
        assert np.abs(test - shifted).mean() > 3  # blurred and colour-cast
        # blur: neighbouring pixels differ less than in the sharp picture
        assert np.abs(np.diff(shifted, axis=1)).mean() < np.abs(np.diff(test, axis=1)).mean()


def test_rare_words_are_in_the_vocabulary_but_rarely_captioned():
    stream = [caption(pretraining_scene(0, i), np.random.default_rng(i)) for i in range(3000)]
    said = [w for text in stream for w in words(text)]
    assert {"faint", "along", "around"} <= set(vocabulary())
    for word in ("faint", "along", "around"):  # each in at most RARE_SAY (3%) of the captions
        assert 0 < said.count(word) <= RARE_SAY * len(stream), word
    assert said.count("steel") > 3 * RARE_SAY * len(stream)  # a common word, for scale


def test_mirroring_swaps_the_caption_side():
    scene = pretraining_scene(0, 0)
    marked = scene.__class__(**{**scene.__dict__, "mark": Mark("hole", position="top left")})
    assert mirrored(marked, "x").mark.position == "top right"
    assert mirrored(marked, "y").mark.position == "bottom left"


# --- The task ---


SMALL_COUNTS = {  # the real counts, scaled down so a test writes 50 files, not 2,298
    "train": {**dict.fromkeys(task_mod.TASK_KINDS, 1), "clean": 10, "mould": 4, "tear": 3, "stain": 3, "bubble": 2},
    "val": dict.fromkeys(task_mod.TASK_KINDS, 1),
    "test": dict.fromkeys(task_mod.TASK_KINDS, 1),
    "shifted": dict.fromkeys(task_mod.TASK_KINDS, 1),
}


@pytest.fixture
def task_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(task_mod, "SPLIT_COUNTS", SMALL_COUNTS)
    return task_mod.make_task(tmp_path / "task", seed=0)


def test_task_counts_are_imbalanced_with_a_rare_class_and_a_balanced_validation_split():
    train = task_mod.SPLIT_COUNTS["train"]
    assert max(train.values()) / min(train.values()) >= 20 and min(train.values()) <= 10
    assert min(task_mod.SPLIT_COUNTS["val"].values()) >= 20
    assert set(task_mod.SPLIT_COUNTS["test"].values()) == {100}  # the reported split: 100 a class
    assert set(task_mod.SPLIT_COUNTS["shifted"]) == set(task_mod.TASK_KINDS)


def test_task_writes_the_counts_and_reuses_a_complete_set(task_dir):
    for split, counts in task_mod.SPLIT_COUNTS.items():
        for name, count in counts.items():
            assert len(list((task_dir / split / name).glob("*.jpg"))) == count
    marker = json.loads((task_dir / ".complete").read_text())
    assert marker["seed"] == 0
    stamp = (task_dir / "val" / "tear" / "tear_0.jpg").stat().st_mtime_ns
    task_mod.make_task(task_dir, seed=0)  # complete: reused, nothing rewritten
    assert (task_dir / "val" / "tear" / "tear_0.jpg").stat().st_mtime_ns == stamp


def test_task_is_reproducible(task_dir):
    for name in ("mould", "seam_mould"):
        for split in ("train", "shifted"):
            path = task_dir / split / name / f"{name}_0.jpg"
            again = task_mod.encode_jpeg(task_mod.render_task_image(name, split, 0, 0))
            assert path.read_bytes() == again
    assert not np.array_equal(
        render_scene(task_mod.task_scene("tear", "val", 0, 0)), render_scene(task_mod.task_scene("tear", "val", 1, 0))
    )


def test_descriptions_use_world_words_and_the_control_is_shuffled():
    real = yaml.safe_load(open(DESCRIPTIONS))
    shuffled = yaml.safe_load(open(SHUFFLED))
    assert list(real) == list(task_mod.TASK_KINDS) == list(shuffled)
    tokenizer = build_tokenizer()
    for texts in real.values():
        assert len(texts) == 2
        for text in texts:
            assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    assert sorted(map(tuple, real.values())) == sorted(map(tuple, shuffled.values()))
    assert all(real[name] != shuffled[name] for name in real)


# --- The tokenizer and the model ---


def test_text_tower_pools_at_the_end_token():
    tokenizer = build_tokenizer()
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert eot != 2  # 2 would switch CLIP to its legacy argmax pooling
    model = build_clip(tokenizer, width=32).eval()
    tokens = tokenizer(["a hole", "three small dark red spots on steel"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.text_model(**tokens)
    where = (tokens["input_ids"] == eot).int().argmax(-1)
    expected = out.last_hidden_state[torch.arange(2), where]
    assert torch.allclose(out.pooler_output, expected)


def test_mini_loads_offline_and_matches_its_recorded_sha256(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = verify_mini()
    assert root == mini_clip_path()
    assert file_sha256(root / "model.safetensors") == MINI_SHA256
    assert MINI_SHA256 in (root / "PROVENANCE.md").read_text()
    assert sum(p.stat().st_size for p in root.iterdir()) <= 10 * 2**20
    model, tokenizer, processor = ez.load(root)
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id
    assert processor(images=[render_scene(pretraining_scene(0, 0))], return_tensors="pt")["pixel_values"].shape == (
        1,
        3,
        64,
        64,
    )


def test_verify_mini_rejects_other_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(RuntimeError, match="unexpected weights"):
        verify_mini(tmp_path)


def test_pinned_mini_reproduces_its_zero_shot_score_and_needs_the_right_descriptions():
    """The pinned weights (sha256-checked) on 70 fixed validation pictures: 20 right with the real
    descriptions (recorded when `mini` was trained; one picture of slack for another BLAS), and
    far fewer with the shuffled ones. A broken renderer, tokenizer, text tower or zero-shot path
    moves the first number; chance is 7 of 70."""
    model, tokenizer, processor = ez.load(mini_clip_path())
    images, labels = [], []
    for label, name in enumerate(task_mod.TASK_KINDS):
        for i in range(7):  # 70 validation pictures, painted in memory
            images.append(task_mod.render_task_image(name, "val", 0, i))
            labels.append(label)
    real = ez.zero_shot(model, tokenizer, processor, yaml.safe_load(open(DESCRIPTIONS)), images, np.array(labels))
    assert abs(real["accuracy"] * 70 - 20) <= 1, real
    shuffled = ez.zero_shot(model, tokenizer, processor, yaml.safe_load(open(SHUFFLED)), images, np.array(labels))
    assert shuffled["accuracy"] * 70 <= 5, shuffled


def test_demo_data_command_writes_the_task(tmp_path, monkeypatch, capsys):
    from clipcls.commands import main

    monkeypatch.setattr(task_mod, "SPLIT_COUNTS", SMALL_COUNTS)
    assert main(["demo-data", "--out", str(tmp_path / "demo"), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"train: {sum(SMALL_COUNTS['train'].values())} images" in printed and "shifted: 10 images" in printed
    assert len(list((tmp_path / "demo" / "train" / "clean").glob("*.jpg"))) == SMALL_COUNTS["train"]["clean"]
    assert (tmp_path / "demo" / task_mod.MARKER_NAME).is_file()
