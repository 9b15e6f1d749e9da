"""Emulated ARM64 target: run edgecart's runtime on a bundle inside an arm64 Debian userland under QEMU user mode,
and compare with this machine's (x86-64) results.

It answers one question: *do the ARM kernels of the engines compute what the x86 ones do, on this bundle?* For each
artifact (ONNX Runtime and LiteRT through edgecart's runtime in the guest's Python; ExecuTorch through a small C++
runner, ``scripts/et_runner.cc``, built against the torch-free C++ runtime inside PyPI's aarch64 executorch wheel —
its Python runtime needs torch, whose aarch64 wheel is a CUDA build) and for each emulated CPU model
(``-cpu cortex-a53``, ``neoverse-n1``, ...), it runs

* the bundle's golden inputs, compared with the golden outputs (the tolerance the exporter recorded), and
* a task check: top-10 of 50 search queries (image-search bundles; queries blended from the golden inputs) or of
  50 item histories (recommendation bundles; random histories over the item table), compared with the same code on
  this machine: the largest output difference and the mean share of top-10 items in common.

Results are labelled ``emulated`` and carry parity and agreement, never a latency figure: emulation is 300-400x
slower than a real core and says nothing about speed.

Set-up (cached, idempotent): ``scripts/setup_arm.sh`` (debootstrap of an arm64 minbase with python3, the aarch64
wheels of numpy/onnxruntime/ai-edge-litert). No binfmt_misc registration is needed: the guest Python is started as
``qemu-aarch64 -cpu MODEL -L ROOT ROOT/usr/bin/python3`` (it execs nothing). The runtime package is copied from this
installation into a fresh staging folder each run, so what runs is this checkout's code.

The pieces: :mod:`.qemu_host` (QEMU, the userland, set-up), :mod:`.qemu_probe` (the script that runs in the guest,
and here for the x86 reference), :mod:`.qemu_results` (results, verdicts, reports); this module runs the check and
keeps every public name importable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .jobs import BenchConfigError
from .qemu_host import (
    INSTALL_QEMU,
    MIN_QEMU_MAJOR,
    EmulatorUnavailableError,
    HostStatus,
    default_cache,
    ensure_userland,
    host_status,
    setup_script,
)
from .qemu_probe import TOP_K, _jsonable, probe
from .qemu_results import (
    FP32_TOLERANCE,
    MIN_TOP10_AGREEMENT,
    TARGET_NAME,
    EmulatedCheck,
    EmulatedResult,
    format_check,
    judge,
    to_bench_results,
)

DEFAULT_CPUS = ("cortex-a53", "neoverse-n1")
TASK_SAMPLES = 50
#: Backends whose aarch64 Python wheel runs in the guest.
GUEST_BACKENDS = ("onnxruntime", "litert")
EXECUTORCH_NOTE = ("ExecuTorch's Python runtime cannot run in the guest (PyPI's aarch64 executorch wheel needs torch, "
                   "whose aarch64 wheel is a CUDA build); its C++ runner was not built: install "
                   "g++-aarch64-linux-gnu and run scripts/setup_arm.sh again")
#: ScalarType codes of ExecuTorch's runner output -> numpy dtypes.
_ET_DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}


def check(bundle: str | os.PathLike[str], cpus: tuple[str, ...] = DEFAULT_CPUS, *, cache: Path | None = None,
          artifacts: tuple[str, ...] | None = None, setup: bool = False, timeout_s: float = 1800.0,
          progress: Any = None, public_key: Any = None) -> EmulatedCheck:
    """Run the bundle's artifacts under each emulated CPU model and compare with this machine (see module doc).

    ``public_key``: refuse a bundle not signed by this key (checked before anything else is looked at or run)."""
    import numpy as np
    from edgecart.runtime import open_bundle
    from edgecart.runtime.backends import backend_for_format

    t0 = time.perf_counter()
    path = Path(bundle).resolve()
    b = open_bundle(path, public_key=public_key)
    if not cpus or any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", c) for c in cpus):
        raise BenchConfigError(f"cpus must be QEMU CPU model names such as {','.join(DEFAULT_CPUS)}, got {cpus}")
    st = ensure_userland(cache, setup=setup)
    m = b.manifest
    arts = [a for a in m.artifacts if artifacts is None or a.name in artifacts]
    if not arts:
        raise BenchConfigError(f"no artifact of {m.name!r} matches {artifacts}; it has {[a.name for a in m.artifacts]}")
    skipped: list[tuple[Any, str]] = []
    runnable = []
    native: list[tuple[str, str]] = []  # (artifact, backend) run by a native aarch64 runner (ExecuTorch)
    for a in arts:
        be = backend_for_format(a.format).name
        if be in GUEST_BACKENDS:
            runnable.append((a.name, be))
        elif be == "executorch" and st.et_runner is not None:
            native.append((a.name, be))
        else:
            skipped.append((a, be))
    results: list[EmulatedResult] = []
    for a, be in skipped:
        results += [EmulatedResult(c, a.name, be, a.precision, "skipped", EXECUTORCH_NOTE if be == "executorch"
                                   else f"backend {be} has no aarch64 wheel in the guest") for c in cpus]
    with tempfile.TemporaryDirectory(prefix="edgecart-qemu-") as tmp:
        stage = Path(tmp)
        _stage_runtime(stage)
        task = _task_inputs(b, stage / "task.npy")
        host = probe(str(path), runnable + native, str(stage / "task.npy") if task else None)
        for cpu in cpus:
            if progress:
                progress(f"emulated {cpu}: {len(runnable) + len(native)} artifacts (300-400x slower than native)")
            guest = _run_guest(st, stage, path, runnable, bool(task), cpu, timeout_s) if runnable else {}
            for a_name, _ in native:
                guest[a_name] = _run_et_runner(st, stage, b, a_name, task, cpu, timeout_s)
            for a_name, be in runnable + native:
                art = m.artifact(a_name)
                env = dict(guest.get("_environment", {}))
                if be == "executorch":
                    env = {"machine": "aarch64", "runner": "scripts/et_runner.cc (ExecuTorch C++ runtime)"}
                results.append(judge(cpu, art, be, guest.get(a_name, {}), host.get(a_name, {}), task, env, np))
    order = {c: i for i, c in enumerate(cpus)}
    results.sort(key=lambda r: (order.get(r.cpu, 0), [a.name for a in arts].index(r.artifact)))
    return EmulatedCheck(str(path), TARGET_NAME, st.runner, tuple(cpus), tuple(results), time.perf_counter() - t0)


def _stage_runtime(stage: Path) -> None:
    """Copy this installation's torch-free runtime package (and this probe) into ``stage``."""
    import edgecart.runtime as rt

    from . import qemu_probe

    pkg = stage / "edgecart"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""edgecart runtime only (staged for an emulated target)."""\n')
    shutil.copytree(Path(rt.__file__).parent, pkg / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(Path(qemu_probe.__file__), stage / "probe.py")


def _task_inputs(bundle: Any, out: Path) -> str | None:
    """Write the task check's 50 inputs; return the task name, or None when the bundle's task has no top-10 check
    (then golden-derived inputs are still compared raw)."""
    import numpy as np

    m = bundle.manifest
    rng = np.random.default_rng(0)
    if m.task == "recommendations":
        n_items = int(len(bundle.load_npy(m.catalog["items"])))
        max_len = m.preprocessing.max_len
        hist = np.full((TASK_SAMPLES, max_len), -1, np.int64)
        for i in range(TASK_SAMPLES):
            k = int(rng.integers(1, max_len + 1))
            hist[i, :k] = rng.choice(np.arange(1, n_items + 1), size=min(k, n_items), replace=False)[:k]
        np.save(out, hist)
        return "recommendations"
    golden = m.golden
    if golden is None or len(m.inputs) != 1:
        return None
    g = bundle.load_npy(golden.inputs[m.inputs[0].name]).astype(np.float32)
    n = len(g)
    i, j = rng.integers(0, n, TASK_SAMPLES), rng.integers(0, n, TASK_SAMPLES)
    a = rng.uniform(0.2, 0.8, TASK_SAMPLES).astype(np.float32).reshape(-1, *([1] * (g.ndim - 1)))
    q = a * g[i] + (1 - a) * g[j] + rng.normal(0, 0.05 * float(g.std() or 1), (TASK_SAMPLES, *g.shape[1:]))
    np.save(out, q.astype(np.float32))
    return "image_search" if m.task == "image_search" else "outputs"


def _run_et_runner(st: HostStatus, stage: Path, b: Any, name: str, task: str | None, cpu: str,
                   timeout_s: float) -> dict[str, Any]:
    """ExecuTorch under emulation: the native aarch64 runner on the golden and task inputs (prepared here exactly as
    a Session would feed them); the same fields as :func:`probe` gives for the Python engines."""
    import numpy as np
    from edgecart.runtime import Recommender, load
    from edgecart.runtime.golden import compare
    from edgecart.runtime.recommender import _top_k
    from edgecart.runtime.search import read_catalog

    try:
        m = b.manifest
        s = load(b, "executorch", artifact=name, threads=1)
        gin = {k: b.load_npy(p) for k, p in m.golden.inputs.items()}
        n_g = len(next(iter(gin.values())))
        samples = [{k: v[i] for k, v in gin.items()} for i in range(n_g)]
        task_arr = np.load(stage / "task.npy") if task else None
        known_lists: list[list[int]] = []
        if task == "recommendations":
            rec = Recommender(b, "executorch", threads=1, artifact=name)
            for h in task_arr:
                known_lists.append([int(i) for i in h if i > 0])
                samples.append({m.inputs[0].name: rec._pad(known_lists[-1])})
        elif task_arr is not None:
            samples += [{m.inputs[0].name: x} for x in task_arr]
        feeds = [s.prepare(smp) for smp in samples]
        work = stage / f"et-{cpu}-{name}"
        work.mkdir()
        files = []
        for i in range(len(m.inputs)):
            f = work / f"in{i}.bin"
            f.write_bytes(b"".join(np.ascontiguousarray(fd[i]).tobytes() for fd in feeds))
            files.append(str(f))
        cmd = [st.qemu or "qemu-aarch64", "-cpu", cpu, "-L", str(st.root), str(st.et_runner), str(b.path(
            m.artifact(name).path)), str(work), str(len(feeds)), *files]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        if proc.returncode != 0:
            return {"error": f"et_runner exited {proc.returncode}: {proc.stderr.strip()[-800:]}"}
        codes = [int(line.split()[3]) for line in proc.stdout.splitlines() if line.startswith("output ")]
        outs = {}
        for j, spec in enumerate(m.outputs):
            y = np.fromfile(work / f"output_{j}.bin", _ET_DTYPES[codes[j]]).reshape(len(feeds), *spec.shape)
            outs[spec.name] = y.astype(spec.dtype) if np.dtype(spec.dtype).kind == "f" else y
        it = iter(range(n_g))
        agree = compare(lambda _x: {k: v[next(it)] for k, v in outs.items()}, gin,
                        {k: b.load_npy(p) for k, p in m.golden.outputs.items()}, [o.name for o in m.outputs])
        r: dict[str, Any] = {"golden": {"max_abs_diff": agree.max_abs_diff, "cosine": agree.cosine,
                                        "samples": agree.samples}}
        if task_arr is not None:
            first = outs[m.outputs[0].name][n_g:]
            r["outputs"] = [o.reshape(-1).tolist() for o in first]
            if task == "image_search":
                cat = read_catalog(b)
                idx, _ = cat.top_k(np.stack([o.reshape(-1) for o in first]).astype(np.float32), TOP_K)
                r["top"] = [[_jsonable(cat.ids[i]) for i in row] for row in idx]
            elif task == "recommendations":
                tops = []
                for o, known in zip(first, known_lists, strict=True):
                    # ranked as Recommender.recommend ranks: item table, item-to-item blend, seen items out
                    sc = rec.output_scores(o.reshape(1, -1), known)
                    tops.append([_jsonable(rec.items[i - 1]) for i in _top_k(sc, TOP_K)])
                r["top"] = tops
        return r
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s under emulation"}
    except Exception as exc:  # reported per artifact
        return {"error": f"{type(exc).__name__}: {exc}"}


def _run_guest(st: HostStatus, stage: Path, bundle: Path, runnable: list[tuple[str, str]], task: bool, cpu: str,
               timeout_s: float) -> dict[str, Any]:
    out = stage / f"guest-{cpu}.json"
    py = st.root / "usr" / "bin" / "python3"
    cmd = [st.qemu or "qemu-aarch64", "-cpu", cpu, "-L", str(st.root), str(py), str(stage / "probe.py"), "probe",
           str(bundle), json.dumps(runnable), str(stage / "task.npy") if task else "-", str(out)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(stage), "LANG": "C.UTF-8", "PYTHONPATH": f"/opt/site:{stage}",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {a: {"error": f"timed out after {timeout_s:.0f} s under emulation"} for a, _ in runnable}
    if proc.returncode != 0 or not out.is_file():
        msg = (proc.stderr or proc.stdout).strip()[-1500:]
        if "Invalid CPU model" in msg or "unable to find CPU model" in msg:
            raise BenchConfigError(f"QEMU does not know CPU model {cpu!r} (see 'qemu-aarch64 -cpu help')")
        return {a: {"error": f"guest exited {proc.returncode}: {msg}"} for a, _ in runnable}
    return json.loads(out.read_text())


def bench_results(bundle: Path, cpus: str, config: Any, progress: bool = True) -> list[Any]:
    """The harness's ``--target qemu-arm64[:CPU,CPU]``: the check over the artifacts ``config`` selects."""
    from edgecart.runtime import open_bundle

    from .jobs import matching

    arts = tuple(a.name for a, _ in matching(open_bundle(bundle).manifest.artifacts, config))
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if progress else None
    return to_bench_results(check(bundle, parse_cpus(cpus), artifacts=arts, timeout_s=config.timeout_s,
                                  progress=say))


def parse_cpus(text: str | None) -> tuple[str, ...]:
    return DEFAULT_CPUS if not text else tuple(c.strip() for c in text.split(",") if c.strip())


def cli_check(bundle: str, target: str, cpus: str | None, out: str | None = None, as_json: bool = False,
              public_key: Any = None) -> int:
    """``edgecart check BUNDLE --target qemu-arm64 [--cpu a,b] [--json]``: print the results; 0 ok, 1 failed,
    2 unavailable (what to install is said)."""
    def fail(msg: str) -> int:
        if as_json:
            print(json.dumps({"ok": False, "exit_code": 2, "error": {"type": "EmulatorUnavailableError",
                                                                    "message": msg}}, indent=2))
        else:
            print(f"edgecart: {msg}", file=sys.stderr)
        return 2

    if target != TARGET_NAME:
        return fail(f"check target {target!r} is not one of: local, {TARGET_NAME}")
    try:
        c = check(bundle, parse_cpus(cpus), progress=lambda s: print(s, file=sys.stderr, flush=True),
                  public_key=public_key)
    except EmulatorUnavailableError as exc:
        return fail(f"{TARGET_NAME} unavailable: {exc}")
    code = 0 if c.ok else 1
    if as_json:
        print(json.dumps({"ok": c.ok, "exit_code": code, **c.to_dict()}, indent=2))
    else:
        print(format_check(c))
    if out:
        Path(out).write_text(json.dumps(c.to_dict(), indent=2) + "\n")
    return code


__all__ = ["DEFAULT_CPUS", "EXECUTORCH_NOTE", "FP32_TOLERANCE", "GUEST_BACKENDS", "INSTALL_QEMU", "MIN_QEMU_MAJOR",
           "MIN_TOP10_AGREEMENT", "TARGET_NAME", "TASK_SAMPLES", "TOP_K", "EmulatedCheck", "EmulatedResult",
           "EmulatorUnavailableError", "HostStatus", "bench_results", "check", "cli_check", "default_cache",
           "ensure_userland", "format_check", "host_status", "judge", "parse_cpus", "probe", "setup_script",
           "to_bench_results"]
