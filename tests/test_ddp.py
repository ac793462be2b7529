"""A 2-process DDP run on CPU (gloo) trains and validates, through the same `python train.py`."""

import json
from pathlib import Path

from clipcls.inference.checkpoint import load_checkpoint_file
from tests.faults import run_train_py


def test_two_process_ddp_on_cpu(base_cfg):
    cfg = {**base_cfg, "devices": 2, "strategy": "ddp", "epochs": 2}
    proc = run_train_py(cfg, timeout=240, threads=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout
    run_dir = Path(cfg["output_dir"]) / "test"
    ckpt = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    # 19 training images split over 2 ranks -> 10 each -> 2 batches of 8 per epoch, 2 epochs
    assert ckpt["global_step"] == 4, sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_images"] == 5 and len(metrics["confusion_matrix"]) == 3
