"""CUDA target: ONNX Runtime's CUDA / TensorRT execution providers where installed, torch CUDA as a reference.

Without a CUDA device every result says ``skipped: no CUDA device`` — the target never fails for lack of a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .jobs import Job
from .result import BenchResult, skipped
from .stats import summarize
from .targets_local import run_local

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
NO_DEVICE = "skipped: no CUDA device"


def cuda_device_present() -> bool:
    """True when a CUDA device is visible: torch says so, or ``nvidia-smi -L`` lists a GPU, or /dev/nvidia0 exists."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return True
        except Exception:  # a broken CUDA install is "no device" here
            pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and "GPU" in out.stdout:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Path("/dev/nvidia0").exists()


def ort_gpu_providers() -> list[str]:
    """The GPU execution providers this ONNX Runtime build offers (may be listed even without a device)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in GPU_PROVIDERS if p in have]


def run_cuda(bundle: Path, manifest: Any, jobs: list[Job], config: Any, progress: bool = True,
             reference_model: Any = None, device_present: bool | None = None) -> list[BenchResult]:
    """ONNX artifacts on each GPU provider (one worker process each); optional torch CUDA reference."""
    present = cuda_device_present() if device_present is None else device_present
    onnx_jobs = [j for j in jobs if j.backend == "onnxruntime"]
    others = [j for j in jobs if j.backend != "onnxruntime"]
    results = [skipped("cuda", j.backend, f"skipped: backend {j.backend!r} has no CUDA path here (ONNX Runtime "
                       "execution providers only)", artifact=j.artifact, threads=j.threads) for j in others]
    if not present:
        results += [skipped("cuda", j.backend, NO_DEVICE, artifact=j.artifact, threads=j.threads, provider=p)
                    for j in onnx_jobs for p in GPU_PROVIDERS]
        if reference_model is not None:
            results.append(skipped("cuda", "torch", NO_DEVICE, provider="torch-cuda"))
        return results
    providers = ort_gpu_providers()
    for p in GPU_PROVIDERS:
        if p not in providers:
            results += [skipped("cuda", j.backend, f"skipped: {p} is not in this onnxruntime build "
                                "(pip install onnxruntime-gpu)", artifact=j.artifact, threads=j.threads, provider=p)
                        for j in onnx_jobs]
            continue
        results += run_local(bundle, onnx_jobs, config, progress, target="cuda",
                             options={"providers": f"{p},CPUExecutionProvider"}, provider=p)
    if reference_model is not None:
        results.append(torch_reference(reference_model, manifest, bundle, config))
    return results


def torch_reference(model: Any, manifest: Any, bundle: Path, config: Any) -> BenchResult:
    """The eager torch model on ``cuda:0`` on the bundle's golden inputs (a reference, in this process)."""
    import torch
    from edgecart.runtime import open_bundle

    if not torch.cuda.is_available():
        return skipped("cuda", "torch", NO_DEVICE, provider="torch-cuda")
    b = open_bundle(bundle)
    golden = {k: b.load_npy(p) for k, p in manifest.golden.inputs.items()}
    n = min(v.shape[0] for v in golden.values())
    feeds = [[torch.from_numpy(golden[s.name][i]).cuda() for s in manifest.inputs] for i in range(n)]
    model = model.eval().cuda()

    def call(i: int) -> None:
        with torch.inference_mode():
            model(*feeds[i % n])
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    call(0)
    first = time.perf_counter() - t0
    for i in range(config.warmup):
        call(i)
    samples = []
    deadline = time.perf_counter() + config.seconds
    i = 0
    while len(samples) < config.iterations or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t0)
        i += 1
    return BenchResult(target="cuda", origin="local", status="ok", backend="torch", provider="torch-cuda",
                       artifact="eager reference", mode="eager", first_inference_ms=first * 1e3, warmup=config.warmup,
                       latency=summarize(samples, config.bootstrap), inputs=f"golden ({n} samples, round-robin)",
                       environment={"device": torch.cuda.get_device_name(0), "torch": torch.__version__})


__all__ = ["GPU_PROVIDERS", "NO_DEVICE", "cuda_device_present", "ort_gpu_providers", "run_cuda", "torch_reference"]
