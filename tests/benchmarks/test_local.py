"""Local target on a tiny exported bundle: worker processes, the Python API, side by side, overhead, the CLI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from edgecart.benchmarks import BenchConfig, bench, compare, overhead, plan, read_report
from edgecart.benchmarks.harness import parse_target
from edgecart.benchmarks.targets_local import Job, run_job
from edgecart.runtime import open_bundle


def test_worker_process_writes_raw_json(bench_bundle, tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "edgecart.benchmarks.worker", "--bundle", str(bench_bundle),
                        "--backend", "onnxruntime", "--threads", "1", "--iterations", "7", "--warmup", "10",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    raw = json.loads(out.read_text())
    assert raw["status"] == "ok" and raw["backend"] == "onnxruntime" and raw["artifact"] == "tiny.fp32.onnx"
    assert len(raw["samples_s"]) == 7 and raw["warmup"] == 10
    assert raw["load_s"] > 0 and raw["first_inference_s"] > 0 and raw["peak_rss_kb"] >= raw["rss_before_load_kb"]
    assert raw["inputs"].startswith("golden (3 samples")
    assert raw["parity"]["cosine"] > 0.9999
    assert raw["environment"]["threads"] == 1 and raw["environment"]["cpu_model"]


def test_config_is_validated():
    with pytest.raises(ValueError, match="warmup"):
        BenchConfig(warmup=3)
    with pytest.raises(ValueError):
        BenchConfig(threads=(0,))
    with pytest.raises(ValueError):
        BenchConfig(iterations=0)
    with pytest.raises(Exception, match="onnxruntime"):
        BenchConfig(backends=("tensorrt-llm",))  # unknown backend: the error lists the known ones
    with pytest.raises(ValueError, match="cpus"):
        BenchConfig(cpus=(999,))


def test_plan_and_targets(bench_bundle):
    m = open_bundle(bench_bundle).manifest
    jobs = plan(m, BenchConfig(threads=(1, 2)))
    assert len(jobs) == 6 and Job("tiny.fp32.onnx", "onnxruntime", 2) in jobs
    assert plan(m, BenchConfig(backends=("litert",))) == [Job("tiny.fp32.tflite", "litert", 1)]
    with pytest.raises(ValueError, match="nothing to benchmark"):
        plan(m, BenchConfig(precision="int8"))
    assert parse_target("ssh://pi@10.0.0.7:2222") == ("ssh", "pi@10.0.0.7:2222")
    assert parse_target("adb:emulator-5554") == ("adb", "emulator-5554")
    with pytest.raises(ValueError):
        parse_target("ftp://x")


def test_bench_api_writes_json_markdown_plots(bench_bundle, tmp_path, quiet_config):
    cfg = quiet_config(backends=("onnxruntime", "litert"), threads=(1, 2), seconds=0.05)
    report = bench(bench_bundle, cfg, out=tmp_path, progress=False)
    assert [(r.backend, r.threads) for r in report.results] == [("onnxruntime", 1), ("onnxruntime", 2),
                                                                ("litert", 1), ("litert", 2)]
    for r in report.results:
        assert r.ok and r.origin == "local" and r.target == "local"
        assert r.latency.n >= 20  # the larger of 20 calls or 0.05 s
        assert r.file_bytes > 1000 and r.peak_rss_mb > 10 and r.first_inference_ms > 0
        assert r.environment["threads"] == r.threads
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["tiny.bench.json", "tiny.bench.latency.png", "tiny.bench.md", "tiny.bench.tradeoff.png"]
    assert read_report(tmp_path / "tiny.bench.json").results == report.results


def test_pinning_and_engine_mode(bench_bundle, quiet_config):
    cfg = quiet_config(backends=("litert",), cpus=(0,), mode="engine")
    (r,) = bench(bench_bundle, cfg, progress=False).results
    assert r.ok and r.mode == "engine"
    assert r.environment["affinity"] == [0] and r.environment["pinned"] is True


def test_a_failing_worker_becomes_a_failed_result(bench_bundle):
    r = run_job(bench_bundle, Job("tiny.fp32.onnx", "onnxruntime", 1), iterations=5, seconds=0, warmup=10,
                options={"providers": "NoSuchExecutionProvider"})
    assert r.status == "failed" and "NoSuchExecutionProvider" in r.reason
    r = run_job(bench_bundle, Job("no-such-artifact", "onnxruntime", 1), iterations=5, seconds=0, warmup=10)
    assert r.status == "failed" and "no-such-artifact" in r.reason


def test_compare_interleaves_the_three_runtimes(bench_bundle, tmp_path, quiet_config):
    cfg = quiet_config(iterations=12, rounds=3)
    report = compare(bench_bundle, cfg, out=tmp_path, progress=False)
    (c,) = report.comparison
    assert c["threads"] == 1 and c["per_round"] == 4
    backends = {"executorch", "onnxruntime", "litert"}
    assert [{entry.split(" · ")[1] for entry in r} for r in c["schedule"]] == [backends] * 3
    assert len({tuple(r) for r in c["schedule"]}) == 3  # the order rotates each round
    assert c["schedule"][1] == c["schedule"][0][1:] + c["schedule"][0][:1]
    ratios = {row["backend"]: row for row in c["rows"]}
    assert set(ratios) == backends
    assert min(row["ratio"] for row in c["rows"]) == 1.0
    fastest = next(r for r in report.results if r.label == c["fastest"])
    for r in report.results:
        assert r.ok and r.latency.n == 12 and r.inputs == fastest.inputs
        assert ratios[r.backend]["ratio"] == pytest.approx(r.p50_ms / fastest.p50_ms)
    assert "## Side by side (interleaved)" in (tmp_path / "tiny.compare.md").read_text()


def test_overhead_session_vs_engine(bench_bundle, quiet_config):
    report = overhead(bench_bundle, quiet_config(backends=("onnxruntime",), iterations=30, rounds=3),
                      progress=False)
    (o,) = report.overhead
    assert set(o["p50_ms"]) == {"session", "engine", "raw"} and o["n"]["session"] == 30
    assert o["overhead_pct"] == pytest.approx((o["p50_ms"]["session"] / o["p50_ms"]["engine"] - 1) * 100)
    lo, hi = o["overhead_pct_ci"]
    assert lo <= o["overhead_pct"] <= hi and o["budget_pct"] == 5.0
    assert {r.mode for r in report.results} == {"session", "engine", "raw"}


def test_cli_bench(bench_bundle, tmp_path, capsys):
    from edgecart.cli import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", str(bench_bundle), "--backends", "litert", "--threads", "1,2",
                              "--iterations", "15", "--out", str(tmp_path), "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| tiny.fp32.tflite | litert | 1 |" in out and "| tiny.fp32.tflite | litert | 2 |" in out
    doc = json.loads((tmp_path / "tiny.bench.json").read_text())
    assert doc["config"]["threads"] == [1, 2] and len(doc["results"]) == 2


def test_peak_rss_is_the_workers_own(bench_bundle, quiet_config):
    import resource

    import numpy as np

    # Linux carries ru_maxrss over fork+exec; VmHWM does not. Raise this process's peak well above what a LiteRT
    # worker needs, so that a worker reporting an inherited peak fails here every time (not only by chance).
    ballast = np.ones(512 * 2**20 // 8)
    parent_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del ballast
    assert parent_kb >= 512 * 1024
    (r,) = bench(bench_bundle, quiet_config(backends=("litert",)), progress=False).results
    assert r.ok and r.peak_rss_mb >= r.rss_before_load_mb
    assert r.peak_rss_mb * 1024 < parent_kb / 2


def test_finite_check_can_be_switched_off_for_measurement(bench_bundle, quiet_config):
    from edgecart.benchmarks.report import to_markdown
    from edgecart.benchmarks.targets_local import worker_args
    from edgecart.benchmarks.worker import Target

    job = Job("tiny.fp32.onnx", "onnxruntime", 1)
    assert "--no-finite-check" not in worker_args(bench_bundle, job, warmup=10, mode="session", cpus=None)
    assert "--no-finite-check" in worker_args(bench_bundle, job, warmup=10, mode="session", cpus=None,
                                              check_finite=False)
    assert Target(str(bench_bundle), "onnxruntime", None, None, 1, check_finite=False).session.check_finite is False
    report = overhead(bench_bundle, quiet_config(backends=("onnxruntime",), iterations=20, rounds=2,
                                                 check_finite=False), progress=False)
    assert report.config["check_finite"] is False
    assert "NaN/Inf input check: off" in to_markdown(report)
