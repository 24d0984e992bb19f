#!/usr/bin/env bash
# The browser test: builds the page (scripts/build_web.sh), then drives it in Debian's headless
# Chromium (WebGPU on SwiftShader) with playwright-core: classify against native `spgnet infer`,
# the ONNX export against native `spgnet export --onnx` and in ONNX Runtime Web (compare.html),
# debugStep against the Paddle golden step, 20 training steps, bad uploads, and a screenshot
# (target/web/page.png; SPGNET_UPDATE_SCREENSHOT=1 also copies it to the README's picture), and
# the weights the page trained, downloaded, loaded by native `spgnet infer` and `spgnet eval`.
# Needs: chromium (scripts/setup.sh), node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
command -v node >/dev/null || { echo "node is missing (apt-get install nodejs npm)" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "no Chromium at ${CHROMIUM:-/usr/bin/chromium} (apt-get install chromium)" >&2; exit 1; }
bash scripts/build_web.sh
cargo build --release --bin spgnet
(cd web/test && npm install --no-audit --no-fund --loglevel=error)
mkdir -p target/web
target/release/spgnet infer --json assets/samples/*.png > target/web/native-infer.json 2>/dev/null
target/release/spgnet export --onnx target/web/native.onnx 2>/dev/null
node web/test/browser.mjs "$PWD/web/dist" target/web/native-infer.json "${GOLDEN:-../shared/golden/s2p6-b16-32}" target/web/page.png
# the weights the page trained and downloaded load in the native program
target/release/spgnet infer --weights target/web/browser-trained.safetensors assets/samples/bag.png --top 1
target/release/spgnet eval --dataset fashion-mnist --weights target/web/browser-trained.safetensors --limit 256 | head -1
if [ "${SPGNET_UPDATE_SCREENSHOT:-0}" = 1 ]; then
    cp target/web/page.png assets/readme/web.png
    echo "assets/readme/web.png updated"
fi
