#!/usr/bin/env python3
"""Parity of `imgsearch embed` with the reference implementations at the widths of real models.

The test fixtures (tests/fixtures/models) are tiny so that `cargo test` stays fast. This script
builds random-weight checkpoints with the widths, head sizes, MLP ratios, image sizes and patch
sizes of published models, but only 1-2 layers, and compares imgsearch's embeddings with
`transformers` (CLIP, SigLIP) and `open_clip` (OpenCLIP hub layout) on the fixture pictures and a
few texts, in f32 on every kernel path this CPU runs (`IMGSEARCH_ISA`) and in bf16 where it runs.
Not part of CI (minutes of CPU, ~3 GB of checkpoints under the output folder); run it after
changing model code or kernels:

    pip install -r scripts/requirements.txt
    cargo build --release
    python3 scripts/parity_at_real_widths.py [--out /tmp/real-widths] [NAME ...]

Prints the worst cosine per checkpoint and path; exits 1 if any is below 0.9999 (f32) or 0.999
(bf16), or if imgsearch fails on one.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_test_model as M  # noqa: E402  (randomize, l2: the fixtures' own weight scaling)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
IMAGES = ["coffee.png", "camera_gray.png", "chelsea_alpha.png"]
TEXTS = ["a photo of a cat", "satellite image of a city at night", "", "café naïve 日本語 🐱",
         " ".join(["long caption"] * 40)]
OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def clip(out, vision, text, proj, act, size):
    """A Hugging Face CLIPModel with the CLIP tokenizer of the fixtures."""
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast
    from transformers import CLIPImageProcessorPil
    torch.manual_seed(0)
    config = CLIPConfig(projection_dim=proj,
                        text_config=dict(vocab_size=49408, max_position_embeddings=77, hidden_act=act,
                                         layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407,
                                         pad_token_id=49407, **text),
                        vision_config=dict(image_size=size, hidden_act=act, layer_norm_eps=1e-5, **vision))
    model = CLIPModel(config).eval()
    M.randomize(model)
    model.save_pretrained(out)
    shutil.copy(FIX / "models/tiny-clip-b32-quickgelu/tokenizer.json", out)
    processor = CLIPImageProcessorPil(do_resize=True, do_center_crop=True, size={"shortest_edge": size},
                                      crop_size={"height": size, "width": size}, resample=3,
                                      image_mean=OPENAI_MEAN, image_std=OPENAI_STD)
    processor.save_pretrained(out)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))

    def image(pil):
        pv = processor(images=pil, return_tensors="pt")["pixel_values"]
        return model.visual_projection(model.vision_model(pixel_values=pv).pooler_output)

    def text(s):
        ids = tokenizer(s, truncation=True, max_length=77, return_tensors="pt")["input_ids"]
        return model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return image, text


def siglip(out, vision, text, act, size, tokenizer_of, context, naflex=False):
    """A Hugging Face SiglipModel with a fixture's SentencePiece- or Gemma-style tokenizer; with
    `naflex`, a Siglip2Model whose `size` learned positions resize to each picture's grid of at
    most `size` patches."""
    from transformers import AutoTokenizer, SiglipConfig, SiglipModel, SiglipImageProcessorPil
    from transformers import Siglip2Config, Siglip2Model, Siglip2ImageProcessorPil
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(FIX / "models" / tokenizer_of)
    text = dict(text, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                max_position_embeddings=context, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    vision = dict(hidden_act=act, layer_norm_eps=1e-6, **vision, **{"num_patches" if naflex else "image_size": size})
    model = (Siglip2Model if naflex else SiglipModel)((Siglip2Config if naflex else SiglipConfig)(
        text_config=text, vision_config=vision)).eval()
    M.randomize(model)
    model.save_pretrained(out)
    for f in os.listdir(FIX / "models" / tokenizer_of):
        if f.startswith("tokenizer"):
            shutil.copy(FIX / "models" / tokenizer_of / f, out)
    if naflex:
        # The tokenizer transformers gives a siglip2 checkpoint (Siglip2Tokenizer: lowercased).
        tokenizer = AutoTokenizer.from_pretrained(out)
        processor = Siglip2ImageProcessorPil(do_convert_rgb=True, patch_size=vision["patch_size"], max_num_patches=size,
                                             resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    else:
        processor = SiglipImageProcessorPil(do_resize=True, size={"height": size, "width": size}, resample=3,
                                            image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(out)

    def image(pil):
        inputs = processor(images=pil, return_tensors="pt")
        return model.vision_model(**{k: v for k, v in inputs.items()
                                     if k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")}).pooler_output

    def text_(s):
        ids = tokenizer(s, padding="max_length", max_length=context, truncation=True, return_tensors="pt")["input_ids"]
        return model.text_model(input_ids=ids).pooler_output
    return image, text_


def openclip(out, arch):
    """open_clip's own architecture config, cut to 2 layers a tower, in the hub layout."""
    import open_clip
    from safetensors.torch import save_file
    config = json.loads((Path(open_clip.__file__).parent / "model_configs" / f"{arch}.json").read_text())
    config["text_cfg"]["layers"] = 2
    if "hf_tokenizer_name" in config["text_cfg"]:
        # CLIPA's bert-base-uncased is on the hub; the fixtures' BERT-style tokenizer stands in.
        config["text_cfg"]["hf_tokenizer_name"] = str(FIX / "models" / "tiny-bert")
    if "timm_model_name" in config["vision_cfg"]:
        # A timm tower (EVA) is cut by `timm_model_kwargs`, open_clip 3's option.
        config["vision_cfg"]["timm_model_kwargs"] = dict(depth=2)
    else:
        config["vision_cfg"]["layers"] = 2
    name = f"real-widths-{arch}"
    torch.manual_seed(3)
    model = M.create_open_clip(name, config)
    M.randomize(model)
    M.post_norm_as_trained(model)
    pre = dict(mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic", resize_mode="shortest")
    size = config["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False, **pre)
    # Batch norms (MobileCLIP-B's stem) with statistics measured on the pictures, as trained.
    M.resnet_as_trained(model, transform, IMAGES)
    (out / "open_clip_config.json").write_text(json.dumps(dict(model_cfg=config, preprocess_cfg=dict(pre, size=size))))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    tokenizer = open_clip.get_tokenizer(name)
    # open_clip's HFTokenizer calls what transformers 5 no longer has (make_test_model.hf_tokenize).
    tokenize = (lambda s: M.hf_tokenize(tokenizer, s)) if "hf_tokenizer_name" in config["text_cfg"] else (
        lambda s: tokenizer([s]))
    # open_clip resizes before converting to RGB; imgsearch converts first (as tests/it/parity.rs).
    return (lambda pil: model.encode_image(transform(pil.convert("RGB")).unsqueeze(0)),
            lambda s: model.encode_text(tokenize(s)))


def tower(width, heads, mlp, layers, **extra):
    """One transformer tower's widths, as transformers' configs name them."""
    return dict(hidden_size=width, num_attention_heads=heads, intermediate_size=mlp, num_hidden_layers=layers, **extra)


CHECKPOINTS = {
    # CLIP ViT-L/14 at 336 px (577 tokens), quick-GELU.
    "clip-L14-336": lambda o: clip(o, tower(1024, 16, 4096, 2, patch_size=14), tower(768, 12, 3072, 2), 768,
                                   "quick_gelu", 336),
    # LAION's ViT-H/14 widths in Hugging Face form: 80-wide heads, GELU.
    "clip-H14": lambda o: clip(o, tower(1280, 16, 5120, 1, patch_size=14), tower(1024, 16, 4096, 1), 1024,
                               "gelu", 224),
    # ViT-bigG/14 widths: 104-wide heads, 20 text heads.
    "clip-bigG14": lambda o: clip(o, tower(1664, 16, 8192, 1, patch_size=14), tower(1280, 20, 5120, 1), 1280,
                                  "gelu", 224),
    # SigLIP so400m at 384 px: 729 tokens, 72-wide heads, MLP 4304 (not a multiple of 16).
    "siglip-so400m-384": lambda o: siglip(o, tower(1152, 16, 4304, 1, patch_size=14),
                                          tower(1152, 16, 4304, 1, projection_size=1152),
                                          "gelu_pytorch_tanh", 384, "tiny-siglip-sp", 64),
    # SigLIP 2 B/16 at 256 px with the Gemma-style tokenizer.
    "siglip2-b16-256": lambda o: siglip(o, tower(768, 12, 3072, 2, patch_size=16),
                                        tower(768, 12, 3072, 2, projection_size=768),
                                        "gelu_pytorch_tanh", 256, "tiny-siglip2-gemma", 64),
    # SigLIP 2 so400m NaFlex: 72-wide heads, 256 positions (16 × 16) resized to each picture's grid.
    "siglip2-so400m-naflex": lambda o: siglip(o, tower(1152, 16, 4304, 1, patch_size=16),
                                              tower(1152, 16, 4304, 1, projection_size=1152),
                                              "gelu_pytorch_tanh", 256, "tiny-siglip2-gemma", 64, naflex=True),
    **{f"openclip-{arch}": (lambda arch: lambda o: openclip(o, arch))(arch)
       for arch in ["ViT-L-14-336", "ViT-H-14", "ViT-g-14", "ViT-bigG-14", "ViT-B-16-plus-240",
                    # EVA-02 at 336 px (a 24×24 grid whose rotary positions count as 16×16, SwiGLU
                    # 2730 wide), EVA02-E (112-wide heads, post-norm, MLP 15360), EVA01-g (fused qkv).
                    "EVA02-L-14-336", "EVA02-E-14", "EVA01-g-14",
                    # CLIPA at 336 px: 576 patch tokens averaged, a bidirectional text tower.
                    "ViT-H-14-CLIPA-336",
                    # MobileCLIP-B: ViT-B/16 widths behind a stem of three convs with batch norms.
                    "MobileCLIP-B"]},
}


def paths():
    """(label, extra env, dtype) for each path this CPU runs."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    out = [("default", {}, "f32")]
    # With AMX the default path multiplies pictures on the tile unit: the AVX-512 panels (and
    # `vdpbf16ps` for bf16) that CPUs without AMX run are checked with AMX turned off.
    if " amx_tile" in flags and " avx512f" in flags:
        out.append(("avx512", {"IMGSEARCH_AMX": "0"}, "f32"))
    if " avx512f" in flags:
        out.append(("avx2", {"IMGSEARCH_ISA": "avx2"}, "f32"))
    out.append(("portable", {"IMGSEARCH_ISA": "portable"}, "f32"))
    if " amx_tile" in flags or " avx512_bf16" in flags:
        out.append(("bf16", {}, "bf16"))
    if " amx_tile" in flags and " avx512_bf16" in flags:
        out.append(("bf16-avx512", {"IMGSEARCH_AMX": "0"}, "bf16"))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "imgsearch-real-widths"))
    parser.add_argument("--imgsearch", default=str(ROOT / "target" / "release" / "imgsearch"))
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"checkpoints to check (default all: {', '.join(CHECKPOINTS)})")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in CHECKPOINTS]
    if unknown:
        parser.error(f"unknown checkpoint {', '.join(unknown)}: choose from {', '.join(CHECKPOINTS)}")
    failed = False
    for name in args.names or CHECKPOINTS:
        folder = Path(args.out) / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        image, text = CHECKPOINTS[name](folder)
        with torch.no_grad():
            want_images = {i: M.l2(image(Image.open(FIX / "images" / i)))[0] for i in IMAGES}
            want_texts = {t: M.l2(text(t))[0] for t in TEXTS}
        for label, env, dtype in paths():
            cmd = [args.imgsearch, "embed", "--json", "--device", "cpu", "--dtype", dtype, "--model", str(folder)]
            cmd += [a for i in IMAGES for a in ("--image", str(FIX / "images" / i))]
            cmd += [a for t in TEXTS for a in ("--text", t)]
            run = subprocess.run(cmd, capture_output=True, text=True,
                                 env=dict(os.environ, IMGSEARCH_DATA_DIR=str(Path(args.out) / "data"), **env))
            if run.returncode != 0:
                print(f"{name:28s} {label:9s} FAILED: {run.stderr.strip()[-800:]}", flush=True)
                failed = True
                continue
            got = json.loads(run.stdout.strip().splitlines()[-1])
            images = {Path(k).name: torch.tensor(v) for k, v in got["images"].items()}
            cos = lambda a, b: float(a @ b / a.norm() / b.norm())  # noqa: E731
            worst_image = min(cos(images[i], want_images[i]) for i in IMAGES)
            worst_text = min(cos(torch.tensor(got["texts"][t]), want_texts[t]) for t in TEXTS)
            floor = 0.9999 if dtype == "f32" else 0.999
            ok = min(worst_image, worst_text) >= floor
            failed |= not ok
            print(f"{name:28s} {label:9s} image {worst_image:.6f}  text {worst_text:.6f}  {'ok' if ok else 'BELOW ' + str(floor)}",
                  flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
