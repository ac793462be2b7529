"""CLIP plus a head: image embeddings scored by a linear head and by the class descriptions."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipcls.model.adapters import Adapter, adapter_for, resolve_contrastive_loss
from clipcls.model.heads import build_head, init_head_zeroshot

log = logging.getLogger("clipcls.model")
MAX_LOGIT_SCALE = 100.0  # CLIP's own clamp on exp(logit_scale) (the adapter holds each family's)


def flatten_descriptions(class_names: list[str], descriptions: dict[str, list[str]]) -> tuple[list[str], list[int]]:
    """All description texts in class order, and the class index each one belongs to."""
    texts, owner = [], []
    for idx, name in enumerate(class_names):
        texts += descriptions[name]
        owner += [idx] * len(descriptions[name])
    return texts, owner


def over_token_limit(tokenizer, texts: list[str], owners: list[str], limit: int) -> list[tuple[str, int]]:
    """(class, token count) of every description longer than `limit` tokens, counted once without
    truncation. (Korean costs 2-3 byte-level BPE tokens a syllable in an English CLIP.)"""
    counts = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    return [(owner, count) for owner, count in zip(owners, counts) if count > limit]


def warn_truncated(tokenizer, texts: list[str], owners: list[str], limit: int) -> None:
    """Warn, naming each class and its token count, about descriptions the model will cut: the
    tokenizer truncates silently, and the cut part never reaches the text tower."""
    long = over_token_limit(tokenizer, texts, owners, limit)
    if long:
        listed = ", ".join(f"{name!r} ({count} tokens)" for name, count in long)
        log.warning(
            "%d description(s) longer than the model's %d-token limit are cut to it: %s; shorten them so "
            "what tells the classes apart comes within the limit",
            len(long),
            limit,
            listed,
        )


def average_per_class(embeddings: torch.Tensor, owner: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of each class's normalised description embeddings, renormalised (C, dim): the
    zero-shot class embedding of open_clip's `zero_shot_classifier`."""
    summed = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    summed.index_add_(0, owner, embeddings)
    return F.normalize(summed, dim=-1)


class ClipClassifier(nn.Module):
    """Scores images two ways: a head on the normalised image embedding, and cosine similarity
    with the class descriptions (scaled by the logit scale).

    With a frozen text tower the description embeddings are computed once and cached; they are
    recomputed only when weights are loaded. Several descriptions per class: training samples one
    per class per step, evaluation averages their normalised embeddings.
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer,
        class_names: list[str],
        descriptions: dict[str, list[str]],
        head: str = "linear",
        head_init: str = "zeroshot",
        freeze_text: bool = True,
        temperature: float | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        adapter: Adapter | None = None,
        contrastive_loss: str | None = "auto",
        image_processor: Any = None,
    ) -> None:
        super().__init__()
        # how this family pools, projects, tokenises and scores (a plain object: no state_dict keys)
        self.adapter = adapter or adapter_for(clip)
        self.contrastive_loss = resolve_contrastive_loss(contrastive_loss, self.adapter)
        self.image_processor = image_processor  # the base checkpoint's, saved into each run
        # the normalisation the checkpoint was pretrained with: what every loader feeds it
        self.image_mean = list(image_mean or [0.5, 0.5, 0.5])
        self.image_std = list(image_std or [0.5, 0.5, 0.5])
        self.clip = clip
        self.tokenizer = tokenizer
        self.class_names = list(class_names)
        self.freeze_text = freeze_text
        self.temperature = temperature
        texts, owner = flatten_descriptions(self.class_names, descriptions)
        self.warn_truncated(texts, [self.class_names[i] for i in owner])
        tokens = self.tokenize(texts)
        self.register_buffer("text_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("text_mask", tokens["attention_mask"], persistent=False)
        counts = torch.bincount(torch.tensor(owner), minlength=len(class_names))
        self.register_buffer("desc_count", counts, persistent=False)
        self.register_buffer("desc_start", torch.cumsum(counts, 0) - counts, persistent=False)
        self.register_buffer("desc_owner", torch.tensor(owner), persistent=False)
        self.register_buffer("_text_cache", None, persistent=False)
        if freeze_text:
            for module in self.adapter.text_modules(clip):
                module.requires_grad_(False)
        if temperature is not None:
            self.adapter.logit_scale_parameter(clip).requires_grad_(False)
        scale = float(self.logit_scale().detach())
        self.head = build_head(head, self.adapter.embed_dim(clip), len(class_names), scale)
        if head_init == "zeroshot":
            bias = self.logit_bias()
            init_head_zeroshot(
                self.head, self.class_embeddings(), scale, bias=0.0 if bias is None else float(bias.detach())
            )
        self.register_load_state_dict_post_hook(lambda module, keys: module.invalidate_text_cache())

    # --- text side ---
    def invalidate_text_cache(self) -> None:
        """Forget cached description embeddings (after loading or changing text weights)."""
        self._text_cache = None

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded and truncated the way the family was pretrained."""
        tokens = self.tokenizer(texts, **self.adapter.tokenizer_kwargs(self.clip, self.tokenizer), return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def warn_truncated(self, texts: list[str], owners: list[str]) -> None:
        """Warn about descriptions over the family's token limit (see `warn_truncated`)."""
        warn_truncated(self.tokenizer, texts, owners, self.adapter.max_text_tokens(self.clip, self.tokenizer))

    def encode_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings (pooled and projected by the family's adapter)."""
        return F.normalize(self.adapter.text_features(self.clip, ids, mask), dim=-1)

    def description_embeddings(self) -> torch.Tensor:
        """Every description's normalised embedding (D, dim); cached unless text is training."""
        if self._text_cache is not None:
            return self._text_cache
        if not self.freeze_text and torch.is_grad_enabled() and self.training:
            return self.encode_texts(self.text_ids, self.text_mask)
        with torch.no_grad():
            self._text_cache = self.encode_texts(self.text_ids, self.text_mask)
        return self._text_cache

    def class_embeddings(self) -> torch.Tensor:
        """Per class: mean of its normalised description embeddings, renormalised (C, dim)."""
        return average_per_class(self.description_embeddings(), self.desc_owner, len(self.class_names))

    @torch.no_grad()
    def embed_descriptions(self, descriptions: dict[str, list[str]]) -> torch.Tensor:
        """Class embeddings (C, dim) for other classes' descriptions, built like the model's own."""
        texts, owner = flatten_descriptions(list(descriptions), descriptions)
        self.warn_truncated(texts, [list(descriptions)[i] for i in owner])
        tokens = self.tokenize(texts)
        device = self.text_ids.device
        emb = self.encode_texts(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
        return average_per_class(emb, torch.tensor(owner, device=device), len(descriptions))

    def sampled_class_embeddings(self) -> torch.Tensor:
        """One randomly chosen description per class (C, dim); only those are encoded when the
        text tower trains."""
        offset = (torch.rand(len(self.desc_count), device=self.desc_count.device) * self.desc_count).long()
        pick = self.desc_start + offset
        if self.freeze_text or not self.training:
            return self.description_embeddings()[pick]
        return self.encode_texts(self.text_ids[pick], self.text_mask[pick])

    def train(self, mode: bool = True) -> ClipClassifier:
        if not self.freeze_text:
            self.invalidate_text_cache()  # the text tower changes while training
        return super().train(mode)

    # --- image side ---
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings; other input sizes interpolate position embeddings."""
        return F.normalize(self.adapter.image_features(self.clip, pixels), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        """The fixed `temperature` if set, else the checkpoint's learned scale, in float32.

        Not clamped here: a clamp in the forward pass zeroes the scale's gradient at the cap, and
        float32 ln 100 (what OpenAI and LAION checkpoints store) rounds above it, so their scale
        would never train. `clamp_logit_scale` bounds the parameter after each step instead."""
        if self.temperature is not None:
            return torch.tensor(float(self.temperature), device=self.clip.logit_scale.device)
        return self.adapter.logit_scale_parameter(self.clip).float().exp()

    def logit_bias(self) -> torch.Tensor | None:
        """SigLIP's learned bias on every scaled similarity; None for the softmax families."""
        return self.adapter.logit_bias(self.clip)

    def similarity_logits(self, image: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Description logits: scaled cosine similarity of normalised embeddings, plus the
        family's bias (SigLIP)."""
        logits = self.logit_scale() * image @ classes.T
        bias = self.logit_bias()
        return logits if bias is None else logits + bias

    @property
    def text_probability(self) -> str:
        """How description logits become probabilities: like the contrastive loss they were
        trained with (softmax over classes, or an independent sigmoid per class for SigLIP)."""
        return self.contrastive_loss

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep the learned scale at or below 100 after an optimizer step, as CLIP does."""
        self.adapter.logit_scale_parameter(self.clip).clamp_(max=self.adapter.log_max_logit_scale())

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head logits and description logits for a batch of images."""
        image = self.encode_images(pixels)
        classes = self.sampled_class_embeddings() if self.training else self.class_embeddings()
        # the towers may run under autocast; the scaled cosines and the head do not: in bf16,
        # logits near 100 are quantised to steps of 0.5 and the losses' softmaxes drift
        with torch.autocast(pixels.device.type, enabled=False):
            image32, classes32 = image.float(), classes.float()
            return {
                "embedding": image,
                "head_logits": self.head(image32),
                "text_logits": self.similarity_logits(image32, classes32),
            }


def build_classifier(
    config: dict[str, Any],
    class_names: list[str],
    descriptions: dict[str, list[str]],
    model_source: str | None = None,
    base_weights: bool = True,
) -> ClipClassifier:
    """The one constructor of a ClipClassifier from a run's config: the base model of
    `config["model_name"]` (or `model_source`, a directory holding the same model's files) with
    the head, text freezing, logit scale and contrastive loss the config asks for. Training,
    loading a checkpoint, zero-shot and WiSE-FT all build their classifier here.
    `base_weights=False` builds the architecture only (a checkpoint's weights are loaded next)."""
    from clipcls.model.loading import load_clip

    parts = load_clip(model_source or config["model_name"], weights=base_weights)
    if config.get("gradient_checkpointing"):
        parts.model.gradient_checkpointing_enable()
    classifier = ClipClassifier(
        parts.model,
        parts.tokenizer,
        class_names,
        descriptions,
        head=config.get("head", "linear"),
        head_init=config.get("head_init", "zeroshot") if base_weights else "random",  # random: overwritten next
        freeze_text=config.get("freeze_text", True),
        temperature=config.get("temperature"),
        image_mean=parts.image_mean,
        image_std=parts.image_std,
        adapter=parts.adapter,
        contrastive_loss=config.get("contrastive_loss", "auto"),
        image_processor=parts.processor,
    )
    if config.get("freeze_image"):  # a linear probe: only the head (and text side, if not frozen) trains
        for name, param in classifier.clip.named_parameters():
            if name.startswith(("vision_model.", "visual_projection.")):
                param.requires_grad_(False)
    return classifier
