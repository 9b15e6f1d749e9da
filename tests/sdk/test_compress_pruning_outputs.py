"""Structured pruning keeps every output layer whole (a model with several outputs keeps its I/O spec), refuses a
changed output shape, and refuses layer names it does not know."""

from __future__ import annotations

import pytest
import torch
from edgecart.compress import MagnitudePruning, StructuredPruning, prune
from edgecart.compress import pruning as pruning_mod
from edgecart.compress.pruning import output_layers
from edgecart.config import ConfigError
from torch import nn


class TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(12, 64)
        self.emb = nn.Linear(64, 16)
        self.cls = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(x))
        return self.emb(h), torch.softmax(self.cls(h), dim=-1)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def _shapes(model, x):
    with torch.no_grad():
        out = model(*x)
    return [tuple(o.shape) for o in (out if isinstance(out, tuple) else (out,))]


def test_every_output_layer_is_found_and_kept_whole():
    torch.manual_seed(0)
    model, x = TwoHead().eval(), (torch.randn(1, 12),)
    assert sorted(output_layers(model, x)) == ["cls", "emb"]
    pruned = prune(model, StructuredPruning(ratio=0.5), x)
    assert _shapes(pruned, x) == _shapes(model, x) == [(1, 16), (1, 5)]
    assert pruned.body.out_features < 64  # the body still shrinks


def test_a_changed_output_shape_is_an_error_even_with_protected_outputs(monkeypatch):
    torch.manual_seed(0)
    model, x = TwoHead().eval(), (torch.randn(1, 12),)
    monkeypatch.setattr(pruning_mod, "output_layers", lambda _m, _x: ["cls"])  # a missed output layer
    with pytest.raises(ConfigError, match="output shapes"):
        prune(model, StructuredPruning(ratio=0.5), x)


def test_magnitude_ignore_refuses_unknown_module_names():
    torch.manual_seed(0)
    model, x = Tiny().eval(), (torch.randn(1, 3, 8, 8),)
    with pytest.raises(ConfigError, match=r"convv1.*conv1"):
        prune(model, MagnitudePruning(ignore=("convv1",)), x)
    kept = prune(model, MagnitudePruning(ignore=("conv1",)), x)
    assert torch.equal(kept.conv1.weight, model.conv1.weight)


@pytest.mark.parametrize("cls", [StructuredPruning, MagnitudePruning])
def test_ignore_refuses_a_plain_string(cls):
    with pytest.raises(ConfigError, match="ignore"):
        cls(ignore="conv1")
