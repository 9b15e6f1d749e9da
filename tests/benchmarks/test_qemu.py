"""The emulated ARM64 target (QEMU user mode + an arm64 Debian userland). Runs where the host has QEMU >= 10 and the
userland from scripts/setup_arm.sh; skips with the reason (what to install or run) otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgecart.benchmarks import targets_qemu as tq

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emulator():
    st = tq.host_status()
    if not st.ok:
        pytest.skip(f"emulated ARM64 target unavailable: {st.problem}")
    return st


@pytest.fixture(scope="module")
def search_bundle(tmp_path_factory) -> Path:
    """A tiny image-search bundle (TinyCNN, 40-item catalog) through the vision pipeline's bundle writer."""
    torch = pytest.importorskip("torch")
    from edgecart.data.fashion_mnist import ImageSet
    from edgecart.models.tiny import TinyCNN
    from edgecart.runtime import ImagePreprocessing
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.export import export_search_bundle, plain_inputs

    torch.manual_seed(0)
    model = TinyCNN().eval()
    rng = np.random.default_rng(0)
    gallery = ImageSet(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), np.arange(40) % 4,
                       ("a", "b", "c", "d"), tuple(f"item{i}" for i in range(40)))
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    with torch.no_grad():
        emb = model(plain_inputs(gallery.images, pre)).numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out, _ = export_search_bundle(tmp_path_factory.mktemp("qemu") / "search", model, name="tiny-search",
                                  version="0.1.0", pre=pre, gallery=gallery, catalog_emb=emb, catalog_by="student",
                                  catalog_model={"name": "tiny"}, golden_images=gallery.images[:4],
                                  cfg=ExportConfig(formats=("onnx", "tflite"), int8=False), quality={})
    return out


def test_missing_userland_says_what_to_run(tmp_path):
    st = tq.host_status(tmp_path / "nothing")
    assert not st.ok
    assert ("setup_arm.sh" in st.problem) or ("apt-get" in st.problem)
    with pytest.raises(tq.EmulatorUnavailableError, match="setup_arm.sh|apt-get"):
        tq.ensure_userland(tmp_path / "nothing")


def test_unknown_target_and_bad_cpu_names_are_refused(tiny_bundle):
    from edgecart.benchmarks import parse_target

    assert parse_target("qemu-arm64:cortex-a53,neoverse-n1") == ("qemu-arm64", "cortex-a53,neoverse-n1")
    assert tq.cli_check(str(tiny_bundle), "qemu-arm65", None) == 2
    with pytest.raises(ValueError, match="QEMU CPU model"):
        tq.check(tiny_bundle, ("cortex a53; rm",))


def test_tiny_bundle_on_two_cpu_models_matches_x86(emulator, tiny_bundle):
    c = tq.check(tiny_bundle, ("cortex-a53", "neoverse-n1"))
    assert c.ok, tq.format_check(c)
    ran = [r for r in c.results if r.status == "ok"]
    assert {r.cpu for r in ran} == {"cortex-a53", "neoverse-n1"}
    assert {"onnxruntime", "litert"} <= {r.backend for r in ran}
    assert {r.precision for r in ran} == {"fp32", "int8"}
    for r in ran:
        assert r.origin == "emulated" and "aarch64" == r.environment["machine"]
        assert r.golden_ok and r.x86_max_abs_diff is not None and r.task_samples == tq.TASK_SAMPLES
        if r.precision == "fp32":
            assert r.x86_max_abs_diff <= 1e-4
    et = [r for r in c.results if r.backend == "executorch"]  # the C++ runner when the cross compiler was there
    assert len(et) == 4 and all(r.ok if emulator.et_runner else "g++-aarch64-linux-gnu" in r.reason for r in et)
    d = c.to_dict()
    assert d["origin"] == "emulated" and not any("latency" in k or k.endswith("_ms") for r in d["results"] for k in r)


def test_search_bundle_top10_agrees_with_x86_and_cli_reports_it(emulator, search_bundle, tmp_path, capsys):
    from edgecart.cli import build_parser

    args = build_parser().parse_args(["check", str(search_bundle), "--target", "qemu-arm64", "--cpu", "cortex-a53"])
    assert (args.target, args.cpu) == ("qemu-arm64", "cortex-a53")
    out = tmp_path / "check.json"
    assert tq.cli_check(args.bundle, args.target, args.cpu, out=str(out)) == 0
    printed = capsys.readouterr().out
    assert "emulated" in printed and "top-10 100.0%" in printed
    results = json.loads(out.read_text())["results"]
    assert {r["backend"] for r in results} == {"onnxruntime", "litert"}
    for r in results:
        assert r["task"] == "image_search" and r["top10_agreement"] >= 0.95 and r["x86_max_abs_diff"] <= 1e-4
        assert r["test_vectors"] == "4/4 ok"  # the raw JPEG/PNG vectors decoded and preprocessed on ARM


def test_a_wrong_artifact_fails_under_emulation(emulator, tiny_bundle, tmp_path):
    """The check can fail: a bundle whose golden outputs do not match its model is reported as failed."""
    import shutil

    from edgecart.runtime import open_bundle, sha256_file

    dst = tmp_path / "bad"
    shutil.copytree(tiny_bundle, dst)
    m = open_bundle(dst).manifest
    rel = m.golden.outputs[m.outputs[0].name]
    y = np.load(dst / rel)
    np.save(dst / rel, y + 1.0)
    files = tuple(f if f.path != rel else f.__class__(f.path, sha256_file(dst / rel), (dst / rel).stat().st_size,
                                                      f.role) for f in m.files)
    (dst / "manifest.json").write_text(m.replace(files=files).to_json())
    fp32 = next(a.name for a in m.artifacts if a.format == "onnx" and a.precision == "fp32")
    c = tq.check(dst, ("cortex-a53",), artifacts=(fp32,))
    assert not c.ok and c.results[0].status == "failed" and "golden" in c.results[0].reason


def test_harness_target_reports_emulated_results_without_latency(emulator, tiny_bundle, quiet_config):
    from edgecart.benchmarks import bench
    from edgecart.runtime import open_bundle

    arts = open_bundle(tiny_bundle).manifest.artifacts
    fp32_onnx = next(a.name for a in arts if a.format == "onnx" and a.precision == "fp32")
    report = bench(tiny_bundle, quiet_config(artifacts=(fp32_onnx,)), target="qemu-arm64:cortex-a53", progress=False)
    (r,) = report.results
    assert (r.origin, r.status, r.latency, r.target) == ("emulated", "skipped", None, "qemu-arm64:cortex-a53")
    assert "no latency" in r.reason and "correctness ok" in r.reason
    assert r.parity["within_tolerance"] and r.parity["x86_max_abs_diff"] <= 1e-4


@pytest.fixture(scope="module")
def recs_bundle(tmp_path_factory) -> Path:
    """A tiny recommendations bundle (SASRec user-vector model + int8 item table + item-to-item blend) in the three
    formats, through the recommendations task's own bundle writer."""
    import dataclasses

    torch = pytest.importorskip("torch")
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    from ..tiny_recs import cycle_data

    n_items = 30
    data, split, pop = cycle_data(n_items, 60, 12, first_id=5001)
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items, max_len=8, dim=16, heads=1, layers=1, dropout=0.0)).eval()
    cfg = dataclasses.replace(FAST, max_len=8, formats=("executorch", "onnx", "tflite"), int8=False, gate_users=16)
    from edgecart.recs.baselines import CoOccurrence

    i2i = CoOccurrence(split.train, n_items).item_to_item(0.5, neighbours=5)  # the runtime's blend, also on ARM
    path, _, _ = write_bundle(model, data, split, cfg, tmp_path_factory.mktemp("qemu") / "recs", popularity=pop,
                              quality={}, name="tiny-recs", item_to_item=i2i)
    return path


def test_recommendations_bundle_top10_agrees_with_x86(emulator, recs_bundle):
    """Every engine under emulation — the ExecuTorch C++ runner included — recommends what this machine does: the
    user vector is scored against the bundle's int8 item table (a runner that read item scores from the model's
    output would disagree here)."""
    from edgecart.runtime import open_bundle

    m = open_bundle(recs_bundle).manifest
    assert m.catalog["scoring"] == "user_vector"
    c = tq.check(recs_bundle, ("cortex-a53",))
    assert c.ok, tq.format_check(c)
    ran = [r for r in c.results if r.status == "ok"]
    want = {"onnxruntime", "litert"} | ({"executorch"} if emulator.et_runner else set())
    assert {r.backend for r in ran} == want
    for r in ran:
        assert r.task == "recommendations" and r.task_samples == tq.TASK_SAMPLES
        assert r.top10_agreement >= tq.MIN_TOP10_AGREEMENT and r.x86_max_abs_diff <= 1e-4
        assert r.golden_ok and r.environment["machine"] == "aarch64"
