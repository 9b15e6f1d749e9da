"""Self-contained benchmark runner: needs only the standard library, numpy and ONE engine.

It is copied next to a bundle onto a remote machine (an ARM board over SSH, say) and run there with that machine's
Python; it writes raw measurements as JSON, which the harness pulls back and summarises. It does not import edgecart,
so nothing but this file has to be installed on the device::

    python3 remote_runner.py --bundle BUNDLE --backend onnxruntime --threads 2 --iterations 200 --out result.json

The local worker (``edgecart.benchmarks.worker``) reuses the timing loop, the memory probe and the environment probe
defined here, so local and remote figures are measured the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RUNNER_VERSION = "1"
MIN_WARMUP = 10
FORMAT_OF = {"onnxruntime": "onnx", "litert": "tflite", "executorch": "executorch"}
_LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "executorch", "torch",
              "edgecart")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


# ----------------------------------------------------------------------------------------------- measuring

def measure(run: Callable[[int], Any], iterations: int, seconds: float, start_index: int = 0) -> list[float]:
    """Call ``run(i)`` at least ``iterations`` times and for at least ``seconds``; return each call's seconds."""
    samples: list[float] = []
    clock = time.perf_counter
    deadline = clock() + max(0.0, seconds)
    i = start_index
    while len(samples) < iterations or clock() < deadline:
        t0 = clock()
        run(i)
        samples.append(clock() - t0)
        i += 1
    return samples


def peak_rss_kb() -> int:
    """Peak resident set size of this process in KiB: ``VmHWM`` from /proc (Linux/Android), which starts afresh at
    exec, else ``ru_maxrss`` (which Linux carries over from the parent across fork+exec; bytes on macOS)."""
    status = _read("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024) if sys.platform == "darwin" else int(peak)


def current_rss_kb() -> int | None:
    """Resident set size now, from /proc (Linux/Android), else None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """CPU model from /proc/cpuinfo ('model name', or the ARM 'Hardware'/'CPU part' fields), else platform."""
    text = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if fields.get(key):
            return fields[key]
    if "CPU part" in fields:
        return f"ARM implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment(threads: int | None = None) -> dict[str, Any]:
    """What the numbers depend on: CPU model, cores, affinity, governor, OS, Python, libraries, thread settings."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    governors = {}
    for cpu in affinity or range(os.cpu_count() or 0):
        g = _read(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")
        if g:
            governors[str(cpu)] = g
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "affinity": affinity,
        "governor": (sorted(set(governors.values()))[0] if len(set(governors.values())) == 1 else governors) or None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "threads": threads,
        "thread_env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
    }


def pin(cpus: Sequence[int] | None) -> list[int] | None:
    """Pin this process to ``cpus`` (Linux); returns the affinity now in force."""
    if cpus:
        os.sched_setaffinity(0, set(int(c) for c in cpus))
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


ENGINE_MODULES = {"onnxruntime": ("onnxruntime",), "litert": ("ai_edge_litert.interpreter",),
                  "executorch": ("torch", "executorch.runtime")}


def import_engine(backend: str) -> None:
    """Import the engine library up front so ``load_s`` is the model's load time, not the library's import."""
    import importlib

    for mod in ENGINE_MODULES.get(backend, ()):
        try:
            importlib.import_module(mod)
        except ImportError:
            return  # load() raises the typed error naming the extra to install


# ----------------------------------------------------------------------------------------------- the bundle

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _inside(root: Path, rel: str) -> Path:
    if rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
        raise SystemExit(f"unsafe path in manifest: {rel!r}")
    return root / rel


def read_bundle(root: Path, backend: str, artifact: str | None, precision: str | None
                ) -> tuple[dict, dict, list[dict[str, np.ndarray]]]:
    """Manifest, chosen artifact (hashes checked) and the golden inputs as a list of per-sample feeds."""
    manifest = json.loads((root / "manifest.json").read_text())
    fmt = FORMAT_OF.get(backend)
    if fmt is None:
        raise SystemExit(f"unknown backend {backend!r}; known: {sorted(FORMAT_OF)}")
    arts = [a for a in manifest["artifacts"] if a["format"] == fmt
            and (artifact is None or a["name"] == artifact) and (precision is None or a["precision"] == precision)]
    if not arts:
        raise SystemExit(f"bundle has no {fmt} artifact matching name={artifact} precision={precision}")
    art = arts[0]
    files = {f["path"]: f for f in manifest["files"]}
    golden = manifest.get("golden") or {}
    for rel in [art["path"], *art.get("side_files", []), *golden.get("inputs", {}).values()]:
        entry = files.get(rel)
        if entry is None or _sha256(_inside(root, rel)) != entry["sha256"]:
            raise SystemExit(f"{rel}: missing or its sha256 differs from the manifest; copy the bundle again")
    if not golden.get("inputs"):
        raise SystemExit("the bundle carries no golden inputs; re-export it with golden data")
    stacked = {s["name"]: np.load(_inside(root, golden["inputs"][s["name"]]), allow_pickle=False)
               for s in manifest["inputs"]}
    n = min(v.shape[0] for v in stacked.values())
    feeds = [{s["name"]: np.ascontiguousarray(stacked[s["name"]][i], dtype=s["dtype"]) for s in manifest["inputs"]}
             for i in range(n)]
    return manifest, art, feeds


# ----------------------------------------------------------------------------------------------- raw engines

def open_engine(backend: str, model: Path, names: list[str], threads: int | None) -> Callable[[dict], Any]:
    """The engine's own call, with no edgecart code in between: returns ``run(feed_dict)``."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        sess = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        in_names = [i.name for i in sess.get_inputs()]
        mapping = dict(zip(names, in_names)) if sorted(names) != sorted(in_names) else {n: n for n in names}
        return lambda feed: sess.run(None, {mapping[k]: v for k, v in feed.items()})
    if backend == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        it = Interpreter(model_path=str(model), num_threads=threads) if threads else Interpreter(model_path=str(model))
        it.allocate_tensors()
        details = it.get_input_details()
        outs = it.get_output_details()

        def run_tflite(feed: dict) -> list:
            for d, x in zip(details, feed.values()):
                scale, zp = d["quantization"]
                if scale and np.issubdtype(x.dtype, np.floating):
                    info = np.iinfo(d["dtype"])
                    x = np.clip(np.round(x / scale) + zp, info.min, info.max)
                it.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]))
            it.invoke()
            return [it.get_tensor(o["index"]) for o in outs]

        return run_tflite
    if backend == "executorch":
        import torch
        from executorch.runtime import Runtime

        if threads:
            try:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(int(threads))
            except (ImportError, AttributeError):
                pass
        method = Runtime.get().load_program(model.read_bytes()).load_method("forward")
        return lambda feed: method.execute([torch.from_numpy(v) for v in feed.values()])
    raise SystemExit(f"unknown backend {backend!r}; known: {sorted(FORMAT_OF)}")


def run_remote(bundle: Path, backend: str, artifact: str | None = None, precision: str | None = None,
               threads: int | None = None, warmup: int = MIN_WARMUP, iterations: int = 100, seconds: float = 0.0,
               cpus: Sequence[int] | None = None) -> dict[str, Any]:
    """Load, first inference, warm-ups, then the larger of ``iterations`` or ``seconds``; raw figures out."""
    affinity = pin(cpus)
    rss_before = current_rss_kb()
    t0 = time.perf_counter()
    manifest, art, feeds = read_bundle(bundle, backend, artifact, precision)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = open_engine(backend, _inside(bundle, art["path"]), [s["name"] for s in manifest["inputs"]], threads)
    load_s = time.perf_counter() - t0
    first = measure(lambda i: run(feeds[i % len(feeds)]), 1, 0.0)[0]
    measure(lambda i: run(feeds[i % len(feeds)]), max(MIN_WARMUP, warmup), 0.0, 1)
    samples = measure(lambda i: run(feeds[i % len(feeds)]), iterations, seconds, 1 + warmup)
    return {
        "runner": "remote_runner", "runner_version": RUNNER_VERSION, "status": "ok",
        "bundle": {"name": manifest["name"], "version": manifest["version"]},
        "artifact": art["name"], "format": art["format"], "precision": art.get("precision"), "backend": backend,
        "threads": threads, "mode": "engine", "quality": art.get("quality") or {}, "parity": art.get("parity"),
        "file_bytes": sum(f["bytes"] for f in manifest["files"] if f["path"] in [art["path"], *art.get("side_files",
                                                                                                        [])]),
        "verify_s": verify_s, "load_s": load_s, "first_inference_s": first, "warmup": max(MIN_WARMUP, warmup),
        "samples_s": samples, "rss_before_load_kb": rss_before, "peak_rss_kb": peak_rss_kb(),
        "inputs": f"golden ({len(feeds)} samples, round-robin)", "environment": {**environment(threads),
                                                                               "affinity": affinity},
    }


def add_job_arguments(p: argparse.ArgumentParser, backends: Sequence[str] | None = None) -> None:
    """The options that name one job and its timing, shared by this runner and the local worker."""
    p.add_argument("--bundle", required=True)
    p.add_argument("--backend", required=True, choices=backends)
    p.add_argument("--artifact", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=MIN_WARMUP)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--cpus", default=None, help="comma-separated cores to pin this process to")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_job_arguments(p, sorted(FORMAT_OF))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cpus = [int(c) for c in a.cpus.split(",")] if a.cpus else None
    result = run_remote(Path(a.bundle), a.backend, a.artifact, a.precision, a.threads, a.warmup, a.iterations,
                        a.seconds, cpus)
    Path(a.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
