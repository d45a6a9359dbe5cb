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
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

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


def randomize(model):
    """Random weights scaled so every layer matters. `transformers`' own init is tuned for
    training, and with it a tiny random text tower maps every caption to nearly the same vector
    (pairwise cosine 0.9999+), which would make a parity test at 0.9999 meaningless."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            parts = name.split(".")
            owner = parts[max(len(parts) - 2, 0)]
            if any(n in name for n in ("layer_norm", "layrnorm", "layernorm", "LayerNorm")) or owner.startswith(("ln_", "norm")):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            # timm's position embeddings and the attention pool's query are whole tensors of their own.
            elif p.dim() >= 2 and "embedding" not in owner and parts[-1] not in ("pos_embed", "latent"):
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
            else:
                p.copy_(torch.randn_like(p))
        # Token embeddings dominate the file size: snap them to a coarse grid so git compresses
        # them well. They stay random; the model code cannot tell.
        for name, emb in model.named_parameters():
            if name.endswith("token_embedding.weight"):
                emb.copy_(torch.round(emb * 2) / 2)


def fresh_folder(folder):
    """`folder`, emptied of an earlier run's files (or made)."""
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def l2(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def make_clip(images):
    """The two Hugging Face CLIPModel checkpoints (and the fixture photos' pixels for them)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    ref_dir = FIXTURES / "reference"
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
        write_reference(name, dict(
            generated_by=f"scripts/make_test_model.py (transformers {transformers.__version__}, torch {torch.__version__})",
            model=name, dim=config.projection_dim, max_length=77, texts=TEXTS, token_ids=token_ids,
            image_embeds=image_embeds, text_embeds=text_embeds,
        ))


def write_reference(name, reference):
    (FIXTURES / "reference" / f"{name}.json").write_text(json.dumps(reference, ensure_ascii=False))
    images = sorted(reference["image_embeds"])
    embs = torch.tensor([reference["image_embeds"][i] for i in images])
    sims = embs @ embs.T
    off = sims[~torch.eye(len(images), dtype=torch.bool)]
    texts = torch.tensor([reference["text_embeds"][t] for t in reference["texts"]])
    tsims = (texts @ texts.T)[~torch.eye(len(texts), dtype=torch.bool)]
    print(f"{name}: {len(images)} images, {len(texts)} texts; image-image cosine max {off.max():.4f} "
          f"mean {off.mean():.4f}; text-text max {tsims.max():.4f}")


# The new families are also read in other languages, and are checked on more of them.
MULTILINGUAL_TEXTS = TEXTS + [
    "ein Foto von einer Katze am Strand, über den Dächern",
    "一只猫在海滩上的照片",
    "  leading and trailing spaces  ",
    "🐱🐶🌃",
]

# What open_clip's tokenizer cleans before its BPE (ftfy, HTML entities, whitespace): curly
# quotes as phone keyboards type them, entities, ligatures, full-width letters, odd line breaks.
OPENCLIP_TEXTS = MULTILINGUAL_TEXTS + [
    "it\u2019s a \u201cquoted\u201d caption",
    "Tom &amp; Jerry &lt;3 &amp;amp; co",
    "\ufb01sh and \ufb02owers",
    "\uff23\uff21\uff34\u3000\uff44\uff4f\uff47",
    "line\u2028separator\r\nand \x93C1 quotes\x94",
    # open_clip's own special tokens, and CLIP's that are text to it; a run of punctuation
    # swallows the `<` of one; the contractions fold case (`'\u017f` is `'s`).
    "<|endoftext|> a cat <end_of_text> a dog",
    "!!<end_of_text> x<start_of_text>y",
    "it'\u017f here",
]


def corpus_for_tokenizers():
    """Text to train the fixtures' small tokenizers on: the test texts and a few hundred
    everyday captions, so that test texts tokenise into several pieces each."""
    words = ("photo picture image cat dog beach city night satellite mountain river street car "
             "house tree flower sky cloud sun rain snow people person child family party dinner "
             "of a an the at in on with and by from over under near blue red green white black "
             "ein Foto von einer Katze am Strand über den Dächern die der das und mit").split()
    rng = np.random.default_rng(7)
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(600)]
    return lines + MULTILINGUAL_TEXTS


def sentencepiece_style_tokenizer():
    """Like SigLIP's own (SentencePiece unigram, converted to tokenizer.json): lower-cased,
    punctuation removed, whitespace collapsed, `</s>` appended; pad = eos = `</s>` (set in
    tokenizer_config.json only, as converted checkpoints do)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
    import string
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([
        normalizers.Lowercase(),
        normalizers.Replace(Regex("[" + re.escape(string.punctuation) + "]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(corpus_for_tokenizers(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>", unk_token="<unk>")


def gemma_style_tokenizer():
    """Like SigLIP 2's Gemma tokenizer: BPE over `▁`-joined text with byte fallback (`<0xNN>`
    pieces for anything outside the vocabulary: CJK, emoji), `<bos>` … `<eos>`, and the pad id
    written into tokenizer.json's own padding section."""
    from tokenizers import Tokenizer, models, normalizers, processors, decoders, trainers
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials, show_progress=False)
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.normalizer = normalizers.Replace(" ", "▁")
    base.train_from_iterator([t for t in corpus_for_tokenizers() if t.isascii()], trainer)
    state = json.loads(base.to_str())
    vocab = state["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(specials)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])])
    tok.enable_padding(pad_id=vocab["<pad>"], pad_token="<pad>")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>",
                                                pad_token="<pad>", unk_token="<unk>")


# Two SigLIP shapes that differ in everything config.json and preprocessor_config.json carry.
SIGLIP_CONFIGS = {
    "tiny-siglip-sp": dict(
        tokenizer=sentencepiece_style_tokenizer,
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                  projection_size=48),
        # 72 is not a multiple of 16 (as so400m's 384 is not of 14): the patch conv drops the rest.
        vision=dict(image_size=72, patch_size=16, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        preprocessor=dict(size={"height": 72, "width": 72}, resample=3, image_mean=[0.5, 0.5, 0.5],
                          image_std=[0.5, 0.5, 0.5]),
        weights="safetensors",
    ),
    "tiny-siglip2-gemma": dict(
        tokenizer=gemma_style_tokenizer,
        text=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=3, num_attention_heads=4,
                  max_position_embeddings=24, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5,
                  projection_size=36),
        vision=dict(image_size=56, patch_size=14, hidden_size=36, intermediate_size=80, num_hidden_layers=3,
                    num_attention_heads=3, hidden_act="gelu", layer_norm_eps=1e-5),
        preprocessor=dict(size={"height": 56, "width": 56}, resample=2, image_mean=[0.48, 0.45, 0.40],
                          image_std=[0.27, 0.26, 0.28]),
        weights="pytorch",
    ),
}


def randomize_logits(model):
    """A probability scale and bias far from their initial zeros, so skipping either shows."""
    with torch.no_grad():
        model.logit_scale.copy_(torch.tensor([2.3]) + 0.3 * torch.randn(1))
        model.logit_bias.copy_(torch.tensor([-4.0]) + torch.randn(1))


# Two SigLIP 2 NaFlex shapes (transformers' Siglip2Model): pictures keep their aspect ratio, and
# the learned positions are resized to each picture's grid, up (a 3×3 table, up to 20 patches) and
# down (6×6, up to 24 patches of 8 pixels). The second tokenizer's files name no padding side,
# so Siglip2Tokenizer pads on its own side, the left.
SIGLIP2_NAFLEX_CONFIGS = {
    "tiny-siglip2-naflex": dict(
        tokenizer=gemma_style_tokenizer,
        text=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=20, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                  projection_size=48),
        vision=dict(num_patches=9, patch_size=16, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        preprocessor=dict(patch_size=16, max_num_patches=20, resample=2, image_mean=[0.5, 0.5, 0.5],
                          image_std=[0.5, 0.5, 0.5]),
        weights="safetensors",
    ),
    "tiny-siglip2-naflex-p8": dict(
        tokenizer=gemma_style_tokenizer,
        padding_side=None,
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                  max_position_embeddings=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5,
                  projection_size=36),
        vision=dict(num_patches=36, patch_size=8, hidden_size=36, intermediate_size=80, num_hidden_layers=3,
                    num_attention_heads=3, hidden_act="gelu", layer_norm_eps=1e-5),
        preprocessor=dict(patch_size=8, max_num_patches=24, resample=3, image_mean=[0.48, 0.45, 0.40],
                          image_std=[0.27, 0.26, 0.28]),
        weights="pytorch",
    ),
}


def make_siglip(images, configs=SIGLIP_CONFIGS):
    """SigLIP checkpoints (transformers' SiglipModel, or Siglip2Model for NaFlex) with references
    from transformers. Texts are padded to the text tower's length (`padding="max_length"`, as the
    model cards direct) and run without an attention mask, as the original (big_vision) model was
    trained. NaFlex pictures go through the tower as one batch, padded to the most patches and
    masked, as its processor hands them over."""
    from transformers import AutoTokenizer, SiglipConfig, SiglipModel, Siglip2Config, Siglip2Model
    from transformers import SiglipImageProcessorPil, Siglip2ImageProcessorPil
    torch.manual_seed(1 if configs is SIGLIP_CONFIGS else 2)
    for name, spec in configs.items():
        naflex = "num_patches" in spec["vision"]
        model_dir = FIXTURES / "models" / name
        fresh_folder(model_dir)
        tokenizer = spec["tokenizer"]()
        text = dict(spec["text"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        config = (Siglip2Config if naflex else SiglipConfig)(text_config=text, vision_config=spec["vision"])
        model = (Siglip2Model if naflex else SiglipModel)(config).eval()
        randomize(model)
        randomize_logits(model)
        if naflex:
            # Positions that outweigh the pixels, so that how they are resized shows in every embedding.
            with torch.no_grad():
                model.vision_model.embeddings.position_embedding.weight.mul_(4.0)
        config.save_pretrained(model_dir)
        save_weights(model.state_dict(), model_dir, spec["weights"])
        tokenizer.save_pretrained(model_dir)
        for extra in ("special_tokens_map.json", "chat_template.jinja"):
            (model_dir / extra).unlink(missing_ok=True)
        if "padding_side" in spec:
            for file, key in (("tokenizer_config.json", "padding_side"), ("tokenizer.json", "padding")):
                content = json.loads((model_dir / file).read_text())
                content.pop(key, None)
                (model_dir / file).write_text(json.dumps(content, ensure_ascii=False))
        if naflex:
            # The tokenizer transformers gives the checkpoint: Siglip2Tokenizer, which lowercases.
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            processor = Siglip2ImageProcessorPil(do_resize=True, do_rescale=True, do_normalize=True,
                                                 do_convert_rgb=True, **spec["preprocessor"])
        else:
            processor = SiglipImageProcessorPil(do_resize=True, do_rescale=True, do_normalize=True,
                                                do_convert_rgb=True, **spec["preprocessor"])
        processor.save_pretrained(model_dir)
        max_length = config.text_config.max_position_embeddings

        pixels, image_embeds, token_ids, text_embeds = {}, {}, {}, {}
        with torch.no_grad():
            if naflex:
                batch = processor(images=[Image.open(FIXTURES / "images" / i) for i in images], return_tensors="pt")
                inputs = dict(pixel_values=batch["pixel_values"], pixel_attention_mask=batch["pixel_attention_mask"],
                              spatial_shapes=batch["spatial_shapes"])
                pooled = l2(model.vision_model(**inputs).pooler_output)
                patch = spec["preprocessor"]["patch_size"]
                for i, img_name in enumerate(images):
                    # Back from (patches, patch · patch · channels) to the (channels, height, width) picture.
                    rows, cols = batch["spatial_shapes"][i].tolist()
                    grid = batch["pixel_values"][i, : rows * cols].reshape(rows, cols, patch, patch, 3)
                    pixels[img_name] = grid.permute(4, 0, 2, 1, 3).reshape(3, rows * patch, cols * patch).contiguous()
                    image_embeds[img_name] = pooled[i].tolist()
            else:
                inputs = dict(pixel_values=torch.cat([processor(images=Image.open(FIXTURES / "images" / i),
                                                                return_tensors="pt")["pixel_values"] for i in images]))
                pooled = l2(model.vision_model(**inputs).pooler_output)
                for i, img_name in enumerate(images):
                    pixels[img_name] = inputs["pixel_values"][i].contiguous()
                    image_embeds[img_name] = pooled[i].tolist()
            for text in MULTILINGUAL_TEXTS:
                ids = tokenizer(text, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt")["input_ids"]
                token_ids[text] = ids[0].tolist()
                text_embeds[text] = l2(model.text_model(input_ids=ids).pooler_output)[0].tolist()
            # The model's own sigmoid probabilities for every text and picture: the `prob` a hit shows.
            all_ids = torch.tensor([token_ids[t] for t in MULTILINGUAL_TEXTS])
            out = model(input_ids=all_ids, **inputs)
            probs = torch.sigmoid(out.logits_per_text)
        save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
        write_reference(name, dict(
            generated_by=f"scripts/make_test_model.py (transformers {transformers.__version__}, torch {torch.__version__})",
            model=name, dim=config.text_config.projection_size, max_length=max_length, texts=MULTILINGUAL_TEXTS,
            token_ids=token_ids, image_embeds=image_embeds, text_embeds=text_embeds,
            probs={t: dict(zip(images, row.tolist())) for t, row in zip(MULTILINGUAL_TEXTS, probs)},
        ))


# Two OpenCLIP ViT shapes: one as published on the hub (open_clip_config.json + safetensors,
# QuickGELU, with a preprocess_cfg of its own: `squash` resize, bilinear, its own mean/std), one
# as a bare state dict with its architecture given separately (GELU, MLP ratio 2), which carries
# no preprocessing and so gets open_clip's defaults (shortest-side bicubic resize, centre crop,
# OpenAI's mean/std).
OPENCLIP_CONFIGS = {
    "tiny-openclip-b32-quickgelu": dict(
        model_cfg=dict(embed_dim=48, quick_gelu=True,
                       vision_cfg=dict(image_size=96, layers=2, width=64, head_width=16, patch_size=32),
                       text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)),
        preprocess_cfg=dict(mean=[0.5, 0.45, 0.4], std=[0.25, 0.3, 0.28], interpolation="bilinear",
                            resize_mode="squash"),
        layout="hub",
    ),
    "tiny-openclip-p16-gelu": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=64, layers=3, width=48, head_width=16, patch_size=16, mlp_ratio=2.0),
                       text_cfg=dict(context_length=32, vocab_size=49408, width=24, heads=3, layers=3)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="bare",
    ),
}


# Two shapes of OpenCLIP's `ModifiedResNet` (OpenAI's RN50 family, RemoteCLIP-RN50): blocks with
# and without a shortcut projection, a picture size that is a multiple of 32 and one that is not
# (each stage's average pool drops the odd row and column, as torch's does).
RESNET_CONFIGS = {
    "tiny-openclip-rn-quickgelu": dict(
        model_cfg=dict(embed_dim=48, quick_gelu=True,
                       vision_cfg=dict(image_size=96, layers=[2, 1, 1, 1], width=12, head_width=32, patch_size=None),
                       text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="hub",
    ),
    "tiny-openclip-rn-gelu": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=80, layers=[1, 2, 1, 2], width=8, head_width=16, patch_size=None),
                       text_cfg=dict(context_length=32, vocab_size=49408, width=24, heads=3, layers=3)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="bare",
    ),
}


# Two shapes of timm's EVA towers (EVA-CLIP: OpenCLIP's EVA02-*, EVA01-g-14), named with their
# shape changed by `timm_model_kwargs` to keep the fixtures tiny: EVA-02's (rotary positions on a
# 4×4 grid counted as the 16×16 one it was pretrained on, SwiGLU with a norm inside, a norm in
# the attention, q, k and v apart), and EVA02-E's (norms after each branch, q, k and v fused, a
# GELU MLP, a patch size that leaves pixels over).
EVA_CONFIGS = {
    "tiny-openclip-eva02": dict(
        model_cfg=dict(embed_dim=48,
                       vision_cfg=dict(image_size=64, timm_model_name="eva02_base_patch16_clip_224",
                                       timm_model_pretrained=False, timm_pool="token", timm_proj=None,
                                       timm_model_kwargs=dict(img_size=64, embed_dim=64, depth=2, num_heads=4)),
                       text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
                       custom_text=True),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="hub",
    ),
    "tiny-openclip-eva02-e": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=60, timm_model_name="eva02_enormous_patch14_clip_224",
                                       timm_model_pretrained=False, timm_pool="token", timm_proj=None,
                                       timm_model_kwargs=dict(img_size=60, embed_dim=48, depth=2, num_heads=4)),
                       text_cfg=dict(context_length=32, vocab_size=49408, width=24, heads=3, layers=3),
                       custom_text=True),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="bare",
    ),
}


# MobileCLIP-B's shape (OpenCLIP's MobileCLIP-B: timm's vit_base_mci_224, a ViT whose patches
# come from a stem of three convs with batch norms, positions for the patches alone), narrowed
# as `timm_model_kwargs` says; its preprocessing (mean 0, std 1, bilinear) is Apple's.
MOBILECLIP_CONFIGS = {
    "tiny-openclip-mobileclip-b": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=64, timm_model_name="vit_base_mci_224",
                                       timm_model_pretrained=False, timm_pool="token", timm_proj=None,
                                       timm_model_kwargs=dict(img_size=64, embed_dim=64, depth=2, num_heads=4)),
                       text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
                       custom_text=True),
        preprocess_cfg=dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], interpolation="bilinear",
                            resize_mode="shortest"),
        layout="hub",
    ),
}


def timm_mci_of_width(embed_dim, pretrained=False, **kwargs):
    """timm's vit_base_mci_224 at another width. Its registry function writes the stem for 768
    (ConvStem channels 768 // 4, 768 // 4, 768) and so cannot narrow; this is its body with
    `embed_dim` in place of 768."""
    from timm.models.vision_transformer_hybrid import ConvStem, _create_vision_transformer_hybrid
    backbone = ConvStem(channels=(embed_dim // 4, embed_dim // 4, embed_dim), stride=(4, 2, 2), kernel_size=(4, 2, 2),
                        padding=0, in_chans=kwargs.get("in_chans", 3), act_layer=torch.nn.GELU)
    model_args = dict(embed_dim=embed_dim, depth=12, num_heads=12, no_embed_class=True)
    return _create_vision_transformer_hybrid("vit_base_mci_224", backbone=backbone, embed_args=dict(proj=False),
                                             pretrained=pretrained, **dict(model_args, **kwargs))


# CLIPA's shape (OpenCLIP's ViT-*-CLIPA*: UCSC-VLAA's CLIPA-v2): no norm before the image
# tower's blocks, its patch tokens averaged and the mean normalised; a text tower that sees
# every position, read at the last position of a text padded to the context, tokenized by
# BERT's uncased tokenizer (here the "hf-text" family's tiny-bert) with its [SEP] made token 0.
CLIPA_CONFIGS = {
    "tiny-openclip-clipa": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=64, layers=2, width=48, head_width=16, patch_size=16,
                                       no_ln_pre=True, pool_type="avg", final_ln_after_pool=True),
                       text_cfg=dict(context_length=16, vocab_size=384, hf_tokenizer_name="tests/fixtures/models/tiny-bert",
                                     tokenizer_kwargs=dict(strip_sep_token=True), width=32, heads=2, layers=2,
                                     pool_type="last", no_causal_mask=True)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bilinear", resize_mode="squash"),
        layout="hub",
        padded=True,
    ),
}


# Two shapes of timm's ConvNeXt (LAION's convnext_base_w, convnext_large_d_320 …), shrunk by
# `timm_model_kwargs`: one projected by a linear layer (hub layout), one by open_clip's MLP whose
# grid has an odd side to halve (a bare state dict).
CONVNEXT_CONFIGS = {
    "tiny-openclip-convnext": dict(
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=64, timm_model_name="convnext_base", timm_model_pretrained=False,
                                       timm_pool="", timm_proj="linear", timm_drop=0.0, timm_drop_path=0.1,
                                       timm_model_kwargs=dict(dims=[16, 24, 32, 40], depths=[1, 1, 2, 1])),
                       text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="hub",
    ),
    "tiny-openclip-convnext-mlp": dict(
        model_cfg=dict(embed_dim=32,
                       vision_cfg=dict(image_size=72, timm_model_name="convnext_large", timm_model_pretrained=False,
                                       timm_pool="", timm_proj="mlp", timm_drop=0.0, timm_drop_path=0.1,
                                       timm_model_kwargs=dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1])),
                       text_cfg=dict(context_length=32, vocab_size=49408, width=24, heads=3, layers=2)),
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="bare",
    ),
}


def create_open_clip(name, model_cfg, **create_kwargs):
    """`open_clip.create_model` of `model_cfg`, registered as `name`. open_clip 2.32 has no
    `timm_model_kwargs`: the config is registered without them and they are handed to
    `timm.create_model`, as open_clip 3 does."""
    import open_clip
    import timm
    registered = json.loads(json.dumps(model_cfg))
    timm_kwargs = registered["vision_cfg"].pop("timm_model_kwargs", {})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(registered))
        open_clip.add_model_config(Path(tmp) / f"{name}.json")
    create = timm.create_model

    def create_narrowed(model_name, **kwargs):
        if model_name == "vit_base_mci_224" and "embed_dim" in timm_kwargs:
            return timm_mci_of_width(**kwargs, **timm_kwargs)
        return create(model_name, **kwargs, **timm_kwargs)
    open_clip.timm_model.timm.create_model = create_narrowed
    # Hugging Face tokenizers and text models are named relative to the repository root.
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return open_clip.create_model(name, pretrained=None, **create_kwargs).eval()
    finally:
        open_clip.timm_model.timm.create_model = create
        os.chdir(cwd)


# Two CoCa shapes (OpenCLIP's `CoCa`: the attentional pooler over the image tokens, a class token
# after the text; the captioning decoder is in the checkpoint, unused for embeddings): one whose
# pooler keys have the embedding's width (torch packs q, k and v), one whose are wider (and with
# LayerScale).
COCA_CONFIGS = {
    "tiny-coca-b32": dict(
        model_cfg=dict(embed_dim=48,
                       vision_cfg=dict(image_size=96, layers=2, width=48, head_width=16, patch_size=32,
                                       attentional_pool=True, attn_pooler_heads=4, attn_pooler_queries=5,
                                       output_tokens=True),
                       text_cfg=dict(context_length=76, vocab_size=49408, width=32, heads=2, layers=2,
                                     embed_cls=True, output_tokens=True),
                       # Never run for embeddings: as narrow as it builds, to keep the file small.
                       multimodal_cfg=dict(context_length=76, vocab_size=49408, width=4, heads=2, layers=1,
                                           attn_pooler_heads=4),
                       custom_text=True),
        preprocess_cfg=dict(mean=[0.5, 0.45, 0.4], std=[0.25, 0.3, 0.28], interpolation="bilinear",
                            resize_mode="squash"),
        layout="hub",
    ),
    "tiny-coca-p16-gelu": dict(
        model_cfg=dict(embed_dim=40,
                       # With LayerScale (`ls_init_value`, ViT-M-16-alt's option) in both towers.
                       vision_cfg=dict(image_size=64, layers=3, width=48, head_width=16, patch_size=16, mlp_ratio=2.0,
                                       attentional_pool=True, attn_pooler_heads=2, attn_pooler_queries=3,
                                       output_tokens=True, ls_init_value=0.5),
                       text_cfg=dict(context_length=20, vocab_size=49408, width=24, heads=3, layers=3, embed_cls=True,
                                     output_tokens=True, ls_init_value=0.5),
                       multimodal_cfg=dict(context_length=20, vocab_size=49408, width=4, heads=2, layers=1),
                       custom_text=True),
        # A bare state dict carries no preprocessing: open_clip's defaults.
        preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                            interpolation="bicubic", resize_mode="shortest"),
        layout="bare",
    ),
}


def resnet_as_trained(model, transform, images):
    """A ResNet made smooth as trained ones are. Its batch-norm statistics are measured on the
    fixture photos (with made-up ones the picture's signal fades through the blocks and every
    photo embeds alike), and the norm that ends each block's branch is scaled down, as
    `zero_init_residual` starts it, so that each block nudges its input rather than replacing
    it (a random net that replaces it is chaotic: half an 8-bit step of noise on the pixels
    moved its embeddings to cosine 0.99)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    with torch.no_grad():
        for name, p in model.visual.named_parameters():
            if name.startswith("layer") and name.endswith("bn3.weight"):
                p.mul_(0.25)
    batch = torch.stack([transform(Image.open(FIXTURES / "images" / n).convert("RGB")) for n in images])
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch
    model.visual.train()
    with torch.no_grad():
        model.visual(batch)
    model.visual.eval()


def post_norm_as_trained(model):
    """Blocks that normalise each branch's output (EVA02-E's) made to nudge their input, as
    trained ones do, rather than replace it: with random norm gains near 1 every block adds as
    much as its input holds, and the embeddings of one picture and its half-size thumbnail fell
    to cosine 0.988, so a test of the thumbnail would measure the fixture."""
    from timm.models.eva import EvaBlockPostNorm
    blocks = getattr(getattr(model.visual, "trunk", None), "blocks", [])
    with torch.no_grad():
        for block in blocks:
            if isinstance(block, EvaBlockPostNorm):
                block.norm1.weight.mul_(0.25)
                block.norm2.weight.mul_(0.25)


def convnext_as_trained(model):
    """A ConvNeXt whose blocks nudge their input, as trained ones do: its layer scales start at
    1e-6 and stay well under 1 (random ones near 1 make each block replace its input). Its
    channel norms (the stem's and each downsample's, which `randomize` cannot tell by name) get
    a norm's gains near 1 and biases near 0."""
    trunk = getattr(model.visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "stem"):
        return
    with torch.no_grad():
        for name, p in trunk.named_parameters():
            if name.endswith(".gamma"):
                p.mul_(0.1)
            elif name.startswith(("stem.1.", "stages.")) and (name.startswith("stem.1.") or ".downsample.0." in name):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))


def openclip_image_references(model, transform, images):
    """open_clip's preprocessed pixels and image embeddings of the fixture photos."""
    pixels, image_embeds = {}, {}
    for img_name in images:
        # open_clip resizes before converting to RGB, so a palette picture would be resized by
        # nearest neighbour; imgsearch converts first. Compare on RGB input.
        pil = Image.open(FIXTURES / "images" / img_name).convert("RGB")
        pv = transform(pil).unsqueeze(0)
        pixels[img_name] = pv[0].contiguous()
        image_embeds[img_name] = l2(model.encode_image(pv))[0].tolist()
    return pixels, image_embeds


def make_openclip(images, configs=OPENCLIP_CONFIGS):
    """OpenCLIP checkpoints made by open-clip-torch, with references from open_clip itself:
    its tokenizer, its image transform and `encode_image` / `encode_text`."""
    import open_clip
    torch.manual_seed(2)
    tokenizer_json = FIXTURES / "models" / "tiny-clip-b32-quickgelu" / "tokenizer.json"
    for name, spec in configs.items():
        model_dir = FIXTURES / "models" / name
        fresh_folder(model_dir)
        model = create_open_clip(name, spec["model_cfg"])
        randomize(model)
        pre = spec["preprocess_cfg"]
        transform = open_clip.image_transform(spec["model_cfg"]["vision_cfg"]["image_size"], is_train=False,
                                              mean=pre["mean"], std=pre["std"], interpolation=pre["interpolation"],
                                              resize_mode=pre["resize_mode"])
        resnet_as_trained(model, transform, images)
        post_norm_as_trained(model)
        convnext_as_trained(model)
        tokenizer = open_clip.get_tokenizer(name)
        if spec["layout"] == "hub":
            # As `open_clip.push_to_hf_hub` writes it (no tokenizer.json: the CLIP BPE is built in).
            (model_dir / "open_clip_config.json").write_text(json.dumps(
                dict(model_cfg=spec["model_cfg"], preprocess_cfg=dict(pre, size=spec["model_cfg"]["vision_cfg"]["image_size"])),
                indent=2))
            # In half precision, as many hub checkpoints are: the loader widens it, and the
            # references are computed from the same rounded weights.
            # (Integer buffers, a batch norm's count of batches, stay as they are.)
            half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
            save_weights(half, model_dir, "safetensors", "open_clip_model.safetensors")
        else:
            # As RemoteCLIP ships it: a torch.save'd state dict beside nothing else, wrapped the way
            # training scripts leave it (a "state_dict" key, DistributedDataParallel's "module." prefix).
            state = {"module." + k: v.contiguous() for k, v in model.state_dict().items()}
            # Saved under a 21-character name first: torch names the folder inside the archive after
            # the file, and that length is the one the zip crate's offset detection misreads.
            saved = model_dir / "RemoteCLIP-tiny-p16-x.pt"
            torch.save({"epoch": 3, "state_dict": state}, saved)
            saved.rename(model_dir / f"{name}.pt")
            (model_dir / "arch.json").write_text(json.dumps(spec["model_cfg"], indent=2))

        token_ids, text_embeds = {}, {}
        # Token 0 ("!" inside a word) is what CoCa's class token takes for padding: it hides
        # the token after it.
        coca = spec["model_cfg"]["text_cfg"].get("embed_cls")
        texts = OPENCLIP_TEXTS + (["hi!~ a cat", "!@# sale"] if coca else [])
        with torch.no_grad():
            pixels, image_embeds = openclip_image_references(model, transform, images)
            for text in texts:
                if spec.get("padded"):
                    # A tower read at the last position of the padded context: all of it counts.
                    ids = hf_tokenize(tokenizer, text)
                    token_ids[text] = ids[0].tolist()
                    text_embeds[text] = l2(model.encode_text(ids))[0].tolist()
                    continue
                ids = tokenizer([text])
                # Up to the first end token (CLIP pools there); a class token after the text (CoCa)
                # sees it all, up to the end token the tokenizer appends.
                end = int(ids[0].argmax()) + 1
                if spec["model_cfg"]["text_cfg"].get("embed_cls"):
                    end = int((ids[0] == ids[0].max()).nonzero().max()) + 1
                token_ids[text] = ids[0][:end].tolist()
                text_embeds[text] = l2(model.encode_text(ids))[0].tolist()
        save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
        write_reference(name, dict(
            generated_by=f"scripts/make_test_model.py (open_clip {open_clip.__version__}, torch {torch.__version__})",
            model=name, dim=spec["model_cfg"]["embed_dim"], max_length=spec["model_cfg"]["text_cfg"]["context_length"],
            texts=texts, token_ids=token_ids, image_embeds=image_embeds, text_embeds=text_embeds,
        ))


def xlm_roberta_style_tokenizer():
    """Like XLM-RoBERTa's (SentencePiece unigram, converted to tokenizer.json): cased, NFKC,
    `<s> … </s>`, `<pad>` = 1, `<mask>` last."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(corpus_for_tokenizers(), trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return transformers.XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def bert_style_tokenizer():
    """Like BERT's uncased WordPiece: `[CLS] … [SEP]`, `[PAD]` = 0."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(corpus_for_tokenizers(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return transformers.BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                          pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def nllb_style_tokenizer():
    """Like NLLB-200's: SentencePiece BPE over `▁`-joined text, language codes as special tokens,
    `eng_Latn … </s>` (the language code first: transformers' NllbTokenizer without
    `legacy_behaviour`), `<pad>` = 1."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tok.train_from_iterator(corpus_for_tokenizers(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return transformers.NllbTokenizer(vocab=model["vocab"], merges=merges,
                                      additional_special_tokens=["eng_Latn", "deu_Latn", "zho_Hans", "fra_Latn"])


# OpenCLIP with text towers from Hugging Face models (`hf_model_name`, as in
# xlm-roberta-base-ViT-B-32, nllb-clip-base and roberta-ViT-B-32): one XLM-RoBERTa-shaped
# (positions counted from the pad id, mean pooling, the MLP projection: open_clip's defaults),
# one NLLB-shaped (see its entry), one BERT-shaped (positions from 0, BERT's own pooler on the
# first token, a linear projection, a shorter context). The text model's config.json and the tokenizer sit in a folder of their own, which
# hf_model_name names as a path, as `transformers` reads one; the checkpoint folder also holds
# the tokenizer as `open_clip.push_to_hf_hub` saves it.
HF_TEXT_CONFIGS = {
    "tiny-openclip-xlmr": dict(
        text_model="tiny-xlm-roberta",
        tokenizer=xlm_roberta_style_tokenizer,
        hf_config=dict(model_type="xlm-roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=82, type_vocab_size=1, layer_norm_eps=1e-5,
                       hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2),
        model_cfg=dict(embed_dim=48,
                       vision_cfg=dict(image_size=96, layers=2, width=64, head_width=16, patch_size=32),
                       text_cfg=dict(hf_pooler_type="mean_pooler", hf_proj_type="mlp")),
    ),
    # NLLB-200's encoder (nllb-clip-base): pre-norm layers with ReLU, token embeddings scaled by
    # sqrt(width), sinusoidal positions counted from the pad id, a layer norm at the end; its
    # `cls_pooler` is the first token (an encoder has no pooler of its own).
    "tiny-openclip-nllb": dict(
        text_model="tiny-nllb",
        tokenizer=nllb_style_tokenizer,
        hf_config=dict(model_type="m2m_100", d_model=32, encoder_layers=2, encoder_attention_heads=4,
                       encoder_ffn_dim=48, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=8,
                       activation_function="relu", max_position_embeddings=64, scale_embedding=True,
                       pad_token_id=1, bos_token_id=0, eos_token_id=2),
        model_cfg=dict(embed_dim=24,
                       vision_cfg=dict(image_size=64, layers=2, width=32, head_width=16, patch_size=16),
                       text_cfg=dict(context_length=40, hf_pooler_type="cls_pooler", hf_proj_type="linear")),
    ),
    "tiny-openclip-bert": dict(
        text_model="tiny-bert",
        tokenizer=bert_style_tokenizer,
        hf_config=dict(model_type="bert", hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
                       intermediate_size=40, max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12,
                       hidden_act="gelu", pad_token_id=0),
        model_cfg=dict(embed_dim=40,
                       vision_cfg=dict(image_size=64, layers=2, width=48, head_width=16, patch_size=16),
                       text_cfg=dict(context_length=32, hf_pooler_type="cls_pooler", hf_proj_type="linear")),
    ),
}


def hf_tokenize(open_tokenizer, text):
    """open_clip's `HFTokenizer.__call__`, whose `batch_encode_plus` transformers 5 no longer has:
    the same cleaning, then the tokenizer padded and cut to the context, and its separator token
    made 0 where `strip_sep_token` says so."""
    ids = open_tokenizer.tokenizer([open_tokenizer.clean_fn(text)], return_tensors="pt", padding="max_length",
                                   max_length=open_tokenizer.context_length, truncation=True).input_ids
    if open_tokenizer.strip_sep_token:
        ids = torch.where(ids == open_tokenizer.tokenizer.sep_token_id, torch.zeros_like(ids), ids)
    return ids


def open_clip_with_hf_text(name, model_cfg):
    """open_clip's model and tokenizer of `model_cfg` (registered as `name`), eval mode, random
    weights; its text tower's paths are relative to the repository root, where they are read."""
    import open_clip
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(Path(tmp) / f"{name}.json")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return (open_clip.create_model(name, pretrained=None, pretrained_hf=False).eval(),
                open_clip.get_tokenizer(name))
    finally:
        os.chdir(cwd)


def make_openclip_hf_text(images):
    """OpenCLIP checkpoints whose text tower is a Hugging Face model, with references from
    open_clip (`HFTokenizer`, `encode_text`, which masks the padding)."""
    import open_clip
    torch.manual_seed(3)
    for name, spec in HF_TEXT_CONFIGS.items():
        model_dir, text_dir = FIXTURES / "models" / name, FIXTURES / "models" / spec["text_model"]
        for folder in (model_dir, text_dir):
            fresh_folder(folder)
        tokenizer = spec["tokenizer"]()
        hf_config = transformers.AutoConfig.for_model(vocab_size=len(tokenizer), **spec["hf_config"])
        hf_config.save_pretrained(text_dir)
        tokenizer.save_pretrained(text_dir)
        # A path relative to the repository root, where the tests run.
        text_path = str(text_dir.relative_to(ROOT))
        model_cfg = json.loads(json.dumps(spec["model_cfg"]))
        model_cfg["text_cfg"].update(hf_model_name=text_path, hf_tokenizer_name=text_path)
        model, open_tokenizer = open_clip_with_hf_text(name, model_cfg)
        randomize(model)
        (model_dir / "open_clip_config.json").write_text(json.dumps(dict(model_cfg=model_cfg, preprocess_cfg=dict(
            mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
            interpolation="bicubic", resize_mode="shortest", size=model_cfg["vision_cfg"]["image_size"])), indent=2))
        open_tokenizer.save_pretrained(model_dir)
        save_weights(model.state_dict(), model_dir, "safetensors", "open_clip_model.safetensors")
        transform = open_clip.image_transform(model_cfg["vision_cfg"]["image_size"], is_train=False)

        pad = hf_config.pad_token_id
        # Typed special tokens: a typed pad token is masked out as padding is.
        texts = OPENCLIP_TEXTS + ["a <pad> cat </s> on <s> a [PAD] mat [SEP]", "<mask> beach", "deu_Latn eine Katze"]
        token_ids, text_embeds = {}, {}
        with torch.no_grad():
            pixels, image_embeds = openclip_image_references(model, transform, images)
            for text in texts:
                ids = hf_tokenize(open_tokenizer, text)
                kept = (ids[0] != pad).nonzero()
                token_ids[text] = ids[0][:int(kept.max()) + 1].tolist()
                text_embeds[text] = l2(model.encode_text(ids))[0].tolist()
        save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
        write_reference(name, dict(
            generated_by=f"scripts/make_test_model.py (open_clip {open_clip.__version__}, transformers "
                         f"{transformers.__version__}, torch {torch.__version__})",
            model=name, dim=model_cfg["embed_dim"], max_length=model_cfg["text_cfg"].get("context_length", 77),
            texts=texts, token_ids=token_ids, image_embeds=image_embeds, text_embeds=text_embeds,
        ))


# Queries in other languages, each read with its language's code (`HFTokenizer(language=...)`,
# as Immich sets it per user): NLLB-CLIP pools at the first token, which is that code.
LANGUAGE_TEXTS = {
    "deu_Latn": ["eine Katze am Strand", "a photo of a cat"],
    "fra_Latn": ["un chat sur la plage"],
    "zho_Hans": ["一只猫在海滩上的照片"],
}


def make_nllb_languages(images):
    """References of tiny-openclip-nllb (as made by `hf-text`, not remade here) for texts read
    in other languages than the tokenizer's default: token ids and open_clip's `encode_text`."""
    import open_clip
    name = "tiny-openclip-nllb"
    model_dir = FIXTURES / "models" / name
    model_cfg = json.loads((model_dir / "open_clip_config.json").read_text())["model_cfg"]
    model, open_tokenizer = open_clip_with_hf_text(name, model_cfg)
    model.load_state_dict(load_file(model_dir / "open_clip_model.safetensors"))
    pad = open_tokenizer.tokenizer.pad_token_id
    languages = {}
    with torch.no_grad():
        for language, texts in LANGUAGE_TEXTS.items():
            # What open_clip's `set_language` does with transformers 4; with transformers 5 its
            # `set_src_lang_special_tokens` no longer changes what the tokenizer puts first
            # (`src_lang` does, as transformers documents).
            open_tokenizer.tokenizer.src_lang = language
            token_ids, text_embeds = {}, {}
            for text in texts:
                ids = hf_tokenize(open_tokenizer, text)
                token_ids[text] = ids[0][:int((ids[0] != pad).nonzero().max()) + 1].tolist()
                text_embeds[text] = l2(model.encode_text(ids))[0].tolist()
            languages[language] = dict(token_ids=token_ids, text_embeds=text_embeds)
    (FIXTURES / "reference" / f"{name}_languages.json").write_text(json.dumps(dict(
        generated_by=f"scripts/make_test_model.py nllb-languages (open_clip {open_clip.__version__}, transformers "
                     f"{transformers.__version__}, torch {torch.__version__})",
        model=name, languages=languages), ensure_ascii=False))


def t5_style_tokenizer():
    """Like open_clip's SigLIP tokenizer (timm/ViT-B-16-SigLIP: T5's SentencePiece unigram,
    converted): cased (open_clip canonicalizes texts before it), `</s>` appended, pad = eos =
    `</s>` (open_clip's `SigLipTokenizer` sets pad_token_id 1)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(corpus_for_tokenizers(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>", unk_token="<unk>")


def gemma_eos_tokenizer():
    """Like open_clip's SigLIP 2 tokenizer (timm/ViT-B-16-SigLIP2: Gemma's, with `add_bos_token`
    off and `add_eos_token` on): the Gemma-style BPE with `<eos>` appended only, pad `<pad>` = 0."""
    from tokenizers import processors
    tok = gemma_style_tokenizer().backend_tokenizer
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", tok.token_to_id("<eos>"))])
    tok.no_padding()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>",
                                                pad_token="<pad>", unk_token="<unk>")


# OpenCLIP's SigLIP and SigLIP 2 (timm/ViT-SO400M-14-SigLIP-384, ...): a timm SigLIP ViT (named,
# with its shape changed by `timm_model_kwargs`, open_clip 3's option, to keep the fixture tiny)
# beside open_clip's own text transformer, bidirectional and read at its last position, with a
# Hugging Face tokenizer. One as timm's SigLIP repositories are published (safetensors, its own
# tokenizer beside it, a text head with a bias, exact GELU, canonicalized texts); one whose
# tokenizer is another folder's (as ViT-SO400M-14-SigLIP names timm/ViT-B-16-SigLIP's), in a
# pickle, SigLIP 2-shaped (tanh GELU in both towers, no text head, a patch size that leaves
# pixels over).
OPENCLIP_SIGLIP_CONFIGS = {
    "tiny-openclip-siglip": dict(
        tokenizer=t5_style_tokenizer,
        model_cfg=dict(embed_dim=48, init_logit_bias=-10, custom_text=True,
                       vision_cfg=dict(image_size=64, timm_model_name="vit_base_patch16_siglip_224",
                                       timm_model_pretrained=False, timm_pool="map", timm_proj="none",
                                       timm_model_kwargs=dict(img_size=64, embed_dim=48, depth=2, num_heads=4,
                                                              mlp_ratio=2.0)),
                       text_cfg=dict(context_length=16, hf_tokenizer_name="timm/tiny-siglip-not-on-the-hub",
                                     tokenizer_kwargs=dict(clean="canonicalize"), width=32, heads=2, layers=2,
                                     no_causal_mask=True, proj_bias=True, pool_type="last", norm_kwargs=dict(eps=1e-6))),
        preprocess_cfg=dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], interpolation="bicubic", resize_mode="squash"),
        weights="safetensors",
    ),
    "tiny-openclip-siglip2": dict(
        tokenizer=gemma_eos_tokenizer,
        tokenizer_folder="tiny-gemma-tokenizer",
        model_cfg=dict(embed_dim=36, init_logit_bias=-10, custom_text=True,
                       vision_cfg=dict(image_size=60, timm_model_name="vit_so400m_patch16_siglip_256",
                                       timm_model_pretrained=False, timm_pool="map", timm_proj="none",
                                       timm_model_kwargs=dict(img_size=60, patch_size=14, embed_dim=36, depth=3,
                                                              num_heads=3, mlp_ratio=2.5)),
                       text_cfg=dict(context_length=20, tokenizer_kwargs=dict(clean="canonicalize"), width=36,
                                     heads=3, layers=2, mlp_ratio=2.0, no_causal_mask=True, pool_type="last",
                                     proj_type="none", norm_kwargs=dict(eps=1e-6), act_kwargs=dict(approximate="tanh"))),
        preprocess_cfg=dict(mean=[0.48, 0.45, 0.40], std=[0.27, 0.26, 0.28], interpolation="bilinear",
                            resize_mode="shortest"),
        weights="pytorch",
    ),
    # nllb-clip-base-siglip: the timm SigLIP ViT beside NLLB's encoder (tiny-nllb, made by the
    # "hf-text" family), which masks the padding out and is read at its first token.
    "tiny-openclip-nllb-siglip": dict(
        text_model="tiny-nllb",
        model_cfg=dict(embed_dim=40, init_logit_bias=-10, custom_text=True,
                       vision_cfg=dict(image_size=48, timm_model_name="vit_base_patch16_siglip_384",
                                       timm_model_pretrained=False, timm_pool="map", timm_proj="none",
                                       timm_model_kwargs=dict(img_size=48, embed_dim=40, depth=2, num_heads=2)),
                       text_cfg=dict(hf_proj_type="linear", hf_pooler_type="cls_pooler", context_length=24)),
        preprocess_cfg=dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], interpolation="bicubic", resize_mode="squash"),
        weights="safetensors",
    ),
}


def make_openclip_siglip(images):
    """OpenCLIP SigLIP checkpoints with references from open_clip: `HFTokenizer` (canonicalized,
    padded to the context), its image transform, `encode_image` / `encode_text`, and the sigmoid
    probabilities its SigLIP loss scores pairs with."""
    import open_clip
    import timm
    torch.manual_seed(5)
    for name, spec in OPENCLIP_SIGLIP_CONFIGS.items():
        model_dir = FIXTURES / "models" / name
        tokenizer_dir = FIXTURES / "models" / spec.get("tokenizer_folder", spec.get("text_model", name))
        for folder in {model_dir, tokenizer_dir} - {FIXTURES / "models" / spec.get("text_model", "")}:
            fresh_folder(folder)
        model_cfg = json.loads(json.dumps(spec["model_cfg"]))
        if "text_model" in spec:
            # A path relative to the repository root, where the tests run.
            model_cfg["text_cfg"].update(hf_model_name=str(tokenizer_dir.relative_to(ROOT)),
                                         hf_tokenizer_name=str(tokenizer_dir.relative_to(ROOT)))
        else:
            tokenizer = spec["tokenizer"]()
            tokenizer.save_pretrained(tokenizer_dir)
            (tokenizer_dir / "chat_template.jinja").unlink(missing_ok=True)
            model_cfg["text_cfg"]["vocab_size"] = len(tokenizer)
        if "tokenizer_folder" in spec:
            model_cfg["text_cfg"]["hf_tokenizer_name"] = str(tokenizer_dir.relative_to(ROOT))
        model = create_open_clip(name, model_cfg, pretrained_hf=False)
        randomize(model)
        with torch.no_grad():
            model.logit_scale.fill_(2.3 + 0.3 * float(torch.randn(())))
            model.logit_bias.fill_(-4.0 + float(torch.randn(())))
        pre = spec["preprocess_cfg"]
        (model_dir / "open_clip_config.json").write_text(json.dumps(
            dict(model_cfg=model_cfg, preprocess_cfg=dict(pre, size=model_cfg["vision_cfg"]["image_size"])), indent=2))
        weights = "open_clip_model.safetensors" if spec["weights"] == "safetensors" else "open_clip_pytorch_model.bin"
        save_weights(model.state_dict(), model_dir, spec["weights"], weights)
        transform = open_clip.image_transform(model_cfg["vision_cfg"]["image_size"], is_train=False, mean=pre["mean"],
                                              std=pre["std"], interpolation=pre["interpolation"],
                                              resize_mode=pre["resize_mode"])
        open_tokenizer = open_clip.tokenizer.HFTokenizer(str(tokenizer_dir), context_length=model_cfg["text_cfg"]["context_length"],
                                                         **model_cfg["text_cfg"].get("tokenizer_kwargs", {}))
        texts = OPENCLIP_TEXTS + ["A_CAT, on the BEACH!!", "snake_case_words (and) [brackets]", "“Quotes” & ‘more’ — dashes",
                                  "</s> <pad> typed"]
        # A Hugging Face text tower masks the padding out, and is given texts unpadded.
        pad = open_tokenizer.tokenizer.pad_token_id if "text_model" in spec else None
        token_ids, text_embeds = {}, {}
        with torch.no_grad():
            pixels, image_embeds = openclip_image_references(model, transform, images)
            for text in texts:
                ids = hf_tokenize(open_tokenizer, text)
                kept = len(ids[0]) if pad is None else int((ids[0] != pad).nonzero().max()) + 1
                token_ids[text] = ids[0][:kept].tolist()
                text_embeds[text] = l2(model.encode_text(ids))[0].tolist()
            # The sigmoid probability open_clip's SigLIP scores each pair with.
            text_matrix = torch.tensor([text_embeds[t] for t in texts])
            image_matrix = torch.tensor([image_embeds[i] for i in images])
            probs = torch.sigmoid(text_matrix @ image_matrix.T * model.logit_scale.exp() + model.logit_bias)
        save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
        write_reference(name, dict(
            generated_by=f"scripts/make_test_model.py (open_clip {open_clip.__version__}, timm {timm.__version__}, "
                         f"transformers {transformers.__version__}, torch {torch.__version__})",
            model=name, dim=model_cfg["embed_dim"], max_length=model_cfg["text_cfg"]["context_length"], texts=texts,
            token_ids=token_ids, image_embeds=image_embeds, text_embeds=text_embeds,
            probs={t: dict(zip(images, row.tolist())) for t, row in zip(texts, probs)},
        ))


# Chinese-CLIP (`ChineseCLIPModel`, OFA-Sys/chinese-clip-*): CLIP's image tower with a BERT text
# tower read at its first token. Published with BERT's `vocab.txt` and no tokenizer.json, as
# this fixture is; its preprocessing resizes to a square without cropping.
CHINESE_CLIP_CONFIG = dict(
    projection_dim=40,
    text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                     max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                     pad_token_id=0),
    vision_config=dict(image_size=64, patch_size=16, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=3, hidden_act="quick_gelu", layer_norm_eps=1e-5),
)


def make_chinese_clip(images):
    from transformers import ChineseCLIPConfig, ChineseCLIPModel
    from transformers.models.chinese_clip.image_processing_pil_chinese_clip import ChineseCLIPImageProcessorPil
    torch.manual_seed(4)
    name = "tiny-chinese-clip"
    model_dir = FIXTURES / "models" / name
    fresh_folder(model_dir)
    tokenizer = bert_style_tokenizer()
    text_config = dict(CHINESE_CLIP_CONFIG["text_config"], vocab_size=len(tokenizer))
    config = ChineseCLIPConfig(text_config=text_config, vision_config=CHINESE_CLIP_CONFIG["vision_config"],
                               projection_dim=CHINESE_CLIP_CONFIG["projection_dim"])
    model = ChineseCLIPModel(config).eval()
    randomize(model)
    config.save_pretrained(model_dir)
    save_weights(model.state_dict(), model_dir, "pytorch")
    tokenizer.save_pretrained(model_dir)
    # BERT's vocab.txt (one token a line, in id order) in place of tokenizer.json; transformers
    # builds the tokenizer from it, as the references below are computed.
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    (model_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))
    (model_dir / "tokenizer.json").unlink()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    processor = ChineseCLIPImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                             do_center_crop=False)
    processor.save_pretrained(model_dir)
    max_length = config.text_config.max_position_embeddings
    texts = MULTILINGUAL_TEXTS + ["一只猫在海滩上", "Ein HUND am Strand, naïve café", "a [PAD] cat [SEP] x"]
    pixels, image_embeds, token_ids, text_embeds = {}, {}, {}, {}
    with torch.no_grad():
        for img_name in images:
            pv = processor(images=Image.open(FIXTURES / "images" / img_name), return_tensors="pt")["pixel_values"]
            pixels[img_name] = pv[0].contiguous()
            image_embeds[img_name] = l2(model.get_image_features(pixel_values=pv).pooler_output)[0].tolist()
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            token_ids[text] = enc["input_ids"][0].tolist()
            features = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                               token_type_ids=enc["token_type_ids"])
            text_embeds[text] = l2(features.pooler_output)[0].tolist()
    save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
    write_reference(name, dict(
        generated_by=f"scripts/make_test_model.py (transformers {transformers.__version__}, torch {torch.__version__})",
        model=name, dim=config.projection_dim, max_length=max_length, texts=texts, token_ids=token_ids,
        image_embeds=image_embeds, text_embeds=text_embeds,
    ))


# MetaCLIP 2 (`MetaClip2Model`, facebook/metaclip-2-worldwide-*): CLIP's towers, its texts in
# hundreds of languages read by XLM-V's tokenizer (XLM-RoBERTa's kind: `<s> … </s>`), pooled at
# the first `</s>`.
METACLIP2_CONFIG = dict(
    projection_dim=40,
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5),
    vision_config=dict(image_size=64, patch_size=16, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=3, hidden_act="quick_gelu", layer_norm_eps=1e-5),
)


def make_metaclip2(images):
    from transformers import MetaClip2Config, MetaClip2Model
    torch.manual_seed(6)
    name = "tiny-metaclip2"
    model_dir = FIXTURES / "models" / name
    fresh_folder(model_dir)
    tokenizer = xlm_roberta_style_tokenizer()
    text_config = dict(METACLIP2_CONFIG["text_config"], vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = MetaClip2Config(text_config=text_config, vision_config=METACLIP2_CONFIG["vision_config"],
                             projection_dim=METACLIP2_CONFIG["projection_dim"])
    model = MetaClip2Model(config).eval()
    randomize(model)
    config.save_pretrained(model_dir)
    save_weights(model.state_dict(), model_dir, "safetensors")
    tokenizer.save_pretrained(model_dir)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        (model_dir / extra).unlink(missing_ok=True)
    processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, resample=3)
    processor.save_pretrained(model_dir)
    # A typed `</s>` is the end the tower pools at.
    texts = MULTILINGUAL_TEXTS + ["a cat </s> on a mat", "<s> <pad> beach"]
    pixels, image_embeds, token_ids, text_embeds = {}, {}, {}, {}
    with torch.no_grad():
        for img_name in images:
            pv = processor(images=Image.open(FIXTURES / "images" / img_name), return_tensors="pt")["pixel_values"]
            pixels[img_name] = pv[0].contiguous()
            image_embeds[img_name] = l2(model.visual_projection(model.vision_model(pixel_values=pv).pooler_output))[0].tolist()
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=77, return_tensors="pt")
            token_ids[text] = enc["input_ids"][0].tolist()
            pooled = model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
            text_embeds[text] = l2(model.text_projection(pooled))[0].tolist()
    save_file(pixels, FIXTURES / "reference" / f"{name}_pixels.safetensors")
    write_reference(name, dict(
        generated_by=f"scripts/make_test_model.py (transformers {transformers.__version__}, torch {torch.__version__})",
        model=name, dim=config.projection_dim, max_length=77, texts=texts, token_ids=token_ids,
        image_embeds=image_embeds, text_embeds=text_embeds,
    ))


# M-CLIP's two kinds: an XLM-RoBERTa (M-CLIP/XLM-Roberta-Large-Vit-*) and a BERT
# (M-CLIP/LABSE-Vit-L-14) as `modelBase`: (name, text model, the CLIP fixture it pairs with).
MCLIP_CONFIGS = [("tiny-mclip", "tiny-xlm-roberta", "tiny-clip-b32-quickgelu"),
                 ("tiny-mclip-bert", "tiny-bert", "tiny-clip-p14-gelu")]


def make_mclip(images):
    for seed, (name, text_model, image_model) in enumerate(MCLIP_CONFIGS):
        make_one_mclip(name, text_model, image_model, seed=11 + seed)


def make_one_mclip(name, text_model, image_model, seed):
    """M-CLIP (multilingual-clip's `MultilingualCLIP`): a tiny encoder made by the "hf-text"
    family as its `modelBase`, mean-pooled and projected with a bias to the embeddings of the CLIP
    fixture `image_model`, whose image tower it pairs with (so its image references are that
    CLIP's). Published with its weights and config.json alone; the tokenizer is its modelBase's.
    Text references from `MultilingualCLIP.forward`, one text at a time; its own code cannot
    read a text longer than its positions, so the tokenizer it is handed cuts one there, as
    imgsearch does."""
    from multilingual_clip import Config_MCLIP, pt_multilingual_clip
    model_dir, text_dir = FIXTURES / "models" / name, FIXTURES / "models" / text_model
    fresh_folder(model_dir)
    torch.manual_seed(seed)
    clip = json.loads((FIXTURES / "reference" / f"{image_model}.json").read_text())
    text_config = transformers.AutoConfig.from_pretrained(text_dir)
    # A path relative to the repository root, where the tests run.
    config = Config_MCLIP.MCLIPConfig(modelBase=str(text_dir.relative_to(ROOT)), transformerDimSize=text_config.hidden_size,
                                      imageDimSize=clip["dim"])
    # multilingual-clip loads modelBase's pretrained weights; the tiny encoder has none.
    from_pretrained = transformers.AutoModel.from_pretrained
    transformers.AutoModel.from_pretrained = lambda path: transformers.AutoModel.from_config(
        transformers.AutoConfig.from_pretrained(ROOT / path))
    try:
        model = pt_multilingual_clip.MultilingualCLIP(config).eval()
    finally:
        transformers.AutoModel.from_pretrained = from_pretrained
    randomize(model)
    config.architectures = ["MultilingualCLIP"]
    config.save_pretrained(model_dir)
    save_weights(model.state_dict(), model_dir, "pytorch")
    # RoBERTa's positions start after the pad id: two fewer tokens than positions fit.
    context = text_config.max_position_embeddings - (2 if text_config.model_type == "xlm-roberta" else 0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(text_dir)
    cutting = lambda texts, **kwargs: tokenizer(texts, truncation=True, max_length=context, **kwargs)  # noqa: E731
    texts = MULTILINGUAL_TEXTS
    with torch.no_grad():
        text_embeds = {t: l2(model.forward([t], cutting))[0].tolist() for t in texts}
    token_ids = {t: cutting(t)["input_ids"] for t in texts}
    shutil.copyfile(FIXTURES / "reference" / f"{image_model}_pixels.safetensors",
                    FIXTURES / "reference" / f"{name}_pixels.safetensors")
    write_reference(name, dict(
        generated_by=f"scripts/make_test_model.py (multilingual-clip 1.0.10, transformers {transformers.__version__}, "
                     f"torch {torch.__version__}); image references: {image_model}'s",
        model=name, dim=clip["dim"], max_length=context, texts=texts,
        token_ids=token_ids, image_embeds=clip["image_embeds"], text_embeds=text_embeds,
    ))


def save_weights(state, model_dir, kind, name=None):
    state = {k: v.contiguous() for k, v in state.items()}
    if kind == "safetensors":
        save_file(state, model_dir / (name or "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, model_dir / (name or "pytorch_model.bin"))


def main():
    families = sys.argv[1:] or ["clip", "siglip", "siglip2-naflex", "openclip", "coca", "hf-text", "chinese-clip", "openclip-siglip",
                                "metaclip2", "openclip-resnet", "openclip-eva", "mclip", "openclip-clipa", "openclip-convnext", "openclip-mobileclip",
                                "nllb-languages"]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "reference").mkdir(parents=True, exist_ok=True)
    # The photos are written once: re-encoding them with another Pillow would change every reference.
    image_dir = FIXTURES / "images"
    images = sorted(p.name for p in image_dir.iterdir() if p.is_file()) if image_dir.is_dir() else write_images()
    makers = dict(clip=make_clip, siglip=make_siglip, openclip=make_openclip,
                  **{"siglip2-naflex": lambda images: make_siglip(images, SIGLIP2_NAFLEX_CONFIGS)},
                  coca=lambda images: make_openclip(images, COCA_CONFIGS), **{"hf-text": make_openclip_hf_text, "chinese-clip": make_chinese_clip,
                     "openclip-siglip": make_openclip_siglip, "metaclip2": make_metaclip2,
                     "openclip-resnet": lambda images: make_openclip(images, RESNET_CONFIGS),
                     "openclip-eva": lambda images: make_openclip(images, EVA_CONFIGS),
                     "mclip": make_mclip,
                     "openclip-clipa": lambda images: make_openclip(images, CLIPA_CONFIGS),
                     "openclip-convnext": lambda images: make_openclip(images, CONVNEXT_CONFIGS),
                     "openclip-mobileclip": lambda images: make_openclip(images, MOBILECLIP_CONFIGS),
                     "nllb-languages": make_nllb_languages})
    for family in families:
        makers[family](images)


if __name__ == "__main__":
    main()
