#!/usr/bin/env bash
# Ships a Fashion-MNIST checkpoint as the default model of `infer` and `eval`: stores it in f16,
# records its accuracy on all 10,000 test images (measured on the f16 file) in its metadata,
# and redraws the README's confusion matrix and prediction grid from it.
#   usage: scripts/ship_model.sh RUN/last.safetensors
# Then update docs/model.md and the README results (the printed numbers) and run
# `cargo test --release --test shipped`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: scripts/ship_model.sh WEIGHTS.safetensors" >&2; exit 2; }
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo build --release -q
bin=target/release/spgnet
asset=assets/spgnet-s2p6-fashion-mnist.safetensors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" export --weights "$1" --half --out "$tmp/half.safetensors"
# one pass over the test set gives the accuracy and the confusion-matrix picture
line=$("$bin" eval --dataset fashion-mnist --weights "$tmp/half.safetensors" --json --plot assets/readme/confusion.png)
acc=$(echo "$line" | grep -o '"accuracy": *[0-9.]*' | sed 's/.*: *//' | awk '{printf "%.4f", $1}')
[ -n "$acc" ] || { echo "eval printed no accuracy: $line" >&2; exit 1; }
# export writes atomically: the old asset stays whole until the new one is complete
"$bin" export --weights "$1" --half --meta "spgnet.test_accuracy=$acc" --out "$asset"
"$bin" grid --dataset fashion-mnist --count 24 --out assets/readme/grid.png
"$bin" infer assets/samples/ --top 1
echo "shipped $1 as $asset: test accuracy $acc (f16, all 10,000 test images)"
