"""Reference side of the SDXL benchmark: diffusers (PyTorch, CPU, f32) on the real SDXL
UNet and VAE architectures with random weights, same shapes as huatu's bench_sdxl.

Usage: python scripts/bench/sdxl_torch.py unet|vae SIZE [REPEATS]
Prints one JSON line like the Rust side. Thread count: $BENCH_THREADS, else os.cpu_count().
$BENCH_DTYPE=bf16 runs the UNet in bf16 (weights and activations, oneDNN's bf16 kernels).
"""

import json
import os
import resource
import statistics
import sys
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

PRESETS = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "diffusion", "presets", "sdxl-base-1.0")


def load_config(name):
    with open(os.path.join(PRESETS, name)) as handle:
        return {k: v for k, v in json.load(handle).items() if not k.startswith("_")}


def timed(repeats, run):
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    part, size = sys.argv[1], int(sys.argv[2])
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    latent = size // 8
    with torch.inference_mode():
        if part == "unet":
            dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[os.environ.get("BENCH_DTYPE", "f32")]
            unet = UNet2DConditionModel(**load_config("unet.json")).eval().to(dtype)
            sample = torch.randn(2, 4, latent, latent, dtype=dtype)
            context = torch.randn(2, 77, 2048, dtype=dtype)
            added = {"text_embeds": torch.randn(2, 1280, dtype=dtype), "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, dtype=dtype)}
            seconds = timed(repeats, lambda: unet(sample, 500, context, added_cond_kwargs=added))
        elif part == "vae":
            vae = AutoencoderKL(**load_config("vae.json")).eval()
            latents = torch.randn(1, 4, latent, latent)
            seconds = timed(repeats, lambda: vae.decode(latents))
        else:
            raise SystemExit(f"unknown part {part}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "diffusers", "part": part, "size": size, "dtype": os.environ.get("BENCH_DTYPE", "f32"), "seconds": round(seconds, 3), "peak_rss_mib": round(peak)}))


if __name__ == "__main__":
    main()
