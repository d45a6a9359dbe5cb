#!/usr/bin/env bash
# Builds imgsearch with candle's CUDA backend on a machine without a system CUDA toolkit:
# nvcc, the CUDA headers and the libraries to link against come from NVIDIA's PyPI wheels,
# assembled into one toolkit-shaped folder. The binary runs on any Linux machine with an NVIDIA
# driver (libcuda comes from the driver at run time).
#
#   scripts/build-cuda.sh                 # -> target/cuda/release/imgsearch (with --features cuda)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # A100; 90 = H100/H200 (default), 89 = L4/4090, 86 = 3090
#   scripts/build-cuda.sh --check         # only type-check the CUDA build (`IMGSEARCH_TEST_CUDA=1
#                                         # scripts/test.sh` runs this: a machine without a GPU still
#                                         # keeps the CUDA code compiling)
# Exits with 3 when the toolkit's wheels cannot be installed (no PyPI, no venv), so callers can
# tell "nothing to build with" from a build that fails.
#
# A machine that has a CUDA toolkit needs none of this: `cargo build --release --features cuda`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
TOOLKIT="${CUDA_TOOLKIT_DIR:-$PWD/target/cuda-toolkit}"
VENV="$TOOLKIT/venv"
# CUDA 13: its PyPI nvcc wheel carries the whole compiler driver (nvcc, cudafe++, fatbinary,
# nvlink, ptxas); CUDA 12's nvidia-cuda-nvcc-cu12 wheels ship only ptxas, so they cannot build.
# CUDA 13 targets compute capability 7.5 (Turing) and newer. Pinned to 13.0, the oldest CUDA 13:
# candle loads its kernels as PTX, which the driver compiles at run time, and a driver reads PTX
# only from toolkits up to its own CUDA version. 13.4's PTX (ISA 9.4) failed on an H200 with
# driver 580 (CUDA 13.0) with CUDA_ERROR_UNSUPPORTED_PTX_VERSION; 13.0's runs on every CUDA 13
# driver. The shared libraries keep one soname across 13.x (libcublas.so.13, ...).
WHEELS=(
    "nvidia-cuda-nvcc==13.0.*"    # nvcc and its tools
    "nvidia-nvvm==13.0.*"         # cicc: must match ptxas
    "nvidia-cuda-crt==13.0.*"     # crt/ headers nvcc includes
    "nvidia-cuda-runtime==13.0.*" # cuda_runtime.h, libcudart
    "nvidia-cuda-cccl==13.0.*"    # libcu++/cub headers (nv/target, ...)
    "nvidia-cublas==13.0.*"       # libcublas, libcublasLt
    "nvidia-curand"               # libcurand
    "nvidia-cuda-nvrtc==13.0.*"   # libnvrtc
)

if [ ! -x "$TOOLKIT/bin/nvcc" ]; then
    if ! python3 -m venv "$VENV" || ! "$VENV/bin/pip" install --quiet --no-cache-dir "${WHEELS[@]}"; then
        echo "error: could not install NVIDIA's CUDA wheels from PyPI into $VENV (needs python3-venv and access to PyPI)" >&2
        exit 3
    fi
    nvidia="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] + "/x"))')"
    mkdir -p "$TOOLKIT/bin" "$TOOLKIT/include" "$TOOLKIT/lib64/stubs"
    # One toolkit-shaped tree of symlinks over the wheels' separate folders.
    for pkg in "$nvidia"/*/ "$nvidia"/cu13/*/; do
        [ -d "$pkg/bin" ] && ln -sf "$pkg"/bin/* "$TOOLKIT/bin/"
        [ -d "$pkg/include" ] && cp -rs "$pkg"/include/. "$TOOLKIT/include/" 2>/dev/null || true
        [ -d "$pkg/lib" ] && for lib in "$pkg"/lib/*.so*; do
            ln -sf "$lib" "$TOOLKIT/lib64/"
            # The wheels ship only versioned names (libcublas.so.12); the linker wants libcublas.so.
            base="$(basename "$lib")"; ln -sf "$lib" "$TOOLKIT/lib64/${base%%.so*}.so"
        done
    done
    for nvvm in "$nvidia"/cuda_nvcc/nvvm "$nvidia"/cu13/nvvm; do
        [ -d "$nvvm" ] && ln -sfn "$nvvm" "$TOOLKIT/nvvm"
    done
fi
if [ ! -e "$TOOLKIT/lib64/stubs/libcuda.so" ]; then
    # libcuda.so belongs to the driver, and the wheels ship no link stub: build one from cuda.h
    # (every driver API function, after cuda.h's _v2 renames, as an empty symbol). It is only
    # linked against; at run time the driver's real libcuda.so.1 is loaded.
    echo '#include <cuda.h>' | gcc -E -I "$TOOLKIT/include" - \
        | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u \
        | awk '{ print "void " $1 "(void) {}" }' > "$TOOLKIT/lib64/stubs/libcuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TOOLKIT/lib64/stubs/libcuda.so" "$TOOLKIT/lib64/stubs/libcuda_stub.c"
fi

export CUDA_HOME="$TOOLKIT" CUDA_ROOT="$TOOLKIT" CUDA_PATH="$TOOLKIT"
export PATH="$TOOLKIT/bin:$PATH"
export LIBRARY_PATH="$TOOLKIT/lib64:$TOOLKIT/lib64/stubs:${LIBRARY_PATH:-}"
nvcc --version | tail -1
# A target folder of its own, so the CPU build in target/ is left alone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"
if [ "${1:-}" = --check ]; then
    shift
    cargo check --locked --features cuda --lib --bins "$@"
    echo "the CUDA build type-checks (compute capability $CUDA_COMPUTE_CAP)"
else
    cargo build --release --features cuda "$@"
    echo "built $CARGO_TARGET_DIR/release/imgsearch with CUDA (compute capability $CUDA_COMPUTE_CAP)"
fi
