"""Report output: JSON against its versioned schema (round trip), Markdown table, PNG plots."""

from __future__ import annotations

import json
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
from edgecart.benchmarks.report import (
    REPORT_SCHEMA,
    REPORT_SCHEMA_VERSION,
    BenchReport,
    read_report,
    to_markdown,
    validate_report,
    write_report,
)
from edgecart.benchmarks.result import BenchResult, failed, from_raw, skipped
from edgecart.benchmarks.stats import BootstrapConfig

PNG = b"\x89PNG\r\n\x1a\n"


def _raw(backend, ms, quality=None, size=10_000):
    rng = np.random.default_rng(len(backend))
    return {"backend": backend, "artifact": f"m.fp32.{backend}", "format": backend, "precision": "fp32",
            "threads": 1, "status": "ok", "samples_s": list(rng.normal(ms, ms / 20, 300).clip(ms / 2) / 1e3),
            "load_s": 0.01, "first_inference_s": 0.002, "warmup": 10, "peak_rss_kb": 51200, "file_bytes": size,
            "quality": quality or {}, "parity": {"cosine": 0.99999, "max_abs_diff": 1e-7}}


@pytest.fixture()
def report():
    cfg = BootstrapConfig(resamples=200)
    results = [from_raw(_raw("onnxruntime", 2.0, {"recall_at_10": 0.91}), "local", "local", cfg),
               from_raw(_raw("litert", 1.0, {"recall_at_10": 0.90}, 8000), "local", "local", cfg),
               failed("local", "executorch", "worker exited with 1: boom", artifact="m.fp32.pte", threads=1),
               skipped("cuda", "onnxruntime", "skipped: no CUDA device")]
    manifest = SimpleNamespace(name="m", version="1.2.3", task="image_search", quality={"teacher": {"r": 1}})
    config = {"warmup": 10, "iterations": 300, "seconds": 0.0, "mode": "session"}
    return BenchReport.create("bench", manifest, config, results, target="local", command="edgecart bench m")


def test_json_validates_and_round_trips(report, tmp_path):
    paths = write_report(report, tmp_path)
    doc = json.loads(paths["json"].read_text())
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert doc["schema_version"] == REPORT_SCHEMA_VERSION and doc["schema"] == "edgecart.bench"
    assert [r["status"] for r in doc["results"]] == ["ok", "ok", "failed", "skipped"]
    assert doc["results"][0]["latency"]["percentiles_ms"]["p50"] == pytest.approx(2.0, rel=0.05)
    assert len(doc["results"][0]["samples_ms"]) == 300
    assert doc["host"]["logical_cores"] >= 1 and "numpy" in doc["host"]["libraries"]
    back = read_report(paths["json"])
    assert back.results == report.results


def test_wrong_schema_version_and_bad_documents_are_refused(report):
    doc = report.to_dict()
    with pytest.raises(ValueError, match="schema_version"):
        validate_report({**doc, "schema_version": "0.9"})
    with pytest.raises(ValueError, match="not an edgecart"):
        validate_report({**doc, "schema": "other"})
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["origin"] = "mars"
    with pytest.raises(ValueError, match="invalid"):
        validate_report(bad)


def test_result_rules():
    with pytest.raises(ValueError):
        BenchResult(target="local", origin="local", status="ok", backend="x")  # ok needs latency
    with pytest.raises(ValueError):
        BenchResult(target="local", origin="somewhere", status="skipped", backend="x", reason="r")
    with pytest.raises(ValueError):
        BenchResult(target="local", origin="local", status="failed", backend="x")  # needs a reason


def test_markdown_table(report):
    md = to_markdown(report)
    assert "| artifact | backend | threads | origin | p50 ms [CI]" in md
    rows = [line for line in md.splitlines() if line.startswith("| m.fp32.")]
    assert len(rows) == 3
    onnx = next(r for r in rows if "onnxruntime" in r)
    lite = next(r for r in rows if "litert" in r)
    assert lite.rstrip(" |").endswith("1.00")  # litert is the fastest
    assert onnx.rstrip(" |").split("|")[-1].strip().startswith(("1.9", "2.0", "2.1"))
    assert "recall_at_10=0.91" in onnx and "0.999990" in onnx
    assert "**failed**: worker exited with 1: boom" in md
    assert "**skipped**: no CUDA device" in md
    assert "edgecart bench m" in md


def test_times_fastest_compares_rows_at_the_same_thread_count(report):
    four = from_raw({**_raw("onnxruntime", 0.5), "threads": 4}, "local", "local", BootstrapConfig(resamples=200))
    md = to_markdown(BenchReport.create("bench", SimpleNamespace(name="m", version="1", task="image_search",
                                                                 quality={}),
                                        report.config, [*report.results, four], target="local"))
    rows = [line for line in md.splitlines() if line.startswith("| m.fp32.")]
    ratio = {(r.split("|")[2].strip(), r.split("|")[3].strip()): r.rstrip(" |").split("|")[-1].strip() for r in rows}
    assert ratio[("litert", "1")] == "1.00" and ratio[("onnxruntime", "4")] == "1.00"
    assert ratio[("onnxruntime", "1")].startswith(("1.9", "2.0", "2.1"))
    assert "× fastest at its threads" in md


def test_plots_are_written_even_without_quality_or_results(report, tmp_path):
    paths = write_report(report, tmp_path, stem="r")
    for key in ("latency_png", "tradeoff_png"):
        assert paths[key].read_bytes()[:8] == PNG and paths[key].stat().st_size > 5000
    empty = BenchReport.create("bench", SimpleNamespace(name="e", version="0", task="generic", quality={}),
                               {}, [failed("local", "litert", "x")], target="local")
    paths = write_report(empty, tmp_path / "empty")
    assert paths["tradeoff_png"].read_bytes()[:8] == PNG


def test_quality_figures_are_found_one_level_down_and_reasons_are_not_doubled():
    from edgecart.benchmarks.report import primary_quality, quality_text

    recs = {"test": {"ndcg@10": 0.107, "recall@10": 0.202, "users": 593.0}, "valid_gate_subset": {"ndcg@10": 0.12}}
    assert primary_quality(recs) == ("test.ndcg@10", 0.107)
    assert quality_text(recs) == "test.ndcg@10=0.107, test.recall@10=0.202"  # counts such as users are not quality
    assert primary_quality({"recall@10": 0.9, "map@10": 0.8, "extra": {"x": 1.0}}) == ("map@10", 0.8)
    assert quality_text({}) == "–" and primary_quality({"note": "text"}) is None
    r = skipped("cuda", "onnxruntime", "skipped: no CUDA device")
    report = BenchReport("bench", "cuda", {"name": "b", "version": "1", "task": "t"}, {}, {}, [r], "now")
    md = to_markdown(report)
    assert "**skipped**: no CUDA device" in md and "skipped: skipped" not in md


def test_task_rows_show_their_busy_count_also_in_older_reports():
    """Task-level results written before their mode carried the busy count still read apart (table and plot)."""
    from edgecart.benchmarks.report import _label

    cfg = BootstrapConfig(resamples=200)
    results = [from_raw({**_raw("onnxruntime", ms), "mode": "search/task", "environment": {"busy_processes": n}},
                        "local", "local", cfg) for ms, n in ((0.5, 0), (1.3, 1))]
    manifest = SimpleNamespace(name="m", version="1", task="image_search", quality={})
    report = BenchReport.create("task", manifest, {"mode": "session"}, results, target="local", command="x")
    md = to_markdown(report)
    assert "onnxruntime (search/task · busy 0) |" in md and "onnxruntime (search/task · busy 1) |" in md
    assert len({_label(r) for r in results}) == 2 and _label(results[1]).endswith("search/task · busy 1")
    new = from_raw({**_raw("onnxruntime", 1.0), "mode": "search/task · busy 1",
                    "environment": {"busy_processes": 1}}, "local", "local", cfg)
    assert _label(new) == new.label and new.label.count("busy") == 1  # said once
