"""One interface over the dual encoders clipcls fine-tunes: CLIP, SigLIP, MetaCLIP 2, AltCLIP and
Chinese-CLIP.

The classifier never reaches into a family's internals; it asks its `Adapter` for image and
text features, the logit scale and bias, the tokenizer arguments, the native input size and
the embedding width. Pooling and projection are left to each model's own `get_image_features` /
`get_text_features` (transformers keeps those right per family: CLIP pools text at the
end-of-text token, honouring the legacy `eos_token_id=2` configs; Chinese-CLIP takes
`last_hidden_state[:, 0]`; SigLIP has no projection and pools its text at the last position).
What differs beyond that is data on a frozen dataclass, one per family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from clipcls.errors import ClipclsError

CONTRASTIVE_LOSSES = ("softmax", "sigmoid")


class UnsupportedModelError(ClipclsError, ValueError):
    """A checkpoint of a family clipcls cannot fine-tune, or one that would run downloaded code."""


@dataclass(frozen=True)
class Adapter:
    """How clipcls talks to one family of dual encoders (stateless: methods take the model)."""

    family: str  # short name shown to users ("clip", "siglip", ...)
    model_class: str  # the transformers class AutoModel builds for it
    loss: str = "softmax"  # the contrastive loss the family was pretrained with (softmax | sigmoid)
    max_logit_scale: float = 100.0  # CLIP clamps exp(logit_scale) at 100; SigLIP does not clamp
    pad_to_max_length: bool = False  # SigLIP pools its text at the last position: pad every text to full length
    text_attention_mask: bool = True  # SigLIP was trained without a text attention mask
    token_type_ids: bool = False  # BERT text towers (Chinese-CLIP) take segment ids (all zero here)
    position_offset: int = 0  # RoBERTa-style towers reserve padding_idx + 1 positions
    multilingual: bool = False  # the text tower reads Korean (and many other languages)

    # --- sizes ---
    def native_size(self, model: nn.Module) -> int:
        """The square input side the vision tower was pretrained at."""
        return int(model.config.vision_config.image_size)

    def embed_dim(self, model: nn.Module) -> int:
        """Width of the shared image-text embedding (the head's input)."""
        if hasattr(model, "visual_projection"):
            return int(model.visual_projection.out_features)
        return int(model.config.vision_config.hidden_size)  # SigLIP: the pooled output is the embedding

    # --- text ---
    def max_text_tokens(self, model: nn.Module, tokenizer) -> int:
        """Tokens a description keeps (special tokens included); the rest is truncated."""
        positions = int(model.config.text_config.max_position_embeddings) - self.position_offset
        limit = getattr(tokenizer, "model_max_length", None) or positions
        return min(positions, int(limit)) if limit < 10**9 else positions  # "no limit" is a huge sentinel

    def tokenizer_kwargs(self, model: nn.Module, tokenizer) -> dict:
        """Arguments for `tokenizer(texts, **kwargs)` that reproduce the family's pretraining input."""
        padding = "max_length" if self.pad_to_max_length else True
        return dict(padding=padding, truncation=True, max_length=self.max_text_tokens(model, tokenizer))

    def text_features(self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised text embeddings (N, dim), pooled and projected the family's way."""
        kwargs = {"input_ids": ids, "attention_mask": mask if self.text_attention_mask else None}
        if self.token_type_ids:
            kwargs["token_type_ids"] = torch.zeros_like(ids)
        return _pooled(model.get_text_features(**kwargs))

    def text_modules(self, model: nn.Module) -> list[nn.Module]:
        """The text tower and its projection (what `freeze_text` freezes): every `text_*` child."""
        return [module for name, module in model.named_children() if name.startswith("text_")]

    # --- image ---
    def image_features(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings (B, dim); other input sizes interpolate position embeddings."""
        native = self.native_size(model)
        resize = tuple(pixels.shape[-2:]) != (native, native)
        return _pooled(model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=resize))

    def image_depth(self, model: nn.Module) -> int:
        """Transformer blocks of the image tower."""
        return int(model.config.vision_config.num_hidden_layers)

    def image_block(self, name: str, depth: int) -> int | None:
        """Where a parameter (named as in `model`) sits in the image tower, for layer-wise lr decay:
        0 for the embeddings (and pre-norm), k + 1 for block k, depth + 1 for everything after the
        blocks (final norm, pooling head, projection); None outside the image tower."""
        if not name.startswith(("vision_model.", "visual_projection.")):
            return None
        parts = name.split(".")
        if "layers" in parts:  # vision_model.encoder.layers.<k>. ...
            return int(parts[parts.index("layers") + 1]) + 1
        if parts[1] in ("embeddings", "pre_layrnorm"):
            return 0
        return depth + 1

    # --- scores ---
    def logit_scale_parameter(self, model: nn.Module) -> nn.Parameter:
        """The learned log-scale (`logit_scale` in every supported family)."""
        return model.logit_scale

    def log_max_logit_scale(self) -> float:
        return math.log(self.max_logit_scale) if math.isfinite(self.max_logit_scale) else math.inf

    def logit_bias(self, model: nn.Module) -> torch.Tensor | None:
        """SigLIP's learned bias added to every scaled similarity; None for the softmax families."""
        return getattr(model, "logit_bias", None)


def _pooled(output) -> torch.Tensor:
    """transformers 5 returns the projected features as `pooler_output` of a model output; 4 returned
    the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


ADAPTERS: dict[str, Adapter] = {
    "clip": Adapter("clip", "CLIPModel"),
    "siglip": Adapter(
        "siglip",
        "SiglipModel",
        loss="sigmoid",
        max_logit_scale=math.inf,
        pad_to_max_length=True,
        text_attention_mask=False,
        multilingual=False,
    ),
    "metaclip_2": Adapter("metaclip_2", "MetaClip2Model", multilingual=True),
    "altclip": Adapter("altclip", "AltCLIPModel", position_offset=2, multilingual=True),
    "chinese_clip": Adapter("chinese_clip", "ChineseCLIPModel", token_type_ids=True),
}

REFUSED = {
    "siglip2": "Siglip2Model (NaFlex, variable resolution) is not supported; pick a fixed-resolution "
    "SigLIP 2 checkpoint (e.g. google/siglip2-base-patch16-224), which loads as SiglipModel",
}


def adapter_for_config(config, source: str) -> Adapter:
    """The adapter of a checkpoint's `config.model_type`, or an error naming the type and the
    supported families. Checkpoints that bring their own modelling code are refused."""
    if getattr(config, "auto_map", None):
        raise remote_code_error(source)
    model_type = getattr(config, "model_type", None)
    if model_type in REFUSED:
        raise UnsupportedModelError(f"{source}: {REFUSED[model_type]}")
    if model_type not in ADAPTERS:
        supported = ", ".join(f"{a.model_class} ({k})" for k, a in ADAPTERS.items())
        raise UnsupportedModelError(
            f"{source}: model type {model_type!r} is not a supported dual encoder; supported: {supported}"
        )
    return ADAPTERS[model_type]


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter of an already-built model."""
    return adapter_for_config(model.config, type(model).__name__)


def remote_code_error(source: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{source} needs trust_remote_code=True: it ships its own modelling code, which would run code "
        "downloaded with the checkpoint. clipcls does not load such checkpoints; use a checkpoint of a "
        f"supported family ({', '.join(a.model_class for a in ADAPTERS.values())})"
    )


def resolve_contrastive_loss(choice: str | None, adapter: Adapter) -> str:
    """`auto` (or None) means the family's own loss: sigmoid for SigLIP, softmax for the others."""
    if choice in (None, "auto"):
        return adapter.loss
    if choice not in CONTRASTIVE_LOSSES:
        raise ClipclsError(f"contrastive_loss must be auto, softmax or sigmoid, got {choice!r}")
    return choice
