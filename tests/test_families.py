"""Every supported dual-encoder family, offline: a tiny random model of each, built from its config
class with a small tokenizer of its kind and saved with `save_pretrained`, goes through the same
loading code as a Hub checkpoint, trains an epoch, exports and loads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cfg import CFG
from tests.conftest import cfg_argv, make_folder, tiny_cfg

WORDS = "a photo of red green blue square noise the wallpaper with torn mould spots close up".split()
KOREAN = "빨간 초록 파란 사각형 곰팡이 벽지 사진 찢어진 얼룩 무늬".split()
DESCRIPTIONS = '"red": a red square\n"green": [a green square, green noise]\n"곰팡이": a blue square\n'
KOREAN_DESCRIPTIONS = '"red": 빨간 사각형 사진\n"green": [초록 사각형, 초록 무늬]\n"곰팡이": 파란 곰팡이 벽지\n'
FAMILIES = ["clip", "siglip", "metaclip_2", "altclip", "chinese_clip"]
TOL = 1e-5


def _vision() -> dict:
    return dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )


def _text(vocab_size: int, positions: int, **kwargs) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=positions,
        **kwargs,
    )


def xlmr_tokenizer():
    """An XLM-R-style unigram tokenizer (MetaCLIP 2's XLM-V and AltCLIP's are of this kind) that
    knows the English and Korean words above as whole pieces, and their characters."""
    from transformers import XLMRobertaTokenizer

    chars = sorted({c for w in WORDS + KOREAN for c in w})
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -1.0) for w in WORDS + KOREAN] + [(c, -5.0) for c in chars] + [("▁", -3.0), ("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=32)


def bert_tokenizer():
    """A WordPiece tokenizer like Chinese-CLIP's (BERT, characters for Chinese)."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"红绿蓝色方块"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=32)


def gemma_tokenizer():
    """A Gemma-style BPE tokenizer like SigLIP 2's, padding on the right as SigLIP pools the last position."""
    from transformers import GemmaTokenizer

    vocab = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *("▁" + w for w in WORDS), *sorted(set("".join(WORDS))), "▁"]
    return GemmaTokenizer(
        vocab={t: i for i, t in enumerate(vocab)}, merges=[], model_max_length=16, padding_side="right"
    )


def build_family(family: str, out: Path) -> Path:
    """A tiny random model of `family` (hidden 32, 2 layers, 32 px) with its tokenizer and image
    processor, written with `save_pretrained` to `out`."""
    import transformers as tf

    if family == "clip":
        from clipcls.model.tiny import build_tiny_clip

        return build_tiny_clip(out)
    torch.manual_seed(0)
    processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if family == "siglip":
        tokenizer = gemma_tokenizer()
        ids = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2)
        config = tf.SiglipConfig(text_config=_text(len(tokenizer), 16, **ids), vision_config=_vision())
        model = tf.SiglipModel(config)
        processor = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif family == "metaclip_2":
        tokenizer = xlmr_tokenizer()
        text = _text(len(tokenizer), 32, bos_token_id=0, pad_token_id=1, eos_token_id=2)
        model = tf.MetaClip2Model(tf.MetaClip2Config(text_config=text, vision_config=_vision(), projection_dim=32))
    elif family == "altclip":
        tokenizer = xlmr_tokenizer()
        text = _text(len(tokenizer), 34, project_dim=32, pad_token_id=1)  # RoBERTa: 32 tokens + 2 offset
        model = tf.AltCLIPModel(tf.AltCLIPConfig(text_config=text, vision_config=_vision(), projection_dim=32))
    elif family == "chinese_clip":
        tokenizer = bert_tokenizer()
        config = tf.ChineseCLIPConfig(text_config=_text(len(tokenizer), 32), vision_config=_vision(), projection_dim=32)
        model = tf.ChineseCLIPModel(config)
        processor = tf.ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def family_cfg(root: Path, model_dir: Path, descriptions: str = DESCRIPTIONS) -> dict:
    """conftest's seconds-long training config on colour folders, with `model_dir` as base model."""
    train = make_folder(root / "train")
    yaml_file = root / "descriptions.yaml"
    yaml_file.write_text(descriptions, encoding="utf-8")
    cfg = tiny_cfg(train, yaml_file, root / "runs")
    cfg["model_name"] = str(model_dir)
    return cfg


def images_of(root: Path) -> list[str]:
    return [str(p) for name in ("green", "red", "곰팡이") for p in sorted((root / "train" / name).glob("*.jpg"))[:2]]


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, tmp_path_factory) -> tuple[str, dict, Path]:
    """(family, config, run directory) after one epoch of training on the family's tiny model."""
    from clipcls.commands.train import main

    root = tmp_path_factory.mktemp(request.param)
    cfg = family_cfg(root, build_family(request.param, root / "base"))
    assert main(cfg_argv(cfg), CFG) == 0
    return request.param, cfg, root / "runs" / "test"


def test_family_is_loaded_through_auto_classes_with_its_adapter(trained):
    from clipcls.model.loading import load_clip

    family, cfg, _ = trained
    parts = load_clip(cfg["model_name"])
    expected = {
        "clip": "CLIPModel",
        "siglip": "SiglipModel",
        "metaclip_2": "MetaClip2Model",
        "altclip": "AltCLIPModel",
        "chinese_clip": "ChineseCLIPModel",
    }[family]
    assert type(parts.model).__name__ == parts.adapter.model_class == expected
    assert parts.adapter.family == family and parts.image_size == (64 if family == "clip" else 32)


def test_zero_shot_head_equals_text_scores_at_initialisation(trained):
    """At head_init=zeroshot the head is the description scorer, logit for logit, and so are their
    probabilities under the family's own function (softmax; sigmoid for SigLIP)."""
    from clipcls.data.descriptions import read_descriptions
    from clipcls.inference.scoring import scorer_probabilities
    from clipcls.model.classifier import build_classifier

    family, cfg, _ = trained
    descriptions = read_descriptions(cfg["class_description_yaml_file"])
    net = build_classifier(cfg, ["green", "red", "곰팡이"], descriptions).eval()
    with torch.no_grad():
        out = net(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(out["head_logits"], out["text_logits"], atol=TOL, rtol=0)
    assert net.text_probability == ("sigmoid" if family == "siglip" else "softmax")
    logits = {k: out[k].numpy() for k in ("head_logits", "text_logits")}
    probs = scorer_probabilities(logits, ("text",), net.text_probability)["text"]
    if family == "siglip":
        expected = 1 / (1 + np.exp(-logits["head_logits"].astype(np.float64)))
        assert net.logit_bias() is not None and net.contrastive_loss == "sigmoid"
    else:
        shifted = np.exp(logits["head_logits"] - logits["head_logits"].max(1, keepdims=True))
        expected = shifted / shifted.sum(1, keepdims=True)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_family_trains_exports_and_loads_with_the_same_scores(trained, tmp_path: Path):
    from clipcls.commands import export
    from clipcls.inference.predictor import load_predictor

    family, cfg, run_dir = trained
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["class_names"] == ["green", "red", "곰팡이"] and metrics["num_images"] > 0
    assert (run_dir / "base_model" / "config.json").is_file()
    out = tmp_path / "export"
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    meta = json.loads((out / "clipcls.json").read_text(encoding="utf-8"))
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["model_type"] == family
    assert meta["class_names"] == ["green", "red", "곰팡이"]
    images = images_of(run_dir.parent.parent)
    from_run = load_predictor(run_dir, device="cpu").predict(images)
    loaded = load_predictor(out, device="cpu")
    from_export = loaded.predict(images)
    assert loaded.classifier.adapter.family == family
    np.testing.assert_allclose(from_export.head_logits, from_run.head_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(from_export.text_logits, from_run.text_logits, atol=TOL, rtol=0)
    assert from_export.labels == from_run.labels


def test_sigmoid_family_trains_with_the_sigmoid_loss_unless_told_otherwise(trained):
    from clipcls.model.classifier import build_classifier

    family, cfg, _ = trained
    descriptions = {"a": ["a red square"], "b": ["a green square"]}
    auto = build_classifier(cfg, ["a", "b"], descriptions)
    forced = build_classifier({**cfg, "contrastive_loss": "softmax"}, ["a", "b"], descriptions)
    assert auto.contrastive_loss == ("sigmoid" if family == "siglip" else "softmax")
    assert forced.contrastive_loss == forced.text_probability == "softmax"


def test_korean_only_descriptions_through_a_multilingual_family(tmp_path: Path):
    """AltCLIP's XLM-R tokenizer reads Korean as words, not unknown tokens; such a run trains,
    and its description scorer tells the Korean descriptions apart."""
    from clipcls.commands.train import main
    from clipcls.inference.predictor import load_predictor

    cfg = family_cfg(tmp_path, build_family("altclip", tmp_path / "base"), KOREAN_DESCRIPTIONS)
    assert main(cfg_argv(cfg), CFG) == 0
    predictor = load_predictor(tmp_path / "runs" / "test", device="cpu")
    classifier = predictor.classifier
    assert classifier.adapter.multilingual
    unk = classifier.tokenizer.unk_token_id
    tokens = classifier.tokenizer.convert_ids_to_tokens(classifier.text_ids[0][classifier.text_mask[0].bool()])
    assert tokens == ["<s>", "▁초록", "▁사각형", "</s>"]  # green's first description, whole words
    assert not (classifier.text_ids == unk).any()
    embeddings = classifier.class_embeddings()
    assert embeddings.shape == (3, 32) and torch.cdist(embeddings, embeddings)[~torch.eye(3, dtype=bool)].min() > 1e-4
    prediction = predictor.predict(images_of(tmp_path), scorer="text")
    assert prediction.text_logits.shape == (6, 3) and np.isfinite(prediction.text_logits).all()


def write_remote_code_checkpoint(directory: Path) -> Path:
    """A checkpoint whose config points at modelling code shipped beside it; importing that code
    would create `ran.txt`."""
    directory.mkdir()
    config = {
        "model_type": "my_dual_encoder",
        "auto_map": {"AutoConfig": "modeling_mine.MyConfig", "AutoModel": "modeling_mine.MyModel"},
    }
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    marker = directory / "ran.txt"
    (directory / "modeling_mine.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    return marker


def test_checkpoint_needing_remote_code_is_refused_without_running_it(tmp_path: Path):
    from clipcls.model.adapters import UnsupportedModelError
    from clipcls.model.loading import load_clip

    marker = write_remote_code_checkpoint(tmp_path / "remote")
    with pytest.raises(UnsupportedModelError, match=r"needs trust_remote_code=True.*would run code downloaded"):
        load_clip(str(tmp_path / "remote"))
    assert not marker.exists()


def test_train_refuses_remote_code_with_exit_status_2(tmp_path: Path, capsys):
    from clipcls.commands.train import main

    marker = write_remote_code_checkpoint(tmp_path / "remote")
    cfg = family_cfg(tmp_path, tmp_path / "remote")
    assert main(cfg_argv(cfg), CFG) == 2
    assert "needs trust_remote_code=True" in capsys.readouterr().err and not marker.exists()


def test_unsupported_family_names_its_model_type_and_the_supported_ones(tmp_path: Path):
    from transformers import BertConfig

    from clipcls.model.adapters import UnsupportedModelError
    from clipcls.model.loading import load_clip

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"model type 'bert' is not a supported dual encoder.*SiglipModel"):
        load_clip(str(tmp_path))


def test_sigmoid_loss_is_siglips_pairwise_loss_over_classes():
    """-log sigmoid(+logit) for the image's own class, -log sigmoid(-logit) for the others, summed
    over classes and averaged over images; a same-class image is never a negative."""
    from clipcls.model.loss import sigmoid_contrastive, total_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    softplus = lambda x: float(np.log1p(np.exp(x)))
    expected = (softplus(-2) + softplus(-1) + softplus(0.5) + softplus(-3) + softplus(-1) + softplus(0)) / 3
    assert float(sigmoid_contrastive(logits, labels)) == pytest.approx(expected, abs=1e-6)
    parts = total_loss(logits, logits, labels, 1.0, 0.0, 0.0, contrastive_loss="sigmoid")
    assert float(parts["loss"]) == pytest.approx(expected, abs=1e-6)


def test_sigmoid_probabilities_are_per_class_and_stable():
    from clipcls.inference.scoring import scorer_probabilities

    logits = {"head_logits": np.array([[0.0, 0.0]]), "text_logits": np.array([[0.0, 800.0]])}
    probs = scorer_probabilities(logits, ("text", "ensemble"), "sigmoid")
    np.testing.assert_allclose(probs["text"], [[0.5, 1.0]])
    np.testing.assert_allclose(probs["ensemble"], [[0.5, 0.75]])


def test_onnx_export_scores_descriptions_with_the_familys_own_probability(trained, tmp_path: Path):
    """The ONNX graph's text probabilities are PyTorch's for the family: a softmax for CLIP, the
    logit bias and a per-class sigmoid for SigLIP (not CLIP's softmax)."""
    from clipcls.commands import export
    from clipcls.inference.onnx_predictor import OnnxRuntimeSession
    from clipcls.inference.predictor import load_predictor

    family, _, run_dir = trained
    if family not in ("clip", "siglip"):
        pytest.skip("the ONNX graph is checked on the two scoring paths: softmax (CLIP) and sigmoid (SigLIP)")
    out = tmp_path / "onnx"
    assert export.main([str(run_dir), "--out", str(out), "--format", "onnx"]) == 0
    predictor = load_predictor(run_dir, device="cpu")
    pixels = torch.stack([predictor.preprocess(p) for p in images_of(run_dir.parent.parent)])
    want = predictor.probabilities(predictor.logits(pixels), "text")
    got = OnnxRuntimeSession(out / "model.onnx", threads=1).run(pixels.numpy())["text"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert bool(np.abs(got.sum(1) - 1.0).max() > 1e-3) == (family == "siglip")  # sigmoids need not sum to 1
