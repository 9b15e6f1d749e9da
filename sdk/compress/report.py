"""A report per compression step: parameters, non-zero parameters, MACs, file size per format (raw and gzip),
p50 latency per backend (interleaved rounds through the runtime, one thread), and the task's quality figure on a
validation split — as JSON, Markdown and a plot of latency × size × quality."""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def macs(model: Any, example_inputs: tuple[Any, ...]) -> int:
    """Multiply-accumulates of one forward pass (torch's FlopCounterMode counts 2 FLOPs per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(*example_inputs)
    return int(counter.get_total_flops() // 2)


def model_stats(model: Any, example_inputs: tuple[Any, ...]) -> dict[str, int | float]:
    from .pruning import sparsity

    s = sparsity(model)
    return {"params": int(s["params"]), "nonzero_params": int(s["nonzero_params"]),
            "sparsity": round(float(s["sparsity"]), 4), "macs": macs(model, example_inputs)}


def artifact_sizes(bundle: str | Path) -> dict[str, dict[str, Any]]:
    """Per artifact: format, precision, recipe, bytes on disk (with side files) and gzip'd bytes (level 9)."""
    from edgecart.runtime import open_bundle

    b = open_bundle(bundle)
    out = {}
    for a in b.manifest.artifacts:
        data = b"".join(b.path(p).read_bytes() for p in (a.path, *a.side_files))
        out[a.name] = {"format": a.format, "precision": a.precision,
                       "recipe": (a.quantization or {}).get("recipe"), "bytes": len(data),
                       "gzip_bytes": len(gzip.compress(data, 9))}
    return out


BACKEND_OF = {"executorch": "executorch", "onnx": "onnxruntime", "tflite": "litert"}


def interleaved_p50(bundles: Sequence[str | Path], inputs: Sequence[np.ndarray], *, rounds: int = 30,
                    warmup: int = 5, threads: int = 1) -> dict[tuple[str, str], float]:
    """p50 latency (ms) of every artifact of every bundle, measured in interleaved rounds (each round runs every
    artifact once on the same input), so that load changes on a shared machine hit all of them alike."""
    from edgecart.runtime import load, open_bundle

    sessions = {}
    for bundle in bundles:
        for a in open_bundle(bundle).manifest.artifacts:
            sessions[(str(bundle), a.name)] = load(bundle, BACKEND_OF[a.format], artifact=a.name, threads=threads)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
    for r in range(warmup + rounds):
        x = inputs[r % len(inputs)]
        for key, s in sessions.items():
            t0 = time.perf_counter()
            s.run(x)
            dt = (time.perf_counter() - t0) * 1000
            if r >= warmup:
                times[key].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def harness_p50(runs: Sequence[tuple[str | Path, str]], *, rounds: int = 30, per_round: int = 5, warmup: int = 10,
                threads: int = 1) -> dict[tuple[str, str], dict[str, Any]]:
    """p50 latency (ms) of each ``(bundle, artifact)`` through the benchmark harness: every artifact in its own
    loaded worker process (``edgecart.benchmarks``), ``rounds`` interleaved rounds of ``per_round`` calls with the
    order rotated each round, so that load changes on a shared machine hit all of them alike. Returns, per pair,
    ``p50_ms``, ``n``, the backend and ``rounds_ms`` (the samples of each round, for block-bootstrap ratio
    intervals: :func:`p50_ratio`); a worker that fails carries ``error`` instead."""
    from edgecart.benchmarks.compare import interleave
    from edgecart.benchmarks.jobs import Job
    from edgecart.benchmarks.targets_local import WorkerClient
    from edgecart.runtime import open_bundle

    clients: list[WorkerClient] = []
    keys: list[tuple[str, str]] = []
    try:
        for bundle, name in runs:
            art = next(a for a in open_bundle(bundle).manifest.artifacts if a.name == name)
            job = Job(name, BACKEND_OF[art.format], threads)
            clients.append(WorkerClient(Path(bundle), job, warmup=max(warmup, 10)))
            keys.append((str(bundle), name))
        by_round: dict[int, list[list[float]]] = {}
        samples, _schedule = interleave(clients, "session", rounds, per_round, 0.0, by_round=by_round)
    finally:
        for c in clients:
            c.close()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, (key, c) in enumerate(zip(keys, clients)):
        if c.error is not None or not samples[i]:
            out[key] = {"backend": c.job.backend, "error": c.error or "no samples"}
        else:
            out[key] = {"backend": c.job.backend, "p50_ms": statistics.median(samples[i]) * 1000,
                        "n": len(samples[i]), "rounds_ms": [[v * 1000 for v in r] for r in by_round.get(i, [])]}
    return out


def p50_ratio(slow: dict[str, Any], fast: dict[str, Any]) -> dict[str, float]:
    """``p50(slow) / p50(fast)`` of two :func:`harness_p50` entries of one run (a speed-up when ``fast`` is the
    compressed artifact), with the 95% interval of a block bootstrap over the interleaved rounds."""
    from edgecart.benchmarks.stats import block_ratio_ci

    ratio, lo, hi = block_ratio_ci(slow["rounds_ms"], fast["rounds_ms"], 50.0)
    return {"ratio": round(float(ratio), 3), "ci95": [round(float(lo), 3), round(float(hi), 3)]}


@dataclass
class StepRow:
    """One compression step of one model."""

    model: str
    step: str
    params: int
    nonzero_params: int
    macs: int
    quality: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> sizes, p50_ms, quality
    notes: str = ""


def write_report(rows: Sequence[StepRow], out_dir: str | Path, *, title: str, quality_key: str,
                 context: dict[str, Any] | None = None) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``report.png`` (p50 × size, one point per artifact, labelled with the
    quality figure) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"title": title, "quality_key": quality_key, "context": context or {}, "rows": [asdict(r) for r in rows]}
    (out / "report.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    lines = [f"# {title}", ""]
    for k, v in (context or {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", "| model | step | params | non-zero | MACs | " + quality_key + " | artifact | precision | bytes | "
              "gzip bytes | p50 ms | artifact " + quality_key + " |", "|" + "---|" * 12]
    for r in rows:
        q = r.quality.get(quality_key)
        for _name, a in sorted(r.artifacts.items()):
            aq = (a.get("quality") or {}).get(quality_key)
            lines.append(f"| {r.model} | {r.step} | {r.params:,} | {r.nonzero_params:,} | {r.macs:,} | "
                         f"{_f(q)} | {a['format']} | {a['precision']} | {a['bytes']:,} | {a['gzip_bytes']:,} | "
                         f"{_f(a.get('p50_ms'), 3)} | {_f(aq)} |")
        if not r.artifacts:
            lines.append(f"| {r.model} | {r.step} | {r.params:,} | {r.nonzero_params:,} | {r.macs:,} | {_f(q)} "
                         "| | | | | | |")
    notes = [f"- **{r.model} / {r.step}**: {r.notes}" for r in rows if r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    paths = {"json": out / "report.json", "md": out / "report.md"}
    try:
        paths["png"] = _plot(rows, out / "report.png", title, quality_key)
    except ImportError:  # matplotlib is in the export extra; the JSON and Markdown stand alone
        pass
    return paths


def _f(v: Any, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _plot(rows: Sequence[StepRow], path: Path, title: str, quality_key: str) -> Path:
    from edgecart.plots import pyplot

    plt = pyplot()

    fmts = sorted({a["format"] for r in rows for a in r.artifacts.values()})
    fig, axes = plt.subplots(1, max(len(fmts), 1), figsize=(5 * max(len(fmts), 1), 4.2), squeeze=False)
    for ax, fmt in zip(axes[0], fmts):
        for r in rows:
            for a in r.artifacts.values():
                if a["format"] != fmt or a.get("p50_ms") is None:
                    continue
                q = (a.get("quality") or {}).get(quality_key, r.quality.get(quality_key))
                marker = "s" if a["precision"] == "int8" else "o"
                ax.scatter(a["bytes"] / 1024, a["p50_ms"], marker=marker, s=40)
                ax.annotate(f"{r.model}/{r.step} {a['precision']}" + (f"\n{quality_key} {q:.3f}" if q is not None
                                                                     else ""),
                            (a["bytes"] / 1024, a["p50_ms"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(fmt)
        ax.set_xlabel("file size (KiB)")
        ax.set_ylabel("p50 latency (ms, 1 thread)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title + " (o fp32, □ int8)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


Quality = Callable[[Any], dict[str, float]]

__all__ = ["StepRow", "artifact_sizes", "harness_p50", "interleaved_p50", "macs", "model_stats", "p50_ratio",
           "write_report"]
