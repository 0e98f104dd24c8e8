#!/usr/bin/env bash
# Installs (if needed) and runs the main job: bash scripts/quickstart.sh [--output_dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
hf-unlearn quickstart "$@"
