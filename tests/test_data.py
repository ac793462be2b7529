"""Class discovery, splits, samplers and the data errors that name their culprits."""

import numpy as np
import pytest
import torch

from clipcls.data.dataset import ImageDataset, collate_samples
from clipcls.data.index import DatasetError, index_folder, list_classes, stratified_split
from clipcls.data.samplers import PerClassSampler, build_sampler
from clipcls.data.splits import load_splits as prepare_data
from clipcls.data.transforms import build_transform
from tests.conftest import make_folder


def test_hidden_folders_and_non_images_are_ignored(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2)
    (root / ".ipynb_checkpoints").mkdir()
    (root / "red" / ".ipynb_checkpoints").mkdir()
    (root / "red" / ".ipynb_checkpoints" / "0-checkpoint.jpg").write_bytes(b"x")
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "red" / "nested").mkdir()
    (root / "red" / "nested" / "deep.PNG").write_bytes(b"png")
    index = index_folder(root)
    assert index.class_names == ["green", "red", "곰팡이"]
    red = [index.paths[i] for i in np.flatnonzero(index.labels == 1)]
    assert sorted(p.rsplit("/", 1)[-1] for p in red) == ["0.jpg", "1.jpg", "deep.PNG"]


def test_empty_class_is_an_error_naming_it(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2)
    (root / "empty_one").mkdir()
    with pytest.raises(DatasetError, match="empty_one"):
        index_folder(root)


def test_missing_folder_and_no_classes_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        list_classes(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        list_classes(tmp_path / "flat")


def test_split_is_stratified_and_seeded(tmp_path):
    index = index_folder(make_folder(tmp_path / "train", per_class=10))
    train, val = stratified_split(index, 0.2, seed=3)
    assert np.bincount(val.labels).tolist() == [2, 2, 2]
    again, _ = stratified_split(index, 0.2, seed=3)
    assert [train.paths[i] for i in range(len(train.labels))] == [again.paths[i] for i in range(len(again.labels))]
    assert {val.paths[i] for i in range(6)}.isdisjoint({train.paths[i] for i in range(24)})


def test_class_with_one_image_cannot_be_split(tmp_path):
    root = make_folder(tmp_path / "train", per_class=4)
    for extra in list((root / "red").iterdir())[1:]:
        extra.unlink()
    with pytest.raises(DatasetError, match=r"fewer than 2 images.*\['red'\]"):
        stratified_split(index_folder(root), 0.2, seed=0)


def test_separate_validation_dir_keeps_training_class_order(base_cfg, tmp_path):
    val_root = make_folder(tmp_path / "val", per_class=3, seed=1)
    data = prepare_data({**base_cfg, "val_dataset_dir": str(val_root)})
    assert len(data.train.labels) == 24 and len(data.val.labels) == 9
    assert data.val.class_names == data.train.class_names == ["green", "red", "곰팡이"]
    assert data.descriptions["green"] == ["a green square", "green noise"]


def test_per_class_sampler_gives_one_image_of_every_class_per_group():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    sampler = PerClassSampler(labels, num_classes=3, seed=0)
    order = [draw.index for draw in sampler]
    assert len(order) == len(sampler) == 9
    for group in range(3):
        assert sorted(labels[order[group * 3 : (group + 1) * 3]].tolist()) == [0, 1, 2]
    sampler.set_epoch(1)
    assert [draw.index for draw in sampler] != order  # a new epoch draws anew


def test_balanced_sampler_evens_out_the_classes():
    labels = np.array([0] * 90 + [1] * 10)
    drawn = labels[[draw.index for draw in build_sampler("balanced", labels, 2, seed=0)]]
    assert len(drawn) == 100 and 0.35 < drawn.mean() < 0.65
    shuffled = [draw.index for draw in build_sampler("random", labels, 2, seed=0)]
    assert sorted(shuffled) == list(range(100)) and shuffled != list(range(100))


def test_dataset_skips_unreadable_images_and_collates_the_rest(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2, size=20)
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    index = index_folder(root)
    dataset = ImageDataset.from_index(index, build_transform((16, 16), [0.5] * 3, [0.25] * 3))
    samples = [dataset[i] for i in range(len(dataset))]
    broken = [s for s in samples if s.failure is not None]
    assert len(broken) == 1 and index.paths[broken[0].position].endswith("broken.jpg")
    assert broken[0].pixels is None and "cannot identify image file" in broken[0].failure
    batch = collate_samples(samples)
    assert batch.pixels.shape == (6, 3, 16, 16) and batch.pixels.dtype == torch.float32
    assert batch.labels.tolist() == [int(index.labels[i]) for i in batch.positions]
    assert batch.failures == [(broken[0].position, broken[0].failure)]
    empty = collate_samples([broken[0], broken[0]])
    assert empty.pixels is None and empty.labels is None and len(empty.failures) == 2


def test_transforms_are_chosen_by_name(tmp_path):
    with pytest.raises(ValueError, match="sharpen"):
        build_transform((8, 8), [0.5] * 3, [0.5] * 3, "sharpen")
    from PIL import Image

    image = Image.new("RGB", (40, 30), (255, 0, 0))
    out = build_transform((8, 12), [0.5] * 3, [0.5] * 3, "trivialaugment")(image)
    assert out.shape == (3, 8, 12)
    plain = build_transform((8, 12), [0.5] * 3, [0.5] * 3, "none")(image)
    assert torch.allclose(plain[0], torch.ones(8, 12)) and torch.allclose(plain[1], -torch.ones(8, 12))


def test_flip_policy_draws_all_eight_symmetries_of_a_square():
    from PIL import Image

    image = Image.new("RGB", (16, 16))
    image.paste((255, 255, 255), (0, 0, 8, 4))  # an off-centre bar: each symmetry moves it differently
    transform = build_transform((16, 16), [0.5] * 3, [0.5] * 3, "flip")
    torch.manual_seed(0)
    seen = {tuple((transform(image)[0] > 0).flatten().tolist()) for _ in range(300)}
    assert len(seen) == 8
    assert build_transform((8, 12), [0.5] * 3, [0.5] * 3, "flip")(image).shape == (3, 8, 12)
