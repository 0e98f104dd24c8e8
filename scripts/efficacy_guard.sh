#!/usr/bin/env bash
# Reruns the tests marked `efficacy` (they assert the outcome of training) under another torch CPU kernel
# dispatch than this machine's own, so that a test which holds only at one CPU's float summation order fails
# here instead of on someone else's machine. torch sums floats in different orders per ATEN_CPU_CAPABILITY
# (default / avx2 / avx512); `default` differs most from the vectorized kernels. The slow efficacy tests (full
# scenario builds, ~3 min) are left to full-suite runs under each capability. Usage: bash scripts/efficacy_guard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HF_UNLEARN_EXTRAS=dev,examples,diffusion,quantization bash scripts/setup_env.sh
. .venv/bin/activate
native="$(python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
if [ "$native" = "DEFAULT" ]; then
  echo "efficacy guard: this CPU has only the default kernels; nothing else to compare with."
  exit 0
fi
echo "efficacy guard: native capability $native; rerunning the fast efficacy tests under ATEN_CPU_CAPABILITY=default"
ATEN_CPU_CAPABILITY=default python -m pytest -q -m "efficacy and not slow" "$@"
