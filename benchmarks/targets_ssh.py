"""SSH target (an ARM board, say): copy the bundle and the self-contained ``remote_runner.py`` with scp, run it with
the remote Python once per job (its own process each time), pull each JSON back, summarise here. Results are labelled
``origin="remote"``. Uses the system ``ssh``/``scp`` in BatchMode (no password prompts): give a key with
``identity``."""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jobs import Job
from .result import BenchResult, failed, from_raw

RUNNER = Path(__file__).with_name("remote_runner.py")


class SshError(RuntimeError):
    """An ssh/scp command failed; the message carries the command's stderr and a hint."""


@dataclass(frozen=True)
class SshTarget:
    """``user@host`` reachable with ``ssh -p port -i identity``; ``python`` is the remote interpreter."""

    host: str
    user: str | None = None
    port: int = 22
    identity: str | None = None
    python: str = "python3"
    ssh_options: tuple[str, ...] = ()
    remote_dir: str | None = None
    timeout_s: float = 900.0
    origin: str = "remote"

    def __post_init__(self) -> None:
        if not self.host or any(c in self.host for c in " /;&|$`'\""):
            raise ValueError(f"ssh host {self.host!r} is not a plain host name or address")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"ssh port {self.port} is out of range")
        object.__setattr__(self, "ssh_options", tuple(self.ssh_options))

    @staticmethod
    def parse(spec: str, **kw: Any) -> SshTarget:
        """``[user@]host[:port]`` (the part after ``ssh://``) plus keyword options."""
        user, _, hostport = spec.rpartition("@")
        host, _, port = hostport.partition(":")
        if port and "port" not in kw:
            kw["port"] = int(port)
        return SshTarget(host=host, user=user or None, **kw)

    @property
    def label(self) -> str:
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        if self.identity:
            opts += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for o in self.ssh_options:
            opts += ["-o", o]
        return opts

    def ssh(self, command: str, timeout: float | None = None) -> str:
        cmd = ["ssh", *self._common(), "-p", str(self.port), self.destination, command]
        return self._run(cmd, timeout)

    def scp_to(self, local: Sequence[Path], remote: str) -> None:
        self._run(["scp", *self._common(), "-P", str(self.port), "-r", "-q", *map(str, local),
                   f"{self.destination}:{remote}"], None)

    def scp_from(self, remote: str, local: Path) -> None:
        self._run(["scp", *self._common(), "-P", str(self.port), "-q", f"{self.destination}:{remote}", str(local)],
                  None)

    def _run(self, cmd: list[str], timeout: float | None) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout_s)
        except subprocess.TimeoutExpired:
            raise SshError(f"{cmd[0]} to {self.label} timed out") from None
        if p.returncode != 0:
            raise SshError(f"{cmd[0]} to {self.label} failed ({p.returncode}): {p.stderr.strip()[-500:]}; check the "
                           "host, user, port and that the key (--identity) is authorised there")
        return p.stdout

    def run(self, bundle: Path, manifest: Any, jobs: list[Job], config: Any, progress: bool = True
            ) -> list[BenchResult]:
        from tqdm.auto import tqdm

        base = self.remote_dir or f"/tmp/edgecart-bench-{uuid.uuid4().hex[:12]}"
        q = shlex.quote
        results = []
        try:
            self.ssh(f"mkdir -p {q(base)}")
            self.scp_to([bundle, RUNNER], base)
        except SshError as exc:
            return [failed(self.label, j.backend, str(exc), origin=self.origin, artifact=j.artifact,
                           threads=j.threads) for j in jobs]
        remote_bundle = f"{base}/{bundle.name}"
        try:
            with tqdm(total=len(jobs), desc=f"bench {self.label}", unit="job", disable=not progress,
                      leave=False) as bar, tempfile.TemporaryDirectory() as tmp:
                for k, job in enumerate(jobs):
                    results.append(self._one(job, config, base, remote_bundle, Path(tmp) / f"r{k}.json", k))
                    bar.update(1)
        finally:
            if self.remote_dir is None:
                try:
                    self.ssh(f"rm -rf {q(base)}")
                except SshError:
                    pass
        return results

    def _one(self, job: Job, config: Any, base: str, remote_bundle: str, local: Path, k: int) -> BenchResult:
        q = shlex.quote
        out = f"{base}/result-{k}.json"
        args = ["--bundle", remote_bundle, "--backend", job.backend, "--artifact", job.artifact, "--warmup",
                str(config.warmup), "--iterations", str(config.iterations), "--seconds", str(config.seconds),
                "--out", out]
        if job.threads is not None:
            args += ["--threads", str(job.threads)]
        if config.cpus:
            args += ["--cpus", ",".join(map(str, config.cpus))]
        cmd = f"cd {q(base)} && {q(self.python)} remote_runner.py " + " ".join(q(a) for a in args)
        try:
            self.ssh(cmd, timeout=config.timeout_s)
            self.scp_from(out, local)
        except SshError as exc:
            return failed(self.label, job.backend, str(exc), origin=self.origin, artifact=job.artifact,
                          threads=job.threads)
        raw = json.loads(local.read_text())
        raw.setdefault("format", manifest_format(job.backend))
        return from_raw(raw, self.label, self.origin, config.bootstrap, config.keep_samples)


def manifest_format(backend: str) -> str:
    from .remote_runner import FORMAT_OF

    return FORMAT_OF[backend]


__all__ = ["RUNNER", "SshError", "SshTarget"]
