#!/usr/bin/env python3
"""Bounded load test of a huatu server on loopback (stdlib only).

Sends REQUESTS asynchronous generation requests (tiny: 64x64, 1 step) with CONCURRENCY
clients, then the same number of GET /v1/jobs/{id} and GET /v1/images/{id}, and prints
latency figures of the API itself: async submission answers at once, so queueing and
compute are excluded. Checks that no accepted job is lost: every one ends succeeded.

    python3 scripts/server/load_test.py http://127.0.0.1:8080 [REQUESTS] [CONCURRENCY]

Start the server with a queue that holds them all, e.g. --queue-capacity 256.
Only loopback addresses are accepted.
"""
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 200
concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 16
host = urllib.parse.urlparse(base).hostname
if host not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"refusing to load-test {host}: loopback only")


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload = error.read()
        status = error.code
    return status, payload, time.perf_counter() - started


def figures(name, samples):
    ms = sorted(s * 1000 for s in samples)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    print(f"{name:<34} n={len(ms):<4} mean {statistics.mean(ms):7.2f} ms  p50 {pick(0.5):7.2f}  "
          f"p90 {pick(0.9):7.2f}  p99 {pick(0.99):7.2f}  max {ms[-1]:7.2f}")


def run(method, path_for, body_for):
    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda i: call(method, path_for(i), body_for(i)), range(requests)))
        return results, time.perf_counter() - started


submitted, wall = run("POST", lambda i: "/v1/images/generations",
                      lambda i: {"prompt": f"load test {i}", "size": "64x64", "steps": 1, "seed": i, "async": True})
statuses = [status for status, _, _ in submitted]
accepted = [json.loads(payload)["id"] for status, payload, _ in submitted if status == 202]
print(f"submitted {requests} with {concurrency} clients in {wall:.2f} s: "
      f"{statuses.count(202)} accepted, {requests - statuses.count(202)} refused {sorted(set(statuses) - {202})}")
figures("POST /v1/images/generations async", [t for _, _, t in submitted])

deadline = time.time() + 600
final = {}
while time.time() < deadline and len(final) < len(accepted):
    for job_id in accepted:
        if job_id in final:
            continue
        status, payload, _ = call("GET", f"/v1/jobs/{job_id}")
        job = json.loads(payload)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            final[job_id] = job
    time.sleep(0.2)
outcomes = [job["status"] for job in final.values()]
lost = len(accepted) - len(final)
print(f"jobs: {outcomes.count('succeeded')} succeeded, {outcomes.count('failed')} failed, "
      f"{outcomes.count('cancelled')} cancelled, {lost} not finished/lost")

gets, _ = run("GET", lambda i: f"/v1/jobs/{accepted[i % len(accepted)]}", lambda i: None)
figures("GET /v1/jobs/{id}", [t for _, _, t in gets])
images = [job["images"][0]["id"] for job in final.values() if job["images"]]
fetched, _ = run("GET", lambda i: f"/v1/images/{images[i % len(images)]}", lambda i: None)
figures("GET /v1/images/{id}", [t for _, _, t in fetched])
health, _ = run("GET", lambda i: "/healthz", lambda i: None)
figures("GET /healthz", [t for _, _, t in health])
bad, _ = run("POST", lambda i: "/v1/images/generations", lambda i: {"prompt": "", "size": "64x64"})
figures("POST generations, invalid (400)", [t for _, _, t in bad])
ok = lost == 0 and outcomes.count("succeeded") == len(accepted) and all(s == 200 for s, _, _ in gets + fetched)
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
