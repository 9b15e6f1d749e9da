"""Per-platform backend preference: recorded in the manifest, followed by ``backend="auto"``."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from edgecart.runtime import ManifestError, load, open_bundle, select
from edgecart.runtime.preference import (
    DEFAULT_ORDER,
    bump_version,
    platform_key,
    preferred_order,
    record_preference,
    with_preference,
)


def test_platform_names_are_normalised():
    assert platform_key("AMD64") == "x86_64" and platform_key("arm64") == "aarch64"
    assert platform_key("aarch64") == "aarch64" and platform_key("x86_64") == "x86_64"


def test_versions_are_bumped():
    assert bump_version("0.1.0") == "0.1.1" and bump_version("2") == "3" and bump_version("1.0-rc") == "1.0-rc.1"


def test_default_order_without_a_preference(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    assert m.backend_preference is None
    assert preferred_order(m) == DEFAULT_ORDER == ("litert", "onnxruntime", "executorch")
    art, be = select(m)
    assert (be.name, art.precision) == ("litert", "int8")


def test_auto_follows_the_preference_of_this_platform_only(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    here = with_preference(m, ["litert"])
    assert preferred_order(here) == ("litert", "onnxruntime", "executorch")
    art, be = select(here)
    assert (be.name, art.format, art.precision) == ("litert", "tflite", "int8")
    ort = with_preference(m, ["onnxruntime"])
    assert [(b.name, a.precision) for a, b in [select(ort)]] == [("onnxruntime", "int8")]
    other = "aarch64" if platform_key() != "aarch64" else "x86_64"
    elsewhere = with_preference(m, ["executorch", "litert"], machine=other)
    assert preferred_order(elsewhere) == DEFAULT_ORDER
    assert preferred_order(elsewhere, other) == ("executorch", "litert", "onnxruntime")
    assert select(elsewhere)[1].name == "litert"


def test_bad_preferences_are_refused(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    with pytest.raises(ManifestError, match="unknown backends"):
        with_preference(m, ["tensorrt"])
    with pytest.raises(ManifestError, match="distinct"):
        with_preference(m, ["litert", "litert"])


def test_record_writes_a_verified_new_version_that_load_follows(bundle_copy, tmp_path):
    import jsonschema

    before = open_bundle(bundle_copy).manifest
    out = tmp_path / "preferred"
    path, new = record_preference(bundle_copy, ["litert", "onnxruntime"], measured={"p50_ms": {"litert": 0.1}},
                                  out=out)
    assert path == out and new.version == bump_version(before.version)
    reread = open_bundle(out).manifest  # strict verification of every file against the rewritten manifest
    assert reread.backend_preference[platform_key()] == ["litert", "onnxruntime"]
    assert reread.backend_preference["measured"][platform_key()]["p50_ms"] == {"litert": 0.1}
    assert load(out).backend.name == "litert"
    assert open_bundle(bundle_copy).manifest.version == before.version  # the source is left alone
    schema = json.loads(resources.files("edgecart.runtime").joinpath("manifest.schema.json").read_text())
    jsonschema.validate(json.loads((out / "manifest.json").read_text()), schema)
    with pytest.raises(ManifestError, match="already exists"):
        record_preference(bundle_copy, ["litert"], out=out)
    path, again = record_preference(bundle_copy, ["executorch"], machine="aarch64")  # in place
    assert path == bundle_copy and open_bundle(bundle_copy).manifest.backend_preference == {"aarch64": ["executorch"]}


def test_prefer_command_measures_and_records(bundle_copy, capsys):
    from edgecart.cli import main

    assert main(["prefer", str(bundle_copy), "--iterations", "30", "--rounds", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "recorded for" in printed
    m = open_bundle(bundle_copy).manifest
    order = m.backend_preference[platform_key()]
    assert set(order) <= {"onnxruntime", "litert", "executorch"} and len(order) >= 2
    measured = m.backend_preference["measured"][platform_key()]
    p50 = [measured["p50_ms"][b] for b in order]  # fastest first (the manifest's JSON sorts keys)
    assert set(measured["p50_ms"]) == set(order) and p50 == sorted(p50)
    assert load(bundle_copy).backend.name == order[0]


def test_record_refuses_an_out_inside_the_bundle(bundle_copy):
    from edgecart.runtime import OutputPathError

    before = open_bundle(bundle_copy).manifest
    with pytest.raises(OutputPathError, match="inside the bundle"):
        record_preference(bundle_copy, ["litert"], out=bundle_copy / "v2")
    assert open_bundle(bundle_copy).manifest == before  # still whole: nothing was written into it


def test_prefer_says_when_the_new_version_loses_its_signature(bundle_copy, tmp_path, capsys):
    from edgecart.cli import main

    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    assert main(["sign", str(bundle_copy), "--key", str(tmp_path / "k" / "edgecart-signing.key")]) == 0
    capsys.readouterr()
    assert main(["prefer", str(bundle_copy), "--order", "litert,onnxruntime"]) == 0
    err = capsys.readouterr().err
    assert "unsigned" in err and "edgecart sign" in err, err
    assert open_bundle(bundle_copy).manifest.signature is None


@pytest.mark.parametrize("plat", ["measured", "", "../../etc", "x86 64", "a" * 65])
def test_a_platform_that_is_not_a_machine_name_is_refused(tiny_bundle, plat):
    m = open_bundle(tiny_bundle).manifest
    with pytest.raises(ManifestError, match="platform"):
        with_preference(m, ["litert"], machine=plat)


def test_prefer_command_refuses_an_empty_order_and_a_bad_platform(bundle_copy, capsys, monkeypatch):
    from edgecart.cli import main

    monkeypatch.setattr("edgecart.cli.prefer_cmd.measure",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("measured")))
    before = (bundle_copy / "manifest.json").read_bytes()
    assert main(["prefer", str(bundle_copy), "--order", ""]) == 2
    assert "--order" in capsys.readouterr().err
    assert main(["prefer", str(bundle_copy), "--order", "litert", "--platform", "measured"]) == 2
    assert "platform" in capsys.readouterr().err
    assert (bundle_copy / "manifest.json").read_bytes() == before
    other = "aarch64" if platform_key() != "aarch64" else "x86_64"
    assert main(["prefer", str(bundle_copy), "--order", "litert", "--platform", other]) == 0
    assert f"'auto' on {other} now tries" in capsys.readouterr().out
