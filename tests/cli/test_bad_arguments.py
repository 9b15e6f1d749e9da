"""Bad arguments on the bundle commands end in a typed error (exit 2, one line that says the fix), never a traceback;
a signature asked for is checked on every path, the emulated target's included."""

from __future__ import annotations

import pytest
from edgecart.cli import main


@pytest.mark.parametrize("argv, says", [
    (["bench", "{b}", "--target", "bogus"], "is not one of: local"),
    (["bench", "{b}", "--threads", "0"], "threads must be"),
    (["bench", "{b}", "--iterations", "0"], "iterations must be"),
    (["check", "{b}", "--target", "qemu-arm64", "--cpu", "bad name"], "QEMU CPU model"),
    (["check", "{b}", "--cpu", "cortex-a53"], "--target qemu-arm64"),
])
def test_bad_arguments_are_typed_errors(tiny_bundle, capsys, argv, says):
    code = main([a.replace("{b}", str(tiny_bundle)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err


def test_emulated_check_checks_the_signature_first(tiny_bundle, tmp_path, capsys):
    # The bundle is unsigned: with a key, the check must refuse it before any emulator is looked for or run.
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    capsys.readouterr()
    code = main(["check", str(tiny_bundle), "--target", "qemu-arm64", "--cpu", "cortex-a53",
                 "--public-key", str(tmp_path / "k" / "edgecart-signing.pub")])
    err = capsys.readouterr().err
    assert code == 3 and "not signed" in err, err


def test_bench_checks_the_signature_before_anything_runs(tiny_bundle, tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    capsys.readouterr()
    code = main(["bench", str(tiny_bundle), "--iterations", "1", "--quiet", "--out", str(tmp_path / "o"),
                 "--public-key", str(tmp_path / "k" / "edgecart-signing.pub")])
    err = capsys.readouterr().err
    assert code == 2 and "not signed" in err, err
    assert not (tmp_path / "o").exists()  # refused before any measurement or report


@pytest.mark.parametrize("where", ["the-bundle-itself", "a-file"])
def test_bench_out_is_checked_before_anything_runs(bundle_copy, tmp_path, capsys, where):
    out = bundle_copy if where == "the-bundle-itself" else tmp_path / "f"
    if where == "a-file":
        out.write_text("x")
    code = main(["bench", str(bundle_copy), "--iterations", "1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and ("inside the bundle" in err or "is a file" in err), err
    from edgecart.runtime import open_bundle

    open_bundle(bundle_copy)  # still whole: no report was written into it


def test_a_bundle_is_not_written_inside_another(bundle_copy, tiny_model, tiny_inputs):
    from edgecart.exporters import BundleWriter
    from edgecart.runtime import OutputPathError, open_bundle

    with pytest.raises(OutputPathError, match="inside the bundle"):
        BundleWriter(bundle_copy / "models" / "sub", name="x", version="0.1.0", task="generic",
                     inputs=tiny_model.io_spec.inputs, outputs=tiny_model.io_spec.outputs)
    open_bundle(bundle_copy)
    assert not (bundle_copy / "models" / "sub").exists()


def test_check_fails_a_bundle_without_artifacts(bundle_copy, capsys):
    import json

    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["artifacts"] = []
    kept = {f["path"] for f in m["files"] if f.get("role") != "model"}
    for f in list(m["files"]):
        if f["path"] not in kept:
            (bundle_copy / f["path"]).unlink()
    m["files"] = [f for f in m["files"] if f["path"] in kept]
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    code = main(["check", str(bundle_copy)])
    out = capsys.readouterr()
    assert code == 1 and "no artifact" in (out.out + out.err), out


@pytest.mark.parametrize("argv, usage", [
    (["demo", "--bogus-flag"], "usage: edgecart demo"),
    (["verify", "b", "--bogus-flag"], "usage: edgecart verify"),
    (["build", "text", "--csv", "x.csv", "--label-column", "t", "--out", "o", "--bogus-flag"],
     "usage: edgecart build text"),
])
def test_an_unknown_flag_shows_the_usage_of_its_own_command(capsys, argv, usage):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and usage in err and "--bogus-flag" in err, err


def test_search_and_recommend_take_k_like_search_text(capsys):
    from edgecart.cli import build_parser

    p = build_parser()
    assert p.parse_args(["search", "x.png", "--bundle", "b", "-k", "3"]).k == 3
    assert p.parse_args(["recommend", "--bundle", "b", "--history", "a", "-k", "3"]).k == 3
