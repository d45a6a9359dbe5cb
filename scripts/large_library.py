#!/usr/bin/env python3
"""A large library end to end through the real CLI: the vectors `benches/ann.rs` dumps
(IMGSEARCH_BENCH_DUMP=DIR) become a Parquet file, `imgsearch import` turns it into a library
(rows/s), and `imgsearch search --vector` is timed from process start to answer (what opening the
library costs a command), with its recall@10 on the bench's text-like queries; then
`imgsearch duplicates` over the whole library (the generator plants near-duplicates).

    pip install numpy pyarrow
    IMGSEARCH_BENCH_N=1000000 IMGSEARCH_BENCH_DUMP=/tmp/ann cargo bench --bench ann
    cargo build --release
    python3 scripts/large_library.py /tmp/ann [--bin target/release/imgsearch]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MODEL = {"model": "bench/clip-like-512", "dim": 512, "preprocess": "{}"}


def write_parquet(pictures, path):
    n, dim = pictures.shape
    paths = pa.array([f"/photos/{i // 1000:04}/IMG_{i:07}.jpg" for i in range(n)])
    embeddings = pa.FixedSizeListArray.from_arrays(pa.array(pictures.reshape(-1), pa.float32()), dim)
    table = pa.table({"path": paths, "embedding": embeddings})
    table = table.replace_schema_metadata({"imgsearch.model": json.dumps(MODEL)})
    pq.write_table(table, path, row_group_size=65536)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dump")
    parser.add_argument("--bin", default="target/release/imgsearch")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--keep", help="work in this folder and keep it (the Parquet file and the library)")
    args = parser.parse_args()
    dump = pathlib.Path(args.dump)
    pictures = np.load(dump / "pictures.npy", mmap_mode="r")
    texts = np.load(dump / "text_queries.npy")
    truth = np.load(dump / "text_truth.npy")
    work = pathlib.Path(args.keep) if args.keep else pathlib.Path(tempfile.mkdtemp(prefix="imgsearch-large-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        parquet = work / "library.parquet"
        write_parquet(np.asarray(pictures), parquet)
        data = work / "data"
        started = time.perf_counter()
        subprocess.run([args.bin, "--data-dir", str(data), "import", str(parquet), "--quiet"], check=True)
        imported = time.perf_counter() - started
        print(f"import: {len(pictures)} rows in {imported:.1f} s = {len(pictures) / imported:.0f} rows/s")
        times, found = [], 0.0
        for i in range(args.queries):
            query = work / "query.json"
            query.write_text(json.dumps(texts[i].tolist()))
            started = time.perf_counter()
            out = subprocess.run(
                [args.bin, "--data-dir", str(data), "search", "--vector", str(query), "-k", "10", "--json"],
                check=True, capture_output=True, text=True,
            ).stdout
            times.append(time.perf_counter() - started)
            # The row number is in the path (IMG_{row}.jpg); the bench's truth counts rows.
            rows = {int(hit["path"].rsplit("_", 1)[1].split(".")[0]) for hit in json.loads(out)}
            found += len(rows & {int(t) for t in truth[i]}) / 10
        print(f"search --vector, process start to answer: first {times[0]:.2f} s, then median "
              f"{np.median(times[1:]):.2f} s, max {max(times[1:]):.2f} s over {len(times) - 1} runs; "
              f"recall@10 {found / len(times):.3f}")
        print(f"data folder: {sum(f.stat().st_size for f in data.rglob('*') if f.is_file()) / 2**20:.0f} MB")
        started = time.perf_counter()
        out = subprocess.run([args.bin, "--data-dir", str(data), "duplicates", "--json"],
                             check=True, capture_output=True, text=True).stdout
        groups = json.loads(out)["groups"]
        kinds = {kind: sum(g["kind"] == kind for g in groups) for kind in ("exact", "near", "burst")}
        print(f"duplicates: {time.perf_counter() - started:.1f} s for {len(pictures)} pictures; groups {kinds}, "
              f"{sum(len(g['ids']) for g in groups)} pictures in them")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
