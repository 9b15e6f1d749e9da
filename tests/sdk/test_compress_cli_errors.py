"""``edgecart export`` / ``edgecart compress``: bad configs fail early with typed errors that name what the caller
can pass, and distillation of a batch-1 ``.pt2`` trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgecart.cli import main
from edgecart.config import ConfigError
from torch import nn

DISTILL = '[distill]\nepochs = 1\nbatch_size = 4\nlosses = [{ name = "mse", weight = 1.0 }]\n'
QUANT = '[quantize]\nrecipes = ["static-int8-per-channel"]\nrescue = false\n'


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A 2-layer MLP saved with torch.export.save at batch 1, and 6 training rows."""
    d = tmp_path_factory.mktemp("mlp")
    torch.export.save(torch.export.export(_mlp(), (torch.randn(1, 8),)), str(d / "mlp.pt2"))
    np.savez(d / "rows.npz", np.random.default_rng(0).standard_normal((6, 1, 8)).astype(np.float32))
    return d


def _config(d, name: str, body: str):
    p = d / name
    p.write_text(f'model = "{d / "mlp.pt2"}"\n' + body)
    return p


def _compress(path, capsys) -> tuple[int, str]:
    rc = main(["compress", "--config", str(path)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("value", ['"false"', '"no"', "0"])
def test_compress_overwrite_must_be_a_toml_boolean(mlp, tmp_path, capsys, value):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    cfg = _config(mlp, f"ow{value.strip(chr(34))}.toml", f'out = "{tmp_path / "old"}"\nformats = ["onnx"]\n'
                  f"overwrite = {value}\n")
    rc, err = _compress(cfg, capsys)
    assert rc == 2 and "overwrite: expected true or false" in err
    assert (tmp_path / "old" / "keep.txt").exists()


def test_export_refuses_an_empty_format_list(mlp, tmp_path, capsys):
    assert main(["export", str(mlp / "mlp.pt2"), "--out", str(tmp_path / "o"), "--formats", ","]) == 2
    err = capsys.readouterr().err
    assert "onnx" in err and "tflite" in err  # the known formats are listed
    assert not (tmp_path / "o").exists()


def test_compress_refuses_an_empty_format_list(mlp, tmp_path, capsys):
    rc, err = _compress(_config(mlp, "nofmt.toml", f'out = "{tmp_path / "o"}"\nformats = []\n'), capsys)
    assert rc == 2 and "onnx" in err and "executorch" in err
    assert not (tmp_path / "o").exists()


def test_export_compressed_refuses_an_empty_format_list(tmp_path):
    from edgecart.compress import export_compressed

    with pytest.raises(ConfigError, match="onnx"):
        export_compressed(_mlp(), (torch.randn(1, 8),), out=tmp_path / "o", formats=[])
    with pytest.raises(ConfigError, match="must be a list"):
        export_compressed(_mlp(), (torch.randn(1, 8),), out=tmp_path / "o", formats="onnx")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("body", "words"), [
    ("out = 5\n", ["out: expected a string", "got 5 (int)", 'out = "5"']),
    ("calibration = 2\n", ["calibration: expected a string"]),
    ("train = ['a.npz']\n", ["train: expected a string"]),
    ("golden = true\n", ["golden: expected a string"]),
    ("weights = 1.5\n", ["weights: expected a string"]),
    ('formats = "onnx"\n', ["formats: expected a list of strings", 'formats = ["onnx"]']),
    ('formats = ["onnx", 3]\n', ["formats[1]: expected a string", "got 3 (int)"]),
    ('calibration = "c.npz"\n[quantize]\ncalibration = 2.5\n', ["quantize.calibration", "whole number", "float"]),
    ('calibration = "c.npz"\n[quantize]\nmax_drop = "small"\n', ["quantize.max_drop", "number", "str"]),
    ('calibration = "c.npz"\n[quantize]\nmax_drop = true\n', ["quantize.max_drop", "bool"]),
    ('calibration = "c.npz"\n[quantize]\nkeep_float = 1.0\n', ["quantize.keep_float"]),
    ('calibration = "c.npz"\n[quantize]\nrescue = "yes"\n', ["quantize.rescue", "true or false"]),
    ('calibration = "c.npz"\n[quantize]\nrecipes = "static-int8-per-channel"\n', ["quantize.recipes: expected a list",
                                                                         'recipes = ["static-int8-per-channel"]']),
])
def test_compress_config_value_types_are_typed_errors(mlp, tmp_path, capsys, body, words):
    rc, err = _compress(_write(mlp, tmp_path, body), capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def _write(mlp, tmp_path, body: str):
    p = tmp_path / "types.toml"
    p.write_text(f'model = "{mlp / "mlp.pt2"}"\n' + body)
    return p


def test_compress_checks_calibration_before_training(mlp, tmp_path, capsys):
    cfg = _config(mlp, "dq.toml", f'out = "{tmp_path / "o"}"\nformats = ["onnx"]\ntrain = "rows.npz"\n'
                  + DISTILL + QUANT)
    rc, err = _compress(cfg, capsys)
    assert rc == 2 and "calibration = 'inputs.npz'" in err
    assert "--calibration" not in err  # compress takes calibration = in its config, not a flag
    assert "distill:" not in err  # no stage ran
    assert not (tmp_path / "o").exists()


def test_export_messages_name_its_flags(mlp, tmp_path, capsys):
    (tmp_path / "rd.toml").write_text(DISTILL)
    assert main(["export", str(mlp / "mlp.pt2"), "--out", str(tmp_path / "o"), "--formats", "onnx",
                 "--recipe", str(tmp_path / "rd.toml")]) == 2
    err = capsys.readouterr().err
    assert "--train inputs.npz" in err and "train = " not in err
    (tmp_path / "exists").mkdir()
    assert main(["export", str(mlp / "mlp.pt2"), "--out", str(tmp_path / "exists"), "--formats", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


def test_compress_overwrite_message_names_the_config_key(mlp, tmp_path, capsys):
    (tmp_path / "exists").mkdir()
    rc, err = _compress(_config(mlp, "ex.toml", f'out = "{tmp_path / "exists"}"\nformats = ["onnx"]\n'), capsys)
    assert rc == 2 and "overwrite = true" in err and "overwrite=True" not in err


def test_infer_io_spec_names_the_output_that_is_not_a_tensor():
    from edgecart.exporters import infer_io_spec
    from edgecart.runtime.errors import EdgecartError

    class TwoOut(nn.Module):
        def forward(self, x):
            return x * 2, 3

    with pytest.raises(EdgecartError, match="output 1 is an int"):
        infer_io_spec(TwoOut(), (torch.randn(1, 8),))


def test_distilling_a_pt2_with_export_train_is_refused_before_any_work(mlp, tmp_path, capsys):
    """A .pt2 cannot be pruned and the command line passes no teacher or labels: its distil stage would train the
    model towards a frozen copy of itself (nothing to learn), so it is refused, naming the [prune] fix."""
    (tmp_path / "rd.toml").write_text(DISTILL)
    rc = main(["export", str(mlp / "mlp.pt2"), "--out", str(tmp_path / "b"), "--formats", "onnx",
               "--recipe", str(tmp_path / "rd.toml"), "--train", str(mlp / "rows.npz")])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert "[prune]" in err and "nothing to learn" in err and "Traceback" not in err
    assert "distill: distill" not in err  # no stage ran
    assert not (tmp_path / "b").exists()


def test_distilling_without_pruning_keeps_a_frozen_copy_as_the_teacher():
    # Without a prune stage the student is the model itself: a teacher that is the same object would move with every
    # step, and the student would learn from itself (a zero loss from the first step).
    from edgecart.compress.recipe import STAGE_RUNNERS, DistillStage, Recipe, register_stage

    seen = {}

    def runner(student, config, **context):
        seen["same"] = context["teacher"] is student
        seen["equal"] = all(torch.equal(a, b) for a, b in zip(context["teacher"].parameters(),
                                                               student.parameters(), strict=True))
        return student

    register_stage("capture-teacher", runner)
    try:
        model = _mlp()
        Recipe(distill=DistillStage(runner="capture-teacher")).apply(model, (torch.randn(1, 8),))
    finally:
        STAGE_RUNNERS._items.pop("capture-teacher", None)
    assert seen == {"same": False, "equal": True}
