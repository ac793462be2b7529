"""Shared pieces of the speed benchmarks: the machine, test data, model directories, statistics.

Every benchmark measures its contenders side by side in one process, alternating them round by
round, because the machine is shared and noisy: a median over alternated rounds compares like
with like even when the load changes during the run.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A small fixed vocabulary for the synthetic 30-word class descriptions.
_WORDS = (
    "wallpaper surface close photo showing visible defect area near edge corner seam sheet wall "
    "paper texture pattern colour stain mark spot patch crack tear gap bubble ripple crease dark "
    "light rough smooth small large uneven repaired damaged clean lifted twisted scattered"
).split()


def machine() -> dict[str, str]:
    """What the figures were measured on: cores, CPU model, library versions, load."""
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine() -> None:
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)


def class_names(count: int = 19) -> list[str]:
    """`count` class folder names (19 = the Dacon wallpaper task's class count)."""
    return [f"class_{i:02d}" for i in range(count)]


def descriptions(names: list[str], words: int = 30, seed: int = 0) -> dict[str, list[str]]:
    """One description of exactly `words` words per class, deterministic."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(names):
        filler = rng.choice(_WORDS, size=words - 6).tolist()
        out[name] = [" ".join(["a", "photo", "of", "defect", "type", f"{i}"] + filler)]
    return out


def write_descriptions(path: Path, descs: dict[str, list[str]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(descs, allow_unicode=True), encoding="utf-8")
    return path


def make_jpeg_folder(
    root: Path, names: list[str], per_class: int, size: tuple[int, int] = (512, 384), seed: int = 0
) -> Path:
    """`root/<class>/<i>.jpg`: smooth colour fields with noise (decode cost like a photo's)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for c, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            fy, fx, phase = rng.uniform(0.005, 0.03, 2).tolist() + [rng.uniform(0, 6.3)]
            base = 127 + 80 * np.sin(fy * yy + fx * xx + phase)
            rgb = np.stack([base, np.roll(base, c * 7, 1), 255 - base], -1) + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def word_tokenizer(texts: list[str]):
    """A word-level tokenizer covering `texts`: about one token per word, like CLIP's BPE on
    plain English (the byte tokenizer of the tiny model would make 30 words ~180 tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.split()})
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    sot, eot = len(vocab), len(vocab) + 1  # end-of-text has the highest id, as in CLIP's vocabulary
    vocab.update({"<|startoftext|>": sot, "<|endoftext|>": eot})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", sot), ("<|endoftext|>", eot)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_max_length=77,
    )


def build_vit_b32(out_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """The ViT-B/32 CLIP architecture (transformers' default CLIPConfig) with random weights,
    its tokenizer and image processor, saved like a Hub checkpoint. Speed does not depend on
    the weight values. Reused when already built."""
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = word_tokenizer(texts)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # CLIP pools the text at the first end-of-text token; the default vocabulary size is kept
    config = CLIPConfig(text_config={"bos_token_id": eot - 1, "eos_token_id": eot, "pad_token_id": eot})
    torch.manual_seed(seed)
    model = CLIPModel(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor().save_pretrained(out_dir)
    return out_dir


def cfg_flags(cfg: dict) -> list[str]:
    """A resolved config as `train.py` flags."""
    flags = []
    for key, value in cfg.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(map(str, value)) + "]"
        flags += [f"--{key}", "null" if value is None else str(value)]
    return flags


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclasses.dataclass
class StepTimes:
    """Per-step wall times of one contender in one round, after its warm-up steps."""

    name: str
    batch: int
    seconds: list[float]

    @property
    def images_per_s(self) -> float:
        return self.batch / median(self.seconds)


def time_steps(step: Callable[[], None], batch: int, warmup: int, measure: int, name: str) -> StepTimes:
    """Run `step` warmup + measure times; keep the wall time of the measured ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(measure):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return StepTimes(name, batch, times)


def summarise(rounds: list[dict[str, StepTimes]], pairs: list[tuple[str, str]]) -> str:
    """A table of median images/s per contender and the paired per-round ratios."""
    lines = []
    names = list(rounds[0])
    for name in names:
        per_round = [r[name].images_per_s for r in rounds]
        step_ms = median([median(r[name].seconds) for r in rounds]) * 1000
        lines.append(
            f"  {name:<28} {median(per_round):9.2f} images/s  (median step {step_ms:8.1f} ms; "
            f"rounds: {', '.join(f'{x:.2f}' for x in per_round)})"
        )
    for num, den in pairs:
        ratios = [r[num].images_per_s / r[den].images_per_s for r in rounds]
        lines.append(f"  ratio {num} / {den}: {median(ratios):.3f}  (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    return "\n".join(lines)
