#!/usr/bin/env bash
# Installs what spgnet needs on Debian (bookworm) or Ubuntu: a Vulkan driver -- Mesa's lavapipe
# on machines without a GPU, the 2-4x faster one from bookworm-backports where available --,
# the Fashion-MNIST dataset, Chromium for the browser test, and ONNX Runtime (Python) for the
# ONNX export's test. The backports suite reuses the archive already configured: no host name is
# written here.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

add_backports() {
    local sources=/etc/apt/sources.list.d/debian.sources
    grep -qs 'bookworm-backports' "$sources" /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null && return 0
    if [ -f "$sources" ] && grep -Eq '^Suites: bookworm( |$)' "$sources"; then
        # deb822 format: add the suite to the main archive's stanza (the first with plain bookworm).
        $SUDO sed -E -i '0,/^Suites: bookworm( |$)/ s/^(Suites: bookworm( .*)?)$/\1 bookworm-backports/' "$sources"
    elif grep -Eqs '^deb [^ ]+ bookworm main' /etc/apt/sources.list; then
        local uri
        uri=$(grep -Em1 '^deb [^ ]+ bookworm main' /etc/apt/sources.list | awk '{print $2}')
        echo "deb $uri bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
}

if grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
    add_backports
fi
$SUDO apt-get update -q
# Captured first: with pipefail, `grep -q` closing the pipe early can fail apt-cache (SIGPIPE)
# and silently pick the old Mesa.
policy=$(apt-cache policy mesa-vulkan-drivers 2>/dev/null || true)
if grep -q 'bookworm-backports' <<<"$policy"; then
    $SUDO apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers
else
    $SUDO apt-get install -y -q mesa-vulkan-drivers
fi
$SUDO apt-get install -y -q libvulkan1 dataset-fashion-mnist
# Chromium for the browser test (scripts/test_web.sh): WebGPU on SwiftShader, headless.
$SUDO apt-get install -y -q chromium
# Node.js drives the browser test (playwright-core, from npm); Debian's where the machine has none.
command -v node >/dev/null || $SUDO apt-get install -y -q nodejs npm
# Python's venv module, then ONNX Runtime and onnx from PyPI in tools/.venv: the ONNX export's
# test (tests/onnx.rs) runs the exported models there.
python3 -c "import ensurepip, venv" 2>/dev/null || $SUDO apt-get install -y -q python3-venv
bash "$(dirname "$0")/../tools/onnx_venv.sh"
