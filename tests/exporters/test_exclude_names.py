"""A recipe's ``exclude`` names modules of the model: a misspelt name is an error, not a silent no-op (for a torch
module and for a torch.export'ed .pt2 module, whose names come from the graph)."""

from __future__ import annotations

import pytest
import torch
from edgecart.compress import DynamicInt8, StaticInt8, quantize
from edgecart.config import ConfigError
from edgecart.exporters.recipes import QAT
from torch import nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x)).mean((2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Tiny().eval()
    calib = [(torch.randn(1, 3, 8, 8),) for _ in range(4)]
    return model, calib


def _pt2(model, example, tmp_path):
    from edgecart.compress.user_model import load_model

    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, example), str(path))
    return load_model(str(path))[0]


@pytest.mark.parametrize("as_pt2", [False, True], ids=["module", "pt2"])
def test_unknown_exclude_name_is_refused(setup, tmp_path, as_pt2):
    model, calib = setup
    m = _pt2(model, calib[0], tmp_path) if as_pt2 else model
    with pytest.raises(ConfigError, match=r"fcx.*fc1"):
        quantize(m, StaticInt8(exclude=("fcx",)), calib[0], calib)
    with pytest.raises(ConfigError, match="fcx"):
        quantize(m, DynamicInt8(exclude=("fc1", "fcx")), calib[0], calib)
    q = quantize(m, StaticInt8(exclude=("fc2",)), calib[0], calib)  # a real name still works
    assert q(*calib[0]).shape == (1, 4)


@pytest.mark.parametrize("cls", [StaticInt8, DynamicInt8, QAT])
def test_exclude_refuses_a_plain_string(cls):
    with pytest.raises(ConfigError, match="exclude"):
        cls(exclude="fc1")


def test_unknown_exclude_name_is_refused_on_the_onnx_path_too(setup, tmp_path):
    from edgecart.compress.pipeline import export_compressed
    from edgecart.compress.recipe import QuantizeStage, Recipe

    model, calib = setup
    recipe = Recipe(name="q", quantize=QuantizeStage(recipes=(StaticInt8(exclude=("fcx",)),), rescue=False, qat=None))
    with pytest.raises(ConfigError, match="fcx"):
        export_compressed(model, calib[0], out=tmp_path / "b", formats=["onnx"], recipe=recipe, calibration=calib)
    assert not (tmp_path / "b").exists()
