#!/usr/bin/env bash
# A Python environment with ONNX Runtime and the onnx checker, from PyPI, in tools/.venv: what
# tests/onnx.rs runs the exported models in (SPGNET_ONNX_PYTHON names another interpreter).
set -euo pipefail
cd "$(dirname "$0")"
if ! .venv/bin/python -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check onnxruntime onnx numpy
fi
.venv/bin/python -c "import onnx, onnxruntime; print('onnx', onnx.__version__, '/ onnxruntime', onnxruntime.__version__)"
