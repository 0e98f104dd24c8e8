#!/usr/bin/env bash
# Creates .venv (if needed) and installs hf-unlearn with its extras into it.
# torch is pinned in the same pip command so that a CPU machine keeps the CPU build; on a GPU machine,
# install your CUDA build of torch into .venv first (it satisfies the range and is kept).
# HF_UNLEARN_EXTRAS: the extras to install (default dev,examples,diffusion; the test scripts add quantization,
# whose torchao makes transformers print warnings whenever it builds a model on a CPU build of torch).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
extras="${HF_UNLEARN_EXTRAS:-dev,examples,diffusion}"
stamp=.venv/.hf_unlearn_install
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed_hash="$(head -n1 "$stamp" 2>/dev/null || true)"
installed_extras=",$(sed -n 2p "$stamp" 2>/dev/null || true),"
missing=""
for extra in ${extras//,/ }; do
  case "$installed_extras" in *",$extra,"*) ;; *) missing="$missing $extra" ;; esac
done
if [ "$installed_hash" != "$want" ] || [ -n "$missing" ]; then
  python -m pip install -q --upgrade pip
  torch_spec="torch==2.13.0"
  python -c "import torch" 2>/dev/null && torch_spec="torch"  # keep an already installed (e.g. CUDA) torch
  python -m pip install -q "$torch_spec" -e ".[$extras]"
  printf '%s\n%s\n' "$want" "$extras" > "$stamp"
fi
