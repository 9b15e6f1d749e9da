"""The recommendations pipeline end to end on a slice of MovieLens-100K with the FAST config: baselines, teacher,
distilled and plain students, export to every format (int8 behind the runtime-evaluated gate), the Recommender and
the ``recommend`` command on the bundle."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    import torch
    from edgecart.data.movielens import INSTALL_HINT, load_movielens_100k
    from edgecart.data.sequences import DatasetMissingError, SequenceData
    from edgecart.recs.config import FAST
    from edgecart.recs.pipeline import run_dataset

    try:
        full = load_movielens_100k()
    except DatasetMissingError:
        pytest.skip(f"MovieLens-100K not installed; {INSTALL_HINT}")
    torch.manual_seed(0)
    data = SequenceData("ml-slice", full.item_ids, full.user_ids[:100], full.sequences[:100])
    out = tmp_path_factory.mktemp("recs") / "ml-slice"
    cache = tmp_path_factory.mktemp("cache")
    res = run_dataset(data, FAST, out, cache=cache, progress=None)
    return res, data, cache


def test_models_and_baselines_are_evaluated(result):
    res, _, _ = result
    from edgecart.recs.pipeline import BUY_AGAIN, STUDENT_BLEND, TEACHER_BLEND

    names = [m.model for m in res.models]
    assert names[:7] == ["popularity", "co-occurrence", BUY_AGAIN, "teacher (SASRec)", "student, distilled",
                         "student, no distillation", TEACHER_BLEND]
    # the shipped blend is reported when validation chose one (blend < 1), and only then
    assert names[7:] == ([] if res.blend is None else [STUDENT_BLEND])
    # nobody rates a film twice: the buy-again baseline finds nothing and validation ships no prior
    assert res.model(BUY_AGAIN).ndcg == 0.0 and res.buy_again is None
    for m in res.models:
        assert 0.0 <= m.ndcg <= m.recall <= 1.0
    teacher = res.model("teacher (SASRec)")
    for s in ("student, distilled", "student, no distillation"):
        assert res.model(s).params <= 0.25 * teacher.params
    # learned something: far above a random ranking (expected NDCG@10 about 0.003 over 1349 items)
    assert teacher.valid_ndcg > 0.01


def test_bundle_holds_every_format_with_runtime_quality(result):
    from edgecart.runtime import open_bundle

    res, data, _ = result
    m = open_bundle(res.bundle).manifest
    assert m.task == "recommendations"
    fp32 = {a.format for a in m.artifacts if a.precision == "fp32"}
    assert fp32 == {"executorch", "onnx", "tflite"}
    for a in m.artifacts:
        assert set(a.quality) == {"valid_gate_subset", "test"}
        assert a.parity is not None and a.parity.within_tolerance()
    for a in (a for a in m.artifacts if a.precision == "int8"):
        gate = a.quantization["gate"]
        assert gate["metric"] == "ndcg@10" and gate["max_drop"] == 0.01
        assert gate["float"] - a.quality["valid_gate_subset"]["ndcg@10"] <= 0.01 + 1e-9
    kept = {a.format for a in m.artifacts if a.precision == "int8"}
    assert kept | set(m.quality["int8_rejected"]) == {"executorch", "onnx", "tflite"}
    assert set(m.quality["models_test"]) == {r.model for r in res.models}
    assert len(res.artifacts) == len(m.artifacts)
    # the fp32 artifacts reproduce the eager student's test metrics through the runtime
    from edgecart.recs.pipeline import STUDENT_BLEND

    student = res.model(res.exported if res.blend is None else STUDENT_BLEND)
    assert ("item_to_item" in m.catalog) == (res.blend is not None)
    for r in res.artifacts:
        if r.precision == "fp32":
            assert r.ndcg == pytest.approx(student.ndcg, abs=1e-2)  # scored with the int8 item table
    items = np.load(res.bundle / m.catalog["items"])
    assert items.tolist() == data.item_ids.tolist()


def test_teacher_is_cached(result):
    res, data, cache = result
    assert list((cache / "recs").glob(f"{data.name}-teacher-*.pt"))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_recommender_round_trip_on_real_ids(result, precision):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.recommender import Recommender

    res, data, _ = result
    if precision == "int8" and not any(a.precision == "int8" for a in open_bundle(res.bundle).manifest.artifacts):
        pytest.skip("the gate kept no int8 artifact for this slice")
    rec = Recommender(res.bundle, precision=precision)
    history = data.item_ids[data.sequences[0][:-1] - 1].tolist()
    out = rec.recommend(history + [-5], k=10)
    assert out.source == "model" and out.unknown == (-5,) and len(out) == 10
    assert not set(out.items) & set(history)
    assert set(out.items) <= set(data.item_ids.tolist())
    cold = rec.recommend([], k=3)
    assert cold.source == "popularity"
    assert cold.items[0] == data.item_ids[int(np.argmax(rec.popularity[1:]))]


def test_recommend_command(result, capsys):
    from edgecart.cli import recommend_cmd

    res, data, _ = result
    parser = argparse.ArgumentParser()
    recommend_cmd.add_parser(parser.add_subparsers())
    ids = ",".join(str(i) for i in data.item_ids[data.sequences[1][-5:] - 1])
    args = parser.parse_args(["recommend", "--bundle", str(res.bundle), "--history", f"{ids},nope", "--k", "4",
                              "--backend", "onnxruntime", "--json"])
    assert args.func(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["items"]) == 4 and got["unknown"] == ["nope"] and got["source"] == "model"
    args = parser.parse_args(["recommend", "--bundle", str(res.bundle), "--history", ""])
    assert args.func(args) == 0
    assert "popularity" in capsys.readouterr().out


def test_summary_is_written_with_paired_comparisons(result, tmp_path):
    from edgecart.recs.pipeline import RecsSummary, write_summary

    res, _, _ = result
    write_summary(RecsSummary((res,), 1.0), tmp_path)
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["results"][0]["dataset"] == res.dataset
    assert [m["model"] for m in doc["results"][0]["models"]] == [m.model for m in res.models]
    assert "user_ndcg" not in doc["results"][0]["models"][0]
    pair = doc["comparisons"][res.dataset]["student, distilled vs student, no distillation"]
    assert pair["diff_lo"] <= pair["diff"] <= pair["diff_hi"] and pair["users"] == len(res.models[0].user_ndcg)
    assert "| teacher (SASRec) |" in (tmp_path / "summary.md").read_text()
