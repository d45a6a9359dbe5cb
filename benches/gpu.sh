#!/usr/bin/env bash
# GPU benchmark and parity check, for a machine with an NVIDIA GPU but no Rust toolchain.
# Build here with scripts/build-cuda.sh, then carry target/cuda/release/imgsearch, this script and
# tests/fixtures/ over and run:
#
#   benches/gpu.sh [IMGSEARCH_BINARY] [JPEG_FOLDER] [VIT_B32_CHECKPOINT]
#
# JPEG_FOLDER: camera-size JPEGs; VIT_B32_CHECKPOINT: a ViT-B/32 checkpoint folder. Where a folder
# is missing, it is made with Python (transformers + Pillow + numpy, as a PyTorch GPU machine has
# them): 512 noisy 12 MP copies of a fixture photo, and a random-weight CLIPModel(CLIPConfig()),
# openai/clip-vit-base-patch32's shape. Prints:
#   1. CUDA vs CPU parity (cosine, f32) of image and text embeddings on both test checkpoints,
#      texts in one padded batch;
#   2. encoder-only images/s at batch 32, 128, 256, beside PyTorch's on the same GPU and checkpoint
#      (f32, TF32 off, as imgsearch computes);
#   3. end-to-end `imgsearch index` images/s on the JPEG folder (batch 256), beside decode-only
#      (`index` on the CPU with the tiny test model, whose encoder is negligible).
set -euo pipefail
BIN="${1:-target/cuda/release/imgsearch}"
JPEGS="${2:-target/bench-data/camera-128}"
VITB32="${3:-target/bench-data/vit-b32-random}"
FIX="tests/fixtures"
# The binary links the CUDA 13 libraries (cudart, cublas, curand, nvrtc) dynamically; libcuda
# comes from the driver. Find them in a toolkit or in PyTorch's nvidia wheels.
extra="$(python3 - <<'PY' 2>/dev/null || true
import glob, os, site
libs = ["libcublas.so.13*", "libcublasLt.so.13*", "libcudart.so.13*", "libcurand.so.10*", "libnvrtc.so.13*"]
dirs = {os.path.dirname(p) for s in site.getsitepackages() for lib in libs for p in glob.glob(os.path.join(s, "nvidia", "**", lib), recursive=True)}
print(":".join(sorted(dirs)))
PY
)"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${extra}:${LD_LIBRARY_PATH:-}"
if ldd "$BIN" | grep -q "not found"; then
    echo "missing libraries for $BIN:" >&2; ldd "$BIN" | grep "not found" >&2; exit 1
fi
OUT="$(mktemp -d)"

if [ ! -f "$VITB32/model.safetensors" ]; then
    echo "making a random-weight ViT-B/32 checkpoint in $VITB32"
    python3 - "$VITB32" "$FIX" <<'PY'
import shutil, sys, torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
torch.manual_seed(0)
CLIPModel(CLIPConfig()).save_pretrained(sys.argv[1], safe_serialization=True)
CLIPImageProcessor().save_pretrained(sys.argv[1])
shutil.copy(f"{sys.argv[2]}/models/tiny-clip-b32-quickgelu/tokenizer.json", sys.argv[1])  # the real CLIP tokenizer
PY
fi
if [ ! -d "$JPEGS" ]; then
    echo "making 512 camera-size JPEGs in $JPEGS"
    python3 - "$JPEGS" "$FIX" <<'PY'
import os, sys, numpy as np
from concurrent.futures import ProcessPoolExecutor
from PIL import Image
out, fix = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
photo = Image.open(f"{fix}/images/chelsea_progressive.jpg").convert("RGB").resize((4032, 3024), Image.BILINEAR)
base = np.asarray(photo).astype(np.int16)
def one(i):  # per-file sensor-like noise, as the indexing bench's photos
    noise = np.random.default_rng(i).integers(-4, 5, base.shape, dtype=np.int16)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(f"{out}/photo_{i:04}.jpg", quality=90)
with ProcessPoolExecutor() as pool:
    list(pool.map(one, range(512)))
PY
fi

echo "## Parity: CUDA vs CPU (f32)"
for model in tiny-clip-b32-quickgelu tiny-clip-p14-gelu; do
    args=(embed --json --model "$FIX/models/$model")
    for img in "$FIX"/images/*; do args+=(--image "$img"); done
    for text in "" "a photo of a cat" "satellite image of a city at night" "$(printf 'a very long caption %.0s' {1..30})"; do args+=(--text "$text"); done
    "$BIN" --device cpu "${args[@]}" > "$OUT/cpu.json"
    "$BIN" --device cuda "${args[@]}" > "$OUT/cuda.json"
    python3 - "$OUT/cpu.json" "$OUT/cuda.json" "$model" <<'PY'
import json, sys
cpu, gpu, model = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
def cos(a, b): return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) ** .5 * sum(y * y for y in b) ** .5)
for kind in ("images", "texts"):
    worst = min(cos(cpu[kind][k], gpu[kind][k]) for k in cpu[kind])
    print(f"{model}: {kind}: min cosine {worst:.6f} over {len(cpu[kind])} ({'ok' if worst >= 0.9999 else 'BELOW 0.9999'})")
PY
done

echo; echo "## Image encoder only (ViT-B/32 shape), CUDA"
"$BIN" --device cuda bench --model "$VITB32" --batches 32,128,256 --iterations 10
python3 - "$VITB32" <<'PY' || echo "(no PyTorch with CUDA here: no reference figure)"
import sys, time, torch
from transformers import CLIPModel
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
model = CLIPModel.from_pretrained(sys.argv[1]).cuda().eval()
for batch in (32, 128, 256):
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            model.get_image_features(pixel_values=x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            model.get_image_features(pixel_values=x)
        torch.cuda.synchronize()
    print(f"PyTorch {torch.__version__}, same GPU and checkpoint, f32: batch {batch}: {10 * batch / (time.perf_counter() - start):.0f} images/s")
PY

echo; echo "## End to end: imgsearch index of $(ls "$JPEGS" | wc -l) JPEGs"
for device in cuda; do
    rm -rf "$OUT/data"
    start=$(date +%s.%N)
    "$BIN" --device "$device" --data-dir "$OUT/data" index "$JPEGS" --model "$VITB32" --batch-size 256 --quiet --json > "$OUT/summary.json"
    end=$(date +%s.%N)
    python3 -c "import json,sys; s=json.load(open('$OUT/summary.json')); n=s['indexed']; t=$end-$start; print(f'$device: {n} images in {t:.1f} s = {n/t:.0f} images/s (model load included)')"
done
echo "decode-only reference: index with the tiny model on CPU (the encoder is negligible there)"
rm -rf "$OUT/data"
start=$(date +%s.%N)
"$BIN" --device cpu --data-dir "$OUT/data" index "$JPEGS" --model "$FIX/models/tiny-clip-b32-quickgelu" --quiet --json > "$OUT/summary.json"
end=$(date +%s.%N)
python3 -c "import json; s=json.load(open('$OUT/summary.json')); n=s['indexed']; t=$end-$start; print(f'decode-bound: {n/t:.0f} images/s on $(nproc) cores')"
