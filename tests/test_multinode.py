"""Issue 13, item 3: a multi-node launch, simulated on one machine: two "nodes" of one process
each, started by hand with the environment variables Lightning reads (as SLURM or a cluster's
launcher would set them), meet over gloo on localhost, train and validate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import cfg_argv

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_of_one_process_train_and_validate(base_cfg, tmp_path):
    cfg = {**base_cfg, "accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp"}
    port = str(free_port())
    procs, logs = [], []
    for node in (0, 1):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "NODE_RANK": str(node),
            "LOCAL_RANK": "0",  # set by the per-node launcher: Lightning starts no processes itself
            "WORLD_SIZE": "2",
        }
        env.pop("SLURM_NTASKS", None)
        log = (tmp_path / f"node{node}.log").open("w")
        logs.append(log)
        command = [sys.executable, str(ROOT / "train.py"), *cfg_argv(cfg)]
        procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [proc.wait(timeout=240) for proc in procs]
    for log in logs:
        log.close()
    outputs = [(tmp_path / f"node{node}.log").read_text(errors="replace") for node in (0, 1)]
    assert codes == [0, 0], "\n".join(output[-2000:] for output in outputs)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outputs[0] and "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    run_dir = Path(cfg["output_dir"]) / "test"
    # 19 training images over 2 nodes: 10 each, 2 batches of 8 in the one epoch
    assert load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_images"] == 5 and "run directory" in outputs[0] and "run directory" not in outputs[1]
