"""Every training default, in one place: edit a value here, then run `python train.py`.

Flags (`python train.py --lr 1e-5`) and YAML files (`--config run.yaml`) override these values;
`python train.py --print_config` prints the resolved result. Unknown keys are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class CFG:
    # --- data ---
    train_dataset_dir: str = "./train"  # one sub-folder of images per class
    val_dataset_dir: str | None = None  # separate labelled validation folder; None = split train
    class_description_yaml_file: str = "./info/class_descriptions.yaml"  # class -> text or list of texts
    test_size: float = 0.2  # validation fraction of the stratified, seeded split of train_dataset_dir
    img_transform_size_W: int = 224  # input width (the seed used 512; other sizes interpolate positions)
    img_transform_size_H: int = 224  # input height
    resize: Literal["squash", "crop"] = "squash"  # squash: whole image to HxW; crop: short side + centre crop (CLIP's)
    augment: Literal["none", "flip", "light", "trivialaugment", "randaugment"] = (
        "light"  # all but none flip and quarter-turn; light: + shift/rotation/zoom sized to the image
    )
    sampler: Literal["random", "balanced", "per_class"] = "balanced"  # classes drawn evenly; per_class: 1/class/step
    batch_size: int = 32  # images per step per device (per_class sampler: number of classes)
    num_workers: int | None = None  # loader workers; None = min(8, CPUs) with a GPU, CPUs // 4 on CPU
    decode: Literal["cpu", "gpu"] = "cpu"  # gpu = training JPEGs decoded/augmented on the device (unmeasured: cpu)

    # --- model ---
    model_name: str = "openai/clip-vit-base-patch32"  # Hub name, local directory, or "tiny" (offline)
    head: Literal["linear", "mlp"] = "linear"  # linear head on the image embedding, or the seed's MLP
    head_init: Literal["zeroshot", "random"] = "zeroshot"  # zeroshot = start from description embeddings
    freeze_text: bool = True  # keep the text tower frozen (its class embeddings computed once)
    freeze_image: bool = False  # keep the image tower frozen too: a linear probe on CLIP's features
    temperature: float | None = None  # fixed logit scale; None = checkpoint's learned scale (<= 100)
    gradient_checkpointing: bool = False  # trade compute for memory in both towers
    compile: bool = False  # torch.compile the image tower for training (first steps compile)

    # --- loss ---
    contrastive_loss: Literal["auto", "softmax", "sigmoid"] = "auto"  # auto = the family's own (sigmoid for SigLIP)
    sim_weight: float = 0.5  # weight of the class-aware image-description contrastive loss
    fc_weight: float = 0.5  # weight of the head's cross-entropy
    label_smoothing: float = 0.1  # label smoothing of the head's cross-entropy
    logit_adjustment: float = 0.0  # tau of the logit-adjusted loss for imbalance (Menon 2021; sampler random); 0 = off

    # --- optimisation ---
    epochs: int = 10  # training epochs
    lr: float = 1e-5  # AdamW peak learning rate
    head_lr_multiplier: float = 100.0  # head LR = lr x this (cosine head: unit directions; 1e-3 turns them in a run)
    lp_epochs: int = 0  # LP-FT: epochs training the head alone (towers frozen) before everything trains
    layer_decay: float = 1.0  # image block k of L gets lr x this^(L + 1 - k) (embeddings lowest); 1 = off
    l2sp_weight: float = 0.0  # L2-SP: + this x ||image tower - its pretrained weights||^2 in the loss; 0 = off
    wise_alpha: float | None = None  # WiSE-FT: load the run's checkpoints mixed alpha x fine-tune + rest x start
    optim_betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    optim_eps: float = 1e-6  # AdamW epsilon
    optim_weight_decay: float = 0.1  # AdamW weight decay (not on biases, norms, logit scale)
    warmup_ratio: float = 0.05  # fraction of all steps spent in linear warm-up before cosine decay
    grad_clip: float | None = 1.0  # gradient-norm clipping; None = off
    accumulate_grad_batches: int = 1  # steps of gradient accumulation per optimizer step
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"  # numeric precision
    max_minutes: float | None = None  # stop training after this wall time (None = no limit)
    early_stopping_patience: int | None = None  # epochs without improvement before stopping

    # --- hardware ---
    accelerator: str = "auto"  # cpu, gpu, mps or auto
    devices: int | str = "auto"  # devices per node (2, "0,1", "auto")
    strategy: str = "auto"  # Lightning strategy: auto, ddp, ddp_spawn, fsdp...
    num_nodes: int = 1  # machines in a multi-node run

    # --- run ---
    seed: int = 42  # seeds splits, sampling, augmentation and initialisation
    output_dir: str = "./runs"  # parent of every run directory
    run_name: str | None = None  # run directory name; None = a timestamp
    monitor: str = "val/macro_f1"  # metric that picks the best checkpoint (maximised)
    checkpoint_every_n_steps: int | None = 200  # also refresh last.ckpt every n steps (None = per epoch)
    resume: str | None = None  # "last" (latest run), a run directory, or a .ckpt file
    log_every_n_steps: int = 10  # how often training metrics are logged
    loggers: list[Literal["csv", "tensorboard", "mlflow", "wandb"]] = field(
        default_factory=lambda: ["csv", "tensorboard"]
    )  # experiment trackers (evaluate reads curves from csv; mlflow: <output_dir>/mlruns; wandb offline)
