"""Pruning that really shrinks: structured pruning leaves fewer channels in the exported graph; magnitude pruning
leaves the shapes and makes the file compress better (gzip), with the zeros made permanent."""

from __future__ import annotations

import gzip

import numpy as np
import onnx
import pytest
import torch
from edgecart.compress import MagnitudePruning, StructuredPruning, prune, sparsity
from edgecart.exporters import export
from onnx import numpy_helper

from ..conftest import _tiny_model


def _conv_out_channels(path) -> list[int]:
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return [int(inits[n.input[1]].shape[0]) for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits]


def _onnx_params(path) -> int:
    return sum(int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer)


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def test_structured_pruning_exports_fewer_channels_and_params(tmp_path, model):
    x = torch.randn(1, 1, 28, 28)
    small = prune(model, StructuredPruning(ratio=0.5), (x,))
    assert small(x).shape == model(x).shape  # the output layer is kept whole: same I/O spec
    assert sparsity(small)["params"] < 0.4 * sparsity(model)["params"]
    assert sparsity(model)["params"] == sum(p.numel() for p in model.parameters())  # the original is untouched
    export(model, (x,), formats=("onnx",), out=tmp_path / "full")
    export(small, (x,), formats=("onnx",), out=tmp_path / "small")  # parity checked inside export
    full_ch = _conv_out_channels(tmp_path / "full/models/model.fp32.onnx")
    small_ch = _conv_out_channels(tmp_path / "small/models/model.fp32.onnx")
    assert full_ch == [8, 16] and small_ch == [4, 8]
    assert _onnx_params(tmp_path / "small/models/model.fp32.onnx") < 0.4 * _onnx_params(
        tmp_path / "full/models/model.fp32.onnx")


def test_structured_pruning_can_protect_layers_and_refuses_unknown_names(model):
    x = torch.randn(1, 1, 28, 28)
    kept = prune(model, StructuredPruning(ratio=0.5, ignore=("features.0",)), (x,))
    assert kept.features[0].out_channels == 8 and kept.features[4].out_channels == 8
    from edgecart.config import ConfigError

    with pytest.raises(ConfigError, match="modules the model does not have"):
        prune(model, StructuredPruning(ignore=("features.99",)), (x,))


def test_magnitude_pruning_is_permanent_keeps_shapes_and_compresses_better(tmp_path, model):
    x = torch.randn(1, 1, 28, 28)
    sparse = prune(model, MagnitudePruning(amount=0.8), (x,))
    s = sparsity(sparse)
    assert s["params"] == sparsity(model)["params"] and s["sparsity"] > 0.7
    assert not any(hasattr(m, "weight_orig") or m._forward_pre_hooks for m in sparse.modules())  # made permanent
    export(model, (x,), formats=("onnx",), out=tmp_path / "dense")
    export(sparse, (x,), formats=("onnx",), out=tmp_path / "sparse")
    dense_f = (tmp_path / "dense/models/model.fp32.onnx").read_bytes()
    sparse_f = (tmp_path / "sparse/models/model.fp32.onnx").read_bytes()
    assert abs(len(sparse_f) - len(dense_f)) < 0.05 * len(dense_f)  # raw size: the same dense tensors
    assert len(gzip.compress(sparse_f)) < 0.6 * len(gzip.compress(dense_f))  # zeros compress


def test_recipe_prunes_then_distils_from_the_unpruned_model():
    from edgecart.compress import DistillData, Recipe
    from torch import nn

    torch.manual_seed(0)  # no BatchNorm: train-mode statistics would move away from the teacher's by themselves
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 8)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=g)
    recipe = Recipe.from_dict({"prune": {"kind": "structured", "ratio": 0.5},
                               "distill": {"epochs": 3, "batch_size": 32, "lr": 3e-3, "losses": [{"name": "mse"}]}})
    pruned_only = prune(model, StructuredPruning(ratio=0.5), (x[:1],))
    recovered, record = recipe.apply(model, (x[:1],), data=DistillData(inputs=x), progress=None)
    assert [s["stage"] for s in record["stages"]] == ["prune", "distill"]
    assert record["recipe"]["distill"]["losses"] == [{"name": "mse"}]
    with torch.no_grad():
        held_out = torch.randn(64, 1, 28, 28, generator=g)
        want = model(held_out)
        before = torch.nn.functional.mse_loss(pruned_only(held_out), want)
        after = torch.nn.functional.mse_loss(recovered.eval()(held_out), want)
    assert after < 0.7 * before  # distillation from the unpruned teacher pulls the pruned student back


def _tiny_sasrec():
    from edgecart.models.sasrec import SASRec, SASRecConfig

    torch.manual_seed(0)
    return SASRec(SASRecConfig(num_items=30, max_len=8, dim=16, heads=2, layers=1, ffn_mult=2, dropout=0.0)).eval()


def test_structured_pruning_of_attention_prunes_head_dims_and_the_residual_width():
    m = _tiny_sasrec()
    x = torch.randint(1, 30, (2, 8))
    cfg = StructuredPruning(ratio=0.5, heads=(("blocks.0.qkv", 2),), protect_outputs=False)
    small = prune(m, cfg, (x[:1],))
    b = small.blocks[0]
    assert small.items.weight.shape == (31, 8) and small.positions.shape == (8, 8)  # residual width 16 -> 8
    assert b.qkv.weight.shape == (24, 8) and b.head_dim == 4 and b.heads == 2  # each of 2 heads 8 -> 4 wide
    assert small(x).shape == m(x).shape == (2, 31)  # scores of every item: the tied table keeps its rows
    assert sparsity(small)["params"] < 0.45 * sparsity(m)["params"]
    import json

    from edgecart.compress.pruning import prune_config_from_dict, prune_config_to_dict

    assert prune_config_from_dict(json.loads(json.dumps(prune_config_to_dict(cfg)))) == cfg


def test_structured_pruning_refuses_bad_heads_and_changed_outputs(model):
    from edgecart.config import ConfigError

    with pytest.raises(ConfigError, match="head count"):
        StructuredPruning(heads=(("blocks.0.qkv", 0),))
    with pytest.raises(ConfigError, match="pairs"):
        StructuredPruning(heads=("blocks.0.qkv",))
    with pytest.raises(ConfigError, match="modules the model does not have"):
        prune(_tiny_sasrec(), StructuredPruning(heads=(("blocks.5.qkv", 2),)), (torch.randint(1, 30, (1, 8)),))
    x = torch.randn(1, 1, 28, 28)
    with pytest.raises(ConfigError, match="output shapes"):  # the CNN's output layer would lose units
        prune(model, StructuredPruning(ratio=0.5, protect_outputs=False), (x,))


@pytest.mark.parametrize("field, value", [("round_to", "8"), ("round_to", 2.5), ("round_to", True),
                                          ("iterative_steps", "2"), ("iterative_steps", 1.5), ("seed", "0"),
                                          ("ratio", True), ("global_pruning", "yes")])
def test_structured_pruning_refuses_ill_typed_fields_with_a_config_error(field, value):
    from edgecart.config import ConfigError

    with pytest.raises(ConfigError, match=f"structured.{field}"):
        StructuredPruning(**{field: value})


def test_structured_pruning_round_to_rounds_the_kept_channels_down_as_documented(model):
    x = torch.randn(1, 1, 28, 28)
    small = prune(model, StructuredPruning(ratio=0.3, round_to=4), (x,))
    assert small.features[0].out_channels == 4  # 8 * 0.7 = 5.6 kept, rounded down to a multiple of 4
