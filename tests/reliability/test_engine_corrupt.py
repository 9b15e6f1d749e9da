"""Model files corrupted AND re-hashed in the manifest: the bundle's integrity check passes, so this tests what the
engines (and edgecart's pre-checks in front of them) do with a malformed or altered model.

Every case runs in a child process, so an engine that aborts the process (ExecuTorch did, on a corrupted ``.pte``)
fails its case instead of the test run. The cases of one artifact share one child; when the child dies, the case it
was running is recorded as a crash and a new child carries on with the next case.

Each case loads the artifact with ``self_test=True`` (the golden check an app without a signature key runs at
start-up) and runs one fresh input. It must end in a typed ``EdgecartError`` or in outputs that agree with the
intact artifact within its recorded parity tolerance. Anything else is counted: untyped errors, crashes, wrong
successes — and the counts must be zero.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import BACKEND_OF, FORMATS

SUFFIX = {"executorch": ".pte", "onnx": ".onnx", "tflite": ".tflite"}
ARTIFACTS = [(fmt, prec) for fmt in FORMATS for prec in ("fp32", "int8")]

CHILD = r"""
import json, sys
import numpy as np
from edgecart.runtime import EdgecartError, load

cases = json.loads(sys.argv[1])
x = np.load(sys.argv[2])
for case in cases:
    print("START " + case["id"], flush=True)
    try:
        s = load(case["dir"], case["backend"], artifact=case["artifact"], self_test=True)
        y = s.run(x)
        np.save(case["dir"] + "/../" + case["id"] + ".out.npy", np.concatenate([v.ravel() for v in y.values()]))
        verdict = "ran"
    except EdgecartError as e:
        verdict = "typed " + type(e).__name__
    except BaseException as e:
        verdict = "untyped " + type(e).__name__ + ": " + str(e).replace("\n", " ")[:200]
    print("END " + case["id"] + " " + verdict, flush=True)
"""


def _flip(offset):
    def f(b: bytes) -> bytes:
        out = bytearray(b)
        i = min(offset if offset >= 0 else len(b) + offset, len(b) - 1)
        out[i] ^= 0xFF
        return bytes(out)
    return f


def _flip_at(fraction):
    return lambda b: _flip(int(len(b) * fraction))(b)


def _zero(start_fraction, length):
    def f(b: bytes) -> bytes:
        s = int(len(b) * start_fraction)
        s = min(s, max(0, len(b) - length))
        return b[:s] + bytes(min(length, len(b) - s)) + b[s + length:]
    return f


#: name -> bytes transform. Truncations (0, 1, n/2, n-1 bytes kept), single-byte flips in the header (root offset,
#: file identifier, extended header) and through the body, zeroed regions.
CORRUPTIONS = {
    "truncate-to-0": lambda b: b"",
    "truncate-to-1": lambda b: b[:1],
    "truncate-to-half": lambda b: b[:len(b) // 2],
    "truncate-last-byte": lambda b: b[:-1],
    **{f"flip-byte-{o}": _flip(o) for o in (0, 3, 4, 5, 7, 8, 12, 16, 24, 32, 48, 64, 100)},
    **{f"flip-at-{int(fr * 100)}pct": _flip_at(fr) for fr in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)},
    "flip-last-byte": _flip(-1),
    "flip-byte-n-8": _flip(-8),
    "zero-first-64": _zero(0.0, 64),
    "zero-middle-256": _zero(0.5, 256),
    "zero-last-64": _zero(1.0, 64),
}


def _field_pos(buf: memoryview, table: int, slot: int) -> int | None:
    """Absolute position of field ``slot`` of a flatbuffer table, or None when the field is absent."""
    vt = table - struct.unpack_from("<i", buf, table)[0]
    if 4 + 2 * slot >= struct.unpack_from("<H", buf, vt)[0]:
        return None
    fo = struct.unpack_from("<H", buf, vt + 4 + 2 * slot)[0]
    return table + fo if fo else None


def _pte_locations(data: bytes) -> dict[str, int | None]:
    """Byte positions of fields that made ExecuTorch crash or exhaust memory (found by fuzzing): a planned buffer
    size, an XNNPACK constant key (logged when not found: invalid UTF-8 aborted the process), a tensor dimension
    (segfault) and a convolution's padding (a 16 GB allocation)."""
    from edgecart.runtime.backends._flatbuffers import field_target, read_scalar, vector_items

    buf = memoryview(data)
    root = struct.unpack_from("<I", buf, 0)[0]
    plan = vector_items(buf, field_target(buf, root, 1))[0]
    sizes = field_target(buf, plan, 8)
    blob = data.find(b"XH00") - 4  # the XNNPACK payload: XH00 header, then its graph flatbuffer
    fb = blob + struct.unpack_from("<I", buf, blob + 10)[0]
    g = buf[fb:]
    root_g = struct.unpack_from("<I", g, 0)[0]
    key = next(t for c in vector_items(g, field_target(g, root_g, 8))
               if (t := field_target(g, c, 2)) is not None and struct.unpack_from("<I", g, t)[0] > 2)
    candidates = []  # tensors backed by constant data (weights), float or quantised
    for v in vector_items(g, field_target(g, root_g, 2)):
        t = field_target(g, v, 1)
        if read_scalar(g, v, 0, "B") == 2:
            t = field_target(g, t, 0)
        if read_scalar(g, t, 3, "I") and field_target(g, t, 2) is not None:
            candidates.append((struct.unpack_from("<I", g, field_target(g, t, 2))[0] != 2, len(candidates), t))
    tensor = min(candidates)[2]  # a 2-d one when there is one (the fuzzer's segfault was a 2-d weight)
    conv = next((field_target(g, n, 1) for n in vector_items(g, field_target(g, root_g, 1))
                 if read_scalar(g, n, 0, "B") in (7, 13)), None)  # Conv2d, DepthwiseConv2d
    pad = _field_pos(g, conv, 0) if conv is not None else None
    return {"planned-buffer": sizes + 4 + 8,  # buffer 1 (buffer 0 is reserved)
            "xnnpack-constant-key": fb + key + 4,
            "tensor-dim": fb + field_target(g, tensor, 2) + 4 + 4,  # dims[1]
            "conv-padding": None if pad is None else fb + pad}


def _pte_crafted(data: bytes) -> dict[str, bytes]:
    """Single-field corruptions of a .pte aimed at what crashed ExecuTorch before the pre-check existed (measured
without it, 8 GiB cap: the constant key aborted the process, the dimension segfaulted, the padding asked for 16 GB,
the planned buffer for 1 TiB)."""
    at = _pte_locations(data)

    def put(pos: int, raw: bytes) -> bytes:
        return data[:pos] + raw + data[pos + len(raw):]

    out = {"planned-buffer-1TiB": put(at["planned-buffer"], struct.pack("<q", 1 << 40)),
           "xnnpack-constant-key-not-utf8": put(at["xnnpack-constant-key"], b"\xff\xfe"),
           "tensor-dim-16M": put(at["tensor-dim"] + 2, bytes([data[at["tensor-dim"] + 2] ^ 0xFF]))}
    if at["conv-padding"] is not None:
        out["conv-padding-16M"] = put(at["conv-padding"], struct.pack("<I", 0x00FF0001))
    return out


def _rehash(bundle: Path, rel: str, data: bytes) -> None:
    (bundle / rel).write_bytes(data)
    m = json.loads((bundle / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == rel:
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _cap_memory() -> None:
    """A child that a corrupted model makes allocate without bound fails (and is counted as a crash) at 8 GiB of
    address space instead of calling the machine's OOM killer."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _run_cases(cases: list[dict], x_path: Path, timeout: float = 240) -> dict[str, str]:
    """Run ``cases`` in child processes; a child that dies marks its current case as a crash, the rest go on."""
    verdicts: dict[str, str] = {}
    todo = list(cases)
    while todo:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(todo), str(x_path)], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_cap_memory)
        current = None
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                current = line[6:]
            elif line.startswith("END "):
                cid, verdict = line[4:].split(" ", 1)
                verdicts[cid] = verdict
                current = None
        if proc.returncode == 0 and current is None:
            break
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        crashed = current if current is not None else next((c["id"] for c in todo if c["id"] not in verdicts), None)
        if crashed is None:
            break
        verdicts[crashed] = f"crash rc={proc.returncode}: {tail}"
        todo = [c for c in todo if c["id"] not in verdicts]
    return verdicts


@pytest.fixture(scope="module")
def reference(tiny_bundle, tmp_path_factory):
    """One fresh input and each intact artifact's output for it."""
    from edgecart.runtime import load

    work = tmp_path_factory.mktemp("corrupt")
    x = np.random.default_rng(11).standard_normal((1, 1, 28, 28)).astype(np.float32)
    np.save(work / "x.npy", x)
    outs = {}
    for fmt, prec in ARTIFACTS:
        s = load(tiny_bundle, BACKEND_OF[fmt], precision=prec)
        outs[(fmt, prec)] = (np.concatenate([v.ravel() for v in s.run(x).values()]), s.artifact.parity)
    return work, outs


def _judge(verdict: str, out_file: Path, want: np.ndarray, parity) -> str:
    """typed / correct / untyped / crash / wrong: what one case ended in."""
    if verdict.startswith("typed "):
        return "typed"
    if verdict.startswith("untyped "):
        return "untyped"
    if verdict.startswith("crash"):
        return "crash"
    got = np.load(out_file).astype(np.float64)
    from edgecart.runtime.golden import sample_agreement

    d, cos, finite = sample_agreement(got, want.astype(np.float64))
    tol_abs = parity.max_abs_tolerance if parity.max_abs_tolerance is not None else np.inf
    ok = finite and d <= tol_abs and cos >= (parity.min_cosine if parity.min_cosine is not None else -1)
    return "correct" if ok else "wrong"


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_and_rehashed_models_end_typed_or_correct(fmt, tiny_bundle, reference):
    """Per format, both precisions: every corruption, plus the file replaced by the other formats' models."""
    from edgecart.runtime import open_bundle

    work, outs = reference
    manifest = open_bundle(tiny_bundle).manifest
    cases, expect = [], {}
    for prec in ("fp32", "int8"):
        art = next(a for a in manifest.artifacts if a.format == fmt and a.precision == prec)
        original = (tiny_bundle / art.path).read_bytes()
        others = {f"swapped-with-{a.format}": (tiny_bundle / a.path).read_bytes() for a in manifest.artifacts
                  if a.format != fmt and a.precision == prec}
        crafted = _pte_crafted(original) if fmt == "executorch" else {}
        transforms = {**{k: f(original) for k, f in CORRUPTIONS.items()}, **others, **crafted}
        for name, data in transforms.items():
            cid = f"{fmt}-{prec}-{name}"
            d = work / cid
            shutil.copytree(tiny_bundle, d)
            _rehash(d, art.path, data)
            cases.append({"id": cid, "dir": str(d), "backend": BACKEND_OF[fmt], "artifact": art.name})
            expect[cid] = outs[(fmt, prec)]
    verdicts = _run_cases(cases, work / "x.npy")
    tally: dict[str, list[str]] = {"typed": [], "correct": [], "untyped": [], "crash": [], "wrong": []}
    for c in cases:
        want, parity = expect[c["id"]]
        kind = _judge(verdicts.get(c["id"], "crash (no verdict)"), work / f"{c['id']}.out.npy", want, parity)
        tally[kind].append(f"{c['id']}: {verdicts.get(c['id'])}")
    summary = {k: len(v) for k, v in tally.items()}
    print(f"{fmt}: {len(cases)} cases -> {summary}")
    assert len(cases) == 2 * (len(CORRUPTIONS) + 2) + (8 if fmt == "executorch" else 0)
    assert not tally["crash"], tally["crash"]
    assert not tally["untyped"], tally["untyped"]
    assert not tally["wrong"], tally["wrong"]
    assert summary["typed"] >= len(cases) // 2  # most corruptions are refused, not silently survived


def test_prechecks_refuse_every_single_byte_flip_they_can_see_without_untyped_errors(tiny_bundle):
    """In-process, exhaustive over the header and sampled over the body: the structural checks either accept a
    flipped file or refuse it with ModelLoadError — never another exception."""
    from edgecart.runtime import ModelLoadError, open_bundle
    from edgecart.runtime.backends._precheck import check_onnx, check_pte, check_tflite

    checks = {"executorch": check_pte, "tflite": check_tflite, "onnx": check_onnx}
    manifest = open_bundle(tiny_bundle).manifest
    for art in manifest.artifacts:
        data = (tiny_bundle / art.path).read_bytes()
        checks[art.format](data, art.path)  # the intact file passes
        offsets = list(range(min(256, len(data)))) + list(range(256, len(data), 97))
        refused = 0
        for o in offsets:
            b = bytearray(data)
            b[o] ^= 0xFF
            try:
                checks[art.format](bytes(b), art.path)
            except ModelLoadError as exc:
                assert art.path in str(exc)
                refused += 1
        if art.format == "executorch":
            assert refused > len(offsets) // 4, (art.name, refused, len(offsets))
