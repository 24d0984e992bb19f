#!/usr/bin/env bash
# spgnet against PyTorch CPU (training and inference) and ONNX Runtime CPU (inference on
# PyTorch's export of the same network), on the same cores, in ROUNDS alternating runs.
# usage: scripts/bench_vs_torch.sh [ROUNDS] [BATCH] [SIZE]
# needs: target/release/spgnet, and PyTorch in a venv (TORCH_PY, default /tmp/torch/bin/python;
#   several GB: python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch onnx onnxruntime numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/bench_peer.sh torch "${TORCH_PY:-/tmp/torch/bin/python}" "${TORCH_BENCH:-../shared/reference/bench_torch.py}" "$@"
