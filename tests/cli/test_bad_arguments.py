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
