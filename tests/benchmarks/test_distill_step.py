"""The distillation step benchmark runs its three variants on real windows, and its 'two softmaxes' baseline is the
loss the fused term replaces (same value), so the ratio it reports compares like with like."""

from __future__ import annotations


def test_distill_step_benchmark_measures_the_three_variants(tmp_path):
    from edgecart.benchmarks.distill_step import main

    assert main(["--out", str(tmp_path), "--datasets", "movielens-100k", "--reps", "2", "--budget-s", "1"]) == 0
    import json

    rows = json.loads((tmp_path / "distill-step.json").read_text())["rows"]
    (row,) = rows
    assert row["terms"] == {"label-only": ["sequence_label"],
                            "distilled, two softmaxes": ["sequence_label", "masked_ranking"],
                            "distilled, fused term": ["masked_label_ranking"]}
    assert set(row["p50_ms"]) == set(row["terms"]) and all(v > 0 for v in row["p50_ms"].values())
    assert row["vs_label_only"]["label-only"] == 1.0
    assert "fused vs two" in (tmp_path / "distill-step.md").read_text()
