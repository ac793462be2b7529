"""Checkpoints and exports written before the package layout change still load and predict the same,
and the inference path stays free of training libraries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clipcls.inference.predictor import Predictor
from clipcls.inference.trained_model import load_trained
from tests.conftest import make_dataset
from tests.faults import run_child

FIXTURE = Path(__file__).parent / "fixtures" / "before_layout"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def images(tmp_path_factory, expected) -> list[str]:
    """The same images the old code scored (conftest's data set is deterministic by seed)."""
    root, _ = make_dataset(tmp_path_factory.mktemp("compat"))
    return [str(root / name) for name in expected["images"]]


@pytest.mark.parametrize("source", ["best.ckpt", "export"])
def test_model_saved_before_the_layout_change_predicts_the_same(source, expected, images):
    model = load_trained(FIXTURE / source)
    assert model.class_names == expected["class_names"] == ["green", "red", "곰팡이"]
    prediction = Predictor(model, device="cpu").predict(images)
    np.testing.assert_allclose(prediction.head_logits, expected["head_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(prediction.text_logits, expected["text_logits"], atol=1e-4, rtol=0)


def test_load_and_predict_import_neither_lightning_nor_torchmetrics(tmp_path, images):
    """`clipcls.load(EXPORT).predict(...)` and `clipcls predict` run without the training stack."""
    code = (
        "import sys\n"
        "import clipcls\n"
        "from clipcls.commands import main\n"
        f"clipcls.load({str(FIXTURE / 'export')!r}).predict({images[:2]!r})\n"
        f"assert main(['predict', {str(FIXTURE / 'best.ckpt')!r}, *{images[:2]!r}, '--out', "
        f"{str(tmp_path / 'p.csv')!r}, '--workers', '0']) == 0\n"
        "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'lightning_fabric', 'torchmetrics') "
        "if m in sys.modules))\n"
    )
    out = run_child([sys.executable, "-c", code], timeout=200)  # < pytest's 300 s, so its output shows
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert len((tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()) == 3
