"""One benchmark result, as every target reports it (local, CUDA, SSH, adb), and its conversion from raw runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .stats import DEFAULT_BOOTSTRAP, BootstrapConfig, LatencyStats, summarize

STATUSES = ("ok", "skipped", "failed")
#: Where a figure was measured: on this machine, on another machine (SSH/adb), or under an emulator.
ORIGINS = ("local", "remote", "emulated")


@dataclass(frozen=True)
class BenchResult:
    """Figures for one (artifact, backend, threads) on one target. Times in the names' units; latency in ms."""

    target: str
    origin: str
    status: str
    backend: str
    threads: int | None = None
    artifact: str | None = None
    format: str | None = None
    precision: str | None = None
    mode: str = "session"
    reason: str | None = None
    bundle: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    import_s: float | None = None
    verify_s: float | None = None
    load_s: float | None = None
    first_inference_ms: float | None = None
    warmup: int | None = None
    latency: LatencyStats | None = None
    peak_rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    file_bytes: int | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    inputs: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    tool: dict[str, Any] | None = None
    samples_ms: list[float] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin {self.origin!r} is not one of {ORIGINS}")
        if self.status == "ok" and self.latency is None:
            raise ValueError("an ok result needs latency figures")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"a {self.status} result needs a reason")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def p50_ms(self) -> float | None:
        return None if self.latency is None else self.latency.percentiles_ms.get("p50")

    @property
    def label(self) -> str:
        t = "default" if self.threads is None else str(self.threads)
        prov = f"/{self.provider}" if self.provider else ""
        mode = "" if self.mode == "session" else f" · {self.mode}"
        return f"{self.artifact or '-'} · {self.backend}{prov} · {t} thr{mode}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency"] = None if self.latency is None else self.latency.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchResult:
        d = dict(d)
        if d.get("latency") is not None:
            d["latency"] = LatencyStats.from_dict(d["latency"])
        return BenchResult(**d)


def _mb(kb: Any) -> float | None:
    return None if kb is None else round(float(kb) / 1024.0, 2)


def from_raw(raw: dict[str, Any], target: str, origin: str, bootstrap: BootstrapConfig = DEFAULT_BOOTSTRAP,
             keep_samples: bool = True, provider: str | None = None) -> BenchResult:
    """Turn a worker's or remote runner's raw JSON (latencies in seconds) into a :class:`BenchResult`."""
    status = raw.get("status", "ok")
    common = dict(target=target, origin=origin, backend=raw.get("backend", "?"), threads=raw.get("threads"),
                  artifact=raw.get("artifact"), format=raw.get("format"), precision=raw.get("precision"),
                  mode=raw.get("mode", "session"), bundle=raw.get("bundle", {}), provider=provider,
                  environment=raw.get("environment", {}))
    if status != "ok":
        return BenchResult(status=status, reason=raw.get("reason") or "no reason given", **common)
    samples = raw["samples_s"]
    return BenchResult(
        status="ok", **common, import_s=raw.get("import_s"), verify_s=raw.get("verify_s"), load_s=raw.get("load_s"),
        first_inference_ms=None if raw.get("first_inference_s") is None else raw["first_inference_s"] * 1e3,
        warmup=raw.get("warmup"), latency=summarize(samples, bootstrap), peak_rss_mb=_mb(raw.get("peak_rss_kb")),
        rss_before_load_mb=_mb(raw.get("rss_before_load_kb")), file_bytes=raw.get("file_bytes"),
        quality=raw.get("quality") or {}, parity=raw.get("parity"), inputs=raw.get("inputs"),
        samples_ms=[round(s * 1e3, 6) for s in samples] if keep_samples else None,
    )


def skipped(target: str, backend: str, reason: str, origin: str = "local", **kw: Any) -> BenchResult:
    return BenchResult(target=target, origin=origin, status="skipped", backend=backend, reason=reason, **kw)


def failed(target: str, backend: str, reason: str, origin: str = "local", **kw: Any) -> BenchResult:
    return BenchResult(target=target, origin=origin, status="failed", backend=backend, reason=reason, **kw)


__all__ = ["ORIGINS", "STATUSES", "BenchResult", "failed", "from_raw", "skipped"]
