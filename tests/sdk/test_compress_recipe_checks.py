"""Compression inputs that cannot do what was asked are refused with a typed error that names the fix: a distil
stage with nothing to learn, sample files of a factory model, weight files and factories that do not fit, a
``compress.toml``'s preprocessing file, and the distillation settings' own checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from edgecart.compress.distill import DistillConfig, DistillData
from edgecart.compress.losses import MSE, Cosine, InfoNCE, KLDivergence, LabelCE, RankingKD, loss_from_dict
from edgecart.compress.recipe import Recipe
from edgecart.compress.user_model import input_shapes, load_model, read_samples
from edgecart.config import ConfigError
from torch import nn

FACTORIES = '''
import torch
from torch import nn


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def not_a_module():
    return "a string"


def needs_args(width):
    return nn.Linear(width, 2)
'''
MOD = "ec_recipe_checks_models"


@pytest.fixture
def factories(tmp_path_factory, monkeypatch):
    """A module of factories importable as ``ec_recipe_checks_models``, plus weights and sample files beside it."""
    d = tmp_path_factory.getbasetemp() / "ec_factories"
    if not d.exists():
        d.mkdir()
        (d / f"{MOD}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(d))
    sys.modules.pop(MOD, None)
    return d


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def _changed(before, m) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


def _recipe(*losses: str, prune: bool = False) -> Recipe:
    table = {"distill": {"epochs": 1, "batch_size": 4, "lr": 1e-2, "losses": [{"name": n} for n in losses]}}
    if prune:
        table["prune"] = {"kind": "structured", "ratio": 0.5}
    return Recipe.from_dict(table)


# --- 1. a distil stage without a prune stage, teacher or labels has nothing to learn --------------------------------


@pytest.mark.parametrize("loss", ["mse", "relational", "hint"])
def test_distilling_a_model_into_a_copy_of_itself_is_refused_before_training(loss):
    model = _mlp()
    before = _params(model)
    with pytest.raises(ConfigError, match=r"(?s)identical.*\[prune\].*teacher.*label") as err:
        _recipe(loss).apply(model, (torch.randn(1, 8),), data=DistillData(inputs=torch.randn(8, 8)))
    assert "distill" in str(err.value)
    assert not _changed(before, model)  # refused before any step


def test_labels_without_a_label_loss_still_leave_nothing_to_learn():
    data = DistillData(inputs=torch.randn(8, 8), labels=torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"\[prune\]"):
        _recipe("mse").apply(_mlp(), (torch.randn(1, 8),), data=data)


def test_a_caller_supplied_teacher_is_distilled_from():
    model = _mlp()
    before = _params(model)
    out, record = _recipe("mse").apply(model, (torch.randn(1, 8),), data=DistillData(inputs=torch.randn(8, 8)),
                                       teacher=_mlp(seed=1))
    assert _changed(before, out) and [s["stage"] for s in record["stages"]] == ["distill"]


def test_cached_teacher_outputs_are_a_separate_teacher():
    model = _mlp()
    before = _params(model)
    x = torch.randn(8, 8)
    with torch.no_grad():
        cached = _mlp(seed=1)(x)
    out, _ = _recipe("mse").apply(model, (torch.randn(1, 8),), data=DistillData(inputs=x, teacher_outputs=cached))
    assert _changed(before, out)


def test_labels_with_a_label_loss_train_without_a_teacher():
    model = _mlp()
    before = _params(model)
    data = DistillData(inputs=torch.randn(8, 8), labels=torch.randint(0, 4, (8,)))
    out, _ = _recipe("label", "mse").apply(model, (torch.randn(1, 8),), data=data)
    assert _changed(before, out)


def test_prune_then_distil_from_the_unpruned_model_still_works():
    model = _mlp()
    out, record = _recipe("mse", prune=True).apply(model, (torch.randn(1, 8),),
                                                   data=DistillData(inputs=torch.randn(8, 8)))
    assert [s["stage"] for s in record["stages"]] == ["prune", "distill"]
    assert sum(p.numel() for p in out.parameters()) < sum(p.numel() for p in model.parameters())


def test_export_cli_refuses_to_distil_a_pt2_without_pruning(tmp_path, capsys):
    from edgecart.cli import main

    torch.export.save(torch.export.export(_mlp(), (torch.randn(4, 8),)), str(tmp_path / "m.pt2"))
    np.savez(tmp_path / "train.npz", np.random.default_rng(0).standard_normal((16, 4, 8)).astype(np.float32))
    (tmp_path / "r.toml").write_text('[distill]\nepochs = 1\nlosses = [{ name = "hint" }]\n')
    rc = main(["export", str(tmp_path / "m.pt2"), "--recipe", str(tmp_path / "r.toml"), "--train",
               str(tmp_path / "train.npz"), "--formats", "onnx", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "[prune]" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "b").exists()


# --- 2. a factory model's (N, *input) sample files keep a batch axis ------------------------------------------------


def test_samples_of_unknown_shape_keep_a_batch_axis_of_1(tmp_path):
    np.savez(tmp_path / "g.npz", np.ones((4, 12), dtype=np.float32))
    rows = read_samples(tmp_path / "g.npz")
    assert len(rows) == 4 and tuple(rows[0][0].shape) == (1, 12)


@pytest.mark.parametrize(("factory", "stored", "shape"), [("mlp", (12,), (12,)), ("cnn", (3, 8, 8), (3, 8, 8)),
                                                           ("cnn", (1, 3, 8, 8), (3, 8, 8))],
                         ids=["mlp", "cnn", "cnn-stored-with-batch-1"])
def test_a_factory_model_exports_with_a_batch_axis_from_ordinary_samples(factories, tmp_path, factory, stored,
                                                                         shape):
    # (N, *input) gains a batch axis of 1; (N, 1, *input), which already has one, still works
    from edgecart.compress.cli_support import export_user_model

    np.savez(tmp_path / "golden.npz", np.random.default_rng(0).standard_normal((4, *stored)))  # float64, as numpy
    summary = export_user_model(f"{MOD}:{factory}", out=str(tmp_path / "b"), formats=["onnx"],
                                golden=str(tmp_path / "golden.npz"))
    assert tuple(summary["inputs"][0]["shape"]) == (1, *shape)
    assert summary["inputs"][0]["dtype"] == "float32"


def test_samples_the_factory_model_cannot_run_are_a_config_error_naming_their_shape(factories, tmp_path):
    from edgecart.compress.cli_support import export_user_model

    np.savez(tmp_path / "golden.npz", np.ones((4, 5), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"(?s)golden.*\(1, 5\).*\(samples, \*input\)"):
        export_user_model(f"{MOD}:mlp", out=str(tmp_path / "b"), formats=["onnx"],
                          golden=str(tmp_path / "golden.npz"))
    assert not (tmp_path / "b").exists()


def test_float64_samples_of_a_factory_model_are_cast_to_its_float32(factories, tmp_path):
    model, example = load_model(f"{MOD}:mlp")
    np.savez(tmp_path / "g.npz", np.random.default_rng(0).standard_normal((3, 12)))
    rows = read_samples(tmp_path / "g.npz", input_shapes(model, example))
    assert rows[0][0].dtype == torch.float32
    model(*rows[0])


# --- 3. weight files and factories that do not fit -------------------------------------------------------------------


def test_a_missing_weights_file_is_a_config_error(factories, tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.pt.*no such"):
        load_model(f"{MOD}:mlp", str(tmp_path / "nope.pt"))


def test_weights_of_another_model_are_a_config_error_naming_the_file_and_factory(factories, tmp_path):
    torch.save(_mlp().state_dict(), str(tmp_path / "other.pt"))  # Linear(8, ...), not Linear(12, ...)
    with pytest.raises(ConfigError, match=rf"(?s)other\.pt.*{MOD}:mlp.*state_dict"):
        load_model(f"{MOD}:mlp", str(tmp_path / "other.pt"))


@pytest.mark.parametrize("kind", ["npz", "text", "tensor"])
def test_a_file_that_is_not_a_state_dict_is_a_config_error(factories, tmp_path, kind):
    p = tmp_path / f"w.{kind}"
    if kind == "npz":
        np.savez(p, np.ones(3))
    elif kind == "text":
        p.write_text("not weights")
    else:
        torch.save(torch.ones(3), str(p))
    with pytest.raises(ConfigError, match=rf"(?s){p.name}.*torch\.save\(model\.state_dict\(\)"):
        load_model(f"{MOD}:mlp", str(p))


@pytest.mark.parametrize(("spec", "words"), [
    ("os:getcwd", "nn.Module"),
    (f"{MOD}:not_a_module", "nn.Module"),
    (f"{MOD}:needs_args", "no arguments"),
    ("os:sep", "not callable"),
])
def test_a_factory_that_does_not_build_a_module_is_a_config_error(factories, spec, words):
    with pytest.raises(ConfigError, match=rf"(?s){spec}.*{words}"):
        load_model(spec)


def test_input_files_are_checked_before_the_model_loads(factories, tmp_path, monkeypatch):
    from edgecart.compress import cli_support

    monkeypatch.setattr(cli_support, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    for key in ("golden", "calibration", "validation", "weights", "train"):
        with pytest.raises(ConfigError, match=rf"missing-{key}\.x.*no such file"):
            cli_support.export_user_model(f"{MOD}:mlp", out=str(tmp_path / "b"), formats=["onnx"],
                                          **{key: str(tmp_path / f"missing-{key}.x")})


# --- 4. compress.toml: preprocessing is read from the config file's folder ------------------------------------------


def test_compress_reads_a_preprocessing_file_from_the_config_folder(tmp_path, monkeypatch):
    from edgecart.compress import cli_support

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    torch.export.save(torch.export.export(_cnn(), (torch.randn(1, 3, 8, 8),)), str(cfg / "cnn.pt2"))
    (cfg / "pre.json").write_text('{"kind": "image", "size": [8, 8]}')
    (cfg / "compress.toml").write_text('model = "cnn.pt2"\nformats = ["onnx"]\npreprocessing = "pre.json"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    seen = {}

    class Done(Exception):
        pass

    def capture(*a, **k):
        seen.update(k)
        raise Done

    monkeypatch.setattr("edgecart.compress.pipeline.export_compressed", capture)
    with pytest.raises(Done):
        cli_support.compress_from_config(cfg / "compress.toml")
    assert tuple(seen["preprocessing"].size) == (8, 8)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2)).eval()


# --- 5. the distillation settings' own checks are ConfigErrors ------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: DistillConfig(losses=(MSE(),), lr=-1),
    lambda: DistillConfig(losses=(MSE(),), lr="1e-3"),
    lambda: DistillConfig(losses=(MSE(),), warmup="0.1"),
    lambda: DistillConfig(losses=(MSE(),), warmup=1.5),
    lambda: DistillConfig(losses=(MSE(),), weight_decay=-1),
    lambda: DistillConfig(losses=(MSE(),), grad_clip=0),
    lambda: DistillConfig(losses=(MSE(),), patience=0),
    lambda: DistillConfig(losses=(MSE(),), epochs=0),
    lambda: DistillConfig(losses=MSE()),
    lambda: DistillConfig(losses="mse"),
    lambda: DistillConfig(losses=()),
    lambda: DistillConfig(losses=({"name": "mse"},)),
    lambda: DistillConfig.from_dict([1]),
    lambda: KLDivergence(temperature=0),
    lambda: KLDivergence(temperature="2"),
    lambda: MSE(weight=-1),
    lambda: Cosine(weight="1"),
    lambda: RankingKD(top_k=0),
    lambda: LabelCE(label_smoothing=1.0),
    lambda: InfoNCE(temperature=0),
    lambda: loss_from_dict({"weight": 1}),
], ids=["lr-neg", "lr-str", "warmup-str", "warmup-big", "wd-neg", "clip-0", "patience-0", "epochs-0",
        "losses-term", "losses-str", "losses-empty", "losses-dict", "from-dict-list", "kl-temp-0", "kl-temp-str",
        "weight-neg", "weight-str", "top-k-0", "smoothing-1", "infonce-temp-0", "loss-no-name"])
def test_distill_settings_are_config_errors(make):
    with pytest.raises(ConfigError) as err:
        make()
    assert isinstance(err.value, ValueError)  # existing `except ValueError` keeps working


def test_a_single_loss_term_says_to_wrap_it_in_a_tuple():
    with pytest.raises(ConfigError, match=r"losses=\(MSE\(\),\)"):
        DistillConfig(losses=MSE())


def test_a_list_of_losses_is_still_accepted():
    assert DistillConfig(losses=[MSE()]).losses == (MSE(),)
