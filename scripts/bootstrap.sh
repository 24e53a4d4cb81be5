#!/usr/bin/env bash
# Create .venv on first use and install facet3d with everything it needs.
# CPU torch unless a CUDA GPU is present; libusb-1.0 (needed by open3d) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FACET3D_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.facet3d-installed"

need_libusb() { ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; }
if need_libusb; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "facet3d: installing libusb-1.0 (needed by open3d)" >&2
    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1; }) \
      || echo "facet3d: could not install libusb-1.0-0; open3d may fail to import" >&2
  else
    echo "facet3d: open3d needs libusb-1.0: run 'sudo apt-get install libusb-1.0-0' (Debian/Ubuntu) or 'sudo dnf install libusb1' (Fedora)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "facet3d: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
      echo "facet3d: CUDA GPU found: installing torch with CUDA" >&2
      "${pip[@]}" "torch>=2.4"
    else
      echo "facet3d: no CUDA GPU: installing the CPU build of torch" >&2
      if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
        "${pip[@]}" /opt/wheels/torch-2.13.0+cpu-*.whl
      else
        "${pip[@]}" "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu
      fi
    fi
  fi
  echo "facet3d: installing facet3d and its dependencies" >&2
  "${pip[@]}" -e ".[test]"
  touch "$stamp"
fi
