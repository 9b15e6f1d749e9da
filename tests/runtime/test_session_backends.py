"""A backend is listed as available only when what opening it imports can be imported (ExecuTorch needs torch), and
``backend="auto"`` asks only as far as the first usable engine (it does not import torch to open an ONNX model)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from edgecart.runtime import BackendUnavailableError, available_backends, load
from edgecart.runtime.backends import BACKENDS


def test_executorch_is_not_listed_when_torch_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as in a torch-free install
    assert "executorch" not in available_backends()
    assert not BACKENDS["executorch"].available()
    err = BACKENDS["executorch"].unavailable_error()
    assert isinstance(err, BackendUnavailableError)
    assert "torch" in str(err) and "edgecart[executorch]" in str(err)


def test_executorch_is_listed_when_it_can_load():
    pytest.importorskip("torch")
    pytest.importorskip("executorch.runtime")
    assert "executorch" in available_backends()


def test_loading_executorch_without_torch_names_torch(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailableError, match=r"torch.*pip install 'edgecart\[executorch\]'"):
        load(tiny_bundle, "executorch", precision="fp32")
    assert load(tiny_bundle).backend.name != "executorch"  # auto picks an engine that can load


def test_auto_does_not_import_torch_to_open_another_engine(tiny_bundle):
    probe = ("import sys; from edgecart.runtime import load; s = load(sys.argv[1]); "
             "print(s.backend.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(tiny_bundle)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    name, torch_loaded = out.stdout.split()
    assert name != "executorch" and torch_loaded == "False"
