#!/usr/bin/env bash
# Set up the emulated ARM64 target used by `edgecart check BUNDLE --target qemu-arm64` and the benchmark harness:
# a Debian bookworm arm64 minbase userland with python3, plus the aarch64 wheels of numpy, onnxruntime and
# ai-edge-litert (the same versions as the host's pins; Pillow to decode test vectors), run through QEMU user mode
# (>= 10), and an ExecuTorch C++ runner.
#
#   scripts/setup_arm.sh [CACHE_DIR]          default: ${EDGECART_ARM64_CACHE:-~/.cache/edgecart/arm64}
#   scripts/setup_arm.sh --install-tools      also apt-get install qemu-user (bookworm-backports) + debootstrap (root)
#
# Idempotent: each step leaves a stamp in CACHE_DIR and is skipped when its stamp is there. The userland is built
# with `debootstrap --foreign` and its packages are unpacked with dpkg-deb, so no binfmt_misc registration and no
# chroot is needed; the target runs `qemu-aarch64 -L ROOT ROOT/usr/bin/python3 ...` directly.
# Debian 12's own qemu-user is 7.2: it leaks the host's x86 /proc/cpuinfo and gives wrong int8 XNNPACK results, so it
# is refused; bookworm-backports ships 10.x.
set -euo pipefail

INSTALL_TOOLS=0
CACHE=""
for arg in "$@"; do
  case "$arg" in
    --install-tools) INSTALL_TOOLS=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) CACHE="$arg" ;;
  esac
done
CACHE="${CACHE:-${EDGECART_ARM64_CACHE:-$HOME/.cache/edgecart/arm64}}"
ROOT="$CACHE/root"
MIRROR="${EDGECART_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${EDGECART_HOST_PYTHON:-$HERE/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
START=$(date +%s)

say() { echo "[setup_arm] $*"; }
die() { echo "[setup_arm] error: $*" >&2; exit 2; }

if [ "$INSTALL_TOOLS" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "--install-tools needs root (apt-get)"
  if ! apt-cache policy qemu-user | grep -q bookworm-backports; then
    say "adding bookworm-backports to /etc/apt/sources.list.d/bookworm-backports.sources"
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-user >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap g++-aarch64-linux-gnu >/dev/null
fi

command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 not found. Install QEMU user mode >= 10: on Debian 12 add \
bookworm-backports and run 'apt-get -t bookworm-backports install qemu-user' (or run this script with --install-tools)"
QV="$(qemu-aarch64 --version | head -1 | sed -E 's/.*version ([0-9]+)\..*/\1/')"
[ "$QV" -ge 10 ] 2>/dev/null || die "qemu-aarch64 is version $QV; need >= 10 (7.x gives false int8 failures). \
Install bookworm-backports' qemu-user: 'apt-get -t bookworm-backports install qemu-user'"
command -v debootstrap >/dev/null || [ -f "$CACHE/.stamp-userland" ] || die "debootstrap not found: 'apt-get install debootstrap'"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg package)"
"$PY" -m pip --version >/dev/null 2>&1 || die "no pip for $PY (set EDGECART_HOST_PYTHON to a python with pip)"

mkdir -p "$CACHE"
if [ ! -f "$CACHE/.stamp-userland" ]; then
  [ "$(id -u)" = 0 ] || die "building the userland needs root (debootstrap); run as root once, later runs reuse it"
  rm -rf "$ROOT"
  say "debootstrap --foreign arm64 minbase + python3 -> $ROOT"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$ROOT" "$MIRROR" \
    > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log"; die "debootstrap failed (log above)"; }
  say "unpacking $(ls "$ROOT"/var/cache/apt/archives/*.deb | wc -l) packages (no chroot, no binfmt needed)"
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  rm -f "$ROOT"/var/cache/apt/archives/*.deb
  # Leave the host's files readable by non-root users of the cache.
  chmod -R a+rX "$ROOT" 2>/dev/null || true
  touch "$CACHE/.stamp-userland"
fi

PYBIN="$ROOT/usr/bin/python3"
[ -x "$PYBIN" ] || die "$PYBIN missing: remove $CACHE and run again"
GUEST_PV="$(qemu-aarch64 -L "$ROOT" "$PYBIN" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
say "guest python: cp$GUEST_PV, qemu $QV"

pin() { # version of a package pinned in constraints.txt, else the host's installed one
  local v
  v="$(grep -iE "^$1==" "$HERE/constraints.txt" 2>/dev/null | head -1 | cut -d= -f3)"
  [ -n "$v" ] || v="$("$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)"
  if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi
}
WHEELS="$(pin numpy) $(pin onnxruntime) $(pin ai-edge-litert) $(pin pillow)"  # pillow: test vectors
if [ ! -f "$CACHE/.stamp-site" ] || [ "$(cat "$CACHE/.stamp-site")" != "$WHEELS cp$GUEST_PV" ]; then
  say "pip install --platform manylinux_2_17..36_aarch64 (cp$GUEST_PV): $WHEELS"
  rm -rf "$ROOT/opt/site"
  # shellcheck disable=SC2086
  # pip does not widen an explicit --platform to older glibc tags: list every manylinux tag the guest's glibc
  # (bookworm: 2.36) runs (ai-edge-litert 2.3.0 is tagged manylinux_2_27, onnxruntime manylinux_2_27/2_28)
  PLATFORMS="--platform manylinux2014_aarch64"
  for minor in $(seq 17 36); do PLATFORMS="$PLATFORMS --platform manylinux_2_${minor}_aarch64"; done
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-warn-conflicts --target "$ROOT/opt/site" $PLATFORMS \
    --python-version "$GUEST_PV" --implementation cp --abi "cp$GUEST_PV" --only-binary=:all: $WHEELS \
    || die "pip could not fetch the aarch64 wheels ($WHEELS)"
  chmod -R a+rX "$ROOT/opt/site" 2>/dev/null || true
  echo "$WHEELS cp$GUEST_PV" > "$CACHE/.stamp-site"
fi

# ExecuTorch: PyPI's aarch64 executorch wheel needs torch (its pybindings link libtorch; torch's aarch64 wheel is a
# CUDA 13 build), but the same wheel ships the torch-free C++ runtime (libexecutorch, optimized + quantized kernels,
# XNNPACK backend) and its headers: a 60-line runner (scripts/et_runner.cc) built with the aarch64 cross compiler
# runs .pte files in the emulated userland. Skipped, with the reason, when the cross compiler is missing.
ET_PIN="$(pin executorch)"
ET_DIR="$CACHE/executorch"
if [ ! -f "$CACHE/.stamp-executorch" ] || [ "$(cat "$CACHE/.stamp-executorch")" != "$ET_PIN $(sha256sum "$HERE/scripts/et_runner.cc" | cut -c1-16)" ]; then
  if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
    say "ExecuTorch runner skipped: no aarch64-linux-gnu-g++ ('apt-get install g++-aarch64-linux-gnu', or --install-tools)"
  else
    say "ExecuTorch: $ET_PIN aarch64 wheel (C++ runtime only) + scripts/et_runner.cc"
    rm -rf "$ET_DIR" "$CACHE/et-wheel"
    mkdir -p "$ET_DIR/lib" "$CACHE/et-wheel"
    "$PY" -m pip download -q --no-deps -d "$CACHE/et-wheel" --platform manylinux_2_28_aarch64 \
      --python-version "$GUEST_PV" --only-binary=:all: "$ET_PIN" || die "pip could not fetch the aarch64 $ET_PIN wheel"
    "$PY" - "$CACHE/et-wheel" "$ET_DIR" <<'PYEOF'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(next(src.glob("executorch-*.whl"))) as z:
    for n in z.namelist():
        if n.startswith(("executorch/lib/lib", "executorch/include/")) and not n.endswith("/"):
            out = dst / n[len("executorch/"):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(n))
PYEOF
    rm -rf "$CACHE/et-wheel"
    aarch64-linux-gnu-g++ -std=c++17 -O1 -w -DC10_USING_CUSTOM_GENERATED_MACROS -I"$ET_DIR/include" \
      -I"$ET_DIR/include/executorch/runtime/core/portable_type/c10" "$HERE/scripts/et_runner.cc" -o "$ET_DIR/et_runner" \
      -L"$ET_DIR/lib" -Wl,--no-as-needed -lexecutorch -lexecutorch_kernels_optimized -lexecutorch_kernels_quantized \
      -lexecutorch_backend_xnnpack -lexecutorch_threadpool -Wl,-rpath,'$ORIGIN/lib' || die "building et_runner failed"
    rm -rf "$ET_DIR/include"
    echo "$ET_PIN $(sha256sum "$HERE/scripts/et_runner.cc" | cut -c1-16)" > "$CACHE/.stamp-executorch"
  fi
fi

say "smoke: import numpy, onnxruntime, ai_edge_litert under qemu-aarch64 -cpu cortex-a53"
QEMU_CPU=cortex-a53 PYTHONPATH=/opt/site qemu-aarch64 -L "$ROOT" "$PYBIN" -c \
  'import platform, numpy, onnxruntime; from ai_edge_litert import interpreter; print(platform.machine(), "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)'
say "ready: $ROOT ($(du -sh "$CACHE" | cut -f1)), took $(( $(date +%s) - START )) s"
