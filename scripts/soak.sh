#!/usr/bin/env bash
# Long-run bounds: STEPS training steps (default 10,000) through `spgnet bench` at a small batch,
# then the host's resident memory and the GPU buffers created after the first step and after
# the last (a step that leaked either would grow them). Takes about 11 minutes on 2 cores.
#   usage: scripts/soak.sh [STEPS] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
steps=${1:-10000} batch=${2:-2}
cargo build --release -q --bin spgnet
target/release/spgnet bench --batch "$batch" --steps "$steps" 2>/dev/null
