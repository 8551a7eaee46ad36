"""PyTorch side of crates/kernels/examples/bench_ops.rs and bench_attention.rs: the same
convolution, group-norm, GEGLU, linear and attention cases (SDXL UNet 512² batch 2, VAE
decoder 512², attention at 1024²) on CPU f32, median seconds per call.

Usage: python scripts/bench/ops_torch.py [REPEATS] [FILTER]
"""

import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

CONV_CASES = [
    # label, batch, in, out, size, kernel, stride, upsample
    ("unet conv3x3 320 @64² b2", 2, 320, 320, 64, 3, 1, False),
    ("unet conv3x3 640 @32² b2", 2, 640, 640, 32, 3, 1, False),
    ("unet conv3x3 1280 @16² b2", 2, 1280, 1280, 16, 3, 1, False),
    ("unet conv3x3 2560→1280 @16² b2", 2, 2560, 1280, 16, 3, 1, False),
    ("unet conv1x1 960→320 @64² b2", 2, 960, 320, 64, 1, 1, False),
    ("unet down conv3x3 s2 320 @64² b2", 2, 320, 320, 64, 3, 2, False),
    ("unet up ×2+conv3x3 1280 @16² b2", 2, 1280, 1280, 16, 3, 1, True),
    ("vae conv3x3 512 @64²", 1, 512, 512, 64, 3, 1, False),
    ("vae conv3x3 512 @128²", 1, 512, 512, 128, 3, 1, False),
    ("vae conv3x3 256 @256²", 1, 256, 256, 256, 3, 1, False),
    ("vae conv3x3 128 @512²", 1, 128, 128, 512, 3, 1, False),
    ("vae conv3x3 128→3 @512²", 1, 128, 3, 512, 3, 1, False),
    ("vae up ×2+conv3x3 256 @256²", 1, 256, 256, 256, 3, 1, True),
]
NORM_CASES = [
    ("unet group_norm+silu 320 @64² b2", 2, 320, 64, True),
    ("unet group_norm 1280 @16² b2", 2, 1280, 16, False),
    ("vae group_norm+silu 512 @128²", 1, 512, 128, True),
    ("vae group_norm+silu 128 @512²", 1, 128, 512, True),
]
LINEAR_CASES = [
    ("unet linear 512×1280→10240", 512, 1280, 10240),
    ("unet linear 512×5120→1280", 512, 5120, 1280),
    ("unet linear 512×1280→1280", 512, 1280, 1280),
    ("unet linear 2048×640→640", 2048, 640, 640),
]
ATTENTION_CASES = [
    ("self 64×64 latent, 10 heads", 10, 4096, 4096),
    ("self 32×32 latent, 20 heads", 20, 1024, 1024),
    ("cross 64×64 latent, 10 heads", 10, 4096, 77),
]


def median_seconds(repeats, run):
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    wanted = sys.argv[2] if len(sys.argv) > 2 else ""
    torch.set_num_threads(os.cpu_count())
    with torch.inference_mode():
        for label, batch, cin, cout, size, kernel, stride, upsample in CONV_CASES:
            if wanted not in label:
                continue
            xs = torch.randn(batch, cin, size, size)
            weight = torch.randn(cout, cin, kernel, kernel) * 0.02
            bias = torch.randn(cout) * 0.02

            def run():
                inp = F.interpolate(xs, scale_factor=2.0, mode="nearest") if upsample else xs
                return F.conv2d(inp, weight, bias, stride=stride, padding=kernel // 2)

            seconds = median_seconds(repeats, run)
            out = size * (2 if upsample else 1) // stride
            flops = 2 * batch * cout * out * out * cin * kernel * kernel
            print(f"{label}: torch {seconds:.4f}s ({flops / seconds / 1e9:.0f} GFLOP/s)")
        if wanted in "matmul":
            lhs, rhs = torch.randn(1280, 11520), torch.randn(11520, 512)
            seconds = median_seconds(repeats, lambda: lhs @ rhs)
            print(f"matmul 1280×11520×512: torch {seconds:.4f}s ({2 * 1280 * 11520 * 512 / seconds / 1e9:.0f} GFLOP/s)")
        for label, batch, channels, size, silu in NORM_CASES:
            if wanted not in label:
                continue
            xs = torch.randn(batch, channels, size, size)
            weight, bias = torch.randn(channels), torch.randn(channels)

            def run():
                out = F.group_norm(xs, 32, weight, bias, 1e-6)
                return F.silu(out) if silu else out

            print(f"{label}: torch {median_seconds(repeats, run):.4f}s")

        for label, tokens, inner in [("unet geglu 1024 tokens ×2·2560 b2", 1024, 2560), ("unet geglu 256 tokens ×2·5120 b2", 256, 5120)]:
            if wanted not in label:
                continue
            xs = torch.randn(2, tokens, 2 * inner)

            def run():
                hidden, gate = xs.chunk(2, dim=-1)
                return hidden * F.gelu(gate)

            print(f"{label}: torch {median_seconds(repeats, run):.4f}s")

        # bench_ops' linear cases: F.linear with bias, GFLOP/s of the GEMM.
        for label, rows, cin, cout in LINEAR_CASES:
            if wanted not in label:
                continue
            xs, weight, bias = torch.randn(rows, cin), torch.randn(cout, cin) * 0.02, torch.randn(cout) * 0.02
            seconds = median_seconds(repeats, lambda: F.linear(xs, weight, bias))
            print(f"{label}: torch {seconds:.4f}s, {2 * rows * cin * cout / seconds / 1e9:.1f} GFLOP/s")

        # bench_attention's cases (SDXL 1024² with guidance, head dim 64): SDPA, CPU flash attention.
        for label, heads, queries, keys in ATTENTION_CASES:
            if wanted not in label:
                continue
            q, k, v = (torch.randn(2, heads, n, 64) for n in (queries, keys, keys))
            seconds = median_seconds(repeats, lambda: F.scaled_dot_product_attention(q, k, v))
            print(f"{label}: torch {seconds:.3f}s")


if __name__ == "__main__":
    main()
