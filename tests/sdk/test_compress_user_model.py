"""A user's ``.pt2`` and ``.npz`` files in ``edgecart export`` / ``compress``: what cannot work is refused with a
typed error that says the fix (never a raw traceback, never a silent no-op), and what can work does."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from edgecart.compress.distill import DistillConfig, DistillData, distill
from edgecart.compress.losses import MSE
from edgecart.compress.pruning import MagnitudePruning, StructuredPruning, prune
from edgecart.compress.recipe import Recipe
from edgecart.compress.user_model import input_shapes, load_model, read_samples
from edgecart.config import ConfigError
from torch import nn


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("pt2")
    torch.export.save(torch.export.export(_mlp(), (torch.randn(1, 8),)), str(d / "mlp.pt2"))
    torch.export.save(torch.export.export(_cnn(), (torch.randn(1, 3, 8, 8),)), str(d / "cnn.pt2"))
    torch.export.save(torch.export.export(_mlp(), (torch.randn(2, 8),)), str(d / "mlp2.pt2"))
    return d


# --- 1. structured / magnitude pruning of a .pt2 ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp.pt2", "cnn.pt2"])
def test_structured_pruning_of_a_pt2_is_refused_naming_a_factory(files, name):
    model, example = load_model(str(files / name))
    with pytest.raises(ConfigError, match=r"\.pt2.*package\.module:function"):
        prune(model, StructuredPruning(ratio=0.5), example)


def test_magnitude_pruning_of_a_pt2_says_to_use_a_factory(files):
    model, _ = load_model(str(files / "mlp.pt2"))
    with pytest.raises(ConfigError, match=r"found no \['conv', 'linear'\] layers.*package\.module:function"):
        prune(model, MagnitudePruning(amount=0.5), ())


def test_structured_pruning_that_removes_nothing_is_an_error_not_a_silent_success():
    only_output = nn.Sequential(nn.Linear(8, 4)).eval()  # the output layer is kept whole: nothing to prune
    with pytest.raises(ConfigError, match="removed nothing"):
        prune(only_output, StructuredPruning(ratio=0.5), (torch.randn(1, 8),))


def test_structured_pruning_of_a_factory_model_still_shrinks_it():
    model = _mlp()
    pruned = prune(model, StructuredPruning(ratio=0.5), (torch.randn(1, 8),))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


# --- 2. corrupt or foreign .pt2 -----------------------------------------------------------------------------------


def _bad_pt2(d, kind):
    p = d / f"{kind}.pt2"
    good = (d / "mlp.pt2").read_bytes()
    if kind == "truncated":
        p.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "checkpoint":
        torch.save(_mlp().state_dict(), str(p))
    return p


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "checkpoint"])
def test_a_corrupt_or_foreign_pt2_is_a_typed_error_without_traceback(files, kind, capfd):
    p = _bad_pt2(files, kind)
    with pytest.raises(ConfigError, match=r"not a torch\.export\.save archive") as err:
        load_model(str(p))
    assert "torch.export.save(torch.export.export(model, example_inputs)" in str(err.value)
    assert str(p) in str(err.value)
    assert "Traceback" not in capfd.readouterr().err  # torch's logged traceback is contained


# --- 3. sample dtypes ---------------------------------------------------------------------------------------------


def test_float64_samples_are_cast_to_the_float32_the_model_takes(files, tmp_path):
    model, example = load_model(str(files / "mlp.pt2"))
    np.savez(tmp_path / "g.npz", np.random.default_rng(0).standard_normal((3, 1, 8)))  # float64
    rows = read_samples(tmp_path / "g.npz", input_shapes(model, example))
    assert len(rows) == 3 and rows[0][0].dtype == torch.float32
    model(*rows[0])  # runs: no "mat1 and mat2 must have the same dtype"


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.bool_])
def test_samples_of_another_dtype_are_refused_naming_the_expected_one(files, tmp_path, dtype):
    model, example = load_model(str(files / "cnn.pt2"))
    np.savez(tmp_path / "g.npz", np.ones((2, 1, 3, 8, 8), dtype=dtype))
    with pytest.raises(ConfigError, match=r"float32"):
        read_samples(tmp_path / "g.npz", input_shapes(model, example))


def test_dtypes_can_be_given_explicitly(tmp_path):
    np.savez(tmp_path / "ids.npz", np.arange(6, dtype=np.int64).reshape(3, 1, 2))
    rows = read_samples(tmp_path / "ids.npz", [(1, 2)], dtypes=[torch.int64])
    assert rows[0][0].dtype == torch.int64
    with pytest.raises(ConfigError, match="int64"):
        np.savez(tmp_path / "f.npz", np.ones((3, 1, 2), dtype=np.float32))
        read_samples(tmp_path / "f.npz", [(1, 2)], dtypes=[torch.int64])


# --- 4. other .npz problems ---------------------------------------------------------------------------------------


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ConfigError, match="object"):
        read_samples(tmp_path / "obj.npz", [(1, 8)])


def test_a_pickle_named_npz_is_refused(tmp_path):
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"x": np.ones((2, 8))}))
    with pytest.raises(ConfigError, match="pickle"):
        read_samples(tmp_path / "p.npz", [(1, 8)])


@pytest.mark.parametrize("content", [b"", b"hello, not numpy\n", "npy"])
def test_a_file_that_is_not_an_npz_is_refused(tmp_path, content):
    p = tmp_path / "x.npz"
    if content == "npy":
        with p.open("wb") as f:
            np.save(f, np.ones((2, 1, 8), dtype=np.float32))
    else:
        p.write_bytes(content)
    with pytest.raises(ConfigError, match=r"not an \.npz"):
        read_samples(p, [(1, 8)])


def test_zero_samples_are_refused(files, tmp_path):
    model, example = load_model(str(files / "mlp.pt2"))
    np.savez(tmp_path / "none.npz", np.zeros((0, 1, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match="holds no samples"):
        read_samples(tmp_path / "none.npz", input_shapes(model, example))


# --- 5. distillation of a fixed-batch exported module -------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [("mlp.pt2", (8,)), ("cnn.pt2", (3, 8, 8))])
def test_distilling_a_batch_1_pt2_trains_in_batches(files, name, shape):
    model, example = load_model(str(files / name))
    teacher = _mlp() if name == "mlp.pt2" else _cnn()
    before = [p.detach().clone() for p in model.parameters()]
    data = DistillData(inputs=torch.randn(10, *shape))
    cfg = DistillConfig(losses=(MSE(),), epochs=1, batch_size=4, lr=1e-2)
    distill(model, teacher.eval(), data, cfg, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # it trained
    model(*example)  # still the batch-1 program


def test_distilling_a_batch_2_pt2_pads_the_last_chunk(files):
    model, _ = load_model(str(files / "mlp2.pt2"))
    data = DistillData(inputs=torch.randn(5, 8))
    res = distill(model, _mlp(), data, DistillConfig(losses=(MSE(),), epochs=1, batch_size=3), progress=False)
    assert res.epochs_run == 1 and np.isfinite(res.losses[0])


def test_recipe_distill_stage_on_a_pt2(files):
    # a .pt2 cannot be pruned, so its distil stage learns from a teacher the caller gives (without one it would be
    # its own teacher: refused, see test_compress_recipe_checks.py)
    model, example = load_model(str(files / "mlp.pt2"))
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    rec = Recipe.from_dict({"name": "d", "distill": {"losses": [{"name": "mse"}], "epochs": 1, "batch_size": 4}})
    out, record = rec.apply(model, example, data=DistillData(inputs=torch.randn(9, 8)), teacher=teacher)
    assert record["stages"][0]["stage"] == "distill" and out(*example).shape == (1, 4)
    assert any(not torch.equal(a, b) for a, b in zip(before, out.parameters(), strict=True))  # it trained


# --- end to end through `edgecart export` -------------------------------------------------------------------------


def test_export_cli_prunes_and_distils_a_factory_from_float64_training_inputs(files, tmp_path, capsys,
                                                                               monkeypatch):
    # a .pt2 cannot be pruned, and distilling without pruning has nothing to learn: the command line distils a
    # factory model's pruned copy from the model
    from edgecart.cli import main

    (tmp_path / "ec_um_factory.py").write_text("import torch\nfrom torch import nn\n\n\ndef build():\n"
                                               "    torch.manual_seed(0)\n"
                                               "    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), "
                                               "nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    np.savez(tmp_path / "train.npz", np.random.default_rng(0).standard_normal((6, 8)))  # float64, as numpy makes
    (tmp_path / "c.toml").write_text('model = "ec_um_factory:build"\ntrain = "train.npz"\ngolden = "train.npz"\n'
                                     'formats = ["onnx"]\n[prune]\nkind = "structured"\nratio = 0.5\n'
                                     '[distill]\nepochs = 1\nbatch_size = 4\nlosses = [{name = "mse"}]\n')
    assert main(["compress", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "b"), "--json"]) == 0, \
        capsys.readouterr().err[-2000:]
    assert (tmp_path / "b" / "manifest.json").is_file()
    capsys.readouterr()
    _bad_pt2(files, "random")
    assert main(["export", str(files / "random.pt2"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not a torch.export.save archive" in err and "Traceback" not in err


# --- a .pt2 exported with a dynamic batch; preprocessing that does not fit the model ---------------------------------


def test_a_dynamic_batch_pt2_is_fixed_to_its_example_and_says_so(tmp_path):
    from edgecart.compress.cli_support import export_user_model

    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(_mlp(), (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(tmp_path / "dyn.pt2"))
    notes: list[str] = []
    model, example = load_model(str(tmp_path / "dyn.pt2"), notes=notes)
    assert len(notes) == 1 and "dynamic" in notes[0] and "(2, 8)" in notes[0], notes
    said: list[str] = []
    summary = export_user_model(str(tmp_path / "dyn.pt2"), out=str(tmp_path / "b"), formats=["onnx"],
                                progress=said.append)
    assert any("dynamic" in m for m in said) and tuple(summary["inputs"][0]["shape"]) == (2, 8)
    static: list[str] = []
    load_model(str(_save_static(tmp_path)), notes=static)
    assert static == []  # a program exported with fixed shapes gets no note


def _save_static(tmp_path):
    p = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(_mlp(), (torch.randn(2, 8),)), str(p))
    return p


def test_preprocessing_that_does_not_fit_the_model_is_refused_before_any_stage(files, tmp_path, monkeypatch):
    from edgecart.compress import cli_support
    from edgecart.runtime import ManifestError

    monkeypatch.setattr("edgecart.compress.pipeline.export_compressed", lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(ManifestError, match=r"preprocessing.*\(N, 3, 32, 32\).*\(1, 3, 8, 8\)"):
        cli_support.export_user_model(str(files / "cnn.pt2"), out=str(tmp_path / "b"), formats=["onnx"],
                                      preprocessing={"kind": "image", "size": [32, 32]})


def test_preprocessing_checked_early_costs_no_second_io_spec_pass(files, tmp_path, monkeypatch):
    import edgecart.exporters as exporters
    from edgecart.compress import cli_support

    calls, seen = [], {}
    real = exporters.infer_io_spec
    monkeypatch.setattr(exporters, "infer_io_spec", lambda *a, **k: calls.append(1) or real(*a, **k))

    class Done(Exception):
        pass

    def capture(*_a, **k):
        seen["io"] = k["io_spec"]
        raise Done

    monkeypatch.setattr("edgecart.compress.pipeline.export_compressed", capture)
    with pytest.raises(Done):
        cli_support.export_user_model(str(files / "cnn.pt2"), out=str(tmp_path / "b"), formats=["onnx"],
                                      preprocessing={"kind": "image", "size": [8, 8]})
    assert len(calls) == 1 and tuple(seen["io"].inputs[0].shape) == (1, 3, 8, 8)
