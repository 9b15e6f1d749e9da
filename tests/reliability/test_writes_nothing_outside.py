"""Running a bundle writes nothing outside the paths the user gave: ONNX Runtime 1.32 keeps a telemetry database and
a device id under ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY is set, which edgecart.runtime does by default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_running_a_bundle_on_onnxruntime_leaves_home_untouched(tiny_bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    code = ("import sys; from edgecart.runtime import load\n"
            "load(sys.argv[1], 'onnxruntime', self_test=True)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tiny_bundle)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert written == [], written


def test_drawing_a_report_leaves_home_untouched(tmp_path):
    # matplotlib keeps a font cache under ~/.cache/matplotlib (or ~/.matplotlib) unless MPLCONFIGDIR is set
    pytest.importorskip("matplotlib")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    code = ("import sys; from pathlib import Path; from edgecart.vision.report import plot\n"
            "plot({'artifacts': [], 'models': [], 'name': 'x'}, Path(sys.argv[1]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.png")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "s.png").stat().st_size > 0
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], written


def test_exporting_with_torch_leaves_the_temporary_folder_as_it_was(tmp_path):
    # torch.export imports inductor's config, which makes <TMPDIR>/torchinductor_<user> unless told another folder
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["TMPDIR"] = str(tmp)
    code = ("import edgecart, torch\n"
            "torch.export.export(torch.nn.Linear(2, 2), (torch.ones(1, 2),))\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in tmp.iterdir()) == []
