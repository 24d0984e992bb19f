#!/usr/bin/env bash
# spgnet against the PaddlePaddle reference (training and inference) on the same cores, in
# ROUNDS alternating runs.
# usage: scripts/bench_vs_paddle.sh [ROUNDS] [BATCH] [SIZE]
# needs: target/release/spgnet, and Paddle in a venv (PADDLE_PY, default /tmp/pd/bin/python:
#   python3 -m venv /tmp/pd && /tmp/pd/bin/pip install paddlepaddle safetensors numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/bench_peer.sh paddle "${PADDLE_PY:-/tmp/pd/bin/python}" "${PADDLE_BENCH:-../shared/reference/bench_paddle.py}" "$@"
