"""faiss beside huatu's image-database search, on the same vectors.

    cargo run --release -p huatu-data --example ann_bench -- 100000 768 --dump /tmp/ann
    python scripts/bench/ann_faiss.py /tmp/ann 768 [--hnsw M,EF_CONSTRUCTION] [--ef-search 512,2048]

Reads vectors.f32 / queries.f32 (raw little-endian f32, unit vectors) written by
crates/data/examples/ann_bench.rs and reports, like it, recall@10 against exact search and
single-query latency p50/p99 for:
- `IndexFlatIP`: exact, the ground truth;
- `IndexRefineFlat(IndexScalarQuantizer(QT_8bit))`: an 8-bit scan whose best 4·k are
  re-scored in f32 — the same design as huatu's index (crates/data/src/db/ann.rs);
- `IndexHNSWFlat` (default M=32, efConstruction=256, huatu's former usearch settings) at
  each efSearch given (`--hnsw 0,0` skips it: at 1M it builds for about an hour on 2 cores).
Build times and the process's peak resident memory are printed too. Needs faiss-cpu.
"""
import argparse
import resource
import time

import faiss
import numpy as np

K = 10


def percentiles(values):
    return f"p50 {np.percentile(values, 50):.2f} ms p99 {np.percentile(values, 99):.2f} ms"


def run_queries(index, queries, exact):
    """Single-query latencies and recall@K against `exact` (None: collect it instead)."""
    times, found, ids_all = [], 0, []
    for position, query in enumerate(queries):
        start = time.perf_counter()
        _, ids = index.search(query[None], K)
        times.append((time.perf_counter() - start) * 1e3)
        ids_all.append(set(ids[0].tolist()))
        if exact is not None:
            found += len(exact[position] & ids_all[-1])
    return times, found / (len(queries) * K), ids_all


def peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("dimension", type=int)
    parser.add_argument("--hnsw", default="32,256", help="M,efConstruction; 0,0 skips HNSW")
    parser.add_argument("--ef-search", default="512", help="comma-separated efSearch values")
    arguments = parser.parse_args()
    dimension = arguments.dimension
    vectors = np.fromfile(f"{arguments.folder}/vectors.f32", dtype="<f4").reshape(-1, dimension)
    queries = np.fromfile(f"{arguments.folder}/queries.f32", dtype="<f4").reshape(-1, dimension)
    print(f"{len(vectors)} × {dimension}, {len(queries)} queries, faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads")

    flat = faiss.IndexFlatIP(dimension)
    start = time.perf_counter()
    flat.add(vectors)
    build = time.perf_counter() - start
    flat_times, _, exact = run_queries(flat, queries, None)
    print(f"faiss flat (exact): build {build:.1f}s, query {percentiles(flat_times)}, "
          f"peak {peak_gib():.2f} GiB")
    del flat

    quantized = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
    refined = faiss.IndexRefineFlat(quantized)
    refined.k_factor = 4
    start = time.perf_counter()
    refined.train(vectors)
    refined.add(vectors)
    build = time.perf_counter() - start
    times, recall, _ = run_queries(refined, queries, exact)
    print(f"faiss SQ8 + f32 re-rank (4·k): build {build:.1f}s, recall@{K} {recall:.4f}, "
          f"query {percentiles(times)}, peak {peak_gib():.2f} GiB")
    del refined, quantized

    m, ef_construction = (int(value) for value in arguments.hnsw.split(","))
    if m == 0:
        return
    hnsw = faiss.IndexHNSWFlat(dimension, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    start = time.perf_counter()
    hnsw.add(vectors)
    build = time.perf_counter() - start
    print(f"faiss HNSW M={m} efConstruction={ef_construction}: build {build:.1f}s, "
          f"peak {peak_gib():.2f} GiB")
    for ef_search in (int(value) for value in arguments.ef_search.split(",")):
        hnsw.hnsw.efSearch = ef_search
        times, recall, _ = run_queries(hnsw, queries, exact)
        print(f"  efSearch {ef_search}: recall@{K} {recall:.4f}, query {percentiles(times)}")


if __name__ == "__main__":
    main()
