"""Reference side of the local-LLM benchmark: transformers' Qwen2ForCausalLM (PyTorch, CPU,
f32) at the real Qwen2.5-1.5B-Instruct architecture with random weights, as huatu's
`bench_qwen` example runs it.

    python scripts/bench/qwen_torch.py make DIR     # writes the random model folder (bf16, ~3 GB)
    python scripts/bench/qwen_torch.py run DIR [PROMPT_TOKENS] [NEW_TOKENS]

`run` prints one JSON line like the Rust side: prompt seconds, answer tokens per second and
peak RSS. The prompt is token ids 1..=PROMPT_TOKENS; generation is greedy with the KV cache.
"""

import json
import resource
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def make(folder):
    # Qwen2.5-1.5B-Instruct's config.json numbers.
    config = Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)


def run(folder, prompt_tokens, new_tokens):
    torch.set_num_threads(torch.get_num_threads())
    model = Qwen2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.arange(1, prompt_tokens + 1).unsqueeze(0)
    with torch.no_grad():
        started = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        prompt_seconds = time.perf_counter() - started
        cache = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        started = time.perf_counter()
        for _ in range(new_tokens - 1):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        answer_seconds = time.perf_counter() - started
    print(json.dumps({
        "side": "transformers", "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
        "prompt_seconds": round(prompt_seconds, 3),
        "tokens_per_second": round((new_tokens - 1) / answer_seconds, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 64,
            int(sys.argv[4]) if len(sys.argv) > 4 else 32)
