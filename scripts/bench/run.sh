#!/usr/bin/env bash
# Runs huatu's and diffusers' SDXL benchmarks one after the other on the same shapes and
# prints the ratio (huatu time / diffusers time; below 1 means huatu is faster).
# Needs a virtualenv with torch and diffusers: PYTHON=/path/to/venv/bin/python.
# Usage: scripts/bench/run.sh [cases...]   cases like unet:512 unet:1024 vae:512 vae:1024
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
REPEATS=${REPEATS:-3}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(unet:512 vae:512 unet:1024 vae:1024)
cargo build --release -p huatu-diffusion --example bench_sdxl >&2
for case in "${cases[@]}"; do
  part=${case%%:*}; size=${case##*:}
  ours=$(target/release/examples/bench_sdxl "$part" "$size" "$REPEATS")
  theirs=$("$PYTHON" scripts/bench/sdxl_torch.py "$part" "$size" "$REPEATS")
  echo "$ours"; echo "$theirs"
  "$PYTHON" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{ours['part']} {ours['size']}²: huatu {ours['seconds']:.2f}s / diffusers {theirs['seconds']:.2f}s = "
      f"{ours['seconds'] / theirs['seconds']:.2f}×; peak RSS {ours['peak_rss_mib']:.0f} / {theirs['peak_rss_mib']:.0f} MiB")
PY
done
