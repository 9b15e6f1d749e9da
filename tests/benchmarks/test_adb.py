"""adb target with a fake ``adb`` on PATH that records the commands and replays each tool's documented output
(samples under fixtures/adb/, each naming its source)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from edgecart.benchmarks import bench
from edgecart.benchmarks.targets_adb import AdbTarget, parse_benchmark_model, parse_executor_runner, parse_perf_test

FIXTURES = Path(__file__).parent / "fixtures"


def _sample(tool: str) -> str:
    text = (FIXTURES / "adb" / f"{tool}.txt").read_text()
    assert text.startswith("# source:")
    return "".join(line for line in text.splitlines(True) if not line.startswith("#"))


def test_parse_benchmark_model():
    p = parse_benchmark_model(_sample("benchmark_model"))
    assert (p["init_us"], p["first_us"], p["warmup_avg_us"], p["avg_us"]) == (5685, 18535, 14462.3, 14575.2)
    assert p["timed"]["count"] == 69 and p["timed"]["min"] == 14215 and p["timed"]["std"] == 312
    assert p["peak_mb"] == 4.6875
    with pytest.raises(ValueError, match="Inference timings"):
        parse_benchmark_model("ERROR: Failed to apply GPU delegate.\nBenchmarking failed.\n")


def test_parse_perf_test():
    p = parse_perf_test(_sample("onnxruntime_perf_test"))
    assert p["session_creation_s"] == 0.0312 and p["first_inference_ms"] == 2 and p["requests"] == 4
    assert p["avg_ms"] == 0.02405 and p["p50_s"] == 0.0000239 and p["p999_s"] == 0.0000262
    assert p["peak_bytes"] == 53567488
    with pytest.raises(ValueError):
        parse_perf_test("failed to initialize.")


def test_parse_executor_runner():
    p = parse_executor_runner(_sample("executor_runner"))
    assert p["load_ms"] == 2.808 and p["executions"] == 15 and len(p["samples_ms"]) == 15
    assert p["samples_ms"][0] == 0.412 and p["samples_ms"][-1] == 0.05
    assert p["total_ms"] == pytest.approx(sum(p["samples_ms"]))


@pytest.fixture()
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(f"#!{sys.executable}\n" + (FIXTURES / "fake_adb.py").read_text())
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUTS", str(FIXTURES / "adb"))
    tools = {}
    for name in ("executor_runner", "benchmark_model", "onnxruntime_perf_test"):
        f = tmp_path / "tools" / name
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"\x7fELF fake native tool")
        tools[name] = str(f)
    return log, tools


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_bench_over_adb(fake_adb, bench_bundle, quiet_config):
    log, tools = fake_adb
    cfg = quiet_config(iterations=4, threads=(2,))
    report = bench(bench_bundle, cfg, target="adb:emulator-5554", progress=False, target_options={"tools": {
        "executorch": tools["executor_runner"], "litert": tools["benchmark_model"],
        "onnxruntime": tools["onnxruntime_perf_test"]}})
    by = {r.backend: r for r in report.results}
    assert set(by) == {"executorch", "litert", "onnxruntime"}
    for r in by.values():
        assert r.ok and r.origin == "remote" and r.target == "adb:emulator-5554" and r.mode == "tool"
        assert r.threads == 2 and r.file_bytes > 1000
    et = by["executorch"]  # every iteration printed: warm-ups dropped, full statistics here
    assert et.first_inference_ms == 0.412 and et.latency.n == 4 and et.samples_ms == [0.052, 0.051, 0.053, 0.05]
    assert et.load_s == pytest.approx(0.002808) and et.latency.ci_ms["p50"]
    lite = by["litert"]
    assert lite.latency.mean_ms == pytest.approx(14.5752) and lite.first_inference_ms == pytest.approx(18.535)
    assert lite.load_s == pytest.approx(0.005685) and lite.peak_rss_mb == 4.6875 and lite.latency.reliable == []
    ort = by["onnxruntime"]
    assert ort.latency.percentiles_ms["p50"] == pytest.approx(0.0239) and ort.load_s == 0.0312
    assert ort.latency.percentiles_ms["p99.9"] == pytest.approx(0.0262)

    calls = _calls(log)
    assert all(c[:2] == ["-s", "emulator-5554"] for c in calls)
    pushes = [c[4] for c in calls if c[2] == "push"]
    assert "/data/local/tmp/edgecart/tiny.fp32.pte" in pushes and "/data/local/tmp/edgecart/golden.image.bin" in pushes
    shells = [c[3] for c in calls if c[2] == "shell"]
    assert "mkdir -p /data/local/tmp/edgecart" in shells
    et_cmd = next(s for s in shells if s.startswith("/data/local/tmp/edgecart/executor_runner"))
    assert "--model_path=/data/local/tmp/edgecart/tiny.fp32.pte" in et_cmd and "--num_executions=15" in et_cmd
    assert "--cpu_threads=2" in et_cmd and "--inputs=/data/local/tmp/edgecart/golden.image.bin" in et_cmd
    bm = next(s for s in shells if s.startswith("/data/local/tmp/edgecart/benchmark_model"))
    assert "--graph=/data/local/tmp/edgecart/tiny.fp32.tflite" in bm and "--num_runs=4" in bm
    assert "--warmup_runs=10" in bm and "--num_threads=2" in bm and "--input_layer_value_files=image:" in bm
    pt = next(s for s in shells if s.startswith("/data/local/tmp/edgecart/onnxruntime_perf_test"))
    assert "-m times -r 4" in pt and "-x 2" in pt and pt.endswith("tiny.fp32.onnx")
    assert any(s.startswith("chmod +x /data/local/tmp/edgecart/benchmark_model") for s in shells)


def test_missing_tool_is_skipped_and_bad_config_refused(fake_adb, bench_bundle, quiet_config):
    log, tools = fake_adb
    report = bench(bench_bundle, quiet_config(backends=("litert", "onnxruntime"), iterations=4), progress=False,
                   target="adb:R58M", target_options={"tools": {"litert": tools["benchmark_model"]}})
    by = {r.backend: r for r in report.results}
    assert by["litert"].ok and by["onnxruntime"].status == "skipped"
    assert "onnxruntime_perf_test" in by["onnxruntime"].reason
    with pytest.raises(ValueError, match="unknown backends"):
        AdbTarget("R58M", tools={"tensorrt": "x"})


def test_adb_errors_become_failed_results(fake_adb, bench_bundle, quiet_config, tmp_path):
    report = bench(bench_bundle, quiet_config(backends=("litert",), iterations=4), progress=False,
                   target="adb:R58M", target_options={"tools": {"litert": str(tmp_path / "missing_tool")}})
    (r,) = report.results
    assert r.status == "failed" and "No such file" in r.reason and r.origin == "remote"
