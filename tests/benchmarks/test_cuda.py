"""CUDA target: without a device every result says 'skipped: no CUDA device' and nothing fails."""

from __future__ import annotations

import pytest
from edgecart.benchmarks import bench
from edgecart.benchmarks.targets_cuda import GPU_PROVIDERS, NO_DEVICE, cuda_device_present, ort_gpu_providers, run_cuda
from edgecart.benchmarks.targets_local import Job
from edgecart.runtime import open_bundle


def test_without_a_device_results_are_skipped(bench_bundle, quiet_config):
    cfg = quiet_config()
    if cuda_device_present():
        jobs = [Job("tiny.fp32.onnx", "onnxruntime", 1)]
        results = run_cuda(bench_bundle, open_bundle(bench_bundle).manifest, jobs, cfg, False, device_present=False)
    else:
        results = bench(bench_bundle, cfg, target="cuda", progress=False).results
    onnx = [r for r in results if r.backend == "onnxruntime"]
    assert {r.provider for r in onnx} == set(GPU_PROVIDERS)
    assert all(r.status == "skipped" and r.reason == NO_DEVICE and r.target == "cuda" for r in onnx)
    others = [r for r in results if r.backend != "onnxruntime"]
    assert all(r.status == "skipped" and "no CUDA path" in r.reason for r in others)


def test_a_device_without_gpu_providers_says_what_to_install(bench_bundle, quiet_config):
    if set(ort_gpu_providers()) == set(GPU_PROVIDERS):
        pytest.skip("this onnxruntime build has both GPU providers: no missing provider to report")
    jobs = [Job("tiny.fp32.onnx", "onnxruntime", 1)]
    results = run_cuda(bench_bundle, open_bundle(bench_bundle).manifest, jobs, quiet_config(), False,
                       device_present=True)
    missing = [r for r in results if r.provider not in ort_gpu_providers()]
    assert missing and all(r.status == "skipped" and "onnxruntime-gpu" in r.reason for r in missing)
