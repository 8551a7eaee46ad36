"""BLIP captioning throughput: transformers on CPU beside `huatu caption`, on the real
BLIP-large architecture with random weights (Salesforce/blip-image-captioning-large's
config: a ViT-L/16 at 384² — 24 layers, width 1024 — and a 12-layer BERT-base decoder
with cross-attention, vocabulary 30524).

    python scripts/bench/blip_throughput.py /tmp/blip_bench 16          # write, then time
    python scripts/bench/blip_throughput.py /tmp/blip_bench 16 --time   # time only
    target/release/huatu caption --model /tmp/blip_bench/model --image /tmp/blip_bench/images --max-tokens 20

Writes the random model (about 1.9 GB) and N test images (640×480 JPEG) under the folder,
then times `processor(images) + generate(max_new_tokens=20)` (greedy) in batches of 8,
huatu caption's default batch, with torch's CPU threads. The [SEP] logit is pushed far
down so that no caption ends early on either side: every image costs exactly 20 decoder
steps, whatever the random weights make of it.
"""
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

BATCH = 8
MAX_NEW_TOKENS = 20
# bert-base-uncased's 30522 WordPiece entries (here: the special tokens, then filler
# words), then [DEC] and [ENC] as BLIP's tokenizer adds them: 30524 in all.
BASE_VOCABULARY = 30522


def write_tokenizer(directory: Path) -> BertTokenizer:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "the", "cat"]
    words += [f"word{index}" for index in range(BASE_VOCABULARY - len(words))]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def build(folder: Path, count: int):
    model_dir, image_dir = folder / "model", folder / "images"
    shutil.rmtree(folder, ignore_errors=True)
    image_dir.mkdir(parents=True)
    model_dir.mkdir()
    torch.manual_seed(0)
    tokenizer = write_tokenizer(model_dir)
    config = BlipConfig(
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, image_size=384, patch_size=16),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                         num_hidden_layers=12, num_attention_heads=12,
                         max_position_embeddings=512, encoder_hidden_size=1024,
                         bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
                         pad_token_id=tokenizer.pad_token_id,
                         sep_token_id=tokenizer.sep_token_id,
                         eos_token_id=tokenizer.sep_token_id),
    )
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # transformers initialises the vision tower near zero; give it a real spread
        for name, parameter in model.vision_model.named_parameters():
            if "layer_norm" not in name and not name.endswith("bias"):
                parameter.normal_(0, 0.02)
        predictions = model.text_decoder.cls.predictions
        predictions.bias[tokenizer.sep_token_id] = -1e4  # no caption ends early
        predictions.decoder.bias.copy_(predictions.bias)
    image_processor = BlipImageProcessorPil(size={"height": 384, "width": 384})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(model_dir, safe_serialization=True)
    processor.save_pretrained(model_dir)
    image_processor.save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"{index:04d}.jpg", quality=90)


def time_transformers(folder: Path):
    model_dir, image_dir = folder / "model", folder / "images"
    model = BlipForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = BlipProcessor.from_pretrained(model_dir)
    paths = sorted(image_dir.glob("*.jpg"))
    start = time.perf_counter()
    tokens = 0
    with torch.inference_mode():
        for first in range(0, len(paths), BATCH):
            images = [Image.open(path).convert("RGB") for path in paths[first:first + BATCH]]
            inputs = processor(images=images, return_tensors="pt")
            output = model.generate(pixel_values=inputs.pixel_values, max_new_tokens=MAX_NEW_TOKENS)
            tokens += output.shape[0] * (output.shape[1] - 1)
    seconds = time.perf_counter() - start
    print(f"transformers {len(paths)} captions in {seconds:.1f}s: {len(paths) / seconds:.3f} captions/s "
          f"({tokens / len(paths):.1f} tokens each, {torch.get_num_threads()} threads)")


def main():
    folder, count = Path(sys.argv[1]), int(sys.argv[2])
    if "--time" not in sys.argv[3:]:
        build(folder, count)
    time_transformers(folder)


if __name__ == "__main__":
    main()
