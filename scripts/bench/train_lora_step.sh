#!/usr/bin/env bash
# One LoRA training step on the real SDXL UNet architecture (random weights, f32, CPU),
# huatu (crates/train/examples/bench_train_step.rs) beside diffusers + peft
# (scripts/bench/train_lora_step.py), one after the other on the same shapes; prints both
# JSON lines, each process's maximum resident set size from /usr/bin/time -v, and the
# ratios (huatu / PyTorch; below 1 means huatu is faster or smaller).
# Needs a virtualenv with torch, diffusers and peft: PYTHON=/path/to/venv/bin/python.
# Usage: scripts/bench/train_lora_step.sh [sizes...]        (default: 512)
# Environment: STEPS (timed steps after one warm-up, default 3), RANK (16), ALPHA (16),
# MIN_AVAILABLE_MIB (optional: a side is killed when the machine's MemAvailable falls below
# this, the same rule for both, so running out of memory ends that side, reported with the
# size it reached, instead of calling in the kernel's OOM killer on a shared machine),
# SIDES ("huatu torch"), CHECKPOINTING=1 (gradient checkpointing on both sides),
# CONFIG (a unet/config.json instead of SDXL's, for a quick check of the scripts),
# HUATU_BIN (a bench_train_step binary built already: no cargo build).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-3}
RANK=${RANK:-16}
ALPHA=${ALPHA:-16}
extra=()
[ -z "${CONFIG:-}" ] || extra=(--config "$CONFIG")
[ -z "${CHECKPOINTING:-}" ] || extra+=(--gradient-checkpointing)
SIDES=${SIDES:-huatu torch}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(512)
if [ -z "${HUATU_BIN:-}" ]; then
  cargo build --release -p huatu-train --example bench_train_step >&2
  HUATU_BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_train_step
fi
logs=$(mktemp -d)

# run NAME COMMAND...: the command's JSON line (empty if it failed) into $logs/NAME.json,
# its stderr and /usr/bin/time -v's report into $logs/NAME.log.
run() {
  local name=$1; shift
  /usr/bin/time -v "$@" >"$logs/$name.json" 2>"$logs/$name.log" &
  local timer=$! status=0
  if [ -n "${MIN_AVAILABLE_MIB:-}" ]; then
    while kill -0 "$timer" 2>/dev/null; do
      local available
      available=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
      if [ "$available" -lt "$MIN_AVAILABLE_MIB" ]; then
        echo "$name stopped: MemAvailable ${available} MiB < ${MIN_AVAILABLE_MIB} MiB" >&2
        local child
        for child in $(pgrep -P "$timer"); do kill -9 "$child"; done
        break
      fi
      sleep 0.2
    done
  fi
  wait "$timer" || status=$?
  [ "$status" -eq 0 ] || {
    echo "$name failed (exit $status); its last words:" >&2
    sed '/^\tCommand being timed/,$d; /^Command /d' "$logs/$name.log" | tail -3 | sed "s/^/$name: /" >&2
  }
  grep -E 'Maximum resident set size|Elapsed \(wall clock\)|Exit status|signal' "$logs/$name.log" | sed "s/^/$name: /" >&2 || true
}

for size in "${sizes[@]}"; do
  for side in $SIDES; do
    case $side in
      huatu) run "huatu-$size" "$HUATU_BIN" "$size" "$STEPS" --rank "$RANK" --alpha "$ALPHA" "${extra[@]}" ;;
      torch) run "torch-$size" "$PYTHON" scripts/bench/train_lora_step.py "$size" "$STEPS" --rank "$RANK" --alpha "$ALPHA" "${extra[@]}" ;;
      *) echo "unknown side $side (huatu or torch)" >&2; exit 2 ;;
    esac
  done
  cat "$logs/huatu-$size.json" "$logs/torch-$size.json" 2>/dev/null || true
  "$PYTHON" - "$logs" "$size" <<'PY'
import json, os, re, sys
logs, size = sys.argv[1], sys.argv[2]
def side(name):
    result = {}
    path = os.path.join(logs, f"{name}-{size}.json")
    if os.path.exists(path) and os.path.getsize(path):
        result = json.loads(open(path).read().strip().splitlines()[-1])
    log = os.path.join(logs, f"{name}-{size}.log")
    if os.path.exists(log):
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(log).read())
        if found:
            result["time_v_max_rss_mib"] = int(found.group(1)) / 1024
    return result
ours, theirs = side("huatu"), side("torch")
def cell(result):
    if not result:
        return "not run"
    if "seconds_per_step" not in result:
        return f"failed (max RSS {result.get('time_v_max_rss_mib', float('nan')):.0f} MiB)"
    return (f"{result['seconds_per_step']:.2f} s/step (fwd {result['forward_seconds']:.2f}, bwd {result['backward_seconds']:.2f},"
            f" update {result['update_seconds']:.3f}), peak RSS {result['peak_rss_mib']:.0f} MiB")
print(f"{size}²: huatu {cell(ours)}; PyTorch {cell(theirs)}")
if "seconds_per_step" in ours and "seconds_per_step" in theirs:
    print(f"{size}²: time ratio {ours['seconds_per_step'] / theirs['seconds_per_step']:.2f}×, "
          f"peak memory ratio {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}×")
PY
done
echo "logs: $logs" >&2
