"""Ed25519 signatures over a bundle's manifest.

What a bundle proves, and what it does not:

* **Integrity (always).** The manifest lists every file with its size and sha256, and the runtime refuses a file that
  differs. This catches *accidental* corruption — a cut download, a flipped bit, a file from another build. It does
  not catch a deliberate edit: whoever can change a model file can rewrite its hash in the manifest too.
* **Authenticity (with a key).** ``edgecart sign`` adds an Ed25519 signature over the manifest's canonical digest,
  which covers every field and therefore every file's hash. When the app (``load(..., public_key=...)``) or the CLI
  (``--public-key``) gives the publisher's public key, an unsigned bundle, a bundle signed by another key, and any
  edited manifest or file are refused with :class:`~edgecart.runtime.errors.SignatureError` or
  :class:`~edgecart.runtime.errors.IntegrityError`.

The canonical digest is sha256 over ``DOMAIN`` followed by the manifest without its ``signature`` field, as JSON with
sorted keys, no spaces, ASCII escapes — computed from the parsed manifest, so formatting changes do not matter.
Needs the ``cryptography`` package (``pip install 'edgecart[sign]'``) only when signing or checking a signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import BundleError, SignatureError, SigningUnavailableError
from .manifest import Manifest, Signature

DOMAIN = b"edgecart-manifest-signature-v1\n"
PRIVATE_KEY_NAME = "edgecart-signing.key"
PUBLIC_KEY_NAME = "edgecart-signing.pub"
_INSTALL = "pip install 'edgecart[sign]'"

PublicKeyLike = str | os.PathLike[str] | bytes | Any


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningUnavailableError(f"signing and signature checks need the 'cryptography' package; {_INSTALL}") \
            from None
    return serialization, ed25519


def canonical_bytes(manifest: Manifest) -> bytes:
    """The manifest minus ``signature`` as canonical JSON (sorted keys, no whitespace, ASCII)."""
    data = manifest.to_dict()
    data.pop("signature", None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def manifest_digest(manifest: Manifest) -> bytes:
    """sha256 of :data:`DOMAIN` + :func:`canonical_bytes` — what a signature signs."""
    return hashlib.sha256(DOMAIN + canonical_bytes(manifest)).digest()


def generate_keypair(out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into ``out_dir``: ``edgecart-signing.key`` (private, PKCS#8 PEM, mode 0600)
    and ``edgecart-signing.pub`` (public, PEM). Keep the private key off shared disks; ship the public one with apps."""
    serialization, ed25519 = _crypto()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    for p in (priv_path, pub_path):
        if p.exists() and not overwrite:
            raise SignatureError(f"{p} already exists; choose another --out or remove it (a new key cannot verify "
                                 "bundles signed with the old one)")
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(priv_path, priv, 0o600)
    _write_new(pub_path, pub, 0o644)
    return priv_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_KEY_FILE_MAX = 64 * 1024


def _read_key_bytes(key: Any, what: str) -> bytes | None:
    """The PEM bytes of ``key``: given as bytes, as PEM text in a str (it starts with ``-----BEGIN``), or read from
    the file a path names. None for any other type."""
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):  # the PEM itself, not a file name
        return key.encode("utf-8")
    if isinstance(key, (str, os.PathLike)):
        p = Path(key)
        try:
            if not stat.S_ISREG(p.stat().st_mode):
                raise SignatureError(f"{p}: not a regular file; pass the {what} key file 'edgecart keygen' wrote")
            with open(p, "rb") as f:  # capped read: a device or a growing file cannot exhaust memory
                data = f.read(_KEY_FILE_MAX + 1)
            if len(data) > _KEY_FILE_MAX:
                raise SignatureError(f"{p}: too large for an Ed25519 {what} key file")
            return data
        except OSError as exc:
            raise SignatureError(f"{p}: cannot read the {what} key ({exc.strerror or exc})") from None
    return None


def load_private_key(key: Any) -> Any:
    """An Ed25519 private key from a PEM file path, PEM bytes or text, or a ``cryptography`` key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    data = _read_key_bytes(key, "private")
    if data is None:
        raise SignatureError(f"expected a private key file path, PEM bytes or PEM text, got {type(key).__name__}")
    try:
        obj = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not a readable unencrypted PEM private key ({exc}); create one with "
                             "'edgecart keygen --out DIR'") from None
    if not isinstance(obj, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"the private key is {type(obj).__name__}, not Ed25519; create one with "
                             "'edgecart keygen --out DIR'")
    return obj


def load_public_key(key: PublicKeyLike) -> Any:
    """An Ed25519 public key from a PEM file path, PEM bytes or text (a str starting with ``-----BEGIN``), or a
    ``cryptography`` key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    data = _read_key_bytes(key, "public")
    if data is None:
        raise SignatureError(f"expected a public key file path, PEM bytes or PEM text, got {type(key).__name__}")
    try:
        obj = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not a readable PEM public key ({exc}); pass the .pub file 'edgecart keygen' wrote") \
            from None
    if not isinstance(obj, ed25519.Ed25519PublicKey):
        raise SignatureError(f"the public key is {type(obj).__name__}, not Ed25519")
    return obj


def key_id(public_key: Any) -> str:
    """sha256 (hex) of the raw 32-byte public key: names the key in the manifest's signature."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_manifest(manifest: Manifest, private_key: Any) -> Manifest:
    """``manifest`` with a fresh signature by ``private_key`` (a path, PEM bytes or key object)."""
    key = load_private_key(private_key)
    # sign what a reader will parse: the manifest after a JSON round trip (ints in float fields become floats, ...)
    unsigned = Manifest.from_json(manifest.replace(signature=None).to_json())
    sig = key.sign(manifest_digest(unsigned))
    return unsigned.replace(signature=Signature("ed25519", key_id(key.public_key()),
                                                base64.b64encode(sig).decode("ascii")))


def verify_manifest_signature(manifest: Manifest, public_key: PublicKeyLike) -> None:
    """Raise :class:`SignatureError` unless ``manifest`` carries a valid signature by ``public_key``."""
    key = load_public_key(public_key)
    sig = manifest.signature
    if sig is None:
        raise SignatureError(f"bundle {manifest.name!r} is not signed, and a public key was given: refusing it. Sign "
                             "it with 'edgecart sign BUNDLE --key PRIVATE', or get the signed release")
    want = key_id(key)
    if sig.key_id != want:
        raise SignatureError(f"bundle {manifest.name!r} is signed by key {sig.key_id[:16]}…, not by the given key "
                             f"{want[:16]}…; use the publisher's public key, or the bundle is not theirs")
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(sig.raw(), manifest_digest(manifest))
    except InvalidSignature:
        raise SignatureError(f"bundle {manifest.name!r}: the signature does not match the manifest — the manifest "
                             "(or a file hash in it) was changed after signing; do not use this bundle") from None


def sign_bundle(bundle_dir: str | os.PathLike[str], private_key: Any) -> Manifest:
    """Verify the bundle directory (strict), sign its manifest and write it back atomically. Returns the manifest."""
    from .bundle import verify, write_manifest

    root = Path(bundle_dir)
    if not root.exists():  # a bundle problem (exit 2 in the CLI), as open_bundle reports it, not a signature one
        raise BundleError(f"{root}: no such bundle; pass the bundle directory an export wrote")
    if not root.is_dir():
        raise BundleError(f"{root}: sign a bundle directory (then pack it), not an archive or other file")
    manifest = verify(root, strict=True)
    signed = sign_manifest(manifest, private_key)
    write_manifest(root, signed)
    return signed
