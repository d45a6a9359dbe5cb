#!/usr/bin/env python3
"""The vector-index anchors on the data `benches/ann.rs` writes (IMGSEARCH_BENCH_DUMP=DIR):
hnswlib, usearch and faiss (HNSW, same M and ef_construction), recall@10 against the bench's
exact answers for text-like and picture-like queries, queries/s on one thread, build inserts/s
on all cores, resident memory of the index, save and load time.

    pip install hnswlib usearch faiss-cpu numpy
    IMGSEARCH_BENCH_N=100000 IMGSEARCH_BENCH_DUMP=/tmp/ann cargo bench --bench ann
    python3 scripts/ann_peers.py /tmp/ann [hnswlib,usearch,faiss]
"""
import gc
import os
import sys
import tempfile
import time

import numpy as np

# ANN_EF_CONSTRUCTION: build the anchors as wide as imgsearch builds (its EF_CONSTRUCTION) too.
M, EFS = 16, [32, 64, 128, 192, 256, 384, 512]
EF_CONSTRUCTION = int(os.environ.get("ANN_EF_CONSTRUCTION", "200"))


def resident_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def table(name, search, queries, truths):
    for ef in EFS:
        cells = []
        for q, t in zip(queries, truths):
            started = time.perf_counter()
            found = [search(v, ef) for v in q]  # one query at a time, as one client
            qps = len(q) / (time.perf_counter() - started)
            cells.append(f"{recall(found, t):.3f} | {qps:.0f}")
        print(f"| {name} ef {ef} | " + " | ".join(cells) + " |", flush=True)


def main(folder, which):
    pictures = np.load(os.path.join(folder, "pictures.npy"))
    queries = [np.load(os.path.join(folder, f"{k}_queries.npy")) for k in ("text", "picture")]
    truths = [np.load(os.path.join(folder, f"{k}_truth.npy")) for k in ("text", "picture")]
    n, dim = pictures.shape
    threads = os.cpu_count()
    print(f"## Anchors at {n} pictures (dim {dim}, M = {M}, ef_construction {EF_CONSTRUCTION}, {threads} build threads)\n")
    notes = []
    print("| search | text recall@10 | text queries/s | picture recall@10 | picture queries/s |")
    print("|---|---:|---:|---:|---:|")
    tmp = tempfile.mkdtemp()

    if "hnswlib" in which:
        run_hnswlib(pictures, queries, truths, tmp, threads, notes)
    if "usearch" in which:
        run_usearch(pictures, queries, truths, tmp, threads, notes)
    if "faiss" in which:
        run_faiss(pictures, queries, truths, tmp, threads, notes)
    print()
    for note in notes:
        print(f"- {note}")


def run_hnswlib(pictures, queries, truths, tmp, threads, notes):
    n, dim = pictures.shape
    import hnswlib
    before = resident_mb()
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=1)
    index.add_items(pictures, np.arange(n), num_threads=threads)
    build = n / (time.perf_counter() - started)
    path = os.path.join(tmp, "hnswlib.bin")
    started = time.perf_counter()
    index.save_index(path)
    save = time.perf_counter() - started
    del index
    gc.collect()
    before = resident_mb()
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(path, max_elements=n)
    load = time.perf_counter() - started
    memory = resident_mb() - before
    index.set_num_threads(1)

    def hnswlib_search(v, ef):
        index.set_ef(ef)
        return index.knn_query(v, k=10)[0][0]

    table("hnswlib 0.8", hnswlib_search, queries, truths)
    notes.append(f"hnswlib: build {build:.0f} inserts/s, save {save:.2f} s, load {load:.2f} s, resident {memory:.0f} MB")
    del index
    gc.collect()


def run_usearch(pictures, queries, truths, tmp, threads, notes):
    n, dim = pictures.shape
    try:
        from usearch.index import Index as UIndex
        started = time.perf_counter()
        uindex = UIndex(ndim=dim, metric="ip", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION)
        uindex.add(np.arange(n), pictures, threads=threads)
        build = n / (time.perf_counter() - started)
        path = os.path.join(tmp, "usearch.bin")
        uindex.save(path)
        del uindex
        gc.collect()
        before = resident_mb()
        started = time.perf_counter()
        uindex = UIndex.restore(path)
        load = time.perf_counter() - started
        memory = resident_mb() - before

        def usearch_search(v, ef):
            uindex.expansion_search = ef
            return uindex.search(v, 10, threads=1).keys

        table("usearch", usearch_search, queries, truths)
        notes.append(f"usearch: build {build:.0f} inserts/s, load {load:.2f} s, resident {memory:.0f} MB")
        del uindex
        gc.collect()
    except ImportError:
        notes.append("usearch: not installed")


def run_faiss(pictures, queries, truths, tmp, threads, notes):
    n, dim = pictures.shape
    try:
        import faiss
        faiss.omp_set_num_threads(threads)
        started = time.perf_counter()
        findex = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        findex.hnsw.efConstruction = EF_CONSTRUCTION
        findex.add(pictures)
        build = n / (time.perf_counter() - started)
        path = os.path.join(tmp, "faiss.bin")
        faiss.write_index(findex, path)
        del findex
        gc.collect()
        before = resident_mb()
        started = time.perf_counter()
        findex = faiss.read_index(path)
        load = time.perf_counter() - started
        memory = resident_mb() - before
        faiss.omp_set_num_threads(1)

        def faiss_search(v, ef):
            findex.hnsw.efSearch = ef
            return findex.search(v.reshape(1, -1), 10)[1][0]

        table("faiss HNSWFlat", faiss_search, queries, truths)
        notes.append(f"faiss: build {build:.0f} inserts/s, load {load:.2f} s, resident {memory:.0f} MB")
    except ImportError:
        notes.append("faiss: not installed")


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ann"
    which = sys.argv[2].split(",") if len(sys.argv) > 2 else ["hnswlib", "usearch", "faiss"]
    main(folder, which)
