"""The bundle commands parse, call the library and map typed errors to exit code 2."""

from __future__ import annotations

import pytest
from edgecart.cli import main


def test_verify_info_check(tiny_bundle, capsys):
    assert main(["verify", str(tiny_bundle)]) == 0
    assert "files verified" in capsys.readouterr().out
    assert main(["info", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert "tiny.int8.tflite" in out and "image: float32[1, 1, 28, 28] NCHW" in out
    assert main(["check", str(tiny_bundle), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 6 and "OUT OF TOLERANCE" not in out


def test_tampered_bundle_exits_2_with_the_fix(bundle_copy, capsys):
    target = next((bundle_copy / "models").iterdir())
    target.write_bytes(target.read_bytes() + b"\0")
    assert main(["verify", str(bundle_copy)]) == 2
    assert "re-export" in capsys.readouterr().err


def test_pack_writes_archive(bundle_copy, tmp_path, capsys):
    assert main(["pack", str(bundle_copy), "--dest", str(tmp_path / "b.tar.gz")]) == 0
    assert (tmp_path / "b.tar.gz").stat().st_size > 0
    assert main(["verify", str(tmp_path / "b.tar.gz")]) == 0


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
