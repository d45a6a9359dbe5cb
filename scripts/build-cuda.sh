#!/usr/bin/env bash
# Builds imgsearch with candle's CUDA backend on a machine without a system CUDA toolkit:
# nvcc, the CUDA headers and the libraries to link against come from NVIDIA's PyPI wheels,
# assembled into one toolkit-shaped folder. The binary runs on any Linux machine with an NVIDIA
# driver (libcuda comes from the driver at run time).
#
#   scripts/build-cuda.sh                 # -> target/release/imgsearch (with --features cuda)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # A100; 90 = H100/H200 (default), 89 = L4/4090, 86 = 3090
#
# A machine that has a CUDA toolkit needs none of this: `cargo build --release --features cuda`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
TOOLKIT="${CUDA_TOOLKIT_DIR:-$PWD/target/cuda-toolkit}"
VENV="$TOOLKIT/venv"
# CUDA 12.x: supports gcc 12 (Debian 12's) as nvcc's host compiler and every GPU from sm_50 to sm_90.
WHEELS=(
    "nvidia-cuda-nvcc-cu12==12.8.*"     # nvcc, ptxas, nvvm
    "nvidia-cuda-runtime-cu12==12.8.*"  # cuda_runtime.h, libcudart
    "nvidia-cuda-cccl-cu12==12.8.*"     # thrust/cub/libcu++ headers the kernels include
    "nvidia-cublas-cu12==12.8.*"        # libcublas, libcublasLt
    "nvidia-curand-cu12"                # libcurand
    "nvidia-cuda-nvrtc-cu12==12.8.*"    # libnvrtc
)

if [ ! -x "$TOOLKIT/bin/nvcc" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "${WHEELS[@]}"
    nvidia="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] + "/x"))')"
    mkdir -p "$TOOLKIT/bin" "$TOOLKIT/include" "$TOOLKIT/lib64/stubs"
    # One toolkit-shaped tree of symlinks over the wheels' separate folders.
    for pkg in "$nvidia"/*/; do
        [ -d "$pkg/bin" ] && ln -sf "$pkg"/bin/* "$TOOLKIT/bin/"
        [ -d "$pkg/include" ] && cp -rs "$pkg"/include/. "$TOOLKIT/include/" 2>/dev/null || true
        [ -d "$pkg/lib" ] && for lib in "$pkg"/lib/*.so*; do
            ln -sf "$lib" "$TOOLKIT/lib64/"
            # The wheels ship only versioned names (libcublas.so.12); the linker wants libcublas.so.
            base="$(basename "$lib")"; ln -sf "$lib" "$TOOLKIT/lib64/${base%%.so*}.so"
        done
    done
    [ -d "$nvidia/cuda_nvcc/nvvm" ] && ln -sfn "$nvidia/cuda_nvcc/nvvm" "$TOOLKIT/nvvm"
    # libcuda.so belongs to the driver; link against a stub with its symbols when no driver is here.
    if ! ldconfig -p | grep -q 'libcuda\.so\b' && [ ! -e "$TOOLKIT/lib64/stubs/libcuda.so" ]; then
        stub="$(find "$nvidia" -name 'libcuda.so' -path '*stubs*' | head -1)"
        if [ -n "$stub" ]; then ln -sf "$stub" "$TOOLKIT/lib64/stubs/libcuda.so"; fi
    fi
fi

export CUDA_HOME="$TOOLKIT" CUDA_ROOT="$TOOLKIT" CUDA_PATH="$TOOLKIT"
export PATH="$TOOLKIT/bin:$PATH"
export LIBRARY_PATH="$TOOLKIT/lib64:$TOOLKIT/lib64/stubs:${LIBRARY_PATH:-}"
nvcc --version | tail -1
cargo build --release --features cuda "$@"
echo "built target/release/imgsearch with CUDA (compute capability $CUDA_COMPUTE_CAP)"
