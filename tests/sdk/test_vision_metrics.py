"""Retrieval metrics on hand-made cases, losses, configs and the cache."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.cache import Cache
from edgecart.vision.config import (
    BuildConfig,
    BuildConfigError,
    ExportConfig,
    StudentConfig,
    TeacherConfig,
    tiny_config,
)
from edgecart.vision.evaluate import same_top10
from edgecart.vision.metrics import average_precision_at_k, recall_at_k, retrieval, retrieval_from_ranks


def test_recall_at_k_counts_queries_with_any_hit():
    rel = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0]], bool)
    assert recall_at_k(rel, 1) == pytest.approx(1 / 3)
    assert recall_at_k(rel, 3) == pytest.approx(2 / 3)


def test_average_precision_by_hand():
    # hits at ranks 1 and 3 of 3, 2 relevant items in the catalog: (1/1 + 2/3) / min(3, 2)
    rel = np.array([[1, 0, 1]], bool)
    assert average_precision_at_k(rel, 3, np.array([2]))[0] == pytest.approx((1 + 2 / 3) / 2)
    # 10 relevant items, a single hit at rank 2: (1/2) / min(3, 10)
    assert average_precision_at_k(np.array([[0, 1, 0]], bool), 3, np.array([10]))[0] == pytest.approx(0.5 / 3)
    assert average_precision_at_k(np.array([[0, 0, 0]], bool), 3, np.array([0]))[0] == 0.0
    perfect = np.ones((1, 10), bool)
    assert average_precision_at_k(perfect, 10, np.array([50]))[0] == pytest.approx(1.0)


def test_retrieval_end_to_end_on_hand_made_embeddings():
    # gallery: two categories on two axes; query 0 (cat 0) points at axis 0, query 1 (cat 1) wrongly at axis 0 too
    gallery = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    g_labels = np.array([0, 0, 1, 1])
    queries = np.array([[1, 0], [1, 0.05]], np.float32)
    r = retrieval(queries, np.array([0, 1]), gallery, g_labels)
    assert r.recall_at_1 == 0.5 and r.recall_at_10 == 1.0  # k=10 covers the whole 4-item gallery
    # query 0: hits at 1, 2 -> AP 1; query 1: hits at ranks 3, 4 -> (1/3 + 2/4) / 2
    assert r.map_at_10 == pytest.approx((1 + (1 / 3 + 2 / 4) / 2) / 2)
    ranked = np.array([[0] * 10, [1] * 10])
    assert retrieval_from_ranks(ranked, np.array([0, 0]), np.array([0] * 20)).recall_at_10 == 0.5


def test_int8_gallery_scales_are_applied():
    from edgecart.runtime.search import quantize_rows

    rng = np.random.default_rng(0)
    g = rng.standard_normal((100, 8)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    labels = np.arange(100) % 4
    q8, s = quantize_rows(g)
    a = retrieval(g[:20], labels[:20], g, labels)
    b = retrieval(g[:20], labels[:20], q8, labels, s)
    assert a.recall_at_1 == b.recall_at_1 == 1.0  # every query finds itself through the int8 rows


def test_same_top10():
    a = np.arange(20).reshape(2, 10)
    b = a.copy()
    b[0] = b[0][::-1]
    c = a.copy()
    c[1, 0] = 99
    assert same_top10([a, b]) == 1.0 and same_top10([a, b], ordered=True) == 0.5
    assert same_top10([a, b, c]) == 0.5


def test_relational_loss_is_zero_for_equal_geometry():
    import torch
    from edgecart.vision.train import relational_loss

    t = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    rot = torch.linalg.qr(torch.randn(8, 8))[0]  # a rotation keeps every pairwise cosine
    assert relational_loss(t @ rot, t).item() < 1e-10
    assert relational_loss(torch.nn.functional.normalize(torch.randn(16, 8), dim=1), t).item() > 1e-3


def test_configs_validate_and_read_toml(tmp_path):
    with pytest.raises(BuildConfigError, match="size must be >= 32"):
        TeacherConfig(size=16)
    with pytest.raises(BuildConfigError, match="loss weights"):
        StudentConfig(w_cosine=-1)
    with pytest.raises(BuildConfigError, match="formats"):
        ExportConfig(formats=("coreml",))
    cfg = tiny_config()
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(BuildConfigError, match=r"config.teacher: unknown option\(s\) \['sise'\]; known: \["):
        BuildConfig.from_dict({"teacher": {"sise": 3}})
    with pytest.raises(BuildConfigError, match=r"config: unknown option\(s\) \['epochs'\]; known: \["):
        BuildConfig.from_dict({"epochs": 3})
    p = tmp_path / "build.toml"
    p.write_text('name = "shop"\n[teacher]\nsize = 96\nepochs = 2\n[export]\nformats = ["onnx"]\n')
    t = BuildConfig.from_toml(p)
    assert t.name == "shop" and t.teacher.size == 96 and t.teacher.epochs == 2 and t.export.formats == ("onnx",)
    assert t.student == StudentConfig() and t.storage_preprocessing.size == (96, 96)
    p.write_text("[teacher\n")
    with pytest.raises(BuildConfigError, match="not valid TOML"):
        BuildConfig.from_toml(p)


def test_per_query_metrics_and_bootstrap():
    from edgecart.vision.metrics import bootstrap_ci, full_ranking, paired_diff_ci, paired_ratio_ci, per_query

    g = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0.5, 0, 0], [0, 0, 0.2, 1]], np.float32)
    r = full_ranking(q, g)
    assert r[0].tolist() == [0, 1, 2, 3] and r[1].tolist() == [3, 2, 0, 1]
    pq = per_query(r, np.array([1, 1]), np.array([0, 1, 1, 0]))
    assert pq["recall@1"].tolist() == [0.0, 0.0] and pq["recall@5"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(pq["map"], [(1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 4) / 2])
    np.testing.assert_allclose(pq["precision@10"], [0.5, 0.5])
    x = np.r_[np.ones(50), np.zeros(50)]
    lo, hi = bootstrap_ci(x)
    assert lo < 0.5 < hi and hi - lo < 0.3
    d, dlo, dhi = paired_diff_ci(x, np.zeros(100))
    assert d == 0.5 and dlo > 0.3
    ratio, rlo, rhi = paired_ratio_ci(x, x)
    assert ratio == rlo == rhi == 1.0


def test_cache_round_trip_and_damaged_entries(tmp_path):
    import torch

    c = Cache(tmp_path, "vision")
    assert c.load_state("teacher", "k") is None and c.load_arrays("embeddings", "k") is None
    c.save_state("teacher", "k", {"w": torch.ones(2)}, {"train_s": 1.5})
    state, info = c.load_state("teacher", "k")
    assert torch.equal(state["w"], torch.ones(2)) and info["train_s"] == 1.5
    c.save_arrays("embeddings", "k", {"train": np.ones((3, 2), np.float32)}, {"n": 3})
    arrays, _ = c.load_arrays("embeddings", "k")
    assert arrays["train"].shape == (3, 2)
    (tmp_path / "vision" / "teacher-k.pt").write_bytes(b"garbage")
    assert c.load_state("teacher", "k") is None  # rebuilt, not crashed on
    assert not Cache(None, "vision").enabled and Cache(None, "vision").load_state("teacher", "k") is None


def test_seed_interval_variants_keep_a_querys_seeds_together():
    """scripts/vision_seeds.py: with differences that are the same for every seed (a query effect, no training
    noise), pooling the seeds' rows as independent narrows the interval by about sqrt(seeds); the seed-averaged
    interval does not, and a seed that is shifted everywhere widens only the two-level interval."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "vision_seeds.py"
    spec = importlib.util.spec_from_file_location("vision_seeds", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    q = np.random.default_rng(0).normal(0.02, 0.3, 300)
    v = m.interval_variants([q, q, q])
    width = {k: v[k][1] - v[k][0] for k in ("seed_averaged", "rows_pooled", "two_level")}
    assert abs(v["mean"] - q.mean()) < 1e-12 and v["variance"]["sd_between_seeds"] == 0
    assert 1.5 < width["seed_averaged"] / width["rows_pooled"] < 2.0  # sqrt(3) = 1.73
    shifted = m.interval_variants([q - 0.1, q, q + 0.1])
    assert abs(shifted["seed_averaged"][1] - shifted["seed_averaged"][0] - width["seed_averaged"]) < 1e-9
    assert shifted["two_level"][1] - shifted["two_level"][0] > 2 * width["seed_averaged"]
    assert abs(shifted["variance"]["sd_between_seeds"] - 0.1) < 1e-9
