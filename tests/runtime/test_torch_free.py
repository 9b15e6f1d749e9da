"""``import edgecart.runtime`` needs numpy and one engine, never torch nor the other edgecart packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import sys, numpy as np
import edgecart.runtime as rt
import edgecart.runtime.text
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'executorch', 'litert_torch', 'tokenizers')
             or m.startswith(('edgecart.exporters', 'edgecart.benchmarks', 'edgecart.vision', 'edgecart.recs',
                              'edgecart.models', 'edgecart.data', 'edgecart.cli', 'edgecart.text')))
assert not bad, bad
s = rt.load(sys.argv[1], 'onnxruntime', precision='fp32')
y = s.run(np.zeros((1, 1, 28, 28), np.float32))['embedding']
from edgecart.runtime.golden import check_golden
a = check_golden(s)
assert a.max_abs_diff <= s.artifact.parity.max_abs_tolerance, a
print('ok', y.shape, sorted(rt.available_backends()))
"""


def test_import_pulls_in_no_torch(tiny_bundle):
    """In this environment torch is installed: importing the runtime must still not load it."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(tiny_bundle)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok (1, 16)")


def test_runs_in_a_venv_with_only_numpy_and_onnxruntime(tiny_bundle, tmp_path):
    """A second venv holding numpy, onnxruntime and edgecart (installed without dependencies) — no torch at all."""
    venv = tmp_path / "slim"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    src = tmp_path / "src"
    src.mkdir()  # build from a copy so setuptools' build/ and egg-info land in tmp, not the checkout
    for name in ("pyproject.toml", "README.md", "sdk", "exporters", "runtime", "benchmarks"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    build = subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    import numpy
    import onnxruntime

    inst = subprocess.run([*pip, "--python", str(py), "install", "-q", "--no-deps",
                           *[str(w) for w in wheels.glob("edgecart-*.whl")],
                           f"numpy=={numpy.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
                          capture_output=True, text=True, timeout=600)
    if inst.returncode != 0 and "Could not find a version" in inst.stderr:
        pytest.skip("numpy/onnxruntime wheels not reachable from this machine: " + inst.stderr[-200:])
    assert inst.returncode == 0, inst.stderr
    site = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert site.returncode != 0  # really no torch there
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(py), "-c", PROBE, str(tiny_bundle)], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok (1, 16) ['onnxruntime']"
