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


def test_corrupt_bundle_exits_2_with_the_fix(bundle_copy, capsys):
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


def _json(capsys):
    import json

    return json.loads(capsys.readouterr().out)


def test_json_output_of_verify_info_check_pack(tiny_bundle, tmp_path, capsys):
    assert main(["verify", str(tiny_bundle), "--json"]) == 0
    v = _json(capsys)
    assert v["ok"] and v["files_verified"] == 8 and v["signed"] is False and v["exit_code"] == 0
    assert main(["info", str(tiny_bundle), "--json"]) == 0
    i = _json(capsys)
    assert i["inputs"][0] == {"name": "image", "dtype": "float32", "shape": [1, 1, 28, 28], "layout": "NCHW"}
    assert len(i["artifacts"]) == 6 and all(a["parity"] for a in i["artifacts"])
    assert main(["check", str(tiny_bundle), "--threads", "1", "--json"]) == 0
    c = _json(capsys)
    assert c["ok"] and c["failed"] == 0 and {r["status"] for r in c["artifacts"]} <= {"ok", "skipped"}
    assert main(["pack", str(tiny_bundle), "--dest", str(tmp_path / "t.tar.gz"), "--formats", "onnx", "--json"]) == 0
    p = _json(capsys)
    assert p["artifacts"] == ["tiny.fp32.onnx", "tiny.int8.onnx"] and len(p["sha256"]) == 64


def test_check_fails_an_artifact_without_recorded_parity(bundle_copy, capsys):
    import json

    mpath = bundle_copy / "manifest.json"
    m = json.loads(mpath.read_text())
    m["artifacts"][0]["parity"] = None
    mpath.write_text(json.dumps(m))
    assert main(["check", str(bundle_copy), "--threads", "1"]) == 1
    assert "no recorded parity" in capsys.readouterr().out.lower()
    assert main(["check", str(bundle_copy), "--threads", "1", "--json"]) == 1
    c = _json(capsys)
    assert c["ok"] is False and c["failed"] == 1 and c["exit_code"] == 1


def test_check_fails_an_artifact_out_of_tolerance(bundle_copy, capsys):
    import json

    mpath = bundle_copy / "manifest.json"
    m = json.loads(mpath.read_text())
    art = next(a for a in m["artifacts"] if a["format"] == "onnx")
    art["parity"]["max_abs_tolerance"] = 0.0
    art["parity"]["min_cosine"] = 1.5  # impossible
    mpath.write_text(json.dumps(m))
    assert main(["check", str(bundle_copy), "--threads", "1"]) == 1
    assert "OUT OF TOLERANCE" in capsys.readouterr().out


def test_invalid_bundle_json_error_and_exit_2(bundle_copy, capsys):
    (bundle_copy / "models" / "extra.bin").write_bytes(b"x")
    for cmd in ("verify", "info", "check", "pack"):
        assert main([cmd, str(bundle_copy), "--json"]) == 2
        out = _json(capsys)
        assert out["ok"] is False and out["error"]["type"] == "UnlistedFileError" and "extra.bin" in \
            out["error"]["message"]
    assert main(["verify", str(bundle_copy), "--lenient"]) == 0


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "0 ok" in out and "3 signature" in out
