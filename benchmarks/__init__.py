"""Benchmark harness: local CPU, CUDA, SSH and adb targets; side-by-side runtime comparison; runtime overhead.

Public faces: :func:`bench` (model-level, or task-level with ``BenchConfig(tasks=...)``), :func:`compare`,
:func:`overhead`, :class:`BenchConfig`, :class:`BenchReport`, :func:`write_report`, :func:`read_report`.
Heavy imports (matplotlib, tqdm, engines) happen only when used. Module graph: ``jobs`` at the bottom, targets,
``compare``, ``overhead`` and ``task_level`` on it, ``harness`` a façade over them.
"""

from __future__ import annotations

from .harness import BenchConfig, Job, bench, compare, overhead, parse_target, plan
from .report import REPORT_SCHEMA_VERSION, BenchReport, read_report, to_markdown, validate_report, write_report
from .result import BenchResult
from .stats import BootstrapConfig, LatencyStats, bootstrap_ci, percentile, summarize

__all__ = ["REPORT_SCHEMA_VERSION", "BenchConfig", "BenchReport", "BenchResult", "BootstrapConfig", "Job",
           "LatencyStats",
           "bench", "bootstrap_ci", "compare", "overhead", "parse_target", "percentile", "plan", "read_report",
           "summarize", "to_markdown", "validate_report", "write_report"]
