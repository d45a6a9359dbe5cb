#!/usr/bin/env python3
"""Compare the image towers compare_peers.py does not cover with their references on PyTorch and
with ONNX Runtime, on this machine, in one run, the three taking turns: OpenCLIP's towers that
have no `transformers` class (the ResNets, RN50 by default; EVA-CLIP's, e.g. EVA02-B-16; the
ConvNeXts), and SigLIP 2 NaFlex (`--arch siglip2-naflex`: google/siglip2-base-patch16-naflex's
shape, whose pictures keep their aspect ratio).

One random checkpoint of the architecture's exact shape is written (open_clip_config.json +
open_clip_model.safetensors, as the hub's timm/resnet50_clip.openai or
timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k; for NaFlex, Siglip2Model's save_pretrained);
imgsearch times it with `imgsearch bench` (the release binary: build it first), PyTorch with
`model.encode_image` (NaFlex: `vision_model` on the processor's padded patches and mask), ONNX
Runtime with the image tower exported by torch.onnx.export (CPUExecutionProvider, all graph
optimisations). NaFlex pictures are 4:3 photos: a 14 × 18 grid of patches, padded to 256 for the
peers as Siglip2ImageProcessor pads them. All f32 unless --dtype bf16 (imgsearch only; the
peers stay f32), the same thread count everywhere. Each round times every engine at every
batch, the order rotated per round; the table gives the median of the rounds.

    cargo build --release && python3 scripts/compare_towers.py      # RN50, batch 1/8/32
    python3 scripts/compare_towers.py --arch RN50x4 --rounds 5 --dtype bf16
    python3 scripts/compare_towers.py --arch EVA02-B-16
    python3 scripts/compare_towers.py --arch siglip2-naflex
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_peers as peers  # noqa: E402  (its machine description, session options and bench runner)


def time_batches(run, batch, iterations):
    """Images/s of `run(batch)` over `iterations` calls, after one warm-up call."""
    run(batch)
    start = time.perf_counter()
    for _ in range(iterations):
        run(batch)
    return batch * iterations / (time.perf_counter() - start)


class OpenClipTower:
    """An open_clip architecture: its checkpoint folder, and its image tower's inputs for the peers."""

    def __init__(self, arch):
        import open_clip
        self.arch, self.model = arch, open_clip.create_model(arch, pretrained=None).eval()
        size = self.model.visual.image_size
        self.size = size if isinstance(size, int) else size[0]
        self.reference = "open_clip"

    def write_checkpoint(self, folder):
        import open_clip
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, folder / "open_clip_model.safetensors")
        config = json.loads((Path(open_clip.__file__).parent / "model_configs" / f"{self.arch}.json").read_text())
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))

    def inputs(self, batch):
        return {"pixel_values": np.random.default_rng(batch).standard_normal((batch, 3, self.size, self.size), np.float32)}

    def module(self):
        return self.model.visual


class NaFlexTower:
    """SigLIP 2 NaFlex at google/siglip2-base-patch16-naflex's shape (Siglip2Config's defaults)."""
    GRID, MAX_PATCHES, PATCH = (14, 18), 256, 16

    def __init__(self):
        from transformers import Siglip2Config, Siglip2Model
        import make_test_model
        self.tokenizer = make_test_model.gemma_style_tokenizer()
        config = Siglip2Config(text_config=dict(vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id))
        self.model = Siglip2Model(config).eval()
        self.reference = "transformers"

    def write_checkpoint(self, folder):
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(
            {"image_processor_type": "Siglip2ImageProcessor", "patch_size": self.PATCH, "max_num_patches": self.MAX_PATCHES,
             "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))

    def inputs(self, batch):
        rows, cols = self.GRID
        mask = np.zeros((batch, self.MAX_PATCHES), np.int64)
        mask[:, : rows * cols] = 1
        pixels = np.random.default_rng(batch).standard_normal((batch, self.MAX_PATCHES, 3 * self.PATCH ** 2), np.float32)
        return {"pixel_values": pixels * mask[..., None], "pixel_attention_mask": mask,
                "spatial_shapes": np.array([self.GRID] * batch, np.int64)}

    def module(self):
        vision = self.model.vision_model

        class Pooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vision = vision

            def forward(self, pixel_values, pixel_attention_mask, spatial_shapes):
                return self.vision(pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask,
                                   spatial_shapes=spatial_shapes).pooler_output
        return Pooled().eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="RN50", help="an open_clip architecture: a ResNet (RN50, RN101, RN50x4, ...), "
                    "EVA (EVA02-B-16, ...), ConvNeXt (convnext_base_w, ...); or siglip2-naflex")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3, help="timed batches per measurement")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="imgsearch's precision")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    import onnxruntime  # noqa: F401  (fail early, before minutes of export)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tower = NaFlexTower() if args.arch == "siglip2-naflex" else OpenClipTower(args.arch)
    module = tower.module()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="imgsearch-towers-") as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / args.arch
        checkpoint.mkdir()
        tower.write_checkpoint(checkpoint)
        example = tower.inputs(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(torch.from_numpy(v) for v in example.values()), str(tmp / "visual.onnx"),
                              input_names=list(example), output_names=["embeds"],
                              dynamic_axes={**{name: {0: "batch"} for name in example}, "embeds": {0: "batch"}},
                              opset_version=17, dynamo=False)
        session = peers.ort_session(tmp / "visual.onnx", args.threads)
        inputs = {b: tower.inputs(b) for b in batches}

        def ours(batch):
            rate, _ = peers.imgsearch_bench(checkpoint, args.threads, batch, args.iterations, extra=["--dtype", args.dtype])
            return rate

        def pytorch(batch):
            x = [torch.from_numpy(v) for v in inputs[batch].values()]
            with torch.inference_mode():
                return time_batches(lambda _: module(*x), batch, args.iterations)

        def onnx(batch):
            return time_batches(lambda _: session.run(None, inputs[batch]), batch, args.iterations)

        engines = [("imgsearch", ours), ("PyTorch", pytorch), ("ONNX Runtime", onnx)]
        rates = {(name, b): [] for name, _ in engines for b in batches}
        for round_ in range(args.rounds):
            for batch in batches:
                shift = round_ % len(engines)
                for name, run in engines[shift:] + engines[:shift]:
                    rates[(name, batch)].append(run(batch))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    median = {key: statistics.median(values) for key, values in rates.items()}
    lines = [f"## {args.arch} image tower, images/s (imgsearch {args.dtype}, peers f32), {args.rounds} rounds", ""]
    lines += peers.machine_lines(args.threads, load_at_start, datetime.datetime.now())[1:4]
    lines += ["", f"| batch | imgsearch | PyTorch ({tower.reference}) | ONNX Runtime | vs PyTorch | vs ORT |",
              "|---:|---:|---:|---:|---:|---:|"]
    for b in batches:
        ours_rate, pt, ox = median[("imgsearch", b)], median[("PyTorch", b)], median[("ONNX Runtime", b)]
        lines.append(f"| {b} | {ours_rate:.1f} | {pt:.1f} | {ox:.1f} | {ours_rate / pt:.2f}x | {ours_rate / ox:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
