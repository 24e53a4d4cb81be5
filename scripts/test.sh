#!/usr/bin/env bash
# Set up .venv on first use, then run the whole test suite (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# the viewer and report tests load pages in headless Chromium (they skip without it)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "facet3d: installing chromium (headless browser for the viewer tests)" >&2
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
      || echo "facet3d: could not install chromium; the browser tests will skip" >&2
  else
    echo "facet3d: no chromium: the browser tests will skip ('sudo apt-get install chromium' runs them)" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
