"""Shared fixtures: tiny exported bundles (made once per test session) and copies to tamper with."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

FORMATS = ("executorch", "onnx", "tflite")
BACKEND_OF = {"executorch": "executorch", "onnx": "onnxruntime", "tflite": "litert"}


def _tiny_model(seed: int = 0):
    import torch
    from edgecart.models.tiny import TinyCNN

    torch.manual_seed(seed)
    model = TinyCNN(in_channels=1, size=28, dim=16).eval()
    # non-trivial BatchNorm statistics so the exported graphs fold real numbers
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return _tiny_model()


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """An Ed25519 key pair (private PEM path, public PEM path) for the signing tests."""
    from edgecart.runtime.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def tiny_inputs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(6)]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model, tiny_inputs) -> Path:
    """A 3-format fp32 bundle of the tiny CNN plus int8 artifacts for every format."""
    import torch
    from edgecart.exporters import BundleWriter, export_artifact, golden_from_model
    from edgecart.runtime import ImagePreprocessing

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    io = tiny_model.io_spec
    samples = [(torch.from_numpy(x),) for x in tiny_inputs[:4]]
    golden = golden_from_model(tiny_model, samples, io)
    rng = np.random.default_rng(1)
    calibration = [(torch.from_numpy(rng.standard_normal((1, 1, 28, 28)).astype(np.float32)),) for _ in range(16)]
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    with BundleWriter(out, name="tiny", version="0.1.0", task="generic", inputs=io.inputs, outputs=io.outputs,
                      preprocessing=pre) as w:
        w.set_golden(*golden)
        for fmt in FORMATS:
            export_artifact(w, tiny_model, samples[0], fmt, golden=golden)
            export_artifact(w, tiny_model, samples[0], fmt, precision="int8", calibration=calibration,
                            golden=golden)
        w.commit()
    return out


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_bundle, dst)
    return dst
