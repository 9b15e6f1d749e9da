"""The int8 gate can reject: a model with an outlier activation channel loses too much under per-tensor int8; the
per-layer diagnosis names the layers responsible and the rescue (those layers kept in float) passes the gate."""

from __future__ import annotations

import pytest
import torch
from edgecart.compress import QAT, StaticInt8, agreement_evaluator, diagnose_int8, gate_rescue, quantize
from edgecart.compress.quantization import _outputs, _sqnr
from edgecart.exporters import BundleWriter, QualityGate, export_int8_gated, golden_from_model, infer_io_spec
from torch import nn


class OutlierNet(nn.Module):
    """conv → 1×1 conv with one channel 1000× larger than the rest → mean → linear that mostly reads the small
    channels: per-tensor int8 activations of ``big`` (and of ``head``'s input) round the small channels away."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.big = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 4)
        with torch.no_grad():
            self.big.weight[0] *= 1000
            self.big.bias[0] += 500
            self.head.weight[:, 0] *= 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.big(torch.relu(self.conv(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def outlier():
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(1, 1, 8, 8, generator=g),) for _ in range(8)]
    val = [(torch.randn(1, 1, 8, 8, generator=g),) for _ in range(8)]
    return OutlierNet().eval(), calib, val


def test_diagnosis_ranks_the_outlier_layers_first(outlier):
    model, calib, _ = outlier
    diag = diagnose_int8(model, calib[0], calib, StaticInt8(per_channel=False))
    assert {d.layer for d in diag[:2]} == {"big", "head"}
    assert diag[-1].layer == "conv" and diag[-1].sqnr_db > 30 > diag[0].sqnr_db


def test_keeping_the_diagnosed_layers_in_float_recovers_the_output(outlier):
    model, calib, val = outlier
    ref = _outputs(model, val)
    lossy = _sqnr(ref, _outputs(quantize(model, StaticInt8(per_channel=False), calib[0], calib), val))
    kept = _sqnr(ref, _outputs(quantize(model, StaticInt8(per_channel=False, exclude=("big", "head")), calib[0],
                                        calib), val))
    assert lossy[1] < 0.97 and kept[1] > 0.999


def test_gate_rejects_per_tensor_int8_and_the_rescue_passes(tmp_path, outlier):
    from edgecart.runtime import load

    model, calib, val = outlier
    example = calib[0]
    io = infer_io_spec(model, example)
    golden = golden_from_model(model, val[:2], io)
    evaluate, reference = agreement_evaluator(model, val)
    gate = QualityGate("cosine", 0.01)
    with BundleWriter(tmp_path / "b", name="outlier", version="0.1.0", task="generic", inputs=io.inputs,
                      outputs=io.outputs) as w:
        w.set_golden(*golden)
        # without a rescue the gate rejects: nothing int8 is kept, the attempt is recorded, staging holds no file
        none = export_int8_gated(w, model, example, "onnx", calibration=calib, golden=golden, evaluate=evaluate,
                                 reference=reference, gate=gate, recipes=[StaticInt8(per_channel=False)])
        assert none is None
        rejected = w.quality["int8_rejected"]["onnx"]["attempts"]
        assert [a["passed"] for a in rejected] == [False]
        assert not list((w.staging / "models").glob("*.onnx"))
        rescue = gate_rescue(model, example, calib, keep_float=2, qat=QAT(steps=2))
        art = export_int8_gated(w, model, example, "onnx", calibration=calib, golden=golden, evaluate=evaluate,
                                reference=reference, gate=gate, recipes=[StaticInt8(per_channel=False)],
                                rescue=rescue)
        assert art is not None
        g = art.quantization["gate"]
        assert g["attempts"][0]["passed"] is False and g["attempts"][-1]["stage"] == "rescue"
        assert set(art.quantization["config"]["exclude"]) == {"big", "head"}
        assert art.quantization["float_nodes"]  # the ONNX nodes of those modules stayed float
        assert art.quality["cosine"] >= 0.99
        w.commit()
    session = load(tmp_path / "b", "onnxruntime", precision="int8")
    out = session.run(val[3][0].numpy())["output_0"]
    want = model(val[3][0]).detach().numpy()
    assert abs(float((out * want).sum() / ((out ** 2).sum() * (want ** 2).sum()) ** 0.5)) > 0.99
