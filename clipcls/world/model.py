"""The miniature CLIP pretrained on the world: its word-level tokenizer and its architecture.

The tokenizer is a real HuggingFace tokenizer (a `tokenizers` WordLevel model wrapped in
PreTrainedTokenizerFast), so `AutoTokenizer.from_pretrained` reads it back like any Hub model's.
Its words are the world's vocabulary (vocab.py): small enough that a 128-wide text tower learns
every one of them in minutes.
"""

from __future__ import annotations

from pathlib import Path

from clipcls.world.vocab import vocabulary

PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 32  # the longest world caption is about 25 words
IMAGE_SIDE = 64


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Lowercasing word-level tokenizer: <sot> words <eot>, unknown words -> <unk>."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # EOT must not get id 2: CLIPTextTransformer treats eos_token_id == 2 as a legacy config
    # and pools at the largest token id instead of at the end token.
    vocab = {token: i for i, token in enumerate([PAD, UNK, SOT, EOT, *vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SOT,
        eos_token=EOT,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
    )


def build_clip(tokenizer, patch_size: int = 8, width: int = 128, seed: int = 0):  # -> CLIPModel
    """A ~1.5M-parameter CLIPModel: a 4-layer ViT on 64 px images and a 3-layer text tower."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (PAD, SOT, EOT)}
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=ids[SOT],
            eos_token_id=ids[EOT],
            pad_token_id=ids[PAD],
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=IMAGE_SIDE,
            patch_size=patch_size,
        ),
        projection_dim=width,
    )
    torch.manual_seed(seed)
    return CLIPModel(config)


def image_processor(mean: list[float], std: list[float]):  # -> CLIPImageProcessor
    """The processor saved with the model: resize and crop to 64 px, then the world's mean/std."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIDE},
        crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE},
        image_mean=mean,
        image_std=std,
    )


def save(model, tokenizer, processor, out: Path) -> None:
    """Write the three parts as one `save_pretrained` directory (safetensors weights)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
