"""Issue 13, item 1: every training sampler's draws depend only on (seed, epoch), are split between
DDP processes by the sampler, skip what a checkpoint trained on, and seed each sample's
augmentation, so that a resumed run draws exactly what an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipcls.data.dataset import ImageDataset
from clipcls.data.index import index_folder
from clipcls.data.samplers import ShardSampler, build_sampler
from clipcls.data.transforms import build_transform
from tests.conftest import make_folder

LABELS = np.array([0] * 7 + [1] * 3 + [2] * 5)  # 15 images, 3 classes


def draws(sampler, epoch: int) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    return [tuple(draw) for draw in sampler]


@pytest.mark.parametrize("kind", ["random", "balanced", "per_class"])
def test_draws_depend_only_on_seed_and_epoch(kind):
    first, again = (build_sampler(kind, LABELS, 3, seed=7) for _ in range(2))
    epoch1 = draws(first, 1)
    assert draws(first, 0) != epoch1
    assert draws(again, 1) == epoch1  # a fresh sampler (a resumed run) set to epoch 1
    assert len(epoch1) == len(first) and len({seed for _, seed in epoch1}) == len(epoch1)


@pytest.mark.parametrize("kind", ["random", "balanced", "per_class"])
def test_neighbouring_seeds_do_not_replay_each_others_epochs(kind):
    """Issue 18: seeded with `seed + epoch`, seed s at epoch e drew seed s+1's epoch e-1."""
    labels = np.repeat(np.arange(3), 40)  # long enough that two independent orders differ
    for seed, epoch in [(7, 1), (0, 3), (41, 5)]:
        now = [index for index, _ in draws(build_sampler(kind, labels, 3, seed=seed), epoch)]
        neighbour = [index for index, _ in draws(build_sampler(kind, labels, 3, seed=seed + 1), epoch - 1)]
        assert now != neighbour


@pytest.mark.parametrize("kind", ["random", "balanced", "per_class"])
def test_skip_leaves_out_the_trained_samples_once(kind):
    sampler = build_sampler(kind, LABELS, 3, seed=7)
    whole = draws(sampler, 2)
    sampler.skip = {2: 6}
    assert draws(sampler, 2) == whole[6:]
    assert draws(sampler, 2) == whole  # the skip applies to the resumed epoch only


@pytest.mark.parametrize("kind", ["random", "balanced", "per_class"])
def test_two_processes_share_the_epoch_evenly(kind):
    single = [index for index, _ in draws(build_sampler(kind, LABELS, 3, seed=7), 0)]
    shards = [draws(build_sampler(kind, LABELS, 3, seed=7, rank=r, world_size=2), 0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])  # every process takes the same number of steps
    merged = [index for shard in shards for index, _ in shard]
    assert set(single) <= set(merged) and len(merged) - len(single) < 2 * (3 if kind == "per_class" else 1)
    if kind == "per_class":  # each process's batch (3 = the class count) holds one image per class
        for shard in shards:
            groups = LABELS[[index for index, _ in shard]].reshape(-1, 3)
            assert (np.sort(groups, axis=1) == [0, 1, 2]).all()


def test_validation_shards_count_every_image_once():
    shards = [list(ShardSampler(11, rank, 2)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(11))


def test_a_draw_seed_fixes_the_augmentation_and_leaves_the_global_stream_alone(tmp_path):
    root = make_folder(tmp_path / "train", per_class=1, size=20)
    index = index_folder(root)
    dataset = ImageDataset.from_index(index, build_transform((16, 16), [0.5] * 3, [0.25] * 3, "trivialaugment"))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = [dataset[(0, seed)].pixels for seed in range(8)]
    assert torch.equal(torch.get_rng_state(), state)
    again = [dataset[(0, seed)].pixels for seed in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({a.sum().item() for a in first}) > 1  # different seeds, different augmentations


# --- issue 13, item 9: every class has a validation image -----------------------------------------
def test_stratified_split_gives_every_class_a_validation_and_a_training_image(tmp_path):
    from clipcls.data.index import stratified_split

    root = make_folder(tmp_path / "train", per_class=2, size=8)
    for i in range(2, 40):  # "red" gets 40 images, the other classes keep 2
        (root / "red" / f"{i}.jpg").write_bytes((root / "red" / "0.jpg").read_bytes())
    index = index_folder(root)
    assert sorted(index.counts().tolist()) == [2, 2, 40]
    for seed in range(5):
        train, val = stratified_split(index, 0.1, seed)  # 5 validation images by sklearn's rounding
        assert (val.counts() >= 1).all() and (train.counts() >= 1).all(), (seed, val.counts())
        assert len(train.labels) + len(val.labels) == 44
        assert not set(train.paths[i] for i in range(len(train.labels))) & set(
            val.paths[i] for i in range(len(val.labels))
        )
    again = stratified_split(index, 0.1, 3)[1]
    assert [again.paths[i] for i in range(len(again.labels))] == [
        stratified_split(index, 0.1, 3)[1].paths[i] for i in range(len(again.labels))
    ]
