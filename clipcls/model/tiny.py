"""A tiny random CLIP with a byte-level tokenizer, built offline for the demo, tests and benchmarks.

It is written with `save_pretrained` and read back through the same loading code as a real
checkpoint, so the offline path exercises exactly what a Hub model goes through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_NAME = "tiny"
TINY_VERSION = "1"  # bump when the architecture below changes, so old caches are rebuilt
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def cache_dir() -> Path:
    """Where built-in models live: $CLIPCLS_CACHE, else ~/.cache/clipcls."""
    return Path(os.environ.get("CLIPCLS_CACHE", Path.home() / ".cache" / "clipcls"))


def tiny_clip_path() -> Path:
    """Directory of the tiny CLIP, built on first use (atomically, so a killed build is redone)."""
    target = cache_dir() / f"tiny-clip-v{TINY_VERSION}"
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
        try:
            build_tiny_clip(tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished first: theirs is identical
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _byte_tokenizer():  # -> PreTrainedTokenizerFast
    """Byte-level tokenizer: every UTF-8 byte is a token, so any text (Korean included) encodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab[SOT], vocab[EOT] = len(alphabet), len(alphabet) + 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SOT, eos_token=EOT, pad_token=EOT, model_max_length=77
    )


def build_tiny_clip(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a small random CLIPModel, its tokenizer and image processor to `out_dir`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _byte_tokenizer()
    eot = tokenizer.convert_tokens_to_ids(EOT)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=eot - 1,
            eos_token_id=eot,
            pad_token_id=eot,
        ),
        vision_config=dict(
            hidden_size=96,
            intermediate_size=192,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
        ),
        projection_dim=64,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 64, "width": 64},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
    ).save_pretrained(out)
    return out
