#!/usr/bin/env python3
"""Compare imgsearch's OpenCLIP image towers that have no `transformers` class (the ResNets, RN50
by default; EVA-CLIP's, e.g. EVA02-B-16) with open_clip on PyTorch and with ONNX Runtime, on this
machine, in one run, the three taking turns.

One random checkpoint of the architecture's exact shape is written (open_clip_config.json +
open_clip_model.safetensors, as the hub's timm/resnet50_clip.openai or
timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k); imgsearch times it with
`imgsearch bench` (the release binary: build it first), PyTorch with `model.encode_image`, ONNX
Runtime with the image tower exported by torch.onnx.export (CPUExecutionProvider, all graph
optimisations). All f32 unless --dtype bf16 (imgsearch only; the peers stay f32), the same
thread count everywhere. Each round times every engine at every batch, the order rotated per
round; the table gives the median of the rounds.

    cargo build --release && python3 scripts/compare_openclip_towers.py      # RN50, batch 1/8/32
    python3 scripts/compare_openclip_towers.py --arch RN50x4 --rounds 5 --dtype bf16
    python3 scripts/compare_openclip_towers.py --arch EVA02-B-16
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="RN50", help="an open_clip architecture: a ResNet (RN50, RN101, RN50x4, ...) or EVA (EVA02-B-16, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3, help="timed batches per measurement")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="imgsearch's precision")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    import onnxruntime  # noqa: F401  (fail early, before minutes of export)
    import open_clip
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = open_clip.create_model(args.arch, pretrained=None).eval()
    size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="imgsearch-towers-") as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / args.arch
        checkpoint.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint / "open_clip_model.safetensors")
        config = json.loads((Path(open_clip.__file__).parent / "model_configs" / f"{args.arch}.json").read_text())
        (checkpoint / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.visual, torch.randn(1, 3, size, size), str(tmp / "visual.onnx"),
                              input_names=["pixel_values"], output_names=["embeds"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "embeds": {0: "batch"}},
                              opset_version=17, dynamo=False)
        session = peers.ort_session(tmp / "visual.onnx", args.threads)
        pixels = {b: np.random.default_rng(b).standard_normal((b, 3, size, size), np.float32) for b in batches}

        def ours(batch):
            rate, _ = peers.imgsearch_bench(checkpoint, args.threads, batch, args.iterations, extra=["--dtype", args.dtype])
            return rate

        def pytorch(batch):
            x = torch.from_numpy(pixels[batch])
            with torch.inference_mode():
                return time_batches(lambda _: model.encode_image(x), batch, args.iterations)

        def onnx(batch):
            return time_batches(lambda _: session.run(None, {"pixel_values": pixels[batch]}), batch, args.iterations)

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
    lines += ["", "| batch | imgsearch | PyTorch (open_clip) | ONNX Runtime | vs PyTorch | vs ORT |",
              "|---:|---:|---:|---:|---:|---:|"]
    for b in batches:
        ours_rate, pt, ox = median[("imgsearch", b)], median[("PyTorch", b)], median[("ONNX Runtime", b)]
        lines.append(f"| {b} | {ours_rate:.1f} | {pt:.1f} | {ox:.1f} | {ours_rate / pt:.2f}x | {ours_rate / ox:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
