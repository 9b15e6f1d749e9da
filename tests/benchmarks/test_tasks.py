"""Task-level jobs of the harness (search, recommend), quiet and with busy cores: they run on tiny bundles and report
every level; tests check the harness, never a speed."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from edgecart.benchmarks import BenchConfig, bench, plan, read_report
from edgecart.benchmarks.task_level import busy_cores
from edgecart.runtime import ImagePreprocessing, open_bundle

PRE = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))


@pytest.fixture(scope="module")
def search_bundle(bench_bundle, tmp_path_factory):
    """The tiny 3-format bundle turned into a search bundle over 300 generated catalog items with metadata."""
    from edgecart.benchmarks.catalogs import random_catalog, with_catalog

    emb = random_catalog(300, 16, seed=0)
    out = tmp_path_factory.mktemp("task") / "search"
    return with_catalog(bench_bundle, out, emb, preprocessing=PRE, metadata=[{"n": i} for i in range(300)])


@pytest.fixture(scope="module")
def rec_bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgecart.data.sequences import SequenceData, leave_last_out
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seqs = tuple((np.arange(s, s + 10) % 12 + 1).astype(np.int64) for s in rng.integers(0, 12, 30))
    data = SequenceData("cycle", np.arange(1001, 1013, dtype=np.int64), np.arange(30), seqs)
    split = leave_last_out(data)
    model = SASRec(SASRecConfig(12, max_len=8, dim=16, heads=1, layers=1, dropout=0.0)).eval()
    cfg = dataclasses.replace(FAST, max_len=8, int8=False, gate_users=10, formats=("onnx",))
    out = tmp_path_factory.mktemp("task") / "recs"
    path, _, _ = write_bundle(model, data, split, cfg, out, popularity=np.ones(13), quality={}, name="cycle")
    return path


def test_search_task_quiet_and_busy(search_bundle, tmp_path, quiet_config):
    cfg = quiet_config(tasks=("search",), backends=("onnxruntime",), busy=(0, 1), rounds=2, iterations=8)
    report = bench(search_bundle, cfg, out=tmp_path)
    assert report.kind == "task" and [r["busy"] for r in report.tasks] == [0, 1]
    for row in report.tasks:
        assert row["task"] == "search" and row["backend"] == "onnxruntime" and row["catalog_items"] == 300
        assert set(row["p50_ms"]) == {"task", "preprocess", "model", "scoring"}
        assert all(v > 0 for v in row["p50_ms"].values()) and row["n"]["task"] >= 8
        assert row["task_over_model"] > 0 and len(row["task_over_model_ci"]) == 2 and row["target_ratio"] == 2.0
        assert row["scoring_path"] == "int8->float32 copy" and row["approximate"] is False
    assert len(report.tasks[1]["busy_pids"]) == 1
    levels = ("task", "preprocess", "model", "scoring")
    assert {r.mode for r in report.results} == {f"search/{lvl} · busy {n}" for lvl in levels for n in (0, 1)}
    assert all(r.ok for r in report.results)
    assert {r.environment["busy_processes"] for r in report.results} == {0, 1}
    for r in report.results:
        assert r.mode.endswith(f"busy {r.environment['busy_processes']}")
    # quiet and busy rows read apart in the main table, the JSON results and the plot's labels
    assert len({r.label for r in report.results}) == len(report.results)
    # the spinners are gone once the run is over
    pid = report.tasks[1]["busy_pids"][0]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    back = read_report(tmp_path / "tiny.task.json")
    assert back.tasks == json.loads(json.dumps(report.tasks))
    assert {r["mode"] for r in json.loads((tmp_path / "tiny.task.json").read_text())["results"]} == {
        r.mode for r in report.results}
    md = (tmp_path / "tiny.task.md").read_text()
    assert "## Task level" in md and "| search | " in md
    assert "(search/task · busy 0)" in md and "(search/task · busy 1)" in md


def test_recommend_task(rec_bundle, quiet_config):
    report = bench(rec_bundle, quiet_config(tasks=("recommend",), rounds=2, iterations=6))
    (row,) = report.tasks
    assert row["task"] == "recommend" and row["busy"] == 0 and set(row["p50_ms"]) == {"task", "model"}
    assert row["catalog_items"] == 12 and all(r.ok for r in report.results)


def test_task_jobs_are_planned_and_checked(search_bundle, bench_bundle, quiet_config):
    m = open_bundle(search_bundle).manifest
    jobs = plan(m, quiet_config(tasks=("search",), threads=(1, 2)))
    assert {j.task for j in jobs} == {"search"} and len(jobs) == 2 * len(m.artifacts)
    with pytest.raises(ValueError, match="recommendations"):
        plan(m, quiet_config(tasks=("recommend",)))
    with pytest.raises(ValueError, match="image_search"):
        plan(open_bundle(bench_bundle).manifest, quiet_config(tasks=("search",)))
    for bad in ({"tasks": ("classify",)}, {"tasks": ()}, {"busy": (-1,)}, {"busy": ()}):
        with pytest.raises(ValueError):
            BenchConfig(**bad)
    with pytest.raises(ValueError, match="local target"):
        bench(search_bundle, quiet_config(tasks=("search",)), target="cuda")


def test_cli_task_level(search_bundle, bench_bundle, tmp_path, capsys):
    from edgecart.cli import bench_cmd

    rc = bench_cmd.main([str(search_bundle), "--task-level", "--backends", "onnxruntime", "--iterations", "4",
                         "--rounds", "2", "--quiet", "--out", str(tmp_path)])
    assert rc == 0 and "## Task level" in capsys.readouterr().out
    assert bench_cmd.main([str(bench_bundle), "--task-level", "--quiet"]) == 2
    assert "task-level figures exist for" in capsys.readouterr().err
    assert bench_cmd.main([str(search_bundle), "--busy", "1", "--quiet"]) == 2


def test_busy_cores_start_and_stop():
    with busy_cores(2) as pids:
        assert len(pids) == 2
        for p in pids:
            os.kill(p, 0)  # alive
    for p in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(p, 0)
