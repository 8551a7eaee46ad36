"""Prompt-to-Prompt pairs per minute beside huatu's bench_edit_pair: diffusers'
StableDiffusionXLPipeline with InstructPix2Pix's self-attention sharing as an attn1
processor (the one scripts/fixtures/edit_pair_tiny.py checks huatu against), both
captions in one batch, euler-a, guidance 7.5, p 0.5; model loading excluded.

    python scripts/bench/edit_pair.py make MODEL_DIR      # random weights, real SDXL shapes
    python scripts/bench/edit_pair.py run MODEL_DIR SIZE STEPS PAIRS

`make` writes the real SDXL UNet, VAE and both text encoders (crates/diffusion/presets/
sdxl-base-1.0 configs) with random weights and the tiny fixture's tokenizers (the text
encoders keep the real vocabulary size), f32, about 14 GB.
"""
import json
import os
import resource
import shutil
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
from edit_pair_tiny import SharedSelfAttention, Sharing  # noqa: E402  (the processor the parity test checks)


def make(model_dir):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    presets = os.path.join(ROOT, "crates", "diffusion", "presets", "sdxl-base-1.0")
    tiny = os.path.join(ROOT, "tests", "fixtures", "sdxl_tiny")
    load = lambda name: {k: v for k, v in json.load(open(os.path.join(presets, name))).items() if not k.startswith("_")}  # noqa: E731
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(tiny, "tokenizer"))
    tokenizer_2 = CLIPTokenizer.from_pretrained(os.path.join(tiny, "tokenizer_2"))
    text_config = load("text_encoder.json")
    text_config_2 = load("text_encoder_2.json")
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**load("vae.json")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_config_2)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=UNet2DConditionModel(**load("unet.json")),
        scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(tiny, "scheduler")),
    )
    shutil.rmtree(model_dir, ignore_errors=True)
    pipe.save_pretrained(model_dir)


def run(model_dir, size, steps, pairs):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    torch.set_num_threads(os.cpu_count())
    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir, torch_dtype=torch.float32)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    processors = {name: SharedSelfAttention() if name.endswith("attn1.processor") else processor
                  for name, processor in pipe.unet.attn_processors.items()}
    pipe.unet.set_attn_processor(processors)
    p = 0.5

    def on_step_end(pipe, index, timestep, kwargs):
        Sharing.on = p > (index + 1) / (steps - 1)
        return kwargs

    started = time.perf_counter()
    with torch.no_grad():
        for index in range(pairs):
            Sharing.on = p > 0
            latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(index))
            pipe(prompt=["a photo of a red cat on a sofa", "a photo of a blue cat on a sofa"], height=size, width=size,
                 num_inference_steps=steps, guidance_scale=7.5, latents=latents.repeat(2, 1, 1, 1) * 1.0,
                 callback_on_step_end=on_step_end, output_type="pil")
    seconds = time.perf_counter() - started
    print(json.dumps(dict(side="diffusers", size=size, steps=steps, pairs=pairs, seconds=seconds,
                          pairs_per_minute=pairs * 60 / seconds,
                          peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
