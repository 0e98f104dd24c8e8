#!/usr/bin/env bash
# Installs (if needed) and runs the test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
HF_UNLEARN_EXTRAS=dev,examples,diffusion,quantization bash scripts/setup_env.sh
. .venv/bin/activate
python -m pytest -q "$@"
