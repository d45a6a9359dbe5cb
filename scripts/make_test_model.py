#!/usr/bin/env python3
"""Build the tiny CLIP checkpoints and reference embeddings that `cargo test` checks against.

Run once by a developer (the output is committed under tests/fixtures/); tests never run Python.

    pip install -r scripts/requirements.txt
    python3 scripts/make_test_model.py

What it writes:
  tests/fixtures/images/          a handful of real photos (scikit-image's samples) in the formats we must read
  tests/fixtures/models/<name>/   Hugging Face-format checkpoints with random weights in real CLIP architecture
                                  and the real CLIP tokenizer (built from the BPE vocabulary inside the
                                  open-clip-torch wheel, exactly like openai/clip-vit-base-patch32's)
  tests/fixtures/reference/<name>.json                  token ids + image/text embeddings from `transformers`
  tests/fixtures/reference/<name>_pixels.safetensors    CLIPImageProcessor's pixel_values for every image
"""
import glob
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import transformers
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast
# The PIL implementation of CLIPImageProcessor: the classic reference (the default one needs torchvision).
from transformers import CLIPImageProcessorPil as CLIPImageProcessor

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OPEN_CLIP_VERSION = "2.32.0"

# Texts chosen to break a sloppy tokenizer or pooling: punctuation, unicode, emoji, whitespace,
# the empty string, and one far longer than CLIP's 77-token context.
TEXTS = [
    "a photo of a cat",
    "satellite image of a city at night",
    "",
    "   Hello,   World!!!  ",
    "don't stop—it's 3:45pm; isn't it? (yes/no) #tag @user",
    "café naïve résumé — ÜNÏCÖDÉ 日本語のテキスト 🐱📷",
    "line one\nline two\ttabbed",
    "UPPER lower MiXeD 1234567890 3.14159",
    " ".join(["a very long caption that keeps going"] * 20),
]

# Two deliberately different shapes: everything the Rust side must read from config.json
# (patch size, image size, widths, depths, heads, activation, layer-norm epsilon, projection dim,
# legacy eos_token_id) differs between them, and so does preprocessing (resize != crop, mean/std,
# resample filter) and the weights format.
CONFIGS = {
    "tiny-clip-b32-quickgelu": dict(
        clip=dict(
            projection_dim=48,
            text_config=dict(
                vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
            ),
            vision_config=dict(
                image_size=96, patch_size=32, hidden_size=64, intermediate_size=256,
                num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            ),
        ),
        preprocessor=dict(size={"shortest_edge": 96}, crop_size={"height": 96, "width": 96}, resample=3,
                          image_mean=[0.48145466, 0.4578275, 0.40821073],
                          image_std=[0.26862954, 0.26130258, 0.27577711]),
        weights="safetensors",
    ),
    "tiny-clip-p14-gelu": dict(
        clip=dict(
            projection_dim=40,
            text_config=dict(
                vocab_size=49408, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                num_attention_heads=3, max_position_embeddings=77, hidden_act="gelu",
                layer_norm_eps=1e-6, bos_token_id=0, eos_token_id=2, pad_token_id=1,  # legacy ids, as openai's
            ),
            vision_config=dict(
                image_size=70, patch_size=14, hidden_size=96, intermediate_size=192,
                num_hidden_layers=3, num_attention_heads=6, hidden_act="gelu", layer_norm_eps=1e-6,
            ),
        ),
        preprocessor=dict(size={"shortest_edge": 80}, crop_size={"height": 70, "width": 70}, resample=2,
                          image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        weights="pytorch",
    ),
}


def bpe_vocab_lines():
    """The CLIP BPE merges, read from the open-clip-torch wheel (the same file OpenAI ships)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp,
                        f"open-clip-torch=={OPEN_CLIP_VERSION}"], check=True, stdout=subprocess.DEVNULL)
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    return gzip.decompress(data).decode("utf-8").split("\n")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tokenizer() -> CLIPTokenizerFast:
    """Same construction as open_clip's SimpleTokenizer / OpenAI's clip: 49408 tokens."""
    lines = bpe_vocab_lines()
    merges = lines[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = bytes_to_unicode()
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    tok = CLIPTokenizerFast(
        vocab={t: i for i, t in enumerate(vocab)}, merges=merges,
        unk_token="<|endoftext|>", bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", model_max_length=77,
    )
    # The ids OpenAI's tokenizer gives this caption: proof the vocabulary is the real one.
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    return tok


def write_images() -> list:
    """Real photos in the formats the decoder must handle, all without EXIF orientation
    (the reference pipeline does not rotate; orientation gets its own Rust test)."""
    import skimage.data as data

    out = FIXTURES / "images"
    out.mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(data.astronaut())
    coffee = Image.fromarray(data.coffee())
    chelsea = Image.fromarray(data.chelsea())
    rocket = Image.fromarray(data.rocket())
    camera = Image.fromarray(data.camera())  # grayscale
    astronaut.save(out / "astronaut.jpg", quality=90)
    coffee.save(out / "coffee.png")
    chelsea.save(out / "chelsea_progressive.jpg", quality=88, progressive=True)
    rocket.save(out / "rocket.jpg", quality=85)
    camera.save(out / "camera_gray.png")
    camera.save(out / "camera_gray.jpg", quality=90)
    coffee.convert("CMYK").save(out / "coffee_cmyk.jpg", quality=92)
    rgba = chelsea.convert("RGBA")
    alpha = np.array(rgba)
    h, w = alpha.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    alpha[..., 3] = np.clip(255 * (1.2 - np.hypot((yy - h / 2) / h, (xx - w / 2) / w) * 2.2), 0, 255).astype(np.uint8)
    Image.fromarray(alpha, "RGBA").save(out / "chelsea_alpha.png")
    astronaut.quantize(64).save(out / "astronaut_palette.png")
    return sorted(p.name for p in out.iterdir())


def randomize(model: CLIPModel):
    """Random weights scaled so every layer matters. `transformers`' own init is tuned for
    training, and with it a tiny random text tower maps every caption to nearly the same vector
    (pairwise cosine 0.9999+), which would make a parity test at 0.9999 meaningless."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.dim() >= 2 and "embedding" not in name.split(".")[-2]:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
            else:
                p.copy_(torch.randn_like(p))
        # Token embeddings dominate the file size: snap them to a coarse grid so git compresses
        # them well. They stay random; the model code cannot tell.
        emb = model.text_model.embeddings.token_embedding.weight
        emb.copy_(torch.round(emb * 2) / 2)


def l2(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def main():
    torch.manual_seed(0)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    images = write_images()
    tokenizer = build_tokenizer()
    ref_dir = FIXTURES / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)

    for name, spec in CONFIGS.items():
        model_dir = FIXTURES / "models" / name
        model_dir.mkdir(parents=True, exist_ok=True)
        config = CLIPConfig(**spec["clip"])
        model = CLIPModel(config).eval()
        randomize(model)
        config.save_pretrained(model_dir)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        for old in ("model.safetensors", "pytorch_model.bin"):
            (model_dir / old).unlink(missing_ok=True)
        if spec["weights"] == "safetensors":
            save_file(state, model_dir / "model.safetensors", metadata={"format": "pt"})
        else:
            torch.save(state, model_dir / "pytorch_model.bin")
        tokenizer.backend_tokenizer.save(str(model_dir / "tokenizer.json"))
        processor = CLIPImageProcessor(do_resize=True, do_center_crop=True, do_rescale=True,
                                       do_normalize=True, do_convert_rgb=True, **spec["preprocessor"])
        processor.save_pretrained(model_dir)

        pixels = {}
        image_embeds = {}
        with torch.no_grad():
            for img_name in images:
                pil = Image.open(FIXTURES / "images" / img_name)
                pv = processor(images=pil, return_tensors="pt")["pixel_values"]
                pixels[img_name] = pv[0].contiguous()
                pooled = model.vision_model(pixel_values=pv).pooler_output
                image_embeds[img_name] = l2(model.visual_projection(pooled))[0].tolist()
            token_ids = {}
            text_embeds = {}
            for text in TEXTS:
                enc = tokenizer(text, truncation=True, max_length=77, return_tensors="pt")
                ids = enc["input_ids"]
                token_ids[text] = ids[0].tolist()
                pooled = model.text_model(input_ids=ids, attention_mask=enc["attention_mask"]).pooler_output
                text_embeds[text] = l2(model.text_projection(pooled))[0].tolist()

        save_file(pixels, ref_dir / f"{name}_pixels.safetensors")
        reference = dict(
            generated_by=f"scripts/make_test_model.py (transformers {transformers.__version__}, torch {torch.__version__})",
            model=name, dim=config.projection_dim, texts=TEXTS, token_ids=token_ids,
            image_embeds=image_embeds, text_embeds=text_embeds,
        )
        (ref_dir / f"{name}.json").write_text(json.dumps(reference, ensure_ascii=False))
        embs = torch.tensor([image_embeds[i] for i in images])
        sims = embs @ embs.T
        off = sims[~torch.eye(len(images), dtype=torch.bool)]
        print(f"{name}: {len(images)} images, {len(TEXTS)} texts; image-image cosine max {off.max():.4f} mean {off.mean():.4f}")


if __name__ == "__main__":
    main()
