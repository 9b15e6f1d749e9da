"""Signatures: a bundle edited with its hashes rewritten is refused when a public key is given (and, honestly, is
not detected without one); unsigned, other-key and garbled signatures are typed errors; the CLI maps them to exit 3."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from edgecart.runtime import EdgecartError, ManifestError, SignatureError, SigningUnavailableError, load, open_bundle
from edgecart.runtime.signing import (
    generate_keypair,
    key_id,
    load_public_key,
    manifest_digest,
    sign_bundle,
    verify_manifest_signature,
)


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory):
    return generate_keypair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture()
def signed(tiny_bundle, tmp_path, keys):
    dst = tmp_path / "signed"
    shutil.copytree(tiny_bundle, dst)
    sign_bundle(dst, keys[0])
    return dst


def _edit_manifest(bundle, fn):
    p = bundle / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2))


def _rehash(bundle, rel):
    def fn(m):
        data = (bundle / rel).read_bytes()
        for f in m["files"]:
            if f["path"] == rel:
                f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    _edit_manifest(bundle, fn)


def test_keygen_writes_a_private_key_only_the_owner_reads(keys):
    priv, pub = keys
    assert (priv.stat().st_mode & 0o777) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(SignatureError, match="already exists"):
        generate_keypair(priv.parent)


def test_signed_bundle_verifies_with_its_key(signed, keys):
    priv, pub = keys
    m = open_bundle(signed, public_key=pub).manifest
    assert m.signature.key_id == key_id(load_public_key(pub))
    assert load(signed, "onnxruntime", public_key=pub.read_bytes()).manifest.name == "tiny"
    assert open_bundle(signed).manifest.signature is not None  # no key: integrity only, still opens


TAMPER = {
    # (what is changed, which file is edited); hashes and sizes are rewritten to match each time
    "model-bytes-rehashed": "models/tiny.fp32.onnx",
    "swapped-model-rehashed": "models/tiny.int8.tflite",
    "golden-output-rehashed": "golden/output.embedding.npy",
}


@pytest.mark.parametrize("case", TAMPER)
def test_edited_file_with_rewritten_hash_is_refused_with_a_key(signed, keys, case):
    _, pub = keys
    rel = TAMPER[case]
    f = signed / rel
    if case == "swapped-model-rehashed":
        f.write_bytes((signed / "models/tiny.fp32.tflite").read_bytes())
    else:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
    _rehash(signed, rel)
    # integrity alone cannot see this — the honest limit of an unsigned check
    assert open_bundle(signed).manifest.name == "tiny"
    with pytest.raises(SignatureError, match="changed after signing"):
        open_bundle(signed, public_key=pub)
    with pytest.raises(SignatureError):
        load(signed, "onnxruntime", public_key=pub)


MANIFEST_EDITS = {
    "looser-parity-tolerance": lambda m: m["artifacts"][0]["parity"].__setitem__("max_abs_tolerance", 1.0),
    "renamed": lambda m: m.__setitem__("name", "evil"),
    "extra-artifact-dropped": lambda m: m.__setitem__("artifacts", m["artifacts"][:-1]),
    "preprocessing-changed": lambda m: m["preprocessing"].__setitem__("mean", [0.0]),
    "quality-inflated": lambda m: m["quality"].__setitem__("recall@10", 1.0),
}


@pytest.mark.parametrize("case", MANIFEST_EDITS)
def test_any_manifest_edit_breaks_the_signature(signed, keys, case):
    _, pub = keys
    _edit_manifest(signed, MANIFEST_EDITS[case])
    with pytest.raises(SignatureError):
        open_bundle(signed, public_key=pub)


def test_reformatting_the_manifest_keeps_the_signature(signed, keys):
    """The signature covers the parsed manifest, not its whitespace or key order."""
    _, pub = keys
    _edit_manifest(signed, lambda m: None)  # rewritten with another indent
    p = signed / "manifest.json"
    p.write_text(json.dumps(json.loads(p.read_text()), sort_keys=False, separators=(",", ":")))
    assert open_bundle(signed, public_key=pub).manifest.name == "tiny"


SIGNATURE_FAULTS = {
    "unsigned": (lambda m: m.__setitem__("signature", None), SignatureError, "not signed"),
    "signature-removed": (lambda m: m.pop("signature"), SignatureError, "not signed"),
    "other-key-id": (lambda m: m["signature"].__setitem__("key_id", "0" * 64), SignatureError, "signed by key"),
    "zeroed-value": (lambda m: m["signature"].__setitem__("value", "A" * 86 + "=="), SignatureError, "does not match"),
    "garbled-base64": (lambda m: m["signature"].__setitem__("value", "!" * 88), ManifestError, "base64"),
    "short-value": (lambda m: m["signature"].__setitem__("value", "AAAA"), ManifestError, "88 base64"),
    "other-algorithm": (lambda m: m["signature"].__setitem__("algorithm", "rsa"), ManifestError, "algorithm"),
    "signature-not-object": (lambda m: m.__setitem__("signature", "trust me"), ManifestError, "signature"),
}


@pytest.mark.parametrize("case", SIGNATURE_FAULTS)
def test_signature_faults_are_typed_errors(signed, keys, case):
    _, pub = keys
    edit, err, match = SIGNATURE_FAULTS[case]
    _edit_manifest(signed, edit)
    with pytest.raises(err, match=match):
        open_bundle(signed, public_key=pub)


def test_bundle_signed_by_another_key_is_refused(signed, other_keys):
    with pytest.raises(SignatureError, match="not by the given key"):
        open_bundle(signed, public_key=other_keys[1])


def test_signed_archive_checks_the_signature_before_extracting(signed, keys, other_keys, tmp_path):
    from edgecart.runtime.archive import pack_bundle

    res = pack_bundle(signed, tmp_path / "signed.tar.gz")
    assert open_bundle(res.path, public_key=keys[1]).manifest.signature is not None
    with pytest.raises(SignatureError):
        open_bundle(res.path, public_key=other_keys[1])


BAD_KEYS = {
    "missing-file": lambda tmp: tmp / "nope.pub",
    "not-pem": lambda tmp: b"hello",
    "private-key-as-public": None,
    "wrong-type": lambda tmp: 42,
    "a-directory": lambda tmp: tmp,
    "too-large": lambda tmp: (tmp / "big.pub").write_bytes(b"-" * (64 * 1024 + 1)) and tmp / "big.pub",
}


@pytest.mark.parametrize("case", BAD_KEYS)
def test_bad_public_key_is_a_signature_error(signed, keys, tmp_path, case):
    key = keys[0].read_bytes() if case == "private-key-as-public" else BAD_KEYS[case](tmp_path)
    with pytest.raises(SignatureError):
        open_bundle(signed, public_key=key)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_key_file_is_refused_without_reading_it_all(signed):
    # /dev/zero stats as 0 bytes: a size check alone would let read_bytes() run until memory ran out. A child process
    # with capped memory, so that a regression fails this test instead of exhausting the machine.
    code = ("import sys; from edgecart.runtime import open_bundle, SignatureError\n"
            "try: open_bundle(sys.argv[1], public_key='/dev/zero')\n"
            "except SignatureError as e: print('refused:', e); sys.exit(0)\n"
            "sys.exit(1)")

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    r = subprocess.run([sys.executable, "-c", code, str(signed)], capture_output=True, text=True, timeout=120,
                       preexec_fn=cap)
    assert r.returncode == 0 and "not a regular file" in r.stdout, r.stdout + r.stderr[-2000:]


def test_digest_is_stable_and_covers_every_file_hash(signed):
    m = open_bundle(signed).manifest
    d = manifest_digest(m)
    assert d == manifest_digest(m.replace(signature=None)) and len(d) == 32
    f0 = m.files[0]
    changed = m.replace(files=(f0.__class__(f0.path, "0" * 64, f0.bytes, f0.role), *m.files[1:]))
    assert manifest_digest(changed) != d


def test_without_cryptography_the_error_names_the_extra(signed, keys, monkeypatch):
    for mod in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(SigningUnavailableError, match=r"pip install 'edgecart\[sign\]'"):
        open_bundle(signed, public_key=keys[1])
    assert open_bundle(signed).manifest.name == "tiny"  # without a key, nothing needs cryptography


def test_cli_keygen_sign_verify_and_exit_codes(tiny_bundle, tmp_path, capsys):
    from edgecart.cli import main

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    assert main(["keygen", "--out", str(tmp_path / "k"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    pub = out["public_key"]
    assert main(["verify", str(bundle), "--public-key", pub]) == 3  # unsigned
    assert "not signed" in capsys.readouterr().err
    assert main(["sign", str(bundle), "--key", out["private_key"]]) == 0
    capsys.readouterr()
    assert main(["verify", str(bundle), "--public-key", pub, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] and res["signed"] and res["signature_checked"] and res["key_id"] == out["key_id"]
    f = bundle / "models/tiny.int8.onnx"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    _rehash(bundle, "models/tiny.int8.onnx")
    assert main(["verify", str(bundle)]) == 0  # integrity only: the re-hashed edit is not visible
    assert "unsigned" not in capsys.readouterr().out
    assert main(["verify", str(bundle), "--public-key", pub, "--json"]) == 3
    res = json.loads(capsys.readouterr().out)
    assert res["exit_code"] == 3 and res["error"]["type"] == "SignatureError"
    assert main(["info", str(bundle), "--public-key", pub]) == 3


def test_verify_manifest_signature_accepts_key_objects(signed, keys):
    m = open_bundle(signed).manifest
    verify_manifest_signature(m, load_public_key(keys[1]))
    with pytest.raises(EdgecartError):
        verify_manifest_signature(m.replace(signature=None), load_public_key(keys[1]))
