"""A bounded, seeded fuzz run of the bundle loader: 300 mutations of a real bundle directory, its manifest and its
archive (byte flips, cuts, insertions, deletions, JSON-aware edits, tar-header edits). ``open_bundle`` must return a
verified bundle or raise an EdgecartError — never anything else — and must never accept a changed model or golden
file. Crashers found once are kept under fixtures/bundle_crashers/ and replayed on every run."""

from __future__ import annotations

import copy
import gzip
import json
import random
import shutil
import traceback
from pathlib import Path

import pytest
from edgecart.runtime import EdgecartError, open_bundle
from edgecart.runtime.archive import pack_bundle

N_CASES = 300
SEED = 20261129
CRASHERS = Path(__file__).parent / "fixtures" / "bundle_crashers"

ODD_VALUES = [None, True, False, -1, 0, 1.5, 2**64, -(2**63), 1e308, "", "../x", "/etc/passwd", "a/../../x", [], {},
              [1.7], [True], "A" * 5000, {"kind": "x"}, [[[[[[]]]]]], "\u202e", "models/tiny.fp32.onnx", 10**18]


def _nodes(doc, path=()):
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes | None:
    """A changed copy of ``data`` (None = delete the file)."""
    b = bytearray(data)
    op = rng.choice(["flip", "flip-many", "cut", "append", "insert", "zero-chunk", "dup-chunk", "delete", "empty"])
    n = len(b)
    if op == "delete":
        return None
    if op == "empty" or n == 0:
        return b"" if n else b"\0"
    if op == "flip":
        b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == "flip-many":
        for _ in range(rng.randint(2, 16)):
            b[rng.randrange(n)] ^= rng.randrange(1, 256)
    elif op == "cut":
        del b[rng.randrange(n):]
    elif op == "append":
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif op == "insert":
        i = rng.randrange(n)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == "zero-chunk":
        i, k = rng.randrange(n), rng.randint(1, 512)
        b[i:i + k] = bytes(len(b[i:i + k]))
    elif op == "dup-chunk":
        i = rng.randrange(n)
        b[i:i] = b[i:i + rng.randint(1, 256)]
    return bytes(b) if bytes(b) != data else bytes(b) + b"\0"


def _mutate_manifest(rng: random.Random, text: bytes) -> bytes:
    if rng.random() < 0.3:
        out = _mutate_bytes(rng, text)
        return out if out is not None else b""
    doc = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(_nodes(doc)[1:])
        node = doc
        for k in where[:-1]:
            node = node[k]
        r = rng.random()
        if r < 0.2 and isinstance(node, dict):
            del node[where[-1]]
        elif r < 0.3 and isinstance(node, dict):
            node[f"unknown_{rng.randrange(100)}"] = rng.choice(ODD_VALUES)
        elif r < 0.4 and isinstance(node, list):
            node.append(copy.deepcopy(node[where[-1]]))
        else:
            node[where[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return json.dumps(doc).encode()


def _mutate_archive(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.4:
        return _mutate_bytes(rng, data) or b""
    raw = bytearray(gzip.decompress(data))  # edit the tar stream itself (headers included), then recompress
    for _ in range(rng.randint(1, 4)):
        block = rng.randrange(len(raw) // 512)
        i = block * 512 + rng.choice([rng.randrange(512), rng.randrange(100), 124 + rng.randrange(12),
                                      156, 345 + rng.randrange(10)])  # anywhere, name, size, type, prefix
        raw[i] = rng.randrange(256)
    return gzip.compress(bytes(raw), mtime=0)


def _outcome(path: Path) -> str:
    """'ok', 'typed' (an EdgecartError), or raise AssertionError with the traceback of anything else."""
    try:
        open_bundle(path)
    except EdgecartError:
        return "typed"
    except Exception:  # noqa: BLE001 - the point of the test: anything untyped is a finding
        raise AssertionError(traceback.format_exc()) from None
    return "ok"


@pytest.fixture(scope="module")
def fuzz_home(tiny_bundle, tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(tiny_bundle, home / "tiny")
    archive = pack_bundle(home / "tiny", home / "tiny.tar.gz").path
    return home, archive


def test_bounded_fuzz_of_the_bundle_loader(fuzz_home, tmp_path):
    home, archive = fuzz_home
    bundle = home / "tiny"
    pristine = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    archive_bytes = archive.read_bytes()
    counts = {"ok": 0, "typed": 0}
    crashers: list[str] = []
    for i in range(N_CASES):
        rng = random.Random(SEED * 1000 + i)
        target = rng.choice([*sorted(pristine), "manifest.json", "manifest.json", "<archive>", "<archive>"])
        if target == "<archive>":
            case, data = tmp_path / f"case-{i}.tar.gz", _mutate_archive(rng, archive_bytes)
            case.write_bytes(data)
        else:
            case = bundle
            f = bundle / target
            data = (_mutate_manifest(rng, pristine[target]) if target == "manifest.json"
                    else _mutate_bytes(rng, pristine[target]))
            if data is None:
                f.unlink()
            else:
                f.write_bytes(data)
        try:
            got = _outcome(case)
        except AssertionError as exc:
            keep = tmp_path / f"crasher-{i}-{target.replace('/', '_').strip('<>')}"
            keep.write_bytes(data or b"")
            crashers.append(f"case {i} ({target}), input kept at {keep}:\n{exc}")
            got = "crash"
        finally:
            if target != "<archive>":
                (bundle / target).write_bytes(pristine[target])
            else:
                case.unlink()
        if got == "ok" and target not in ("manifest.json", "<archive>"):
            crashers.append(f"case {i}: a changed {target} was accepted")
        counts[got] = counts.get(got, 0) + 1
    assert not crashers, ("the bundle loader let untyped errors out or accepted a change (copy the input into "
                          f"{CRASHERS} to keep it as a regression case):\n" + "\n".join(crashers[:5]))
    assert counts["typed"] > N_CASES * 0.8, counts
    assert _outcome(bundle) == "ok"


def _crasher_files() -> list[Path]:
    return sorted(p for p in CRASHERS.iterdir() if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("path", _crasher_files(), ids=lambda p: p.name)
def test_kept_crashers_are_typed_errors_now(bundle_copy, tmp_path, path):
    """Inputs that once escaped as untyped errors (RecursionError, ValueError, UnicodeEncodeError, ...)."""
    if path.name.endswith(".tar.gz"):
        target = tmp_path / path.name
        shutil.copy(path, target)
    else:  # a manifest.json
        (bundle_copy / "manifest.json").write_bytes(path.read_bytes())
        target = bundle_copy
    assert _outcome(target) == "typed"
