"""faiss beside huatu's image-database search, on the same vectors.

    cargo run --release -p huatu-data --example ann_bench -- 100000 768 --dump /tmp/ann
    python scripts/bench/ann_faiss.py /tmp/ann 768

Reads vectors.f32 / queries.f32 (raw little-endian f32, unit vectors) written by
crates/data/examples/ann_bench.rs and reports, like it: HNSW (M=32, efConstruction=256,
efSearch=512 — huatu's usearch settings) build time, recall@10 against exact search and
single-query latency p50/p99, plus faiss's exact IndexFlatIP latency. Needs faiss-cpu.
"""
import sys
import time

import faiss
import numpy as np


def main():
    folder, dimension = sys.argv[1], int(sys.argv[2])
    vectors = np.fromfile(f"{folder}/vectors.f32", dtype="<f4").reshape(-1, dimension)
    queries = np.fromfile(f"{folder}/queries.f32", dtype="<f4").reshape(-1, dimension)
    k = 10

    flat = faiss.IndexFlatIP(dimension)
    flat.add(vectors)
    flat_times = []
    exact = []
    for query in queries:
        start = time.perf_counter()
        _, ids = flat.search(query[None], k)
        flat_times.append((time.perf_counter() - start) * 1e3)
        exact.append(set(ids[0].tolist()))

    hnsw = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 256
    start = time.perf_counter()
    hnsw.add(vectors)
    build = time.perf_counter() - start
    hnsw.hnsw.efSearch = 512
    times, found = [], 0
    for query, truth in zip(queries, exact):
        start = time.perf_counter()
        _, ids = hnsw.search(query[None], k)
        times.append((time.perf_counter() - start) * 1e3)
        found += len(truth & set(ids[0].tolist()))
    p = lambda values, q: float(np.percentile(values, q))  # noqa: E731
    print(f"{len(vectors)} × {dimension}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    print(f"faiss HNSW: build {build:.1f}s, recall@{k} {found / (len(queries) * k):.4f}, "
          f"query p50 {p(times, 50):.2f} ms p99 {p(times, 99):.2f} ms")
    print(f"faiss flat (exact): query p50 {p(flat_times, 50):.2f} ms p99 {p(flat_times, 99):.2f} ms")


if __name__ == "__main__":
    main()
