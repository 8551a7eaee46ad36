"""PyTorch side of crates/train/examples/bench_train_step.rs: one LoRA training step on
the real SDXL UNet architecture with random weights, as diffusers'
train_text_to_image_lora_sdxl.py takes it (UNet2DConditionModel frozen, peft adapters
from `unet.add_adapter(LoraConfig(...))` on to_q/to_k/to_v/to_out.0 with gaussian init,
torch.optim.AdamW on the adapters, MSE against the noise), on CPU in f32.

Usage: python scripts/bench/train_lora_step.py SIZE [STEPS] [--rank 16] [--alpha 16]
       [--batch 1] [--threads N] [--config unet.json] [--gradient-checkpointing]
Prints one JSON line like the Rust side: seconds per optimizer step (median of STEPS after
one warm-up), its forward/backward/update split and the process's peak resident memory
(ru_maxrss = VmHWM). Progress with the memory at each stage goes to stderr.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft import LoraConfig

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json (diffusers 0.19.0.dev0), as
# published; crates/diffusion/presets/sdxl-base-1.0/unet.json holds the same keys.
SDXL_UNET_CONFIG = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

PRESET = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "diffusion", "presets", "sdxl-base-1.0", "unet.json")


def memory_mib():
    """(VmHWM, VmRSS) in MiB."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmHWM", float("nan")), fields.get("VmRSS", float("nan"))


def stage(started, what):
    peak, resident = memory_mib()
    print(f"[{time.perf_counter() - started:8.1f}s] {what}: rss {resident:.0f} MiB, peak {peak:.0f} MiB",
          file=sys.stderr, flush=True)


def check_preset():
    """The Rust side reads the preset: its keys must agree with the config written here."""
    with open(PRESET) as handle:
        preset = {k: v for k, v in json.load(handle).items() if not k.startswith("_")}
    differences = {k: (v, SDXL_UNET_CONFIG.get(k)) for k, v in preset.items() if SDXL_UNET_CONFIG.get(k) != v}
    if differences:
        raise SystemExit(f"the preset {PRESET} differs from SDXL's unet/config.json: {differences}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("size", type=int)
    parser.add_argument("steps", type=int, nargs="?", default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--config", help="a unet/config.json instead of SDXL's (for a quick check)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.config:
        with open(args.config) as handle:
            config = {k: v for k, v in json.load(handle).items() if not k.startswith("_")}
    else:
        check_preset()
        config = SDXL_UNET_CONFIG

    unet = UNet2DConditionModel(**config)
    base_parameters = sum(p.numel() for p in unet.parameters())
    build_seconds = time.perf_counter() - started
    stage(started, f"random UNet built: {base_parameters} parameters")
    # As the script: the base frozen, then the adapters (trainable, f32).
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.alpha, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    lora_layers = sum(1 for name, _ in unet.named_modules() if name.endswith(".lora_A.default"))
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    stage(started, f"LoRA rank {args.rank} alpha {args.alpha} on {lora_layers} layers ({sum(p.numel() for p in params)} parameters)")

    batch, size = args.batch, args.size
    latent = size // 8
    noisy = torch.randn(batch, config["in_channels"], latent, latent)
    target = torch.randn(batch, config["out_channels"], latent, latent)
    timesteps = torch.full((batch,), 500, dtype=torch.long)
    prompt_embeds = torch.randn(batch, 77, config["cross_attention_dim"])
    pooled_width = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    added = {"text_embeds": torch.randn(batch, pooled_width),
             "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, dtype=torch.float32)}

    forward_times, backward_times, update_times, step_times, losses = [], [], [], [], []
    for step in range(args.steps + 1):
        step_started = time.perf_counter()
        prediction = unet(noisy, timesteps, prompt_embeds, added_cond_kwargs=added, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), target.float(), reduction="mean")
        loss_value = loss.item()
        forward_done = time.perf_counter()
        stage(started, f"step {step} forward, loss {loss_value:.6f}")
        loss.backward()
        backward_done = time.perf_counter()
        stage(started, f"step {step} backward")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_done = time.perf_counter()
        stage(started, f"step {step} update")
        del prediction, loss
        if step > 0:
            forward_times.append(forward_done - step_started)
            backward_times.append(backward_done - forward_done)
            update_times.append(update_done - backward_done)
            step_times.append(update_done - step_started)
        losses.append(loss_value)

    up_sum = sum(p.detach().abs().sum().item() for name, p in unet.named_parameters() if "lora_B" in name)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "impl": "diffusers+peft",
        "size": size,
        "batch": batch,
        "rank": args.rank,
        "lora_layers": lora_layers,
        "lora_parameters": sum(p.numel() for p in params),
        "base_parameters": base_parameters,
        "adapter_up_abs_sum": up_sum,
        "build_seconds": round(build_seconds, 3),
        "seconds_per_step": round(statistics.median(step_times), 3),
        "forward_seconds": round(statistics.median(forward_times), 3),
        "backward_seconds": round(statistics.median(backward_times), 3),
        "update_seconds": round(statistics.median(update_times), 3),
        "step_seconds": [round(s, 3) for s in step_times],
        "losses": losses,
        "gradient_checkpointing": args.gradient_checkpointing,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_mib": round(peak),
    }))


if __name__ == "__main__":
    main()
