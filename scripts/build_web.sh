#!/usr/bin/env bash
# Builds the web page into web/dist/: the wasm crate (web/) for wasm32-unknown-unknown, its JS
# glue (wasm-bindgen), the static page (web/static/), the shipped model, a small training subset
# of the installed Fashion-MNIST package, and ONNX Runtime Web's WebGPU build (npm, the version
# web/package.json pins) for compare.html. Installs the wasm32 target and wasm-bindgen-cli
# (the exact version web/Cargo.toml pins) when missing. Serve it with any static server:
#   python3 -m http.server -d web/dist 8000
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
[ -n "$version" ] || { echo "web/Cargo.toml pins no wasm-bindgen version" >&2; exit 1; }
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    cargo install wasm-bindgen-cli --version "$version"
fi
data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -d "$data" ] || { echo "$data: no Fashion-MNIST here (apt-get install dataset-fashion-mnist, or set FASHION_MNIST)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is missing (apt-get install nodejs npm): it fetches ONNX Runtime Web for compare.html" >&2; exit 1; }
cargo build -p spgnet-web --target wasm32-unknown-unknown --release
out=web/dist
rm -rf "$out.tmp" && mkdir -p "$out.tmp/pkg" "$out.tmp/data"
wasm-bindgen --target web --out-dir "$out.tmp/pkg" target/wasm32-unknown-unknown/release/spgnet_web.wasm
cp web/static/* "$out.tmp/"
cp assets/spgnet-s2p6-fashion-mnist.safetensors "$out.tmp/model.safetensors"
python3 tools/idx_subset.py "$data" "$out.tmp/data" --train 2048 --test 512
(cd web && npm install --no-audit --no-fund --loglevel=error)
mkdir -p "$out.tmp/ort"
cp web/node_modules/onnxruntime-web/dist/{ort.webgpu.bundle.min.mjs,ort-wasm-simd-threaded.asyncify.wasm} "$out.tmp/ort/"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built $out ($(du -sh "$out" | cut -f1)): python3 -m http.server -d $out 8000, then open http://localhost:8000"
