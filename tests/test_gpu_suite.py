"""Issue 14: the GPU suite runs end to end on the CPU (`--quick`, tiny model) so it never rots, and
its arithmetic (MFU, the largest-batch search, the device's peak) is right."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cfg import CFG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_measure  # noqa: E402
import gpu_suite  # noqa: E402


def test_quick_mode_measures_every_part_on_the_cpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the pipeline's thread policy respects it
    torch.set_num_threads(1)
    assert gpu_suite.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_suite.json").read_text(encoding="utf-8"))
    assert results["errors"] == [] and results["skipped"] == []
    assert results["device"] == "cpu" and results["peak_bf16_tflops"] is None
    row = results["models"]["tiny@64"]
    assert row["batch"] == 8 and row["size"] == 64
    for key in ("bare_images_per_s", "checkpointing_images_per_s", "predict_images_per_s"):
        assert row[key] > 0, key
    for decode in ("cpu", "gpu", "gpu_grouped"):
        assert row[f"pipeline_{decode}"]["images_per_s"] > 0 and row[f"pipeline_{decode}"]["first_step_s"] > 0
    assert row["flops_per_step"] > 1e6  # forward and backward of 8 images through the tiny CLIP
    assert row["peak_memory_bytes"] is None  # CUDA only
    loader = {(i["decode"], i["workers"], i["augment"], i["group"]): i["images_per_s"] for i in results["loader"]}
    default = CFG.augment  # the suite measures the default augmentation (and none)
    expected = {(d, w, default, 1) for d in ("cpu", "gpu") for w in (0, 1)}
    expected |= {("gpu", 1, "none", 1), ("gpu", 1, default, 16)}
    assert set(loader) == expected and min(loader.values()) > 0
    table = capsys.readouterr().out
    assert "tiny@64: pipeline decode gpu, one augmentation draw per 16 images: " in table
    assert "| tiny@64 | 8 |" in table and "| 64px, batch 8 | gpu | 1 | none |" in table
    assert f"| 64px, batch 8 | gpu | 1 | {default} (one draw per 16 images) |" in table


def test_largest_batch_search_doubles_then_bisects():
    tried = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= 700

    assert gpu_measure.largest_fitting(fits, 128, 16384, refine=3) == (640, 704)
    assert tried == [128, 256, 512, 1024, 768, 640, 704]
    assert gpu_measure.largest_fitting(lambda n: n <= 40, 128, 1024, refine=0) == (32, 64)  # halves first
    assert gpu_measure.largest_fitting(lambda n: True, 128, 1000) == (1000, None)  # the cap fits
    assert gpu_measure.largest_fitting(lambda n: False, 4, 64) == (0, 1)


def test_table_reports_mfu_and_ratios_from_the_json():
    results = {
        "device": "NVIDIA H100 80GB HBM3",
        "peak_bf16_tflops": 1000.0,
        "models": {
            "B/32@224": {
                "batch": 100,
                "size": 224,
                "bare_images_per_s": 500.0,
                "flops_per_step": 1e12,  # 5 steps/s: 5 TFLOP/s of a 1000 peak
                "pipeline_cpu": {"images_per_s": 250.0},
                "pipeline_gpu": {"images_per_s": 400.0},
                "peak_memory_bytes": 3 * 2**30,
                "peak_memory_bytes_checkpointing": 2**30,
                "largest_batch": 4096,
                "smallest_failing_batch": None,
            }
        },
        "loader": [
            {"size": 224, "batch": 100, "decode": "gpu", "workers": 4, "augment": "none", "images_per_s": 1234.4}
        ],
        "compile": {},
        "skipped": [],
        "errors": [],
    }
    table = gpu_suite.render(results)
    assert "| B/32@224 | 100 | 500 | 0% | 250 (0.50) | 400 (0.80) | 0% | 3.0 / 1.0 | - | 4096+ | - |" in table
    results["peak_bf16_tflops"] = 10.0
    assert "| 500 | 50% | 250 (0.50) | 400 (0.80) | 40% |" in gpu_suite.render(results)
    assert "| 224px, batch 100 | gpu | 4 | none | 1234 |" in table


@pytest.mark.parametrize(
    ("name", "peak"),
    [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.4), ("Tesla T4", None)],
)
def test_peak_bf16_by_device_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert gpu_measure.peak_tflops(torch.device("cuda")) == peak
    assert gpu_measure.peak_tflops(torch.device("cpu")) is None
    assert gpu_measure.peak_tflops(torch.device("cpu"), override=123.0) == 123.0


def test_fits_reads_an_out_of_memory_error_as_does_not_fit(base_cfg, monkeypatch):
    import functools

    from tests.conftest import make_module

    module = make_module(base_cfg, ["red", "green"], {"red": ["a red square"], "green": ["a green square"]})
    loop = gpu_measure.BareLoop(module, torch.device("cpu"), bf16=False)
    real_step = loop.step

    def step(batch):
        if len(batch.labels) > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if len(batch.labels) == 3:
            raise RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)")
        real_step(batch)

    monkeypatch.setattr(loop, "step", step)
    fits = functools.partial(loop.fits, image_side=32)
    assert gpu_measure.largest_fitting(fits, 4, 64) == (16, 18)
    assert fits(3) is False
    monkeypatch.setattr(loop, "step", lambda batch: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # any other error is a bug, not a size
        fits(4)
