#!/usr/bin/env bash
# Set up .venv on first use, then run `facet3d demo` on sample_data/ (extra args go to the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/facet3d demo --out facet3d_demo_out "$@"
