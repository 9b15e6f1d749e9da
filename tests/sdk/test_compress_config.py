"""Compression configs: typed recipes, the one allowlist from_dict, TOML/JSON recipes, registry errors."""

from __future__ import annotations

import json

import pytest
from edgecart.compress import (
    QAT,
    RECIPES,
    DistillStage,
    DynamicInt8,
    MagnitudePruning,
    QuantizeStage,
    Recipe,
    StaticInt8,
    StructuredPruning,
    load_recipe,
    resolve_recipe,
)
from edgecart.config import ConfigError, from_dict, to_dict
from edgecart.exporters import EXPORTERS, supported_recipes
from edgecart.exporters.base import ExportRequest
from edgecart.exporters.recipes import recipe_from_dict, recipe_to_dict
from edgecart.runtime import UnknownNameError


@pytest.mark.parametrize("recipe", [StaticInt8(), StaticInt8(per_channel=False, calibration="minmax",
                                                            exclude=("features.0",), ops=("conv",)),
                                    DynamicInt8(per_channel=False), QAT(steps=3, lr=1e-3, exclude=("head",))],
                         ids=lambda r: r.name)
def test_recipes_round_trip_through_json(recipe):
    doc = json.loads(json.dumps(recipe_to_dict(recipe)))
    assert recipe_from_dict(doc) == recipe
    assert resolve_recipe(doc) == recipe


def test_misspelled_recipe_name_lists_known_names():
    with pytest.raises(UnknownNameError, match="static-int8-per-channel"):
        resolve_recipe("pt2e-xnnpack-per-chanel")
    with pytest.raises(UnknownNameError, match="known"):
        ExportRequest(None, (), ("x",), ("y",), "int8", "static-int8-per-chanel", ((1,),))


def test_legacy_recipe_names_map_to_typed_recipes():
    assert RECIPES["pt2e-xnnpack-per-tensor"] == StaticInt8(per_channel=False)
    assert RECIPES["ort-static-qdq-per-channel-minmax-weights-only-ops"].ops == ("conv", "linear")


def test_unknown_option_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="unknown option.*per_chanel.*known"):
        recipe_from_dict({"kind": "static_int8", "per_chanel": True})
    with pytest.raises(UnknownNameError, match="static_int8"):
        recipe_from_dict({"kind": "static_int9"})
    with pytest.raises(ConfigError, match="calibration"):
        StaticInt8(calibration="median")
    with pytest.raises(ConfigError, match="ratio"):
        StructuredPruning(ratio=1.5)


def test_exporters_declare_supported_recipes():
    assert EXPORTERS["executorch"].supports(QAT()) and not EXPORTERS["onnx"].supports(QAT())
    assert EXPORTERS["onnx"].supports(StaticInt8(calibration="percentile"))
    assert not EXPORTERS["tflite"].supports(StaticInt8(calibration="percentile"))
    assert "dynamic-int8-per-channel" in supported_recipes("onnx")


def test_from_dict_builds_nested_dataclasses_and_tuples():
    stage = from_dict(QuantizeStage, {"recipes": ["static-int8-per-tensor", {"kind": "dynamic_int8"}],
                                      "qat": {"steps": 5}, "max_drop": 0.02})
    assert stage.recipes == (StaticInt8(per_channel=False), DynamicInt8()) and stage.qat == QAT(steps=5)
    assert from_dict(MagnitudePruning, to_dict(MagnitudePruning(amount=0.3))) == MagnitudePruning(amount=0.3)


def test_recipe_loads_from_toml_and_json_and_round_trips(tmp_path):
    toml = tmp_path / "r.toml"
    toml.write_text('name = "r"\n[prune]\nkind = "structured"\nratio = 0.25\n'
                    '[distill]\nepochs = 2\nlosses = [{name = "mse"}]\n'
                    '[quantize]\nrecipes = ["static-int8-per-channel", {kind = "qat", steps = 4}]\nmax_drop = 0.02\n')
    r = load_recipe(toml)
    assert r.prune == StructuredPruning(ratio=0.25) and r.distill.config["epochs"] == 2
    assert r.quantize.recipes == (StaticInt8(), QAT(steps=4)) and r.stages == ["prune", "distill", "quantize"]
    js = tmp_path / "r.json"
    js.write_text(json.dumps(r.to_dict()))
    assert load_recipe(js) == r


def test_recipe_errors_name_the_fix(tmp_path):
    with pytest.raises(UnknownNameError, match="epochz"):  # the trainer's own config is checked at load
        Recipe.from_dict({"distill": {"epochz": 2, "losses": [{"name": "mse"}]}})
    with pytest.raises(ConfigError, match="unknown stage.*known"):
        Recipe.from_dict({"prune": {"kind": "structured"}, "qantize": {}})
    with pytest.raises(UnknownNameError, match="magnitude, structured"):
        Recipe.from_dict({"prune": {"kind": "channel"}})
    bad = tmp_path / "r.yaml"
    bad.write_text("x: 1")
    with pytest.raises(ConfigError, match=".toml or .json"):
        load_recipe(bad)


def test_unregistered_distill_runner_lists_known(tiny_model):
    import torch

    r = Recipe(distill=DistillStage.from_table({"runner": "no-such-trainer"}))
    with pytest.raises(UnknownNameError, match="no-such-trainer"):
        r.apply(tiny_model, (torch.zeros(1, 1, 28, 28),))
