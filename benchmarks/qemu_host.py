"""The host side of the emulated ARM64 target: is QEMU user mode (>= 10) here, is the arm64 userland of
``scripts/setup_arm.sh`` cached, is the ExecuTorch runner built — and, on request, set the userland up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecart.runtime.errors import EdgecartError

MIN_QEMU_MAJOR = 10
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
