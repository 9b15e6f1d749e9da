"""``edgecart bench`` refuses, before anything is measured, what it could not honour: an --out it cannot write, named
artifacts it would leave out of a comparison, a timed level a backend lacks, non-finite seconds, repeated thread
counts. Runs on the shared tiny bundle (fp32 and int8 artifacts for every format)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from edgecart.benchmarks import BenchConfig, compare, plan
from edgecart.benchmarks.jobs import BenchConfigError, Job, pick_jobs
from edgecart.cli import bench_cmd
from edgecart.runtime import open_bundle


@pytest.fixture()
def no_measuring(monkeypatch):
    """Any measurement fails the test: the refusals below must come before the run."""
    import importlib

    harness, compare_mod, overhead = (importlib.import_module(f"edgecart.benchmarks.{m}")
                                      for m in ("harness", "compare", "overhead"))

    def measured(*a, **k):
        raise AssertionError("a measurement ran before the refusal")

    for mod, name in ((harness, "run_local"), (harness, "run_tasks"), (compare_mod, "WorkerClient"),
                      (overhead, "WorkerClient")):
        monkeypatch.setattr(mod, name, measured)


# ------------------------------------------------------------------------------------------- 1: --out checked first

def test_out_below_a_file_is_refused_before_the_run(tiny_bundle, tmp_path, capsys, no_measuring):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for extra in ([], ["--compare"], ["--overhead"]):
        rc = bench_cmd.main([str(tiny_bundle), "--backends", "onnxruntime", "--iterations", "5", "--quiet",
                             "--out", str(afile / "x" / "y"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and "--out" in err and "afile" in err and "not a folder" in err
    assert afile.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_cannot_be_written_is_refused_before_the_run(tiny_bundle, tmp_path, capsys, no_measuring):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = bench_cmd.main([str(tiny_bundle), "--backends", "onnxruntime", "--quiet", "--out", str(ro / "x")])
        assert rc == 2 and "cannot write" in capsys.readouterr().err
        assert not (ro / "x").exists()
    finally:
        ro.chmod(0o700)


def test_folders_made_for_the_out_check_are_removed_when_the_run_is_refused(tiny_bundle, tmp_path, capsys,
                                                                             no_measuring):
    out = tmp_path / "new" / "deeper"
    # refused by the plan, after the --out check: nothing matches fp16
    rc = bench_cmd.main([str(tiny_bundle), "--precision", "fp16", "--quiet", "--out", str(out)])
    assert rc == 2 and "nothing to benchmark" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # refused by the target check
    rc = bench_cmd.main([str(tiny_bundle), "--compare", "--target", "cuda", "--quiet", "--out", str(out)])
    assert rc == 2 and not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------- 2: named artifacts are all compared

def test_named_artifacts_are_all_picked_for_compare_and_overhead(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    cfg = BenchConfig(artifacts=("tiny.fp32.onnx", "tiny.int8.onnx"))
    assert pick_jobs(m, cfg, 1) == [Job("tiny.fp32.onnx", "onnxruntime", 1), Job("tiny.int8.onnx", "onnxruntime", 1)]
    # without names: one artifact per backend, fp32 first (the runtimes side by side)
    assert sorted((j.backend, j.artifact) for j in pick_jobs(m, BenchConfig(), 2)) == [
        ("executorch", "tiny.fp32.executorch"), ("litert", "tiny.fp32.tflite"), ("onnxruntime", "tiny.fp32.onnx")]
    assert {j.artifact for j in pick_jobs(m, BenchConfig(precision="int8"), 1)} == {
        "tiny.int8.executorch", "tiny.int8.tflite", "tiny.int8.onnx"}


def test_named_artifacts_are_never_dropped_silently(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    for cfg, words in ((BenchConfig(artifacts=("tiny.fp32.onnx", "nope.onnx")), "nope.onnx"),
                       (BenchConfig(artifacts=("tiny.fp32.onnx", "tiny.int8.onnx"), precision="fp32"),
                        "tiny.int8.onnx"),
                       (BenchConfig(artifacts=("tiny.fp32.onnx", "tiny.fp32.tflite"), backends=("onnxruntime",)),
                        "tiny.fp32.tflite")):
        for pick in (lambda c: pick_jobs(m, c, 1), lambda c: plan(m, c)):
            with pytest.raises(BenchConfigError, match=words.replace(".", r"\.")):
                pick(cfg)


def test_compare_interleaves_every_named_artifact(tiny_bundle, quiet_config):
    cfg = quiet_config(artifacts=("tiny.fp32.onnx", "tiny.int8.onnx"), iterations=4, rounds=2)
    report = compare(tiny_bundle, cfg, progress=False)
    assert sorted(r.artifact for r in report.results) == ["tiny.fp32.onnx", "tiny.int8.onnx"]
    assert all(r.ok for r in report.results)
    (c,) = report.comparison
    assert {row["artifact"] for row in c["rows"]} == {"tiny.fp32.onnx", "tiny.int8.onnx"}
    assert [sorted(r) for r in c["schedule"]] == [["tiny.fp32.onnx · onnxruntime",
                                                   "tiny.int8.onnx · onnxruntime"]] * 2  # which ran, not just where


# ---------------------------------------------------------------------------------- 3: raw mode, up front and typed

def test_raw_mode_is_refused_for_backends_without_it(tiny_bundle, capsys, no_measuring):
    from edgecart.benchmarks.jobs import RAW_BACKENDS

    assert RAW_BACKENDS == ("onnxruntime",)
    with pytest.raises(BenchConfigError, match="onnxruntime"):
        BenchConfig(mode="raw", backends=("litert",))
    m = open_bundle(tiny_bundle).manifest
    for pick in (lambda c: plan(m, c), lambda c: pick_jobs(m, c, 1)):
        with pytest.raises(BenchConfigError, match="raw.*onnxruntime"):
            pick(BenchConfig(mode="raw"))  # every backend: litert and executorch have no raw call
    assert {j.backend for j in plan(m, BenchConfig(mode="raw", backends=("onnxruntime",)))} == {"onnxruntime"}
    for extra in ([], ["--compare"]):
        rc = bench_cmd.main([str(tiny_bundle), "--mode", "raw", "--iterations", "5", "--quiet", *extra])
        assert rc == 2 and "onnxruntime" in capsys.readouterr().err
    rc = bench_cmd.main([str(tiny_bundle), "--mode", "raw", "--backends", "litert", "--quiet"])
    assert rc == 2 and "raw" in capsys.readouterr().err


def test_worker_reports_a_missing_level_as_a_typed_failure(tiny_bundle, tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "edgecart.benchmarks.worker", "--bundle", str(tiny_bundle),
                        "--backend", "litert", "--artifact", "tiny.fp32.tflite", "--threads", "1", "--iterations",
                        "2", "--mode", "raw", "--out", str(out)], capture_output=True, text=True, timeout=120)
    raw = json.loads(out.read_text())
    assert p.returncode == 3 and raw["status"] == "failed"
    assert raw["reason"].startswith("BenchConfigError:") and "KeyError" not in raw["reason"]
    assert "'raw'" in raw["reason"] and "litert" in raw["reason"] and "onnxruntime" in raw["reason"]


# -------------------------------------------------------------------------------------- 5: seconds and thread lists

def test_seconds_must_be_finite_and_threads_distinct(tiny_bundle, capsys):
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(BenchConfigError, match="seconds"):
            BenchConfig(seconds=bad)
    assert BenchConfig(seconds=0.0).seconds == 0.0  # 0 = no time minimum (iterations only), the default
    with pytest.raises(BenchConfigError, match="threads"):
        BenchConfig(threads=(1, 1))
    with pytest.raises(BenchConfigError, match="threads"):
        BenchConfig(threads=(None, None))
    with pytest.raises(BenchConfigError, match="busy"):
        BenchConfig(busy=(1, 1), tasks=("search",))
    for argv in (["--seconds", "nan"], ["--seconds", "inf"], ["--seconds", "0"], ["--seconds", "-2"],
                 ["--threads", "1,1"], ["--threads", "2,1,2"]):
        assert _exit_code(bench_cmd.main, [str(tiny_bundle), "--quiet", *argv]) == 2, argv
        assert argv[0].lstrip("-") in capsys.readouterr().err


def _exit_code(main, argv) -> int:
    """What the command exits with: its return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
