"""CLIP image-embedding throughput: transformers on CPU beside `huatu db add`, on the real
CLIP ViT-L/14 architecture with random weights (openai/clip-vit-large-patch14's config:
24 vision layers, width 1024, patch 14, image 224, projection 768).

    python scripts/bench/clip_throughput.py /tmp/clip_bench 32          # write, then time
    python scripts/bench/clip_throughput.py /tmp/clip_bench 32 --time   # time only
    python scripts/bench/clip_throughput.py /tmp/clip_bench 16 --ops    # per operation
    target/release/huatu db add --db /tmp/clip_bench/db --model /tmp/clip_bench/model /tmp/clip_bench/images

Writes the random model (about 1.7 GB) and N test images (640×480 JPEG) under the folder,
then times `processor(images) + get_image_features` in batches of 16 with torch's CPU
threads; `huatu db add` prints its own images/s for the same images (hashing, decoding,
preprocessing and embedding included). `--ops` times each kind of operation of one vision
layer at the real shapes for a batch of N, as crates/data/examples/vision_profile.rs does
for huatu.
"""
import os
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from tiny_vocabulary import write_vocabulary  # noqa: E402


def best_seconds(run, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def time_operations(batch):
    """One ViT-L/14 layer's operations, scaled to the 24 layers of a forward."""
    hidden, intermediate, heads, tokens, layers = 1024, 4096, 16, 257, 24
    head_dim = hidden // heads
    with torch.inference_mode():
        xs = torch.randn(batch, tokens, hidden)
        wide = torch.randn(batch, tokens, intermediate)
        query = torch.randn(batch, heads, tokens, head_dim)
        projection = torch.nn.Linear(hidden, hidden)
        fc1 = torch.nn.Linear(hidden, intermediate)
        fc2 = torch.nn.Linear(intermediate, hidden)
        norm = torch.nn.LayerNorm(hidden)
        rows = [
            ("linear hidden->hidden (×4: q, k, v, out)", 4, lambda: projection(xs)),
            ("linear hidden->intermediate (fc1)", 1, lambda: fc1(xs)),
            ("linear intermediate->hidden (fc2)", 1, lambda: fc2(wide)),
            ("attention, eager", 1,
             lambda: torch.softmax(query @ query.transpose(-1, -2) * head_dim ** -0.5, -1) @ query),
            ("attention, sdpa (transformers' default)", 1,
             lambda: torch.nn.functional.scaled_dot_product_attention(query, query, query)),
            ("quick_gelu", 1, lambda: wide * torch.sigmoid(1.702 * wide)),
            ("gelu (erf)", 1, lambda: torch.nn.functional.gelu(wide)),
            ("layer norm (×2)", 2, lambda: norm(xs)),
            ("residual add (×2)", 2, lambda: xs + xs),
        ]
        print(f"per operation, {batch * tokens} rows of {hidden}, {layers} layers "
              f"({torch.get_num_threads()} threads):")
        for name, per_layer, run in rows:
            print(f"  {name:<40} {best_seconds(run) * per_layer * layers:7.3f} s per forward")


def main():
    folder, count = sys.argv[1], int(sys.argv[2])
    if "--ops" in sys.argv[3:]:
        time_operations(count)
        return
    model_dir, image_dir = os.path.join(folder, "model"), os.path.join(folder, "images")
    if "--time" in sys.argv[3:]:
        time_transformers(model_dir, sorted(
            os.path.join(image_dir, name) for name in os.listdir(image_dir)))
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(image_dir)
    torch.manual_seed(0)
    vocab, _ = write_vocabulary(os.path.join(folder, "vocabulary"), 200)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=768, intermediate_size=3072,
                         num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, image_size=224, patch_size=14),
        projection_dim=768,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(model_dir)
    tokenizer = CLIPTokenizer(vocab=os.path.join(folder, "vocabulary", "vocab.json"),
                              merges=os.path.join(folder, "vocabulary", "merges.txt"), model_max_length=77)
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer)
    processor.save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        path = os.path.join(image_dir, f"{index:04d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    time_transformers(model_dir, paths)


def time_transformers(model_dir, paths):
    count = len(paths)
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, count, 16):
            images = [Image.open(path) for path in paths[first:first + 16]]
            inputs = processor(images=images, return_tensors="pt")
            model.get_image_features(pixel_values=inputs.pixel_values)
    seconds = time.perf_counter() - start
    print(f"transformers {count} images in {seconds:.1f}s: {count / seconds:.2f} images/s "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
