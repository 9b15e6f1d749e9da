"""SSH target against a real sshd started on 127.0.0.1 (free port, temporary host key and authorised key)."""

from __future__ import annotations

import ast
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from edgecart.benchmarks import bench
from edgecart.benchmarks.targets_ssh import RUNNER, SshTarget

SSHD = "/usr/sbin/sshd"
HINT = "sshd not installed: apt-get install -y openssh-server openssh-client"


def test_remote_runner_is_self_contained():
    tree = ast.parse(RUNNER.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(tree))
    third_party = mods - set(sys.stdlib_module_names)
    assert third_party <= {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime", "executorch", "torch"}
    assert "edgecart" not in mods


def test_remote_runner_runs_standalone(bench_bundle, tmp_path):
    # a copy of the file outside the package, run by path in isolated mode: no edgecart import can help it
    runner = tmp_path / "remote_runner.py"
    shutil.copy(RUNNER, runner)
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-I", str(runner), "--bundle", str(bench_bundle), "--backend", "litert",
                        "--iterations", "5", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert '"samples_s"' in out.read_text()


def test_target_parsing():
    t = SshTarget.parse("pi@10.1.2.3:2200", identity="/k")
    assert (t.user, t.host, t.port, t.label) == ("pi", "10.1.2.3", 2200, "ssh://pi@10.1.2.3:2200")
    with pytest.raises(ValueError):
        SshTarget(host="a;rm -rf /")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip(HINT)
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0 and not Path("/run/sshd").exists():
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {proc.stderr.read()[-300:]}")
            time.sleep(0.1)
    opts = (f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=accept-new")
    yield {"port": port, "identity": str(d / "client_key"), "ssh_options": opts}
    proc.terminate()
    proc.wait(timeout=10)


def test_bench_over_ssh(sshd, bench_bundle, quiet_config):
    user = getpass.getuser()
    cfg = quiet_config(backends=("onnxruntime", "litert"), iterations=8)
    report = bench(bench_bundle, cfg, target=f"ssh://{user}@127.0.0.1:{sshd['port']}", progress=False,
                   target_options={"identity": sshd["identity"], "ssh_options": sshd["ssh_options"],
                                   "python": sys.executable})
    assert [r.backend for r in report.results] == ["onnxruntime", "litert"]
    for r in report.results:
        assert r.ok, r.reason
        assert r.origin == "remote" and r.target == f"ssh://{user}@127.0.0.1:{sshd['port']}"
        assert r.latency.n == 8 and r.mode == "engine" and r.file_bytes > 1000
        assert r.environment["cpu_model"] and r.parity["cosine"] > 0.9999
    assert "| remote |" in __import__("edgecart.benchmarks", fromlist=["to_markdown"]).to_markdown(report)


def test_ssh_failure_is_reported_not_raised(sshd, bench_bundle, quiet_config, tmp_path):
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    report = bench(bench_bundle, quiet_config(backends=("litert",)), progress=False,
                   target=f"ssh://{getpass.getuser()}@127.0.0.1:{sshd['port']}",
                   target_options={"identity": str(wrong), "ssh_options": sshd["ssh_options"]})
    (r,) = report.results
    assert r.status == "failed" and "key" in r.reason and r.origin == "remote"
