"""The tiny offline CLIP, loading, zero-shot head initialisation and the text cache."""

import logging
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from clipcls.model.classifier import ClipClassifier
from clipcls.model.loading import load_clip
from clipcls.model.tiny import tiny_clip_path
from tests.conftest import WALL_CLASSES as CLASSES
from tests.conftest import WALL_DESCRIPTIONS as DESCRIPTIONS


def test_tiny_model_is_saved_and_loaded_like_a_hub_checkpoint(parts):
    path = tiny_clip_path()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (path / name).is_file(), name
    assert parts.image_size == 64
    assert parts.image_mean == [0.5, 0.5, 0.5]


def test_tokenizer_handles_any_utf8(parts):
    ids = parts.tokenizer(["곰팡이 얼룩", "ü ñ 🙂"], padding=True, return_tensors="pt")["input_ids"]
    eot = parts.tokenizer.eos_token_id
    assert (ids == eot).any(dim=1).all()  # every text ends with the token CLIP pools at
    assert parts.tokenizer.decode(ids[0], skip_special_tokens=True) == "곰팡이 얼룩"


def test_zero_shot_head_equals_zero_shot_predictions(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).eval()
    pixels = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        out = model(pixels)
        # zero-shot by hand: average normalised description embeddings per class, renormalise
        tok = parts.tokenizer(sum(DESCRIPTIONS.values(), []), padding=True, return_tensors="pt")
        text = F.normalize(parts.model.get_text_features(**tok).pooler_output, dim=-1)
        classes = F.normalize(torch.stack([text[0:2].mean(0), text[2], text[3]]), dim=-1)
        image = F.normalize(parts.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        zero_shot = parts.model.logit_scale.exp() * image @ classes.T
    torch.testing.assert_close(out["text_logits"], zero_shot, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["head_logits"], zero_shot, atol=1e-5, rtol=1e-5)


def test_other_input_sizes_interpolate_position_embeddings(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 80))
    assert out["head_logits"].shape == (2, 3)
    assert torch.isfinite(out["head_logits"]).all()


def test_frozen_text_tower_runs_once(parts, monkeypatch):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).train()
    calls = []
    original = model.clip.text_model.forward
    monkeypatch.setattr(model.clip.text_model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(3):
        model(torch.randn(2, 3, 64, 64))["text_logits"].sum().backward()
    assert calls == []  # computed at construction, cached since
    assert not any(p.requires_grad for p in model.clip.text_model.parameters())


def test_trainable_text_encodes_one_description_per_class(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS, freeze_text=False).train()
    seen = []
    handle = model.clip.text_model.register_forward_hook(lambda m, args, kw_out: None)
    handle.remove()
    hook = model.clip.text_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    model(torch.randn(2, 3, 64, 64))["text_logits"].sum().backward()
    hook.remove()
    assert seen == [len(CLASSES)]
    assert model.clip.text_model.embeddings.token_embedding.weight.grad is not None


def test_temperature_overrides_learned_scale(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS, temperature=14.3)
    assert model.logit_scale().item() == pytest.approx(14.3)
    assert not model.clip.logit_scale.requires_grad
    parts.model.logit_scale.requires_grad_(True)


def test_learned_scale_is_clamped_at_100(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS)
    with torch.no_grad():
        model.clip.logit_scale.fill_(10.0)
    model.clamp_logit_scale()
    assert model.logit_scale().item() == pytest.approx(100.0)


def test_logit_scale_at_the_cap_still_gets_gradient(parts):
    """OpenAI and LAION checkpoints store ln 100, which rounds above ln 100 in float32: a clamp
    inside the forward pass would zero the scale's gradient, so it could never train."""
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).train()
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(100.0))
    model(torch.randn(2, 3, 64, 64))["text_logits"].sum().backward()
    assert model.clip.logit_scale.grad is not None and model.clip.logit_scale.grad.abs().item() > 0


def test_logit_scale_pushed_above_100_is_clamped_after_the_step(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).train()
    optimizer = torch.optim.SGD([model.clip.logit_scale], lr=10.0)
    (-model(torch.randn(2, 3, 64, 64))["text_logits"].abs().sum()).backward()  # pushes the scale up
    grad = model.clip.logit_scale.grad.item()
    optimizer.step()
    assert model.clip.logit_scale.exp().item() > 100 and grad < 0
    model.clamp_logit_scale()
    assert model.logit_scale().item() == pytest.approx(100.0, abs=1e-3)


def test_logits_are_float32_under_bf16_autocast(parts):
    model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, DESCRIPTIONS).eval()
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        reference = model(pixels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(pixels)
    assert out["text_logits"].dtype == torch.float32 and out["head_logits"].dtype == torch.float32
    # the towers ran in bf16; the scaled cosine after them is float32: no 0.5-wide steps near 100
    torch.testing.assert_close(out["text_logits"], reference["text_logits"], atol=2.0, rtol=0.05)
    image = out["embedding"].float()
    expected = model.logit_scale() * image @ model.class_embeddings().float().T
    torch.testing.assert_close(out["text_logits"], expected, atol=1e-4, rtol=1e-5)


def test_half_precision_checkpoint_loads_in_float32(parts, tmp_path):
    """transformers v5 loads a checkpoint in its stored dtype: an fp16 CLIP would train in fp16,
    where AdamW updates of 1e-5 vanish."""
    parts.model.half().save_pretrained(tmp_path)
    parts.tokenizer.save_pretrained(tmp_path)
    shutil.copy(tiny_clip_path() / "preprocessor_config.json", tmp_path)
    loaded = load_clip(str(tmp_path))
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_half_precision_config_builds_float32_without_weights(parts, tmp_path):
    parts.model.half().save_pretrained(tmp_path)
    parts.tokenizer.save_pretrained(tmp_path)
    shutil.copy(tiny_clip_path() / "preprocessor_config.json", tmp_path)
    loaded = load_clip(str(tmp_path), weights=False)  # the architecture a checkpoint's weights fill
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_descriptions_over_the_token_limit_are_named_with_their_counts(parts, caplog):
    """The byte-level tiny tokenizer spends 3 tokens a Korean syllable, as an English CLIP's BPE
    spends 2-3: 30 syllables are 92 tokens with the start and end tokens, over the limit of 77."""
    long_korean = "벽" * 30
    descriptions = {**DESCRIPTIONS, "stain": ["a brown stain", long_korean]}
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        model = ClipClassifier(parts.model, parts.tokenizer, CLASSES, descriptions)
    assert "'stain' (92 tokens)" in caplog.text and "77-token limit" in caplog.text
    assert "'clean'" not in caplog.text and "'곰팡이'" not in caplog.text
    assert model.text_ids.shape[1] == 77  # still cut, as the model was pretrained
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        model.embed_descriptions({"scratch": ["a thin scratch", "x" * 100]})  # predict-time extra classes
    assert "'scratch' (102 tokens)" in caplog.text
