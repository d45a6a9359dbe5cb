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
#   1. CUDA (f32, f16, bf16) vs CPU f32 parity (cosine) of image and text embeddings on the CLIP,
#      OpenCLIP (ViT, ResNet, EVA, CLIPA, ConvNeXt), SigLIP and M-CLIP test checkpoints, texts in one padded
#      batch (PARITY_ONLY=1: this alone);
#   2. encoder-only images/s at batch 32, 128, 256 in f32, f16 and bf16, beside PyTorch's on the
#      same GPU and checkpoint (f32 with TF32 off, as imgsearch computes; f16 and bf16 with the
#      model cast, as `model.half()` users run it); both sides take the batch from host memory and
#      return the embeddings to it, as indexing does (imgsearch sends the pictures' bytes and
#      normalises them on the GPU; PyTorch is timed with its processor's f32 values and also with
#      pinned bytes normalised on the GPU, and with the batch already there);
#   3. end-to-end `imgsearch index` images/s on the JPEG folder (batch 256) in f32 and f16,
#      beside decode-only (`index` on the CPU with the tiny test model, whose encoder is
#      negligible). The folder's 512 photos are served six times over (COPIES=6) (copies with a distinct
#      JPEG comment, so each is hashed and decoded anew), so that start-up is a small share.
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

echo "## Parity: CUDA vs CPU f32"
# The towers of their own (ResNet, EVA with its rotary positions and SwiGLU, CLIPA, ConvNeXt) run candle's
# generic ops on a GPU where the CPU has one-pass kernels; M-CLIP takes its image tower from a CLIP;
# SigLIP 2 NaFlex resizes its positions to each picture's grid.
for model in tiny-clip-b32-quickgelu tiny-clip-p14-gelu tiny-openclip-b32-quickgelu tiny-siglip-sp tiny-siglip2-gemma \
    tiny-siglip2-naflex tiny-siglip2-naflex-p8 \
    tiny-openclip-rn-quickgelu tiny-openclip-eva02 tiny-openclip-eva02-e tiny-openclip-clipa tiny-openclip-convnext \
    tiny-openclip-mobileclip-b \
    "tiny-mclip#$FIX/models/tiny-clip-b32-quickgelu"; do
    args=(embed --json --model "$FIX/models/$model")
    for img in "$FIX"/images/*; do [ -f "$img" ] && args+=(--image "$img"); done
    for text in "" "a photo of a cat" "Satellitenbild einer Stadt bei Nacht" "夜晚城市的卫星图像 🌃" "$(printf 'a very long caption %.0s' {1..30})"; do args+=(--text "$text"); done
    "$BIN" --device cpu "${args[@]}" > "$OUT/cpu.json"
    for dtype in f32 f16 bf16; do
        "$BIN" --device cuda --dtype "$dtype" "${args[@]}" > "$OUT/cuda.json" || { echo "$model $dtype: FAILED"; continue; }
        python3 - "$OUT/cpu.json" "$OUT/cuda.json" "$model $dtype" <<'PY'
import json, sys
cpu, gpu, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
def cos(a, b): return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) ** .5 * sum(y * y for y in b) ** .5)
bar = 0.9999 if name.endswith("f32") else 0.999
for kind in ("images", "texts"):
    worst = min(cos(cpu[kind][k], gpu[kind][k]) for k in cpu[kind])
    print(f"{name}: {kind}: min cosine {worst:.6f} over {len(cpu[kind])} ({'ok' if worst >= bar else f'BELOW {bar}'})")
PY
    done
done

if [ -n "${PARITY_ONLY:-}" ]; then exit 0; fi

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

echo; echo "## Image encoder only (ViT-B/32 shape), CUDA, batch from and to host memory"
for dtype in f32 f16 bf16; do
    "$BIN" --device cuda --dtype "$dtype" bench --model "$VITB32" --batches 32,128,256 --iterations 10 || echo "imgsearch $dtype: FAILED"
done
python3 - "$VITB32" <<'PY' || echo "(no PyTorch with CUDA here: no reference figure)"
import sys, time, torch
from transformers import CLIPModel
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    model = CLIPModel.from_pretrained(sys.argv[1], torch_dtype=dtype).cuda().eval()
    embed = lambda x: model.visual_projection(model.vision_model(pixel_values=x).pooler_output)
    for batch in (32, 128, 256):
        host = torch.randn(batch, 3, 224, 224)
        on_gpu = host.to("cuda", dtype)
        # As imgsearch sends pictures since 2026-12-04: bytes, rescaled and normalised on the GPU.
        host_bytes = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8).pin_memory()
        mean = torch.tensor([0.4815, 0.4578, 0.4082], device="cuda").view(1, 3, 1, 1)
        std = torch.tensor([0.2686, 0.2613, 0.2758], device="cuda").view(1, 3, 1, 1)
        from_bytes = lambda: ((host_bytes.to("cuda", non_blocking=True).float() / 255 - mean) / std).to(dtype)
        for where, run in (("host to host", lambda: embed(host.to("cuda", dtype)).float().cpu()),
                           ("host to host, bytes normalised on the GPU", lambda: embed(from_bytes()).float().cpu()),
                           ("on the GPU", lambda: embed(on_gpu))):
            with torch.inference_mode():
                for _ in range(3):
                    run()
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(10):
                    run()
                torch.cuda.synchronize()
            rate = 10 * batch / (time.perf_counter() - start)
            print(f"PyTorch {torch.__version__} ({model.config._attn_implementation} attention), {str(dtype)[6:]}, {where}: batch {batch}: {rate:.0f} images/s", flush=True)
    del model
PY

echo; echo "## End to end: imgsearch index of 12 MP JPEGs"
mkdir -p "$OUT/photos"
python3 - "$JPEGS" "$OUT/photos" "${COPIES:-6}" <<'PY'
import os, sys
src, dst, COPIES = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name in sorted(os.listdir(src)):
    data = open(os.path.join(src, name), "rb").read()
    for copy in range(COPIES):  # SOI, then a COM segment naming the copy: new bytes, same picture
        comment = f"copy {copy}".encode()
        with open(os.path.join(dst, f"{copy}_{name}"), "wb") as f:
            f.write(data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:])
PY
count=$(ls "$OUT/photos" | wc -l)
timed_index() {  # label, device, dtype, model, batch size
    rm -rf "$OUT/data"
    local start end
    start=$(date +%s.%N)
    "$BIN" --device "$2" --dtype "$3" --data-dir "$OUT/data" index "$OUT/photos" --model "$4" --batch-size "$5" --quiet --json \
        > "$OUT/summary.json" || { echo "$1: FAILED"; return; }
    end=$(date +%s.%N)
    python3 -c "import json; s=json.load(open('$OUT/summary.json')); n=s['indexed']; t=$end-$start; print(f'$1: {n} images in {t:.1f} s = {n/t:.0f} images/s (start-up and model load included)')"
}
timed_index "decode-bound (tiny model on the CPU, $(nproc) cores)" cpu f32 "$FIX/models/tiny-clip-b32-quickgelu" 16
for dtype in f32 f16; do
    timed_index "cuda $dtype, ViT-B/32, batch 256" cuda "$dtype" "$VITB32" 256
done
