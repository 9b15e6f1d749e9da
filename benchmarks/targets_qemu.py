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

This file doubles as the guest's probe script (``python targets_qemu.py probe ...``): its top level imports only the
standard library and ``edgecart.runtime.errors``, so it runs in the guest with nothing but numpy, an engine and the
copied runtime.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecart.runtime.errors import EdgecartError

TARGET_NAME = "qemu-arm64"
DEFAULT_CPUS = ("cortex-a53", "neoverse-n1")
MIN_QEMU_MAJOR = 10
TASK_SAMPLES = 50
TOP_K = 10
FP32_TOLERANCE = 1e-4
MIN_TOP10_AGREEMENT = 0.95
#: Backends whose aarch64 Python wheel runs in the guest.
GUEST_BACKENDS = ("onnxruntime", "litert")
EXECUTORCH_NOTE = ("ExecuTorch's Python runtime cannot run in the guest (PyPI's aarch64 executorch wheel needs torch, "
                   "whose aarch64 wheel is a CUDA build); its C++ runner was not built: install "
                   "g++-aarch64-linux-gnu and run scripts/setup_arm.sh again")
#: ScalarType codes of ExecuTorch's runner output -> numpy dtypes.
_ET_DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}
INSTALL_QEMU = ("install QEMU user mode >= 10: on Debian 12 add the bookworm-backports suite and run "
                "'apt-get -t bookworm-backports install qemu-user' (or: scripts/setup_arm.sh --install-tools)")


class EmulatorUnavailableError(EdgecartError):
    """The emulated target cannot run here; the message says what to install or run."""


def default_cache() -> Path:
    return Path(os.environ.get("EDGECART_ARM64_CACHE") or Path.home() / ".cache" / "edgecart" / "arm64")


def setup_script() -> Path:
    return Path(__file__).resolve().parents[1] / "scripts" / "setup_arm.sh"


@dataclass(frozen=True)
class HostStatus:
    """What this machine offers for the emulated target."""

    qemu: str | None
    qemu_version: str | None
    binfmt: str
    root: Path
    userland_ready: bool
    problem: str | None
    et_runner: Path | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def runner(self) -> str:
        return f"qemu-aarch64 {self.qemu_version} -L (direct, no exec); binfmt_misc aarch64: {self.binfmt}"


def host_status(cache: Path | None = None) -> HostStatus:
    """Check qemu-aarch64 (version >= 10), binfmt_misc and the cached userland; ``problem`` says what is missing."""
    root = (cache or default_cache()) / "root"
    binfmt = _binfmt()
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        return HostStatus(None, None, binfmt, root, False, f"qemu-aarch64 not found; {INSTALL_QEMU}")
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HostStatus(qemu, None, binfmt, root, False, f"{qemu} --version failed ({exc}); {INSTALL_QEMU}")
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out)
    version = ".".join(g for g in m.groups() if g) if m else "?"
    if m is None or int(m.group(1)) < MIN_QEMU_MAJOR:
        return HostStatus(qemu, version, binfmt, root, False,
                          f"qemu-aarch64 {version} is older than {MIN_QEMU_MAJOR} (QEMU 7.x leaks the host's "
                          f"/proc/cpuinfo and gives wrong int8 results); {INSTALL_QEMU}")
    ready = (root.parent / ".stamp-userland").is_file() and (root.parent / ".stamp-site").is_file() \
        and (root / "usr" / "bin" / "python3").exists()
    problem = None if ready else (f"no arm64 userland at {root}; run: bash {setup_script()} {root.parent} "
                                  "(as root once; ~1-2 min, ~430 MB)")
    runner = root.parent / "executorch" / "et_runner"
    return HostStatus(qemu, version, binfmt, root, ready, problem, runner if runner.is_file() else None)


def _binfmt() -> str:
    base = Path("/proc/sys/fs/binfmt_misc")
    if not (base / "status").exists():
        return "binfmt_misc not mounted"
    for p in base.glob("qemu-aarch64*"):
        try:
            return "registered" if p.read_text().startswith("enabled") else "registered, disabled"
        except OSError:
            return "unreadable"
    return "not registered"


def ensure_userland(cache: Path | None = None, *, setup: bool = False) -> HostStatus:
    """Return the host status, running ``scripts/setup_arm.sh`` first when ``setup`` and the userland is missing.
    Raises :class:`EmulatorUnavailableError` (saying what to install) when the target cannot run."""
    cache = cache or default_cache()
    st = host_status(cache)
    if not st.ok and setup and st.qemu_version and st.problem and st.problem.startswith("no arm64 userland"):
        script = setup_script()
        if not script.is_file():
            raise EmulatorUnavailableError(f"{st.problem} ({script} is not in this installation: take it from the "
                                           "edgecart repository)")
        proc = subprocess.run(["bash", str(script), str(cache)], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise EmulatorUnavailableError(f"{script} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        st = host_status(cache)
    if not st.ok:
        raise EmulatorUnavailableError(st.problem or "emulated target unavailable")
    return st


# --- results ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatedResult:
    """One artifact on one emulated CPU model. ``origin`` is always ``emulated``; there is no latency field."""

    cpu: str
    artifact: str
    backend: str
    precision: str
    status: str  # ok | failed | skipped
    reason: str | None = None
    golden_max_abs_diff: float | None = None
    golden_cosine: float | None = None
    golden_tolerance: float | None = None
    golden_min_cosine: float | None = None
    golden_ok: bool | None = None
    task: str | None = None
    task_samples: int = 0
    x86_max_abs_diff: float | None = None
    x86_tolerance: float | None = None
    x86_min_cosine: float | None = None
    test_vectors: str | None = None
    top10_agreement: float | None = None
    origin: str = "emulated"
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        head = f"  [{self.cpu}] {self.artifact:<32} {self.backend:<11}"
        if self.status == "skipped" or self.golden_max_abs_diff is None:
            return f"{head} {self.status}: {self.reason}"
        agree = "" if self.top10_agreement is None else f"  top-10 {self.top10_agreement:.1%}"
        agree += "" if self.test_vectors is None else f"  test vectors {self.test_vectors}"
        x86 = "" if self.x86_max_abs_diff is None else f"  vs x86 max|Δ| {self.x86_max_abs_diff:.1e}"
        verdict = "ok" if self.ok else f"FAILED: {self.reason}"
        return (f"{head} golden max|Δ| {self.golden_max_abs_diff:.1e} cos {self.golden_cosine:.6f}{x86}{agree}  "
                f"{verdict} (emulated)")


@dataclass(frozen=True)
class EmulatedCheck:
    """All results of one emulated check, with how it ran and how long the emulation took (not a latency)."""

    bundle: str
    target: str
    runner: str
    cpus: tuple[str, ...]
    results: tuple[EmulatedResult, ...]
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results) and any(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "target": self.target, "origin": "emulated", "runner": self.runner,
                "cpus": list(self.cpus), "wall_s": round(self.wall_s, 1),
                "note": "emulated: parity and top-10 agreement only, no latency figures",
                "results": [r.to_dict() for r in self.results]}


# --- the check ----------------------------------------------------------------------------------------------------


def check(bundle: str | os.PathLike[str], cpus: tuple[str, ...] = DEFAULT_CPUS, *, cache: Path | None = None,
          artifacts: tuple[str, ...] | None = None, setup: bool = False, timeout_s: float = 1800.0,
          progress: Any = None) -> EmulatedCheck:
    """Run the bundle's artifacts under each emulated CPU model and compare with this machine (see module doc)."""
    import numpy as np
    from edgecart.runtime import open_bundle
    from edgecart.runtime.backends import backend_for_format

    t0 = time.perf_counter()
    if not cpus or any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", c) for c in cpus):
        raise ValueError(f"cpus must be QEMU CPU model names such as {','.join(DEFAULT_CPUS)}, got {cpus}")
    st = ensure_userland(cache, setup=setup)
    path = Path(bundle).resolve()
    b = open_bundle(path)
    m = b.manifest
    arts = [a for a in m.artifacts if artifacts is None or a.name in artifacts]
    if not arts:
        raise ValueError(f"no artifact of {m.name!r} matches {artifacts}; it has {[a.name for a in m.artifacts]}")
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
                results.append(_judge(cpu, art, be, guest.get(a_name, {}), host.get(a_name, {}), task, env, np))
    order = {c: i for i, c in enumerate(cpus)}
    results.sort(key=lambda r: (order.get(r.cpu, 0), [a.name for a in arts].index(r.artifact)))
    return EmulatedCheck(str(path), TARGET_NAME, st.runner, tuple(cpus), tuple(results), time.perf_counter() - t0)


def _judge(cpu: str, art: Any, backend: str, guest: dict[str, Any], host: dict[str, Any], task: str | None,
           env: dict[str, Any], np: Any) -> EmulatedResult:
    base = dict(cpu=cpu, artifact=art.name, backend=backend, precision=art.precision, environment=env)
    if "error" in guest:
        return EmulatedResult(status="failed", reason=f"guest: {guest['error']}", **base)
    if "error" in host:
        status = "skipped" if host["error"].startswith("BackendUnavailableError") else "failed"
        return EmulatedResult(status=status, reason=f"no x86 reference here: {host['error']}", **base)
    if "golden" not in guest:
        return EmulatedResult(status="failed", reason="the guest returned no result for this artifact", **base)
    par = art.parity
    g_tol = par.max_abs_tolerance if par is not None else (FP32_TOLERANCE if art.precision == "fp32" else None)
    g_cos = par.min_cosine if par is not None else None
    gd, gc = guest["golden"]["max_abs_diff"], guest["golden"]["cosine"]
    golden_ok = (g_tol is None or gd <= g_tol) and (g_cos is None or gc >= g_cos)
    # vs x86: fp32 within 1e-4; int8 within the gate's tolerance (max|Δ| and/or cosine), 1e-4 when it has none
    x86_tol = FP32_TOLERANCE if art.precision == "fp32" or (g_tol is None and g_cos is None) else g_tol
    x86_cos_min = g_cos if art.precision != "fp32" else None
    reasons = [] if golden_ok else [f"golden outputs out of tolerance (max|Δ| {gd:.2e}, cosine {gc:.6f}; "
                                    f"tolerance {g_tol}, min cosine {g_cos})"]
    x86_diff = x86_cos = agree = None
    n = 0
    if "outputs" in guest and "outputs" in host:
        go, ho = np.asarray(guest["outputs"], np.float64), np.asarray(host["outputs"], np.float64)
        finite = np.isfinite(ho) & np.isfinite(go)
        x86_diff = float(np.max(np.abs(go[finite] - ho[finite]))) if finite.any() else 0.0
        if (np.isfinite(ho) != np.isfinite(go)).any():
            x86_diff = float("inf")
        gz, hz = np.where(finite, go, 0.0), np.where(finite, ho, 0.0)
        den = np.linalg.norm(gz, axis=1) * np.linalg.norm(hz, axis=1)
        x86_cos = float(np.min(np.where(den > 0, (gz * hz).sum(axis=1) / np.maximum(den, 1e-300), 1.0)))
        n = len(go)
        if x86_tol is not None and x86_diff > x86_tol:
            reasons.append(f"outputs differ from x86 by {x86_diff:.2e} > {x86_tol:.0e}")
        if x86_cos_min is not None and x86_cos < x86_cos_min:
            reasons.append(f"cosine with x86 {x86_cos:.6f} < {x86_cos_min}")
    tv = guest.get("test_vectors") or []
    tv_note = None
    if tv:
        def _tv_ok(row: dict[str, Any]) -> bool:
            return bool(row["input_ok"]) and (g_tol is None or row["output_max_abs_diff"] <= g_tol) and (
                g_cos is None or row["output_cosine"] >= g_cos)
        bad = [row["name"] for row in tv if not _tv_ok(row)]
        tv_note = f"{len(tv) - len(bad)}/{len(tv)} ok"
        if bad:
            reasons.append(f"test vectors out of tolerance: {', '.join(bad)}")
    elif "test_vectors_error" in guest:
        tv_note = f"not run: {guest['test_vectors_error']}"
    if task and "top" in guest and "top" in host:
        gt, ht = guest["top"], host["top"]
        agree = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(gt, ht, strict=True)]))
        if agree < MIN_TOP10_AGREEMENT:
            reasons.append(f"top-10 agreement {agree:.1%} < {MIN_TOP10_AGREEMENT:.0%}")
    return EmulatedResult(status="failed" if reasons else "ok", reason="; ".join(reasons) or None,
                          golden_max_abs_diff=gd, golden_cosine=gc, golden_tolerance=g_tol, golden_min_cosine=g_cos,
                          golden_ok=golden_ok, task=task, task_samples=n, x86_max_abs_diff=x86_diff,
                          x86_tolerance=x86_tol, x86_min_cosine=x86_cos, top10_agreement=agree,
                          test_vectors=tv_note, **base)


def _stage_runtime(stage: Path) -> None:
    """Copy this installation's torch-free runtime package (and this probe) into ``stage``."""
    import edgecart.runtime as rt

    pkg = stage / "edgecart"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""edgecart runtime only (staged for an emulated target)."""\n')
    shutil.copytree(Path(rt.__file__).parent, pkg / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(Path(__file__), stage / "probe.py")


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
    from edgecart.runtime.recommender import USER_VECTOR, _top_k
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
                    if rec.scoring == USER_VECTOR:  # the model returns the user vector: score the bundle's table
                        sc = rec.table.scores(o.reshape(1, -1))[0].astype(np.float64)
                        sc[~rec.table.available] = -np.inf
                    else:
                        sc = o[0].astype(np.float64)
                    sc[rec.pad_index] = -np.inf
                    sc[np.asarray(known, np.int64)] = -np.inf
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
            raise ValueError(f"QEMU does not know CPU model {cpu!r} (see 'qemu-aarch64 -cpu help')")
        return {a: {"error": f"guest exited {proc.returncode}: {msg}"} for a, _ in runnable}
    return json.loads(out.read_text())


# --- the probe: runs in the guest (and in-process here) with numpy + an engine + edgecart.runtime only -------------


def probe(bundle: str, runnable: list[tuple[str, str]], task_path: str | None) -> dict[str, Any]:
    """Run each (artifact, backend) on the golden inputs and on the task inputs; JSON-ready results per artifact."""
    import platform

    import numpy as np
    from edgecart.runtime import ImageSearch, Recommender, load, open_bundle
    from edgecart.runtime.golden import check_golden

    b = open_bundle(bundle)
    m = b.manifest
    task = np.load(task_path) if task_path else None
    res: dict[str, Any] = {"_environment": {"machine": platform.machine(), "python": platform.python_version(),
                                            "numpy": np.__version__, "cpu": _cpu_line()}}
    for name, backend in runnable:
        try:
            r: dict[str, Any] = {}
            s = load(b, backend, artifact=name, threads=1)
            a = check_golden(s)
            r["golden"] = {"max_abs_diff": a.max_abs_diff, "cosine": a.cosine, "samples": a.samples}
            try:  # raw-image test vectors: decoded and preprocessed here, on ARM (needs Pillow in the guest)
                from edgecart.runtime.preprocess import check_test_vectors

                r["test_vectors"] = check_test_vectors(b, s.run)
            except Exception as exc:
                r["test_vectors_error"] = f"{type(exc).__name__}: {exc}"
            if task is not None and m.task == "recommendations":
                rec = Recommender(b, backend, threads=1, artifact=name)
                outs, tops = [], []
                for h in task:
                    ids = [rec.items[int(i) - 1].item() for i in h if i > 0]
                    x = rec._pad([int(i) for i in h if i > 0])
                    outs.append(rec.session.run(x)[rec._output][0].tolist())
                    tops.append([_jsonable(v) for v in rec.recommend(ids, k=TOP_K).items])
                r["outputs"], r["top"] = outs, tops
            elif task is not None:
                out_name = m.outputs[0].name
                outs = [s.run(x)[out_name].reshape(-1) for x in task]
                r["outputs"] = [o.tolist() for o in outs]
                if m.task == "image_search":
                    srch = ImageSearch(b, backend, threads=1, artifact=name)
                    r["top"] = [[_jsonable(v) for v in srch.search_embedding(o, k=TOP_K).ids] for o in outs]
            res[name] = r
        except Exception as exc:  # reported per artifact; the other artifacts still run
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return res


def _jsonable(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _cpu_line() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    part = re.search(r"CPU part\s*:\s*(\S+)", text)
    name = re.search(r"model name\s*:\s*(.+)", text)
    return ", ".join(x for x in ((name.group(1).strip() if name else None),
                                 (f"part {part.group(1)}" if part else None)) if x) or "?"


def format_check(c: EmulatedCheck) -> str:
    lines = [f"{TARGET_NAME}: {c.runner}; cpus {', '.join(c.cpus)} — emulated: parity and top-10 agreement only, "
             "no latency"]
    lines += [r.line() for r in c.results]
    n_ok = sum(r.ok for r in c.results)
    n_fail = sum(r.status == "failed" for r in c.results)
    lines.append(f"  {n_ok} ok, {n_fail} failed, {len(c.results) - n_ok - n_fail} skipped "
                 f"(emulation took {c.wall_s:.0f} s)")
    return "\n".join(lines)


def to_bench_results(c: EmulatedCheck) -> list[Any]:
    """The check as harness results: status ``skipped`` for latency (emulated), parity/agreement attached."""
    from .result import BenchResult

    out = []
    for r in c.results:
        why = r.reason if r.status != "ok" else None
        reason = f"emulated ({r.cpu}): no latency figure; {'correctness ' + r.status}" + (f": {why}" if why else "")
        out.append(BenchResult(target=f"{TARGET_NAME}:{r.cpu}", origin="emulated", status="skipped",
                               backend=r.backend, threads=1, artifact=r.artifact, precision=r.precision,
                               reason=reason, environment={**r.environment, "runner": c.runner},
                               parity=None if r.golden_max_abs_diff is None else {
                                   "max_abs_diff": r.golden_max_abs_diff, "cosine": r.golden_cosine,
                                   "within_tolerance": r.golden_ok, "x86_max_abs_diff": r.x86_max_abs_diff},
                               quality={} if r.top10_agreement is None else {
                                   "top10_agreement_with_x86": r.top10_agreement, "task": r.task,
                                   "samples": r.task_samples}))
    return out


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


def cli_check(bundle: str, target: str, cpus: str | None, out: str | None = None, as_json: bool = False) -> int:
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
        c = check(bundle, parse_cpus(cpus), progress=lambda s: print(s, file=sys.stderr, flush=True))
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


def _main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "probe":
        bundle, runnable, task, out = argv[1], json.loads(argv[2]), argv[3], argv[4]
        res = probe(bundle, [tuple(x) for x in runnable], None if task == "-" else task)
        Path(out).write_text(json.dumps(res))
        return 0
    print("usage: probe.py probe BUNDLE RUNNABLE_JSON TASK_NPY|- OUT_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
