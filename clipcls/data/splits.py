"""What a run decides once about its data: the classes (in training order), their descriptions,
and the training and validation images. Everything downstream reads it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clipcls.data.descriptions import check_classes, read_descriptions
from clipcls.data.index import ImageIndex, index_folder, list_classes, stratified_split


@dataclass
class Splits:
    """The classes, their descriptions and the two image sets of a run."""

    class_names: list[str]
    descriptions: dict[str, list[str]]
    train: ImageIndex
    val: ImageIndex


def load_splits(cfg: dict[str, Any]) -> Splits:
    """Check the class folders against the descriptions, then split them (seeded, stratified) or
    read the separate validation folder."""
    descriptions = read_descriptions(cfg["class_description_yaml_file"])
    classes = list_classes(cfg["train_dataset_dir"])
    check_classes(classes, descriptions, cfg["class_description_yaml_file"])
    index = index_folder(cfg["train_dataset_dir"])
    if cfg.get("val_dataset_dir"):
        train, val = index, index_folder(cfg["val_dataset_dir"], class_names=index.class_names)
    else:
        train, val = stratified_split(index, cfg["test_size"], cfg["seed"])
    ordered = {name: descriptions[name] for name in index.class_names}
    return Splits(index.class_names, ordered, train, val)
