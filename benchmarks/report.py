"""Benchmark reports: JSON with a versioned schema, a Markdown table, PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .remote_runner import environment
from .result import BenchResult

REPORT_SCHEMA_ID = "edgecart.bench"
REPORT_SCHEMA_VERSION = "1.0"
KINDS = ("bench", "compare", "overhead", "task")

#: JSON Schema (draft 2020-12) of the report document; ``validate_report`` checks a document against it.
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgecart benchmark report",
    "type": "object",
    "required": ["schema", "schema_version", "kind", "created_at", "target", "bundle", "config", "host", "results"],
    "properties": {
        "schema": {"const": REPORT_SCHEMA_ID},
        "schema_version": {"const": REPORT_SCHEMA_VERSION},
        "kind": {"enum": list(KINDS)},
        "created_at": {"type": "string"},
        "command": {"type": ["string", "null"]},
        "target": {"type": "string"},
        "bundle": {"type": "object", "required": ["name", "version", "task"]},
        "config": {"type": "object"},
        "host": {"type": "object", "required": ["cpu_model", "logical_cores", "libraries"]},
        "results": {"type": "array", "items": {"$ref": "#/$defs/result"}},
        "comparison": {"type": ["array", "null"]},
        "overhead": {"type": ["array", "null"]},
        "tasks": {"type": ["array", "null"], "items": {"type": "object", "required": ["task", "backend", "busy",
                                                                                     "p50_ms"]}},
    },
    "$defs": {
        "ci": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "latency": {
            "type": "object",
            "required": ["n", "mean_ms", "percentiles_ms", "ci_ms", "confidence", "throughput_per_s"],
            "properties": {
                "n": {"type": "integer", "minimum": 1},
                "percentiles_ms": {"type": "object", "required": ["p50"],
                                   "additionalProperties": {"type": "number", "minimum": 0}},
                "ci_ms": {"type": "object", "additionalProperties": {"$ref": "#/$defs/ci"}},
            },
        },
        "result": {
            "type": "object",
            "required": ["target", "origin", "status", "backend"],
            "properties": {
                "origin": {"enum": ["local", "remote", "emulated"]},
                "status": {"enum": ["ok", "skipped", "failed"]},
                "latency": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/latency"}]},
                "samples_ms": {"type": ["array", "null"], "items": {"type": "number"}},
            },
        },
    },
}


@dataclass(frozen=True)
class BenchReport:
    """A complete benchmark run: what was measured, where, on what, and the results."""

    kind: str
    target: str
    bundle: dict[str, Any]
    config: dict[str, Any]
    host: dict[str, Any]
    results: list[BenchResult]
    created_at: str
    command: str | None = None
    comparison: list[dict[str, Any]] | None = None
    overhead: list[dict[str, Any]] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    tasks: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"report kind {self.kind!r} is not one of {KINDS}")

    @staticmethod
    def create(kind: str, manifest: Any, config: dict[str, Any], results: list[BenchResult], *, target: str,
               command: str | None = None, comparison: list[dict[str, Any]] | None = None,
               overhead: list[dict[str, Any]] | None = None,
               tasks: list[dict[str, Any]] | None = None) -> BenchReport:
        return BenchReport(
            kind=kind, target=target,
            bundle={"name": manifest.name, "version": manifest.version, "task": manifest.task},
            config=config, host=environment(), results=results,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            comparison=comparison, overhead=overhead, quality=dict(manifest.quality or {}), tasks=tasks,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA_ID, "schema_version": REPORT_SCHEMA_VERSION, "kind": self.kind,
            "created_at": self.created_at, "command": self.command, "target": self.target, "bundle": self.bundle,
            "bundle_quality": self.quality, "config": self.config, "host": self.host,
            "results": [r.to_dict() for r in self.results], "comparison": self.comparison, "overhead": self.overhead,
            "tasks": self.tasks,
        }

    @staticmethod
    def from_dict(doc: dict[str, Any]) -> BenchReport:
        validate_report(doc)
        return BenchReport(kind=doc["kind"], target=doc["target"], bundle=doc["bundle"], config=doc["config"],
                           host=doc["host"], results=[BenchResult.from_dict(r) for r in doc["results"]],
                           created_at=doc["created_at"], command=doc.get("command"),
                           comparison=doc.get("comparison"), overhead=doc.get("overhead"),
                           quality=doc.get("bundle_quality") or {}, tasks=doc.get("tasks"))


def validate_report(doc: dict[str, Any]) -> None:
    """Raise ValueError when ``doc`` is not a report of this schema version (uses jsonschema when installed)."""
    if doc.get("schema") != REPORT_SCHEMA_ID:
        raise ValueError(f"not an edgecart benchmark report (schema {doc.get('schema')!r})")
    if doc.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise ValueError(f"report schema_version {doc.get('schema_version')!r} is not {REPORT_SCHEMA_VERSION!r}; "
                         "re-run the benchmark with this edgecart")
    try:
        import jsonschema
    except ImportError:
        missing = [k for k in REPORT_SCHEMA["required"] if k not in doc]
        if missing:
            raise ValueError(f"report lacks {missing}") from None
        return
    try:
        jsonschema.validate(doc, REPORT_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise ValueError(f"invalid benchmark report: {exc.message} at {list(exc.absolute_path)}") from None


# ----------------------------------------------------------------------------------------------- markdown

def _f(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def _reason(r: Any) -> str:
    """The reason without a leading repeat of the status ("skipped: skipped: ..." reads badly)."""
    reason = str(r.reason or "")
    prefix = f"{r.status}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def _mode(r: Any) -> str:
    """The timed level, with the busy count of a task-level run (``search/task · busy 1``) also for reports written
    before results carried it in their mode, so quiet and busy rows never read alike."""
    busy = (r.environment or {}).get("busy_processes")
    return r.mode if busy is None or "busy" in r.mode else f"{r.mode} · busy {busy}"


def _label(r: Any) -> str:
    return r.label if _mode(r) == r.mode else f"{r.label} · busy {r.environment['busy_processes']}"


#: Counts that sit beside quality figures in a manifest and are not quality.
_NOT_QUALITY = frozenset({"users", "params", "queries", "samples"})


def quality_items(q: dict[str, Any]) -> list[tuple[str, float]]:
    """Numeric quality figures of an artifact: top-level ones first, then one level of nesting as ``group.metric``
    (e.g. ``test.ndcg@10``), each group sorted by name."""
    def numbers(d: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
        return [(prefix + k, float(v)) for k, v in sorted(d.items())
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_QUALITY]

    items = numbers(q)
    for k, v in sorted(q.items()):
        if isinstance(v, dict):
            items += numbers(v, f"{k}.")
    return items


def quality_text(q: dict[str, Any], limit: int = 2) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in quality_items(q)[:limit]) or "–"


def primary_quality(q: dict[str, Any]) -> tuple[str, float] | None:
    items = quality_items(q)
    return items[0] if items else None


def to_markdown(report: BenchReport) -> str:
    h = report.host
    lines = [f"# Benchmark: {report.bundle['name']} {report.bundle['version']} ({report.kind}, target "
             f"`{report.target}`)", "",
             f"Created {report.created_at}. Command: `{report.command}`", "",
             f"Host: {h.get('cpu_model')} · {h.get('logical_cores')} logical cores · governor "
             f"{h.get('governor') or 'unreadable'} · {h.get('os')} · Python {h.get('python')} · "
             + ", ".join(f"{k} {v}" for k, v in sorted((h.get('libraries') or {}).items())), "",
             f"Method: each job in its own process; {report.config.get('warmup')} warm-up calls, then the larger of "
             f"{report.config.get('iterations')} calls or {report.config.get('seconds')} s; timed level "
             f"`{report.config.get('mode')}`; inputs: the bundle's golden inputs; percentiles with "
             f"{int(100 * report.config.get('bootstrap', {}).get('confidence', 0.95))}% bootstrap CIs.", ""]
    ok = [r for r in report.results if r.ok]
    fastest: dict[Any, float] = {}  # per thread count: rows at other counts do not compete
    for r in ok:
        if r.p50_ms:
            fastest[r.threads] = min(fastest.get(r.threads, r.p50_ms), r.p50_ms)
    lines += ["| artifact | backend | threads | origin | p50 ms [CI] | p90 ms | p99 ms | p99.9 ms | n | thr/s | "
              "load ms | first ms | peak RSS MB | size KB | quality | parity cos | × fastest at its threads |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report.results:
        if not r.ok:
            lines.append(f"| {r.artifact or '–'} | {r.backend} | {r.threads or 'default'} | {r.origin} | "
                         f"**{r.status}**: {_reason(r)} |" + " |" * 12)
            continue
        lat = r.latency
        assert lat is not None
        p = lat.percentiles_ms
        ci = lat.ci_ms.get("p50")
        ci_txt = f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""

        def mark(name: str, p: dict[str, float] = p, lat: Any = lat) -> str:
            v = p.get(name)
            return "–" if v is None else _f(v) + ("" if name in lat.reliable else "*")

        size = "–" if r.file_bytes is None else _f(r.file_bytes / 1024, 1)
        cos = "–" if not r.parity else f"{r.parity.get('cosine', float('nan')):.6f}"
        best = fastest.get(r.threads)
        ratio = "–" if not best or r.p50_ms is None else f"{r.p50_ms / best:.2f}"
        load_ms = None if r.load_s is None else r.load_s * 1e3
        lines.append(
            f"| {r.artifact} | {r.backend}{'/' + r.provider if r.provider else ''}"
            f"{'' if r.mode == 'session' else f' ({_mode(r)})'} | {r.threads or 'default'} | "
            f"{r.origin} | {_f(p.get('p50'))}{ci_txt} | {mark('p90')} | {mark('p99')} | {mark('p99.9')} | {lat.n} | "
            f"{_f(lat.throughput_per_s, 1)} | {_f(load_ms, 1)} | {_f(r.first_inference_ms)} | {_f(r.peak_rss_mb, 1)} | "
            f"{size} | {quality_text(r.quality)} | {cos} | {ratio} |")
    lines += ["", "`*` percentile estimated from fewer than 10 samples beyond it (needs more iterations). Peak RSS is "
              "the worker process's (it includes the Python interpreter and the engine library)."]
    if report.comparison:
        lines += ["", "## Side by side (interleaved)", ""]
        for c in report.comparison:
            lines += [f"Threads {c['threads'] or 'default'}: {c['rounds']} round-robin rounds, order rotated each "
                      f"round. Fastest: **{c['fastest']}**.", "", "| runtime | p50 ms | ratio to fastest [CI] |",
                      "|---|---|---|"]
            for row in c["rows"]:
                ci = row.get("ratio_ci")
                ci_txt = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
                lines.append(f"| {row['label']} | {_f(row['p50_ms'])} | {row['ratio']:.2f}{ci_txt} |")
            lines.append("")
    if report.overhead:
        check = "on (the default)" if report.config.get("check_finite", True) else "off (`check_finite=False`)"
        lines += ["", "## edgecart.runtime overhead", "", f"Session.run's NaN/Inf input check: {check}.", "",
                  "| artifact | backend | threads | Session.run p50 ms | engine.run p50 ms | raw call p50 ms | "
                  "overhead vs engine % [CI] | overhead vs raw % [CI] |", "|---|---|---|---|---|---|---|---|"]
        for o in report.overhead:
            def pct(key: str, o: dict[str, Any] = o) -> str:
                v = o.get(key)
                if v is None:
                    return "–"
                ci = o.get(key + "_ci")
                return f"{v:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")

            lines.append(f"| {o['artifact']} | {o['backend']} | {o['threads'] or 'default'} | "
                         f"{_f(o['p50_ms'].get('session'))} | {_f(o['p50_ms'].get('engine'))} | "
                         f"{_f(o['p50_ms'].get('raw'))} | {pct('overhead_pct')} | {pct('overhead_vs_raw_pct')} |")
    if report.tasks:
        lines += _task_lines(report.tasks)
    return "\n".join(lines) + "\n"


def _task_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The task-level table: end to end beside the model alone, per busy count."""
    lines = ["", "## Task level (end to end, interleaved with the model alone)", "",
             "busy = spinning processes started beside the run (0 = quiet). task / model: p50 ratio [95% CI]; "
             "target <= 2.", "",
             "| task | artifact | backend | threads | busy | task p50 ms | preprocess | model | scoring | "
             "task / model [CI] | scoring path | items |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("p50_ms", {})
        ci = r.get("task_over_model_ci")
        ratio = "–" if r.get("task_over_model") is None else (
            f"{r['task_over_model']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
        lines.append(f"| {r['task']} | {r.get('artifact')} | {r['backend']} | {r.get('threads') or 'default'} | "
                     f"{r['busy']} | {_f(p.get('task'))} | {_f(p.get('preprocess'))} | {_f(p.get('model'))} | "
                     f"{_f(p.get('scoring'))} | {ratio} | {r.get('scoring_path', '–')} | "
                     f"{r.get('catalog_items', '–')} |")
    return lines


# ----------------------------------------------------------------------------------------------- plots

def plot_latency(report: BenchReport, path: Path) -> Path:
    """Horizontal bars of p50 with its CI, and p90/p99 markers, one bar per result."""
    from edgecart.plots import pyplot

    plt = pyplot()

    ok = [r for r in report.results if r.ok]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * max(1, len(ok))))
    for i, r in enumerate(ok):
        lat = r.latency
        assert lat is not None
        p50 = lat.percentiles_ms["p50"]
        lo, hi = lat.ci_ms.get("p50", [p50, p50])
        ax.barh(i, p50, xerr=[[p50 - lo], [hi - p50]], color="tab:blue", alpha=0.75, capsize=3)
        for name, marker in (("p90", "|"), ("p99", "x")):
            if name in lat.percentiles_ms:
                ax.plot(lat.percentiles_ms[name], i, marker=marker, color="black", markersize=8, linestyle="none",
                        label=name if i == 0 else None)
    ax.set_yticks(range(len(ok)), [f"{_label(r)} [{r.origin}]" for r in ok], fontsize=8)
    ax.set_xlabel("latency per call (ms): bar = p50 with CI")
    ax.set_title(f"{report.bundle['name']} — latency per backend ({report.target})")
    if ok:
        ax.legend(loc="lower right", fontsize=8)
    if not ok:
        ax.text(0.5, 0.5, "no successful results", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tradeoff(report: BenchReport, path: Path) -> Path:
    """Latency (p50) against file size, each point coloured and labelled by the artifact's quality figure."""
    from edgecart.plots import pyplot

    plt = pyplot()

    ok = [r for r in report.results if r.ok and r.file_bytes]
    fig, ax = plt.subplots(figsize=(8, 5))
    qs = [primary_quality(r.quality) for r in ok]
    metric = next((q[0] for q in qs if q), None)
    values = [q[1] if q else float("nan") for q in qs]
    sizes = [r.file_bytes / 1024 for r in ok]  # type: ignore[operator]
    p50 = [r.p50_ms for r in ok]
    if ok:
        if metric:
            sc = ax.scatter(sizes, p50, c=values, cmap="viridis", s=60, edgecolors="black")
            fig.colorbar(sc, ax=ax, label=f"quality: {metric}")
        else:
            ax.scatter(sizes, p50, color="tab:blue", s=60, edgecolors="black")
        for r, x, y, q in zip(ok, sizes, p50, qs):
            txt = f"{r.backend} t={r.threads or 'd'} {r.precision}" + (f"\n{q[0]}={q[1]:.3g}" if q else "")
            ax.annotate(txt, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    else:
        ax.text(0.5, 0.5, "no successful results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("artifact size (KiB, model + side files)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"{report.bundle['name']} — latency vs size vs quality"
                 + ("" if metric else " (no quality figure in the manifest)"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: BenchReport, out: Path, stem: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md``, ``<stem>.latency.png`` and ``<stem>.tradeoff.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{report.bundle['name']}.{report.kind}"
    doc = report.to_dict()
    validate_report(doc)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md",
             "latency_png": out / f"{stem}.latency.png", "tradeoff_png": out / f"{stem}.tradeoff.png"}
    paths["json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    paths["markdown"].write_text(to_markdown(report))
    plot_latency(report, paths["latency_png"])
    plot_tradeoff(report, paths["tradeoff_png"])
    return paths


def read_report(path: str | Path) -> BenchReport:
    return BenchReport.from_dict(json.loads(Path(path).read_text()))


__all__ = ["KINDS", "REPORT_SCHEMA", "REPORT_SCHEMA_ID", "REPORT_SCHEMA_VERSION", "BenchReport", "plot_latency",
           "plot_tradeoff", "read_report", "to_markdown", "validate_report", "write_report"]
