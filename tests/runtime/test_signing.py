"""Signing arguments: a missing bundle is a bundle error (exit 2, as ``verify`` reports it), not a signature problem;
keys are accepted as a PEM file path, PEM bytes, or PEM text in a ``str``."""

from __future__ import annotations

import json
import tarfile

import pytest
from edgecart.runtime import BundleError, SignatureError, load, open_bundle

pytest.importorskip("cryptography")

from edgecart.runtime.signing import (  # noqa: E402
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
)


def test_signing_a_missing_bundle_says_no_such_bundle(tmp_path, keys):
    with pytest.raises(BundleError, match="no such bundle") as err:
        sign_bundle(tmp_path / "nope", keys[0])
    assert not isinstance(err.value, SignatureError)


def test_cli_sign_of_a_missing_bundle_exits_2_like_verify(tmp_path, keys, capsys):
    from edgecart.cli import main

    missing = str(tmp_path / "nope")
    assert main(["verify", missing]) == 2
    capsys.readouterr()
    assert main(["sign", missing, "--key", str(keys[0])]) == 2
    err = capsys.readouterr().err
    assert "no such bundle" in err and "archive" not in err
    assert main(["sign", missing, "--key", str(keys[0]), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 2 and "no such bundle" in doc["error"]["message"]


def test_signing_an_archive_is_a_bundle_error_that_says_to_sign_the_folder(bundle_copy, tmp_path, keys):
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle_copy, arcname="b")
    with pytest.raises(BundleError, match="sign a bundle directory") as err:
        sign_bundle(archive, keys[0])
    assert not isinstance(err.value, SignatureError)


def test_keys_given_as_pem_text_in_a_str(bundle_copy, keys):
    priv, pub = keys
    pub_text, priv_text = pub.read_text(), priv.read_text()
    assert pub_text.startswith("-----BEGIN")
    assert key_id(load_public_key(pub_text)) == key_id(load_public_key(pub)) == key_id(load_public_key(str(pub)))
    assert key_id(load_public_key("\n" + pub_text)) == key_id(load_public_key(pub.read_bytes()))
    assert key_id(load_private_key(priv_text).public_key()) == key_id(load_public_key(pub))
    with pytest.raises(SignatureError, match="not signed"):  # the text was read as a key, not as a file name
        open_bundle(bundle_copy, public_key=pub_text)
    sign_bundle(bundle_copy, priv_text)
    assert load(bundle_copy, "onnxruntime", precision="fp32", public_key=pub_text).manifest.signature is not None
    assert open_bundle(bundle_copy, public_key=str(pub)).manifest.signature is not None  # a str path still works


def test_garbled_pem_text_is_a_typed_error():
    with pytest.raises(SignatureError, match="not a readable PEM public key"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SignatureError, match="not a readable unencrypted PEM private key"):
        load_private_key("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n")
