"""A CLIP-shaped offline fixture: the code paths of `openai/clip-vit-base-patch32` at toy size.

Unlike the built-in tiny model (byte tokenizer, modern config), this one has what a real OpenAI
checkpoint has: a real `CLIPTokenizer` read from a BPE `vocab.json` + `merges.txt` written here
(end-of-text the highest id), OpenAI's text settings with the legacy `eos_token_id=2` (so the
text is pooled at the highest token id), the 77-token limit, quick-GELU, and a
`CLIPImageProcessor` with OpenAI's mean/std, shortest-edge resize and centre crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cfg import CFG
from tests.conftest import CLASSES, cfg_argv, make_folder, tiny_cfg

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
WORDS = "a photo of red green blue square noise wallpaper with torn mould spots close up the and".split()
LONG = " ".join(["a close up photo of red wallpaper with torn mould spots and noise"] * 10)  # > 77 tokens
DESCRIPTIONS = {"red": [LONG], "green": ["a green square", "green noise"], "곰팡이": ["a blue square"]}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of bytes to printable characters (the BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def write_bpe_files(directory: Path) -> tuple[Path, Path]:
    """OpenAI's vocabulary layout at toy size: the 256 byte symbols, the same with `</w>`, the
    merged tokens of a few words, then start- and end-of-text (the highest id, as in 49407)."""
    alphabet = list(bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    for word in WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merged = symbols[0] + symbols[1]
            if f"{symbols[0]} {symbols[1]}" not in merges:
                merges.append(f"{symbols[0]} {symbols[1]}")
                vocab.append(merged) if merged not in vocab else None
            symbols = [merged] + symbols[2:]
    vocab += [SOT, EOT]
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def build_clip_shaped(out: Path) -> Path:
    """The fixture model, saved like a Hub checkpoint."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    vocab_file, merges_file = write_bpe_files(out / "bpe")
    tokenizer = CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), model_max_length=77)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=0,  # OpenAI's config.json values: the legacy eos_token_id=2 makes CLIP
            pad_token_id=1,  # pool the text at argmax(input_ids), the end-of-text token
            eos_token_id=2,
            **common,
        ),
        vision_config=dict(image_size=32, patch_size=8, hidden_act="quick_gelu", **common),
        projection_dim=32,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        resample=3,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """The fixture model and a run trained on it for one epoch."""
    from clipcls.commands.train import main

    root = tmp_path_factory.mktemp("clip_shaped")
    model_dir = build_clip_shaped(root / "clip-vit-toy")
    yaml_file = root / "descriptions.yaml"
    yaml_file.write_text(json.dumps(DESCRIPTIONS, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    cfg = tiny_cfg(make_folder(root / "train"), yaml_file, root / "runs")
    cfg["model_name"] = str(model_dir)
    assert main(cfg_argv(cfg), CFG) == 0
    images = [str(root / "train" / name / f"{i}.jpg") for name in CLASSES for i in range(2)]
    return {"root": root, "model_dir": model_dir, "run": root / "runs" / "test", "images": images}


def test_fixture_loads_with_openai_classes_and_settings(setup):
    from clipcls.model.loading import load_clip

    parts = load_clip(str(setup["model_dir"]))
    assert type(parts.tokenizer).__name__ == "CLIPTokenizer" and parts.tokenizer.model_max_length == 77
    assert parts.model.config.text_config.eos_token_id == 2  # the legacy setting
    assert parts.tokenizer.convert_tokens_to_ids(EOT) == len(parts.tokenizer) - 1
    assert parts.image_mean == pytest.approx(OPENAI_MEAN) and parts.image_std == pytest.approx(OPENAI_STD)
    assert parts.processor.crop_size == {"height": 32, "width": 32} and parts.processor.do_center_crop
    assert parts.tokenizer("red wallpaper")["input_ids"] == [
        parts.tokenizer.convert_tokens_to_ids(t) for t in (SOT, "red</w>", "wallpaper</w>", EOT)
    ]


def test_long_description_is_cut_at_77_tokens_and_pooled_at_its_end_of_text(setup):
    """A description over the limit keeps 77 tokens, the last being end-of-text, and the text
    embedding is the projected hidden state at that token (legacy argmax pooling)."""
    from clipcls.inference.trained_model import load_trained

    net = load_trained(setup["run"]).classifier
    eot = net.tokenizer.convert_tokens_to_ids(EOT)
    assert len(net.tokenizer(LONG)["input_ids"]) > 77  # untruncated
    ids, mask = net.text_ids, net.text_mask
    assert ids.shape[1] == 77
    red = int(net.desc_start[net.class_names.index("red")])  # the row of red's (only) description
    assert int(mask[red].sum()) == 77 and int(ids[red, -1]) == eot
    with torch.no_grad():
        hidden = net.clip.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        ends = (ids == eot).int().argmax(dim=1)
        expected = torch.nn.functional.normalize(net.clip.text_projection(hidden[torch.arange(len(ids)), ends]), dim=-1)
        torch.testing.assert_close(net.encode_texts(ids, mask), expected)


def test_long_description_warning_names_the_class_and_its_token_count(setup, caplog):
    from clipcls.inference.trained_model import load_trained

    with caplog.at_level("WARNING"):
        load_trained(setup["run"])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 description(s) longer than the model's 77-token limit are cut to it: 'red' (" in said


def test_evaluate_zeroshot_predict_export_and_load(setup, tmp_path: Path):
    from clipcls.commands import evaluate, export, predict, zeroshot
    from clipcls.inference.predictor import load_predictor

    run, root = setup["run"], setup["root"]
    assert evaluate.main([str(run), "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["scorers"]) == {"head", "text", "ensemble"} and metrics["num_images"] == 5
    args = [str(run), "--data", str(root / "train"), "--out", str(tmp_path / "zs"), "--device", "cpu"]
    assert zeroshot.main(args) == 0
    assert (tmp_path / "zs" / "descriptions.json").is_file()
    out_csv = tmp_path / "preds.csv"
    assert predict.main([str(run), *setup["images"], "--out", str(out_csv), "--device", "cpu"]) == 0
    assert len(out_csv.read_text(encoding="utf-8").splitlines()) == 1 + len(setup["images"])
    assert export.main([str(run), "--out", str(tmp_path / "export")]) == 0
    exported = load_predictor(tmp_path / "export", device="cpu")
    assert type(exported.classifier.tokenizer).__name__ == "CLIPTokenizer"
    assert exported.classifier.text_ids.shape[1] == 77
    got = exported.predict(setup["images"])
    want = load_predictor(run, device="cpu").predict(setup["images"])
    np.testing.assert_allclose(got.head_logits, want.head_logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.text_logits, want.text_logits, atol=1e-5, rtol=0)
