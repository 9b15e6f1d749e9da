"""The real EfficientNet-Lite0 weights, the student, and the whole search pipeline at toy scale on Fashion-MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgecart.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available
from edgecart.models.vision import LiteTeacher, MobileStudent, embedding_params, lite0_weights_path


def test_lite0_loads_the_imagenet_weights_with_a_gray_stem():
    """The 1-channel stem holds the RGB kernels summed: the same function as gray replicated to 3 channels."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    teacher = LiteTeacher(size=64).eval()
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    rgb = EfficientNet.from_name("efficientnet-lite0", image_size=64)
    rgb.load_state_dict(state)
    rgb.eval()
    torch.testing.assert_close(teacher.backbone._conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(teacher.backbone._blocks[5]._expand_conv.weight, state["_blocks.5._expand_conv.weight"])
    gray = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        want = rgb.extract_features(gray.expand(-1, 3, -1, -1))
        got = teacher.backbone.extract_features(gray)
        emb = teacher(gray)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert emb.shape == (2, 128) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert teacher.io_spec.inputs[0].shape == (1, 1, 64, 64)
    assert 3.4e6 < embedding_params(teacher) < 3.7e6  # Lite0 without its ImageNet classifier, plus the head


def test_student_is_a_tenth_of_the_teacher_and_unit_norm():
    s = MobileStudent().eval()
    assert embedding_params(s) <= 0.1 * 3_534_400
    y = s(torch.randn(3, 1, 28, 28))
    assert y.shape == (3, 128) and torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)
    assert s.io_spec.outputs[0].shape == (1, 128)


@pytest.mark.skipif(not fashion_mnist_available(), reason=f"Fashion-MNIST not installed: {INSTALL_HINT}")
def test_fast_pipeline_end_to_end(tmp_path):
    from edgecart.cache import Cache
    from edgecart.runtime import open_bundle
    from edgecart.runtime.search import ImageSearch
    from edgecart.vision.config import fast_config
    from edgecart.vision.pipeline import _teacher, _teacher_embeddings, run_pipeline

    cfg = fast_config()
    out, cache = tmp_path / "out", tmp_path / "cache"
    lines: list[str] = []
    summary = run_pipeline(cfg, out, cache=cache, progress=lines.append)
    assert summary.cached == {"teacher": False, "teacher_embeddings": False}
    names = {(r.name, r.setting) for r in summary.models}
    assert ("student distilled", "student → teacher catalog") in names
    assert ("student labels only, 10% labels", "student → student") in names
    for r in summary.models:
        assert 0.0 <= r.recall_at_1 <= r.recall_at_10 <= 1.0 and 0.0 <= r.map_at_10 <= 1.0
    teacher_row = summary.models[0]
    assert teacher_row.params > 10 * summary.models[1].params

    # the bundle: manifest, catalog, quality, gate records; every artifact was evaluated through the runtime
    m = open_bundle(out / "student").manifest
    assert m.task == "image_search" and m.preprocessing.size == (28, 28)
    assert m.catalog["embedded_by"] == "teacher" and m.catalog["items"] == cfg.data.gallery
    assert "teacher" in m.quality and "student" in m.quality
    formats = {(a.format, a.precision) for a in m.artifacts}
    assert {f for f, p in formats if p == "fp32"} == set(cfg.export.formats)
    for a in m.artifacts:
        assert "recall@10" in a.quality and a.parity is not None
        if a.precision == "int8":
            assert a.quantization["gate"]["metric"] == "recall@10" and a.quantization["gate"]["chosen"]
    rejected = m.quality.get("int8_rejected", {})
    assert {f for f, p in formats if p == "int8"} | set(rejected) == set(cfg.export.formats)
    assert len(summary.artifacts) == len(m.artifacts)
    assert all(a.p50_ms > 0 for a in summary.artifacts)
    assert any("same top-10" in k for k in summary.parity)

    # the bundle searches on its own, from a raw picture
    from edgecart.data.fashion_mnist import load_fashion_mnist

    _, test = load_fashion_mnist()
    r = ImageSearch(out / "student", "onnxruntime").search(test.images[0], k=10)
    assert len(r.ids) == 10 and all(i.startswith("fmnist-test-") for i in r.ids)
    _cli_search(out / "student", test.images[0], tmp_path, r.ids)

    # written summary; a rerun finds the teacher and its embeddings in the cache
    saved = json.loads((out / "summary.json").read_text())
    assert saved["targets"] and "| model |" in (out / "summary.md").read_text()
    assert any("teacher: fine-tuning" in line for line in lines)
    from edgecart.data.fashion_mnist import search_splits

    train, test = load_fashion_mnist()
    d = cfg.data
    sp = search_splits(train, test, queries=d.queries, gallery=d.gallery, train_size=d.train_size, seed=d.seed)
    cached: dict[str, bool] = {}
    teacher, _ = _teacher(cfg, sp.train, Cache(cache, "vision"), {}, cached, lines.append)
    emb = _teacher_embeddings(cfg, teacher, sp, Cache(cache, "vision"), {}, cached, lines.append)
    assert cached == {"teacher": True, "teacher_embeddings": True}
    assert emb["gallery"].shape == (d.gallery, cfg.teacher.dim)
    cat = np.load(out / "student" / "catalog" / "embeddings.fp32.npy")
    np.testing.assert_allclose(cat, emb["gallery"], atol=1e-6)  # the bundle's catalog is the teacher's embedding


def _cli_search(bundle, image, tmp_path, want_ids) -> None:
    """``edgecart search IMAGE --bundle DIR`` prints the same results as the library."""
    import argparse
    import contextlib
    import io

    from edgecart.cli import search_cmd
    from PIL import Image

    png = tmp_path / "query.png"
    Image.fromarray(image).save(png)
    parser = argparse.ArgumentParser(prog="edgecart")
    search_cmd.add_parser(parser.add_subparsers(dest="command"))
    for extra, check in ((["--json"], "json"), ([], "table")):
        args = parser.parse_args(["search", str(png), "--bundle", str(bundle), "--k", "10", "--backend",
                                  "onnxruntime", *extra])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert args.func(args) == 0
        text = buf.getvalue()
        if check == "json":
            assert [m["id"] for m in json.loads(text)["results"]] == list(want_ids)
        else:
            assert want_ids[0] in text.splitlines()[2] and len(text.splitlines()) == 12
