"""Helpers for the fault-tolerance tests: training in a child process that can be killed."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import cfg_argv

ROOT = Path(__file__).resolve().parents[1]

# `python train.py ARGS`, with every training step slowed down and recorded (its global step, one
# line each, in PROGRESS), so a test can kill the process at a known point of an epoch. With
# HOLD >= 0 the step at that global step writes PROGRESS.held and then waits there until the test
# writes PROGRESS.release (for good if it never does): a test that waits for that file signals or
# kills the process at exactly that step, whatever the machine's speed.
SLOW_TRAIN = """
import runpy, sys, time
from pathlib import Path
from clipcls.training.module import ClipClassifierModule

progress, delay, hold = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
original = ClipClassifierModule.training_step

def slow_step(self, batch, batch_idx):
    with progress.open("a") as f:
        f.write(f"{self.global_step}\\n")
    if self.global_step == hold:
        Path(f"{progress}.held").write_text(str(hold))
        while not Path(f"{progress}.release").exists():
            time.sleep(0.02)
    time.sleep(delay)
    return original(self, batch, batch_idx)

ClipClassifierModule.training_step = slow_step
sys.argv = ["train.py", *sys.argv[4:]]
runpy.run_path("train.py", run_name="__main__")
"""


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def start_slow_training(
    cfg: dict, progress: Path, log: Path, delay: float = 0.3, hold_at: int = -1
) -> subprocess.Popen:
    """Start `python train.py` on `cfg` in a child process, each step taking at least `delay` s;
    the step at global step `hold_at` writes `progress`.held and never ends.

    The child leads a new process group (its pid is the group id), as a job under a scheduler
    does, so a test can signal it together with its DataLoader workers."""
    command = [sys.executable, "-c", SLOW_TRAIN, str(progress), str(delay), str(hold_at), *cfg_argv(cfg)]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_train_py(
    cfg: dict, *extra: str, timeout: float = 180, script: str | Path = "train.py", threads: int | None = None
) -> subprocess.CompletedProcess:
    """`python train.py` (or another entry `script`) on `cfg` plus `extra` flags, to completion;
    output captured as text. `threads` pins OMP_NUM_THREADS (several processes on 2 cores)."""
    env = child_env() if threads is None else {**child_env(), "OMP_NUM_THREADS": str(threads)}
    return run_child([sys.executable, str(script), *cfg_argv(cfg), *extra], timeout, env=env)


def run_child(command: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `command` in ROOT to completion, output captured as text. Past `timeout` seconds the
    child and every process it started (DDP workers, loader workers) are killed and the test fails
    with the child's output: `timeout` must stay below pytest's limit (pyproject's 300 s, or the
    test's own mark), or pytest-timeout ends the test first and the output is lost."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed as one
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{command[:3]} ran past {timeout} s; its output:\n{out[-2000:]}\n{err[-3000:]}") from None
    except BaseException:  # pytest-timeout, Ctrl-C: leave no training behind
        kill_group(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (started with start_new_session), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    """Poll `condition` until true; fail with the child's output if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}):\n{tail(log)}")
        if time.monotonic() > deadline:
            kill_group(proc)  # the child leads its group (start_slow_training)
            raise AssertionError(f"timed out waiting:\n{tail(log)}")
        time.sleep(0.05)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def steps_started(progress: Path) -> list[int]:
    """Global steps at which the child started a training step."""
    return [int(line) for line in progress.read_text().split()] if progress.exists() else []


def lr_rows(run_dir: Path) -> list[tuple[int, float]]:
    """(step, learning rate) rows LearningRateMonitor wrote to the run's metrics.csv, in order
    (the first parameter group's; both groups follow one schedule)."""
    with (run_dir / "logs" / "metrics.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(int(row["step"]), float(row["lr-AdamW/pg1"])) for row in rows if row.get("lr-AdamW/pg1")]
