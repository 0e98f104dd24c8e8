#!/usr/bin/env bash
# Creates .venv (if needed) and installs hf-unlearn with its extras into it.
# torch is pinned in the same pip command so that a CPU machine keeps the CPU build; on a GPU machine,
# install your CUDA build of torch into .venv first (it satisfies the range and is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
stamp=.venv/.hf_unlearn_install
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  torch_spec="torch==2.13.0"
  python -c "import torch" 2>/dev/null && torch_spec="torch"  # keep an already installed (e.g. CUDA) torch
  python -m pip install -q "$torch_spec" -e ".[dev,examples,diffusion,quantization]"
  echo "$want" > "$stamp"
fi
