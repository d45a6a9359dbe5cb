#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian's Chromium and
# Node.js for the web UI test, playwright-core from npm, cmake and nasm to build libjpeg-turbo),
# then runs `cargo test`, and the tests that decode JPEGs again with the `turbojpeg` feature.
# Extra arguments go to cargo test (and skip the second run), e.g. `scripts/test.sh --test server`.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

if ! command -v chromium >/dev/null; then
    command -v apt-get >/dev/null || { echo "Install Chromium (the web UI test drives it headless), then re-run." >&2; exit 1; }
    apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    command -v apt-get >/dev/null || { echo "Install Node.js and npm, then re-run." >&2; exit 1; }
    apt_install nodejs npm
fi
if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
    command -v apt-get >/dev/null || { echo "Install cmake and nasm (they build libjpeg-turbo), then re-run." >&2; exit 1; }
    apt_install cmake nasm
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi

cargo test --locked "$@"
if [ $# -eq 0 ]; then
    # The opt-in libjpeg-turbo decoder: every test that decodes JPEGs, through the same checks.
    cargo test --locked --features turbojpeg --test preprocess --test parity --test index --test cli_embed
fi
