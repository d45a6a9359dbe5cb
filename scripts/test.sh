#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian's Chromium and
# Node.js for the web UI test, playwright-core from npm), then runs `cargo test`.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test server`.
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
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi

cargo test --locked "$@"
