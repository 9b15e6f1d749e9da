"""Android over adb: push the artifact, the golden inputs (raw bytes) and the native benchmark binary the user points
to, run it on the device, parse its output. Results are labelled ``origin="remote"``.

Tools and the output formats parsed (see each parser):

- ExecuTorch ``executor_runner`` (pytorch/executorch, examples/portable/executor_runner/executor_runner.cpp):
  ``--model_path --inputs --num_executions --cpu_threads``; per-iteration ``Iteration i of n: X ms`` lines give
  every sample, so full statistics with CIs are computed here.
- LiteRT ``benchmark_model`` (tensorflow/lite/tools/benchmark): ``--graph --num_threads --warmup_runs --num_runs``;
  prints ``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` per phase and ``Inference timings in us: Init: ..,
  First inference: .., Warmup (avg): .., Inference (avg): ..``. Only aggregates: mean/min/max (and median if printed).
- ``onnxruntime_perf_test`` (microsoft/onnxruntime, onnxruntime/test/perftest): ``-m times -r N -x T -I -s``; prints
  session creation, first inference, averages and ``Min/Max/P50/P90/P95/P99/P999 Latency: X s``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .jobs import Job
from .result import BenchResult, failed
from .stats import LatencyStats, summarize

TOOL_NAMES = {"executorch": "executor_runner", "litert": "benchmark_model", "onnxruntime": "onnxruntime_perf_test"}
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


# ----------------------------------------------------------------------------------------------- parsers

def parse_executor_runner(text: str) -> dict[str, Any]:
    """``Model loaded in X ms.``, ``Iteration i of n: X ms`` (one per execution), ``Model executed successfully
    N time(s) in X ms.`` — ExecuTorch's ET_LOG lines (``I 00:00:00.012 executorch:executor_runner.cpp:NN] ...``)."""
    out: dict[str, Any] = {}
    m = re.search(r"Model loaded in " + _NUM + " ms", text)
    if m:
        out["load_ms"] = float(m.group(1))
    iters = [(int(a), float(b)) for a, b in re.findall(r"Iteration (\d+) of \d+: " + _NUM + " ms", text)]
    out["samples_ms"] = [ms for _, ms in sorted(iters)]
    m = re.search(r"Model executed successfully (\d+) time\(s\) in " + _NUM + " ms", text)
    if m:
        out["executions"], out["total_ms"] = int(m.group(1)), float(m.group(2))
    if not out["samples_ms"] and "total_ms" not in out:
        raise ValueError("executor_runner output has no 'Iteration' or 'Model executed successfully' line")
    return out


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """LiteRT ``benchmark_model``: the last ``count=`` line is the timed runs; the ``Inference timings in us`` line
    gives init, first inference, warm-up and inference averages (microseconds)."""
    out: dict[str, Any] = {}
    m = re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                  + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, text)
    if not m:
        raise ValueError("benchmark_model output has no 'Inference timings in us' line")
    out["init_us"], out["first_us"], out["warmup_avg_us"], out["avg_us"] = map(float, m.groups())
    counts = [line for line in text.splitlines() if re.search(r"\bcount=\d+", line)]
    if counts:
        fields = dict(re.findall(r"(\w+)=" + _NUM, counts[-1]))
        out["timed"] = {k: float(v) for k, v in fields.items()}
    m = re.search(r"Peak memory footprint \(MB\): init=" + _NUM + r" overall=" + _NUM, text)
    if m:
        out["peak_mb"] = float(m.group(2))
    return out


def parse_perf_test(text: str) -> dict[str, Any]:
    """``onnxruntime_perf_test`` summary lines (times in s or ms as printed)."""
    pats = {
        "session_creation_s": r"Session creation time cost: " + _NUM + " s",
        "first_inference_ms": r"First inference time cost: " + _NUM + " ms",
        "requests": r"Total inference requests: " + _NUM,
        "avg_ms": r"Average inference time cost: " + _NUM + " ms",
        "per_second": r"Number of inferences per second: " + _NUM,
        "peak_bytes": r"Peak working set size: " + _NUM + " bytes",
        "min_s": r"Min Latency: " + _NUM + " s", "max_s": r"Max Latency: " + _NUM + " s",
        "p50_s": r"P50 Latency: " + _NUM + " s", "p90_s": r"P90 Latency: " + _NUM + " s",
        "p95_s": r"P95 Latency: " + _NUM + " s", "p99_s": r"P99 Latency: " + _NUM + " s",
        "p999_s": r"P999 Latency: " + _NUM + " s",
    }
    out = {k: float(m.group(1)) for k, p in pats.items() if (m := re.search(p, text))}
    if "avg_ms" not in out:
        raise ValueError("onnxruntime_perf_test output has no 'Average inference time cost' line")
    return out


def _tool_stats(n: int, mean_ms: float, pct: dict[str, float], min_ms: float | None, max_ms: float | None,
                std_ms: float | None) -> LatencyStats:
    """Aggregates reported by a tool (no per-call samples, so no CIs)."""
    pct = {k: v for k, v in pct.items() if v is not None}
    pct.setdefault("p50", mean_ms)  # the tool printed no median: the mean stands in, flagged by ``reliable=[]``
    return LatencyStats(n=max(1, int(n)), mean_ms=mean_ms, std_ms=std_ms or 0.0, min_ms=min_ms or mean_ms,
                        max_ms=max_ms or mean_ms, percentiles_ms=pct, ci_ms={}, confidence=0.0,
                        throughput_per_s=1e3 / mean_ms if mean_ms > 0 else 0.0, reliable=[])


# ----------------------------------------------------------------------------------------------- target

@dataclass(frozen=True)
class AdbTarget:
    """One device (``serial``) and the local paths of the native tools, keyed by backend name."""

    serial: str
    tools: Mapping[str, str] = field(default_factory=dict)
    adb: str = "adb"
    device_dir: str = "/data/local/tmp/edgecart"
    timeout_s: float = 900.0
    origin: str = "remote"

    def __post_init__(self) -> None:
        if not self.serial or any(c.isspace() for c in self.serial):
            raise ValueError(f"adb serial {self.serial!r} must be a non-empty word (see `adb devices`)")
        unknown = sorted(set(self.tools) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"tools for unknown backends {unknown}; known: {sorted(TOOL_NAMES)} "
                             f"({', '.join(f'{k}={v}' for k, v in TOOL_NAMES.items())})")
        object.__setattr__(self, "tools", dict(self.tools))

    @property
    def label(self) -> str:
        return f"adb:{self.serial}"

    def _adb(self, *args: str) -> str:
        cmd = [self.adb, "-s", self.serial, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise RuntimeError(f"{self.adb!r} not found; install Android platform-tools or pass adb=PATH") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"adb {' '.join(args[:2])} timed out") from None
        if p.returncode != 0:
            raise RuntimeError(f"adb {' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
        return p.stdout + p.stderr  # some tools log to stderr; adb shell merges them anyway

    def shell(self, command: str) -> str:
        return self._adb("shell", command)

    def run(self, bundle: Path, manifest: Any, jobs: list[Job], config: Any, progress: bool = True
            ) -> list[BenchResult]:
        from edgecart.runtime import open_bundle
        from tqdm.auto import tqdm

        b = open_bundle(bundle)
        results = []
        d = shlex.quote(self.device_dir)
        with tqdm(total=len(jobs), desc=f"bench {self.label}", unit="job", disable=not progress,
                  leave=False) as bar, tempfile.TemporaryDirectory() as tmp:
            try:
                self.shell(f"mkdir -p {d}")
                inputs = self._push_inputs(b, Path(tmp))
            except RuntimeError as exc:
                return [failed(self.label, j.backend, str(exc), origin=self.origin, artifact=j.artifact,
                               threads=j.threads) for j in jobs]
            for job in jobs:
                try:
                    results.append(self._one(b, job, config, inputs))
                except (RuntimeError, ValueError) as exc:
                    results.append(failed(self.label, job.backend, str(exc), origin=self.origin,
                                          artifact=job.artifact, threads=job.threads))
                bar.update(1)
        return results

    def _push_inputs(self, b: Any, tmp: Path) -> list[str]:
        """The first golden sample of each input as raw bytes in the manifest dtype, pushed to the device."""
        m = b.manifest
        paths = []
        for spec in m.inputs:
            x = np.ascontiguousarray(b.load_npy(m.golden.inputs[spec.name])[0], dtype=spec.dtype)
            local = tmp / f"golden.{spec.name}.bin"
            local.write_bytes(x.tobytes())
            self._adb("push", str(local), f"{self.device_dir}/{local.name}")
            paths.append(f"{self.device_dir}/{local.name}")
        return paths

    def _one(self, b: Any, job: Job, config: Any, inputs: list[str]) -> BenchResult:
        tool = self.tools.get(job.backend)
        art = b.manifest.artifact(job.artifact)
        base = dict(artifact=art.name, format=art.format, precision=art.precision, threads=job.threads,
                    bundle={"name": b.manifest.name, "version": b.manifest.version, "task": b.manifest.task})
        if not tool:
            return BenchResult(target=self.label, origin=self.origin, status="skipped", backend=job.backend,
                               reason=f"skipped: no {TOOL_NAMES[job.backend]} given for {job.backend} "
                                      f"(tools={{'{job.backend}': PATH}} / --adb-tool {job.backend}=PATH)", **base)
        dev_tool = f"{self.device_dir}/{Path(tool).name}"
        self._adb("push", tool, dev_tool)
        self.shell(f"chmod +x {shlex.quote(dev_tool)}")
        dev_model = f"{self.device_dir}/{Path(art.path).name}"
        self._adb("push", str(b.path(art.path)), dev_model)
        for side in art.side_files:
            self._adb("push", str(b.path(side)), f"{self.device_dir}/{Path(side).name}")
        t = job.threads
        q = shlex.quote
        size = b.manifest.artifact_bytes(art)
        common = dict(**base, file_bytes=size, quality=dict(art.quality), warmup=config.warmup,
                      parity=None if art.parity is None else {"cosine": art.parity.cosine,
                                                              "max_abs_diff": art.parity.max_abs_diff})
        if job.backend == "executorch":
            n = config.warmup + 1 + config.iterations
            cmd = (f"{q(dev_tool)} --model_path={q(dev_model)} --inputs={q(','.join(inputs))} "
                   f"--num_executions={n}" + (f" --cpu_threads={t}" if t else ""))
            parsed = parse_executor_runner(self.shell(cmd))
            samples = parsed["samples_ms"]
            if len(samples) < config.warmup + 2:
                raise ValueError(f"executor_runner printed {len(samples)} iteration lines, expected {n}")
            timed = samples[1 + config.warmup:]
            return BenchResult(target=self.label, origin=self.origin, status="ok", backend=job.backend, mode="tool",
                               load_s=parsed.get("load_ms", 0.0) / 1e3 if "load_ms" in parsed else None,
                               first_inference_ms=samples[0], latency=summarize(np.asarray(timed) / 1e3,
                                                                                config.bootstrap),
                               inputs="golden (first sample, raw bytes)", tool={"name": "executor_runner", **{
                                   k: v for k, v in parsed.items() if k != "samples_ms"}},
                               samples_ms=timed if config.keep_samples else None, **common)
        if job.backend == "litert":
            files = ""
            if art.precision != "int8":  # int8 .tflite inputs are integers: let the tool make its own values
                names = ",".join(s.name for s in b.manifest.inputs)
                shapes = ":".join(",".join(map(str, s.shape)) for s in b.manifest.inputs)
                values = ",".join(f"{s.name}:{p}" for s, p in zip(b.manifest.inputs, inputs))
                files = (f" --input_layer={q(names)} --input_layer_shape={q(shapes)}"
                         f" --input_layer_value_files={q(values)}")
            cmd = (f"{q(dev_tool)} --graph={q(dev_model)} --warmup_runs={config.warmup} "
                   f"--num_runs={config.iterations} --report_peak_memory_footprint=true"
                   + (f" --num_threads={t}" if t else "") + files)
            p = parse_benchmark_model(self.shell(cmd))
            timed = p.get("timed", {})
            lat = _tool_stats(int(timed.get("count", config.iterations)), p["avg_us"] / 1e3,
                              {"p50": timed["median"] / 1e3} if "median" in timed else {},
                              timed.get("min", 0) / 1e3 or None, timed.get("max", 0) / 1e3 or None,
                              timed.get("std", 0) / 1e3 or None)
            return BenchResult(target=self.label, origin=self.origin, status="ok", backend=job.backend, mode="tool",
                               load_s=p["init_us"] / 1e6, first_inference_ms=p["first_us"] / 1e3, latency=lat,
                               peak_rss_mb=p.get("peak_mb"), inputs="golden (first sample)" if files else
                               "tool-generated (int8 inputs)", tool={"name": "benchmark_model", **p}, **common)
        cmd = (f"{q(dev_tool)} -e cpu -m times -r {config.iterations} -I -s"
               + (f" -x {t}" if t else "") + f" {q(dev_model)}")
        p = parse_perf_test(self.shell(cmd))
        pct = {name: p[key] * 1e3 for name, key in (("p50", "p50_s"), ("p90", "p90_s"), ("p99", "p99_s"),
                                                    ("p99.9", "p999_s")) if key in p}
        lat = _tool_stats(int(p.get("requests", config.iterations)), p["avg_ms"], pct,
                          p["min_s"] * 1e3 if "min_s" in p else None, p["max_s"] * 1e3 if "max_s" in p else None, None)
        return BenchResult(target=self.label, origin=self.origin, status="ok", backend=job.backend, mode="tool",
                           load_s=p.get("session_creation_s"), first_inference_ms=p.get("first_inference_ms"),
                           latency=lat, peak_rss_mb=p["peak_bytes"] / 2**20 if "peak_bytes" in p else None,
                           inputs="tool-generated (-I)", tool={"name": "onnxruntime_perf_test", **p}, **common)


__all__ = ["TOOL_NAMES", "AdbTarget", "parse_benchmark_model", "parse_executor_runner", "parse_perf_test"]
