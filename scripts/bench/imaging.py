"""Benchmark of huatu-imaging against OpenCV and Pillow, same image, same run.

Makes a seeded photo-like test image (or takes --image), runs the Rust example
`bench_imaging` (crates/imaging/examples/bench_imaging.rs) on it, times the equivalent
OpenCV and Pillow calls on the same pixels (median of --repeat runs after a warm-up,
as the Rust side does), and prints a table with ratios (huatu time / other time;
below 1 means huatu is faster). With torch installed it also times the two
published Real-ESRGAN architectures in PyTorch (the classes of
scripts/fixtures/realesrgan.py, random weights) beside huatu's candle port, in output
megapixels per second.

Usage:
  pip install opencv-python-headless pillow numpy   # torch optional
  python scripts/bench/imaging.py [--image PATH] [--size 1536x1024] [--repeat 5] [--no-sr]

Equivalences: huatu works on f32 RGB in [0, 1]; OpenCV and Pillow on 8-bit. Resizing
is 8-bit on all sides. OpenCV has no Lanczos3 (INTER_LANCZOS4 is an 8x8 kernel);
Pillow's LANCZOS is Lanczos3, the same filter as huatu's. OpenCV's INTER_CUBIC does
not widen its kernel when shrinking (no antialiasing), so it does far less work than
huatu's and Pillow's bicubic. Bilateral: d from
sigma_space as OpenCV does, sigmaColor 25.5 on 0-255 = 0.1 on 0-1.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def median_seconds(repeat, work):
    work()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def test_image(width, height, seed=0):
    """Smooth gradients, hard-edged shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 23.0)], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 200)
        colour = rng.uniform(0, 1, 3)
        image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = colour
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def run_huatu(image_path, repeat, sr, sr_side=None):
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "huatu-imaging", "--example", "bench_imaging"],
        cwd=ROOT, check=True)
    command = [os.path.join(ROOT, "target", "release", "examples", "bench_imaging"), image_path,
               "--repeat", str(repeat)] + (["--sr"] if sr else []) + (["--sr-side", str(sr_side)] if sr and sr_side else [])
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {row["op"]: row for row in map(json.loads, output.splitlines())}


def time_opencv(rgb, repeat):
    import cv2

    h, w = rgb.shape[:2]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    lut = np.array([((i / 255.0) ** (1 / 1.2)) * 255 for i in range(256)]).clip(0, 255).astype(np.uint8)

    def contrast():
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
        lab[..., 0] = clahe.apply(lab[..., 0])
        cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)

    def sharpen():
        blurred = cv2.GaussianBlur(bgr, (0, 0), 2.0)
        cv2.addWeighted(bgr, 1.5, blurred, -0.5, 0)

    def center_crop_768():
        scale = max(768 / w, 768 / h)
        resized = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LANCZOS4)
        top, left = (resized.shape[0] - 768) // 2, (resized.shape[1] - 768) // 2
        return resized[top:top + 768, left:left + 768].copy()

    def pad_768():
        scale = min(768 / w, 768 / h)
        resized = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LANCZOS4)
        mean = bgr.reshape(-1, 3).mean(axis=0)
        canvas = np.empty((768, 768, 3), np.uint8)
        canvas[:] = mean.round().astype(np.uint8)
        top, left = (768 - resized.shape[0]) // 2, (768 - resized.shape[1]) // 2
        canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = resized

    def white_balance():
        f = bgr.astype(np.float32)
        means = f.reshape(-1, 3).mean(axis=0)
        np.clip(f * (means.mean() / means), 0, 255).astype(np.uint8)

    return {
        "resize_down_lanczos3": median_seconds(repeat, lambda: cv2.resize(bgr, (w // 2, h // 2), interpolation=cv2.INTER_LANCZOS4)),
        "resize_up_lanczos3": median_seconds(repeat, lambda: cv2.resize(bgr, (w * 2, h * 2), interpolation=cv2.INTER_LANCZOS4)),
        "resize_down_bicubic": median_seconds(repeat, lambda: cv2.resize(bgr, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)),
        "fit_center_crop_768": median_seconds(repeat, center_crop_768),
        "fit_pad_768": median_seconds(repeat, pad_768),
        "denoise": median_seconds(repeat, lambda: cv2.bilateralFilter(bgr, 0, 25.5, 2.0)),
        "sharpen": median_seconds(repeat, sharpen),
        "contrast": median_seconds(repeat, contrast),
        "white_balance": median_seconds(repeat, white_balance),
        "gamma": median_seconds(repeat, lambda: cv2.LUT(bgr, lut)),
    }


def time_pillow(rgb, repeat):
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    image = Image.fromarray(rgb)
    w, h = image.size
    lut = [round(((i / 255.0) ** (1 / 1.2)) * 255) for i in range(256)] * 3

    def pad_768():
        mean = tuple(int(round(v)) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
        ImageOps.pad(image, (768, 768), method=Image.LANCZOS, color=mean)

    return {
        "resize_down_lanczos3": median_seconds(repeat, lambda: image.resize((w // 2, h // 2), Image.LANCZOS)),
        "resize_up_lanczos3": median_seconds(repeat, lambda: image.resize((w * 2, h * 2), Image.LANCZOS)),
        "resize_down_bicubic": median_seconds(repeat, lambda: image.resize((w // 2, h // 2), Image.BICUBIC)),
        "fit_center_crop_768": median_seconds(repeat, lambda: ImageOps.fit(image, (768, 768), Image.LANCZOS)),
        "fit_pad_768": median_seconds(repeat, pad_768),
        "sharpen": median_seconds(repeat, lambda: image.filter(ImageFilter.UnsharpMask(radius=2, percent=50, threshold=0))),
        "saturation": median_seconds(repeat, lambda: ImageEnhance.Color(image).enhance(1.2)),
        "gamma": median_seconds(repeat, lambda: image.point(lut)),
    }


def time_torch_sr(sr_side=None):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("realesrgan_fixture", os.path.join(ROOT, "scripts", "fixtures", "realesrgan.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = {}
    cases = [
        ("sr_realesr-general-x4v3", module.SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=4, act_type="prelu"), sr_side or 128),
        ("sr_RealESRGAN_x4plus", module.RRDBNet(3, 3, scale=4, num_feat=64, num_block=23, num_grow_ch=32), sr_side or 64),
    ]
    for name, model, side in cases:
        model.eval()
        x = torch.rand(1, 3, side, side)
        with torch.no_grad():
            seconds = median_seconds(2, lambda: model(x))
        results[name] = {"seconds": seconds, "output_mp_per_s": (side * 4) ** 2 / 1e6 / seconds}
    return results, torch.get_num_threads()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image")
    parser.add_argument("--size", default="1536x1024")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-sr", action="store_true")
    parser.add_argument("--sr-side", type=int, help="input tile of both SR generators (default 128 and 64)")
    args = parser.parse_args()
    from PIL import Image

    if args.image:
        rgb = np.asarray(Image.open(args.image).convert("RGB"))
        path = args.image
    else:
        width, height = map(int, args.size.split("x"))
        rgb = test_image(width, height)
        path = os.path.join(tempfile.mkdtemp(), "bench.png")
        Image.fromarray(rgb).save(path)
    print(f"image: {rgb.shape[1]}x{rgb.shape[0]} ({rgb.shape[1] * rgb.shape[0] / 1e6:.2f} MP), "
          f"median of {args.repeat}, {os.cpu_count()} CPUs")
    huatu = run_huatu(path, args.repeat, not args.no_sr, args.sr_side)
    import cv2
    import PIL

    opencv = time_opencv(rgb, args.repeat)
    pillow = time_pillow(rgb, args.repeat)
    print(f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), Pillow {PIL.__version__}")
    print(f"{'operation':<22}{'huatu ms':>10}{'OpenCV ms':>11}{'ratio':>8}{'Pillow ms':>11}{'ratio':>8}")
    for op, row in huatu.items():
        if op.startswith("sr_"):
            continue
        ours = row["seconds"] * 1e3
        cells = f"{op:<22}{ours:>10.1f}"
        for other in (opencv, pillow):
            if op in other:
                theirs = other[op] * 1e3
                cells += f"{theirs:>11.1f}{ours / theirs:>8.2f}"
            else:
                cells += f"{'-':>11}{'-':>8}"
        print(cells)
    if not args.no_sr:
        try:
            torch_results, threads = time_torch_sr(args.sr_side)
        except ImportError:
            torch_results, threads = {}, 0
        print(f"\nsuper-resolution, output megapixels per second (PyTorch CPU, {threads} threads, beside)")
        for op, row in huatu.items():
            if not op.startswith("sr_"):
                continue
            line = f"{op[3:]:<22} input {row['input']:<8} huatu {row['output_mp_per_s']:.4f} MP/s"
            if op in torch_results:
                theirs = torch_results[op]["output_mp_per_s"]
                line += f"   PyTorch {theirs:.4f} MP/s   ratio (huatu/PyTorch speed) {row['output_mp_per_s'] / theirs:.2f}"
            print(line)
    print("\nratio = huatu time / other time (below 1: huatu faster). huatu's enhancers run on f32,"
          " the others on 8-bit; 'u8_to_f32_and_back' is the conversion huatu adds once per chain.")


if __name__ == "__main__":
    sys.exit(main())
