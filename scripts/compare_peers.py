#!/usr/bin/env python3
"""Compare imgsearch's speed with its Python peers, on this machine, in one run.

What it measures (all f32, CPU, the same thread count everywhere):
  image encoder   CLIP ViT-B/32 image tower (vision model + visual projection), batch 1/8/32 -> images/s
  text encoder    CLIP text tower (text model + text projection), one query of 8 / 77 tokens -> ms
  SigLIP          the same for google/siglip-base-patch16-224's shape (SiglipModel(SiglipConfig())): image
                  tower with its attention-pooling head, batch 1/8/32; text tower on a query padded to 64 tokens
  decode+prep     one JPEG (12 MP, 3 MP) -> normalised 224x224 model input, one thread -> ms
  indexing        128 camera JPEGs (4032x3024) end to end -> images/s, with the model in memory and with its load

Peers:
  PyTorch         transformers.CLIPModel(CLIPConfig()) -- openai/clip-vit-base-patch32's shape, random weights
  ONNX Runtime    the same towers exported with torch.onnx.export, CPUExecutionProvider, ORT_ENABLE_ALL
  Pillow          draft("RGB", (224, 224)) (DCT-domain downscale) + bicubic resize + centre crop + numpy normalise;
                  compared with imgsearch's `fast` path. Pillow without draft is compared with `exact`.
  PyTorch pipeline  the indexing loop of clip-retrieval/rclip at its best: a torch DataLoader with one worker
                  per thread doing the Pillow+draft preprocessing, batches of 16 through the PyTorch image
                  tower, normalised embeddings kept in memory (it writes no index, imgsearch does); timed with
                  its model built, and again with CLIPModel.from_pretrained of imgsearch's bench checkpoint.
  ORT pipeline    the same loop with ONNX Runtime's image tower (the exported one above), timed with its
                  session made, and again with making the session from the file included.
imgsearch:        `cargo bench --bench encoders --bench preprocess` (criterion), read back from
                  target/criterion/<group>/<function>/<parameter>/new/estimates.json (median), and
                  `cargo bench --bench indexing` (timed `index` runs: model in memory, then model load included), read back
                  from target/bench-data/indexing.json.

Run from anywhere (developer tool; needs scripts/requirements.txt):
    python3 scripts/compare_peers.py                      # full run, 2 threads
    python3 scripts/compare_peers.py --features turbojpeg # libjpeg-turbo for the JPEGs imgsearch's own decoder leaves
    python3 scripts/compare_peers.py --threads 8 --markdown bench-out/peers.md
    python3 scripts/compare_peers.py --skip-cargo --quick # smoke run of the Python side only
    python3 scripts/compare_peers.py --alternate 6        # imgsearch and ORT taking turns, 6 rounds
Timings are medians over repeats after warm-up; a full run takes a few minutes plus the cargo benches.

--alternate: the one-pass run times imgsearch's criterion benches first and the peers minutes later,
so on a machine whose speed drifts (shared cloud cores do, by 30% from minute to minute) its ratios
carry the drift. With --alternate N, `imgsearch bench` (the release binary) and ONNX Runtime take
turns on each measurement, N rounds, the order swapped every round, on one ViT-B/32 checkpoint made
here (random weights): image tower at batch 1/8/32 and the 8-token query. It reports each round's
ratio and their range.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

import transformers
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

ROOT = Path(__file__).resolve().parent.parent
# criterion follows CRITERION_HOME / CARGO_TARGET_DIR; benches/preprocess.rs always writes to <repo>/target/bench-data
CRITERION = Path(os.environ.get("CRITERION_HOME")
                 or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "criterion")
BENCH_DATA = ROOT / "target" / "bench-data"
BATCHES = (1, 8, 32)
TOKEN_LENGTHS = (8, 77)
PHOTOS = ("12mp", "3mp")
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
BOS, EOS = 49406, 49407


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr)


def measure(fn, repeats, seconds):
    """Median seconds per call of fn: two warm-up calls, then `repeats` timed runs of ~seconds/repeats each."""
    fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    calls = max(1, round(seconds / repeats / max(once, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def text_ids(length, seed=0):
    ids = torch.randint(0, BOS, (1, length), generator=torch.Generator().manual_seed(seed))
    ids[0, 0], ids[0, -1] = BOS, EOS
    return ids


def siglip_text_ids(length=64, seed=0):
    """A SigLIP query as its processor makes it: padded to the 64-token context (ids of SiglipConfig's vocabulary)."""
    return torch.randint(2, 32000, (1, length), generator=torch.Generator().manual_seed(seed))


CLIP_TEXTS = {n: text_ids(n) for n in TOKEN_LENGTHS}
SIGLIP_TEXTS = {64: siglip_text_ids()}


class Tower(torch.nn.Module):
    """One tower of a model as its get_*_features computes it (`features(model, input)`), a module
    of its own so that PyTorch and the ONNX exporter see only that tower."""

    def __init__(self, model, features):
        super().__init__()
        self.model = model
        self.features = features

    def forward(self, inputs):
        return self.features(self.model, inputs)


def clip_image(model, pixel_values):
    """CLIPModel.get_image_features: pooled vision output -> visual projection."""
    return model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)


def clip_text(model, input_ids):
    """CLIPModel.get_text_features: pooled (EOS) text output -> text projection."""
    return model.text_projection(model.text_model(input_ids=input_ids).pooler_output)


def siglip_image(model, pixel_values):
    """SiglipModel.get_image_features: the attention-pooled vision output."""
    return model.vision_model(pixel_values=pixel_values).pooler_output


def siglip_text(model, input_ids):
    """SiglipModel.get_text_features: the last position through the text head."""
    return model.text_model(input_ids=input_ids).pooler_output


# ---------------------------------------------------------------- peers


def bench_torch(image_tower, text_tower, repeats, seconds, texts=CLIP_TEXTS, prefix=""):
    out = {}
    with torch.inference_mode():
        for b in BATCHES:
            x = torch.randn(b, 3, 224, 224)
            out[(prefix + "image", b)] = b / measure(lambda: image_tower(x), repeats, seconds)
        for n, ids in texts.items():
            out[(prefix + "text", n)] = 1e3 * measure(lambda: text_tower(ids), repeats, seconds)
    return out


def export_onnx(image_tower, text_tower, workdir, sample_ids):
    """Export both towers (legacy TorchScript exporter: the dynamo one needs onnxscript). Returns the two paths."""
    image_path, text_path = workdir / "image.onnx", workdir / "text.onnx"
    common = dict(opset_version=17, dynamo=False, do_constant_folding=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation + tracer warnings; checked numerically below
        torch.onnx.export(image_tower, (torch.randn(1, 3, 224, 224),), str(image_path),
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, **common)
        torch.onnx.export(text_tower, (sample_ids,), str(text_path),
                          input_names=["input_ids"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "text_embeds": {0: "batch"}},
                          **common)
    return image_path, text_path


def ort_session(path, threads):
    """An ORT CPU session as a tuned deployment makes one: all graph optimisations, `threads`
    intra-op threads, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench_onnx(image_tower, text_tower, threads, repeats, seconds, texts=CLIP_TEXTS, prefix="", indexing=None):
    """ORT's encoder numbers; with `indexing` (imgsearch's indexing bench: photos, batch), also the
    indexing pipeline of `bench_index` with ORT's image tower, timed with the session already made
    and with making it from the exported file (ORT's model load) included."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="imgsearch-peers-") as tmp:
        try:
            image_path, text_path = export_onnx(image_tower, text_tower, Path(tmp), list(texts.values())[-1])
        except Exception as e:  # keep going without the ORT column
            warn(f"ONNX export failed, no ONNX Runtime numbers: {type(e).__name__}: {e}")
            return out
        load = lambda path: ort_session(path, threads)
        sessions = {kind: load(p) for kind, p in (("image", image_path), ("text", text_path))}

        def tower(session):
            return lambda pixels: torch.from_numpy(session.run(None, {"pixel_values": pixels.numpy()})[0])

        if indexing:
            photos, batch = indexing["photos"], indexing["batch"]
            out[("index_loaded",)] = bench_index(lambda: tower(sessions["image"]), photos, threads, batch)
            out[("index",)] = bench_index(lambda: tower(load(image_path)), photos, threads, batch)

    def check(kind, key, feed, reference):  # guard against an export that traced in a fixed shape
        got = sessions[kind].run(None, feed)[0]
        err = float(np.abs(got - reference.numpy()).max())
        if err > 1e-3:
            warn(f"ONNX {kind} {key}: max |ORT - PyTorch| = {err:.2e}")

    with torch.inference_mode():
        for b in BATCHES:
            x = torch.randn(b, 3, 224, 224)
            feed = {"pixel_values": x.numpy()}
            check("image", b, feed, image_tower(x))
            out[(prefix + "image", b)] = b / measure(lambda: sessions["image"].run(None, feed), repeats, seconds)
        for n, ids in texts.items():
            feed = {"input_ids": ids.numpy()}
            check("text", n, feed, text_tower(ids))
            out[(prefix + "text", n)] = 1e3 * measure(lambda: sessions["text"].run(None, feed), repeats, seconds)
    return out


def pillow_preprocess(path, draft):
    """CLIPImageProcessor's recipe: shortest side -> 224 (bicubic), centre crop 224, /255, CLIP mean/std, CHW."""
    img = Image.open(path)
    if draft:
        img.draft("RGB", (224, 224))
    img = img.convert("RGB")
    w, h = img.size
    scale = 224 / min(w, h)
    img = img.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class PhotoFolder(torch.utils.data.Dataset):
    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return torch.from_numpy(pillow_preprocess(self.files[i], draft=True))


def bench_index(make_embed, photos, threads, batch):
    """images/s of the peer indexing loop over the same photos imgsearch's indexing bench used:
    `make_embed()` returns the image tower (a (batch, 3, 224, 224) tensor -> embeddings tensor) and
    is inside the timing (return a built one for the model-in-memory figure)."""
    files = sorted(Path(photos).glob("*.jpg"))
    if not files:
        warn(f"no photos in {photos}: no indexing pipeline number")
        return None
    start = time.perf_counter()
    embed = make_embed()
    loader = torch.utils.data.DataLoader(PhotoFolder(files), batch_size=batch, num_workers=threads)
    embeddings = []
    with torch.inference_mode():
        for pixels in loader:
            embeddings.append(torch.nn.functional.normalize(embed(pixels), dim=-1).numpy())
    assert sum(len(e) for e in embeddings) == len(files)
    return len(files) / (time.perf_counter() - start)


def bench_pillow(bench_data, repeats, seconds):
    out = {}
    for name in PHOTOS:
        path = bench_data / f"photo_{name}.jpg"
        if not path.exists():
            warn(f"{path} is missing (created by the cargo benches): no Pillow numbers for it")
            continue
        for draft, mode in ((True, "fast"), (False, "exact")):
            out[("decode", name, mode)] = 1e3 * measure(lambda: pillow_preprocess(path, draft), repeats, seconds)
    return out


# ---------------------------------------------------------------- imgsearch (criterion)


def run_cargo(threads, features):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = ["cargo", "bench", "--bench", "encoders", "--bench", "preprocess", "--bench", "indexing"]
    if features:
        cmd += ["--features", features]
    print(f"$ RAYON_NUM_THREADS={threads} {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        ok = subprocess.run(cmd, cwd=ROOT, env=env).returncode == 0
    except OSError as e:  # e.g. cargo not on PATH
        warn(f"could not run cargo: {e}")
        ok = False
    if not ok:
        warn("cargo bench failed; imgsearch numbers below come from whatever criterion results exist")


def criterion_seconds(group, function, parameter):
    """Median seconds per iteration from criterion's estimates.json, or None when absent/unreadable."""
    path = CRITERION / group / function / str(parameter) / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"] * 1e-9
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_imgsearch():
    out = {}
    for suffix in ("", "_bf16"):  # bf16 groups exist only where the CPU has AMX
        for b in BATCHES:
            s = criterion_seconds("image_encoder" + suffix, "batch", b)
            out[("image" + suffix, b)] = b / s if s else None
        for n in TOKEN_LENGTHS:
            s = criterion_seconds("text_encoder" + suffix, "tokens", n)
            out[("text" + suffix, n)] = 1e3 * s if s else None
        for b in BATCHES:
            s = criterion_seconds("siglip_image_encoder" + suffix, "batch", b)
            out[("siglip_image" + suffix, b)] = b / s if s else None
        for n in SIGLIP_TEXTS:
            s = criterion_seconds("siglip_text_encoder" + suffix, "tokens", n)
            out[("siglip_text" + suffix, n)] = 1e3 * s if s else None
    for name in PHOTOS:
        for mode in ("fast", "exact"):
            s = criterion_seconds("preprocess", mode, name)
            out[("decode", name, mode)] = 1e3 * s if s else None
    try:
        indexing = json.loads((BENCH_DATA / "indexing.json").read_text())
        if indexing.get("cpu_kernels"):
            KERNEL_PATHS.add(indexing["cpu_kernels"])
        bf16 = indexing.get("bf16") or {}
        out[("index",)] = indexing["end_to_end_per_s"]
        out[("index_bf16",)] = bf16.get("end_to_end_per_s")
        out[("index_loaded",)] = indexing.get("end_to_end_loaded_per_s")
        out[("index_loaded_bf16",)] = bf16.get("end_to_end_loaded_per_s")
        out["indexing"] = indexing
    except (OSError, ValueError, KeyError):
        warn("no target/bench-data/indexing.json (cargo bench --bench indexing): no indexing numbers")
    return out


# ---------------------------------------------------------------- imgsearch and ORT taking turns

ALTERNATE_QUERY = "a photo of a cat night"  # 8 tokens with start and end, as CLIP_TEXTS[8] (checked)
QUERY_RUNS = 100


def release_binary():
    return ROOT / "target" / "release" / "imgsearch"


def imgsearch_bench(checkpoint, threads, batch, iterations, query=None, extra=()):
    """One `imgsearch bench` run: (images/s at `batch`, median ms of the query or None). `query`:
    (text, the token count of ORT's query), so that both time the same work; `extra`: more
    arguments (`--dtype bf16`)."""
    cmd = [str(release_binary()), "--device", "cpu", "bench", "--model", str(checkpoint),
           "--batches", str(batch), "--iterations", str(iterations), *extra]
    if query:
        cmd += ["--query", query[0], "--query-runs", str(QUERY_RUNS)]
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), IMGSEARCH_DATA_DIR=data_dir)
        report = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    KERNEL_PATHS.add(report["cpu_kernels"])
    timed = report.get("query")
    if timed and timed["tokens"] != query[1]:
        sys.exit(f"imgsearch ran {query[0]!r} as {timed['tokens']} tokens, ORT's query has {query[1]}: "
                 "change ALTERNATE_QUERY so that both time the same work")
    return report["results"][0]["images_per_s"], timed["ms_median"] if timed else None


def ort_bench(sessions, batch, iterations, query_ids=None):
    """ONNX Runtime timed as `imgsearch bench` times itself: one warm-up, then `iterations` batches
    (images/s), and the median of QUERY_RUNS runs of the query."""
    feed = {"pixel_values": np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), np.float32)}
    sessions["image"].run(None, feed)
    start = time.perf_counter()
    for _ in range(iterations):
        sessions["image"].run(None, feed)
    rate = batch * iterations / (time.perf_counter() - start)
    if query_ids is None:
        return rate, None
    feed = {"input_ids": query_ids.numpy()}
    sessions["text"].run(None, feed)
    runs = []
    for _ in range(QUERY_RUNS):
        start = time.perf_counter()
        sessions["text"].run(None, feed)
        runs.append(1e3 * (time.perf_counter() - start))
    return rate, statistics.median(runs)


def alternate(rounds, threads):
    """Rows of (label, imgsearch values, ORT values, per-round ratios), imgsearch faster when > 1."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-alternate-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig()).eval()
        checkpoint = tmp / "vit-b32"
        model.save_pretrained(checkpoint)
        (checkpoint / "tokenizer.json").write_bytes(
            (ROOT / "tests/fixtures/models/tiny-clip-b32-quickgelu/tokenizer.json").read_bytes())
        query_ids = CLIP_TEXTS[8]
        paths = export_onnx(Tower(model, clip_image).eval(), Tower(model, clip_text).eval(), tmp, query_ids)
        sessions = {kind: ort_session(path, threads) for kind, path in zip(("image", "text"), paths)}
        images = {batch: ([], []) for batch in BATCHES}  # batch -> (imgsearch's images/s, ORT's)
        query = ([], [])  # (imgsearch's ms, ORT's)
        for r in range(rounds):
            print(f"round {r + 1} of {rounds} ...", file=sys.stderr, flush=True)
            for batch in BATCHES:
                iterations = max(3, -(-32 // batch))  # about 32 pictures a turn, at least 3 batches
                with_query = batch == BATCHES[0]
                ours = lambda: imgsearch_bench(checkpoint, threads, batch, iterations,
                                               (ALTERNATE_QUERY, query_ids.shape[1]) if with_query else None)
                peer = lambda: ort_bench(sessions, batch, iterations, query_ids if with_query else None)
                if r % 2:  # ORT first every other round, so that neither always runs in the other's wake
                    (peer_rate, peer_ms), (our_rate, our_ms) = peer(), ours()
                else:
                    (our_rate, our_ms), (peer_rate, peer_ms) = ours(), peer()
                images[batch][0].append(our_rate)
                images[batch][1].append(peer_rate)
                if with_query:
                    query[0].append(our_ms)
                    query[1].append(peer_ms)
    rows = [(f"image encoder, batch {b} (images/s)", ours, peer, [o / p for o, p in zip(ours, peer)])
            for b, (ours, peer) in images.items()]
    rows.append(("text encoder, 8 tokens (ms/query)", *query, [p / o for o, p in zip(*query)]))
    return rows


def alternate_table(rows):
    span = lambda values: f"{fmt(min(values))}–{fmt(max(values))}"
    lines = ["| benchmark | imgsearch | ONNX Runtime | imgsearch vs ORT, each round | median | range |",
             "|---|---:|---:|---|---:|---:|"]
    for label, ours, peer, ratios in rows:
        each = " ".join(f"{x:.2f}" for x in ratios)
        lines.append(f"| {label} | {span(ours)} | {span(peer)} | {each} | {statistics.median(ratios):.2f}x "
                     f"| {min(ratios):.2f}–{max(ratios):.2f}x |")
    lines += ["",
              "Each round times imgsearch (`imgsearch bench`, the release binary) and ONNX Runtime one right after "
              "the other on each line, the order swapped every round; ratios > 1 mean imgsearch is faster "
              "(images/s: imgsearch ÷ ORT; ms: ORT ÷ imgsearch). The same random-weight ViT-B/32 checkpoint for "
              "both; the query is one 8-token text, the median of "
              f"{QUERY_RUNS} runs."]
    return lines


# ---------------------------------------------------------------- report


# The CPU features the kernels choose between (see src/model/kernels/mod.rs, `Isa`).
KERNEL_FEATURES = ["avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "asimd"]


def cpu_description():
    """The CPU's model name and which of KERNEL_FEATURES it has, from /proc/cpuinfo."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's
    except OSError:
        pass
    cpu = fields.get("model name") or platform.processor() or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    present = [f for f in KERNEL_FEATURES if f in flags]
    return cpu, ", ".join(present) or "none of " + ", ".join(KERNEL_FEATURES)


# The kernel paths imgsearch reported where it ran (`imgsearch bench`'s and the indexing bench's
# `cpu_kernels`, in the same environment, so IMGSEARCH_ISA / IMGSEARCH_AMX count).
KERNEL_PATHS = set()


def kernel_path():
    return ", ".join(sorted(KERNEL_PATHS)) or "unknown (no imgsearch bench reported one)"


def machine_lines(threads, load_at_start, started):
    cpu, features = cpu_description()
    import onnxruntime
    return [
        f"- Started: {started.isoformat(timespec='seconds')}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; {threads} threads used "
        "(torch intra-op, ORT intra-op with inter-op 1, RAYON_NUM_THREADS); decoding single-threaded",
        f"- CPU features the kernels look for: {features}; imgsearch's kernel path: {kernel_path()}"
        + "".join(f"; {v}={os.environ[v]}" for v in ("IMGSEARCH_ISA", "IMGSEARCH_AMX") if v in os.environ),
        f"- 1-minute load average before the run: {load_at_start:.2f} (anything else running skews every column)",
        f"- Versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}, Pillow {PIL.__version__}",
    ]


def fmt(v):
    return "n/a" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def ratio(ours, peer, higher_is_better):
    if ours is None or peer is None:
        return "n/a"
    return f"{(ours / peer if higher_is_better else peer / ours):.2f}x"


def bf16_cosine(indexing):
    b = indexing.get("bf16")
    if not b:
        return "no bf16 indexing figures (this CPU has no AMX, or the indexing bench did not run)."
    return (f"distance (1 - cosine) of its embeddings of the {indexing.get('count', '?')} camera photos to "
            f"f32's: max {b['distance_to_f32_max']:.2e}, mean {b['distance_to_f32_mean']:.2e}, against "
            f"{b['f32_distance_between_photos_mean']:.2e} between two different photos in f32 (random weights "
            "and near-identical photos: see tests/it/parity.rs for the fixture checkpoints' figure).")


def table(ours, pt, ox, pil):
    indexing = ours.get("indexing") or {}
    rows = [(f"image encoder, batch {b} (images/s)", ("image", b), True) for b in BATCHES]
    rows += [(f"text encoder, {n} tokens (ms/query)", ("text", n), False) for n in TOKEN_LENGTHS]
    rows += [(f"SigLIP B/16 image encoder, batch {b} (images/s)", ("siglip_image", b), True) for b in BATCHES]
    rows += [(f"SigLIP B/16 text encoder, {n} tokens (ms/query)", ("siglip_text", n), False) for n in SIGLIP_TEXTS]
    rows += [(f"decode+preprocess {name.upper()} {mode} (ms/image)", ("decode", name, mode), False)
             for name in PHOTOS for mode in ("fast", "exact")]
    count = indexing.get('count', '?')
    rows += [(f"index {count} camera JPEGs, model in memory (images/s)", ("index_loaded",), True),
             (f"index {count} camera JPEGs, model load included (images/s)", ("index",), True)]
    # imgsearch's --dtype bf16 (AMX), against the same f32 peers.
    rows += [(f"**bf16** image encoder, batch {b} (images/s)", ("image_bf16", b), True) for b in BATCHES]
    rows += [(f"**bf16** text encoder, {n} tokens (ms/query)", ("text_bf16", n), False) for n in TOKEN_LENGTHS]
    rows += [(f"**bf16** SigLIP B/16 image encoder, batch {b} (images/s)", ("siglip_image_bf16", b), True)
             for b in BATCHES]
    rows += [(f"**bf16** SigLIP B/16 text encoder, {n} tokens (ms/query)", ("siglip_text_bf16", n), False)
             for n in SIGLIP_TEXTS]
    rows += [(f"**bf16** index {count} camera JPEGs, model in memory (images/s)", ("index_loaded_bf16",), True),
             (f"**bf16** index {count} camera JPEGs, model load included (images/s)", ("index_bf16",), True)]
    rows = [row for row in rows if not row[1][0].endswith("_bf16") or ours.get(row[1]) is not None]
    lines = ["| benchmark | imgsearch | PyTorch | ONNX Runtime | Pillow | imgsearch vs PyTorch "
             "| imgsearch vs ORT | imgsearch vs Pillow |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, key, hib in rows:
        is_decode = key[0] == "decode"
        peer_key = (key[0].removesuffix("_bf16"),) + key[1:]  # peers run f32 only
        cells = [fmt(ours.get(key))]
        cells += ["–", "–"] if is_decode else [fmt(pt.get(peer_key)), fmt(ox.get(peer_key))]
        cells += [fmt(pil.get(key))] if is_decode else ["–"]
        peers = (None, None, pil) if is_decode else (pt, ox, None)
        cells += [ratio(ours.get(key), p.get(peer_key), hib) if p is not None else "–" for p in peers]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["",
              "Ratios: > 1 means imgsearch is faster (images/s rows: imgsearch ÷ peer; ms rows: peer ÷ imgsearch).",
              "Decode rows: `fast` is compared with Pillow using `draft(\"RGB\", (224, 224))` (JPEG DCT scaling), "
              "`exact` with Pillow decoding the full image; both then bicubic-resize, centre-crop and normalise.",
              "Encoders: CLIP ViT-B/32 shape (openai/clip-vit-base-patch32), f32, random weights; "
              "the text rows are one query (batch 1). imgsearch's f32 image tower uses AMX's three-way "
              "bf16 split where the CPU has AMX (near-f32 accuracy; IMGSEARCH_AMX=0 turns it off).",
              "bf16 rows: imgsearch `--dtype bf16` (AMX tiles, or `vdpbf16ps` on AVX512_BF16 without AMX: "
              "bf16 weights and layer inputs, f32 sums) against "
              "the same f32 peers; " + bf16_cosine(indexing),
              f"imgsearch's JPEG decoder: {indexing.get('jpeg_decoder', 'unknown')}. Indexing rows: `imgsearch index` "
              "(walk, read, hash, EXIF, decode, encode, write the stores) vs the PyTorch and ONNX Runtime pipelines "
              "(DataLoader + Pillow draft + the peer's image tower, nothing written), each timed twice alike: with "
              "its model already in memory, and with loading it included (imgsearch: the image tower from the "
              "checkpoint folder; PyTorch: CLIPModel.from_pretrained of the same folder, as rclip and "
              "clip-retrieval load it; ORT: an InferenceSession from the exported file of the same shape)."]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    ap.add_argument("--skip-cargo", action="store_true", help="don't run cargo bench; read existing results")
    ap.add_argument("--skip-onnx", action="store_true", help="no ONNX Runtime column")
    ap.add_argument("--features", default="", help="cargo features for imgsearch's benches, e.g. turbojpeg")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown report to this file")
    ap.add_argument("--quick", action="store_true", help="few, short repeats (smoke run; noisy numbers)")
    ap.add_argument("--alternate", type=int, metavar="ROUNDS",
                    help="instead of the one-pass table: imgsearch and ORT taking turns, ROUNDS rounds (see above)")
    ap.add_argument("--bench-data", type=Path, default=BENCH_DATA, help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeats, seconds = (3, 0.3) if args.quick else (5, 3.0)
    load_at_start, started = os.getloadavg()[0], datetime.datetime.now().astimezone()

    if args.alternate:
        if not args.skip_cargo:
            build = ["cargo", "build", "--release"] + (["--features", args.features] if args.features else [])
            subprocess.run(build, cwd=ROOT, check=True)
        if not release_binary().exists():
            sys.exit(f"{release_binary()} is missing: run without --skip-cargo, or `cargo build --release` first")
        rows = alternate(args.alternate, args.threads)  # first: the kernel path is what its runs report
        report = ["## imgsearch and ONNX Runtime taking turns", ""]
        report += machine_lines(args.threads, load_at_start, started)
        report += [""] + alternate_table(rows)
        return emit(report, args.markdown)

    if not args.skip_cargo:  # first, so it also creates the JPEGs the Pillow peer reads
        run_cargo(args.threads, args.features)
    ours = read_imgsearch()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = CLIPModel(CLIPConfig()).eval()  # f32 by default
    image_tower, text_tower = Tower(model, clip_image).eval(), Tower(model, clip_text).eval()
    print("timing PyTorch ...", file=sys.stderr, flush=True)
    pt = bench_torch(image_tower, text_tower, repeats, seconds)
    siglip = SiglipModel(SiglipConfig()).eval()
    siglip_towers = Tower(siglip, siglip_image).eval(), Tower(siglip, siglip_text).eval()
    pt.update(bench_torch(*siglip_towers, repeats, seconds, SIGLIP_TEXTS, "siglip_"))
    if ours.get("indexing"):
        print("timing the PyTorch indexing pipeline ...", file=sys.stderr, flush=True)
        photos, batch = ours["indexing"]["photos"], ours["indexing"]["batch"]
        pt[("index_loaded",)] = bench_index(lambda: image_tower, photos, args.threads, batch)
        checkpoint = ours["indexing"].get("checkpoint")
        if checkpoint:
            load = lambda: Tower(CLIPModel.from_pretrained(checkpoint).eval(), clip_image).eval()
            pt[("index",)] = bench_index(load, photos, args.threads, batch)
    ox = {}
    if not args.skip_onnx:
        print("exporting + timing ONNX Runtime ...", file=sys.stderr, flush=True)
        ox = bench_onnx(image_tower, text_tower, args.threads, repeats, seconds, indexing=ours.get("indexing"))
        ox.update(bench_onnx(*siglip_towers, args.threads, repeats, seconds, SIGLIP_TEXTS, "siglip_"))
    print("timing Pillow ...", file=sys.stderr, flush=True)
    pil = bench_pillow(args.bench_data, repeats, seconds)

    report = ["## imgsearch vs Python peers", ""] + machine_lines(args.threads, load_at_start, started)
    report += [""] + table(ours, pt, ox, pil)
    emit(report, args.markdown)


def emit(report, markdown):
    text = "\n".join(report) + "\n"
    print(text)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)


if __name__ == "__main__":
    main()
