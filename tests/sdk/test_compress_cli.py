"""``edgecart export MODEL.pt2`` and ``edgecart compress --config``: a user's model to a verified bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgecart.cli import main
from edgecart.runtime import load, open_bundle
from torch import nn


def _user_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    model = _user_model()
    x = torch.randn(1, 3, 16, 16)
    torch.export.save(torch.export.export(model, (x,)), str(d / "model.pt2"))
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", input_0=rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32))
    np.savez(d / "golden.npz", rng.standard_normal((3, 3, 16, 16)).astype(np.float32))  # (N, *shape[1:]) works too
    return d, model


def test_export_pt2_to_verified_three_format_bundle(saved, capsys):
    d, model = saved
    rc = main(["export", str(d / "model.pt2"), "--out", str(d / "bundle"), "--golden", str(d / "golden.npz"),
               "--preprocessing", '{"kind": "image", "size": [16, 16], "color": "rgb"}', "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    assert captured.out.lstrip().startswith("{"), captured.out[:500]
    summary = json.loads(captured.out)
    assert "fp32 onnx" in captured.err  # progress goes to stderr, the summary alone to stdout
    assert {a["format"] for a in summary["artifacts"]} == {"executorch", "onnx", "tflite"}
    assert summary["inputs"][0]["name"] == "input_0" and summary["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert main(["verify", str(d / "bundle")]) == 0
    m = open_bundle(d / "bundle").manifest
    assert m.preprocessing.size == (16, 16) and all(a.parity.within_tolerance() for a in m.artifacts)
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = model(torch.from_numpy(x)).detach().numpy()
    for backend in ("executorch", "onnxruntime", "litert"):
        np.testing.assert_allclose(load(d / "bundle", backend).run(x)["output_0"], want, atol=1e-4)


def test_export_with_recipe_adds_gated_int8_and_records_it(saved, capsys):
    d, _ = saved
    (d / "recipe.toml").write_text('name = "int8"\n[quantize]\nrecipes = ["static-int8-per-channel"]\n'
                                   'rescue = false\n')
    rc = main(["export", str(d / "model.pt2"), "--out", str(d / "b8"), "--formats", "onnx", "--recipe",
               str(d / "recipe.toml"), "--calibration", str(d / "calib.npz"), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    int8 = [a for a in summary["artifacts"] if a["precision"] == "int8"]
    assert len(int8) == 1 and int8[0]["recipe"] == "static-int8-per-channel"
    comp = open_bundle(d / "b8").manifest.quality["compression"]
    assert comp["recipe"]["name"] == "int8" and comp["applied"]["model.int8.onnx"] == "static-int8-per-channel"


def test_export_errors_are_typed_and_exit_2(saved, capsys):
    d, _ = saved
    (d / "bad.toml").write_text('[quantize]\nrecipes = ["static-int8-per-chanel"]\n')
    assert main(["export", str(d / "model.pt2"), "--out", str(d / "x"), "--recipe", str(d / "bad.toml")]) == 2
    assert "static-int8-per-channel" in capsys.readouterr().err  # the known names are listed
    assert main(["export", str(d / "model.pt2"), "--out", str(d / "x"), "--formats", "onnx", "--recipe",
                 str(d / "recipe.toml")]) == 2
    assert "calibration" in capsys.readouterr().err
    assert not (d / "x").exists()


def test_compress_config_prunes_and_quantizes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", rng.standard_normal((8, 1, 1, 28, 28)).astype(np.float32))
    (tmp_path / "compress.toml").write_text(
        'model = "edgecart.models.tiny:TinyCNN"\nout = "bundle"\nformats = ["onnx"]\ncalibration = "calib.npz"\n'
        'golden = "calib.npz"\n[prune]\nkind = "structured"\nratio = 0.5\n'
        '[quantize]\nrecipes = ["static-int8-per-channel-minmax"]\nmax_drop = 0.05\nrescue = false\n')
    assert main(["compress", "--config", str(tmp_path / "compress.toml"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    comp = summary["compression"]
    prune_rec = comp["stages"][0]
    assert prune_rec["stage"] == "prune" and prune_rec["after"]["params"] < 0.5 * prune_rec["before"]["params"]
    assert comp["recipe"]["prune"] == {"kind": "structured", "ratio": 0.5, "importance": "l2",
                                       "global_pruning": False, "ignore": [], "round_to": None,
                                       "iterative_steps": 1, "seed": 0, "heads": [], "protect_outputs": True}
    assert {a["precision"] for a in summary["artifacts"]} == {"fp32", "int8"}
    assert main(["verify", str(tmp_path / "bundle")]) == 0
