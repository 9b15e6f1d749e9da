"""The QAT conversions reuse torchao's conv-bn pattern graphs (``exporters._pt2e_patterns``): a pattern is exported
once per variant, every caller gets its own copy, variants never share a graph, torchao's function comes back on
exit, and a QAT model converts to the very graph and outputs torchao alone gives."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F  # noqa: N812
from edgecart.exporters import _pt2e_patterns as pp
from edgecart.exporters.calibrate import convert_qat
from torch import nn
from torchao.quantization.pt2e import qat_utils
from torchao.quantization.pt2e import utils as pt2e_utils

CONV2D_INPUTS = (torch.randn(1, 1, 3, 3), torch.randn(1, 1, 1, 1), torch.randn(1), torch.randn(1), torch.randn(1),
                 torch.randn(1))


def _pattern(per_channel: bool, conv: object = F.conv2d) -> object:
    return qat_utils._get_quantized_qat_conv_bn_pattern(per_channel, False, False, conv, False)


def _kwargs(per_channel: bool) -> dict[str, object]:
    return qat_utils._get_quantized_conv_bn_example_inputs_kwargs(per_channel, False, False, False)


def test_a_pattern_is_exported_once_per_variant_and_each_caller_gets_its_own_copy(monkeypatch) -> None:
    monkeypatch.setattr(pp, "_GRAPHS", {})
    exported: list[object] = []

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        exported.append(pattern)
        return pt2e_utils._get_aten_graph_module_for_pattern(pattern, example_inputs, is_cuda, **kwargs)

    graph_for = pp._memoised(export)
    first = graph_for(_pattern(True), CONV2D_INPUTS, False, **_kwargs(True))
    again = graph_for(_pattern(True), CONV2D_INPUTS, False, **_kwargs(True))
    assert len(exported) == 1
    assert again is not first and again.code == first.code
    # a transposed conv's pattern takes the very same inputs; only the function it closes over differs: it must
    # not be served the conv2d graph, and it must be what torchao itself exports
    other = graph_for(_pattern(True, F.conv_transpose2d), CONV2D_INPUTS, False, **_kwargs(True))
    assert len(exported) == 2
    fresh = pt2e_utils._get_aten_graph_module_for_pattern(_pattern(True, F.conv_transpose2d), CONV2D_INPUTS, False,
                                                          **_kwargs(True))
    assert other.code == fresh.code != first.code


def test_a_pattern_whose_identity_cannot_be_read_is_exported_every_time(monkeypatch) -> None:
    monkeypatch.setattr(pp, "_GRAPHS", {})
    table = {"scale": 2.0}  # an unhashable closure value: what the pattern traces cannot be keyed
    calls: list[int] = []

    def pattern(x):
        return x * table["scale"]

    graph_for = pp._memoised(lambda p, inputs, is_cuda=False, **kw: calls.append(1) or object())
    graph_for(pattern, (torch.randn(2),))
    graph_for(pattern, (torch.randn(2),))
    assert len(calls) == 2 and pp._GRAPHS == {}
    assert pp.pattern_key(pattern, (torch.randn(2),), False, {}) is None


def test_the_context_swaps_torchao_s_exporter_re_entrantly_and_restores_it() -> None:
    import importlib

    modules = [importlib.import_module(name) for name in pp._MODULES]  # torchao's two, the XNNPACK quantizer's
    assert len(modules) == 3

    def current() -> list[object]:
        return [getattr(m, pp._NAME) for m in modules]

    originals = current()
    with pp.reused_pattern_graphs():
        outer = current()
        assert all(getattr(f, "edgecart_memoised", False) for f in outer)
        with pp.reused_pattern_graphs():
            assert current() == outer
        assert current() == outer
    assert current() == originals


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.b, self.bn_b = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        x = F.relu(self.bn_a(self.a(x)))
        return self.head(self.bn_b(self.b(x)).flatten(1))


def test_a_qat_model_converts_to_what_torchao_alone_gives() -> None:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    torch.manual_seed(0)
    model = ConvBN().eval()
    for bn in (model.bn_a, model.bn_b):  # non-trivial statistics, so a wrong fold shows in the outputs
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 3, 8, 8)
    graph = torch.export.export(model, (x,)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    prepared = prepare_qat_pt2e(graph, quantizer)
    prepared(x)
    with torch.no_grad():
        reference = convert_pt2e(copy.deepcopy(prepared), fold_quantize=False)  # torchao's own exporter
    assert not getattr(pt2e_utils._get_aten_graph_module_for_pattern, "edgecart_memoised", False)
    first = convert_qat(copy.deepcopy(prepared))
    second = convert_qat(copy.deepcopy(prepared))  # every pattern graph served from the cache
    assert "batch_norm" not in reference.code  # the fold ran: the test compares real conversions
    with torch.no_grad():
        want = reference(x)
        for got in (first, second):
            assert got.code == reference.code
            assert torch.equal(got(x), want)
