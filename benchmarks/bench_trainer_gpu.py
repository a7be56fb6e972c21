"""GPU throughput of the trainer's model path: a ~1B-parameter Llama built from config (random
weights, nothing downloaded), bf16 autocast, sequence 512; FMT, LoRA (r=16 on every linear layer
of the decoder) and prompt tuning (100 virtual tokens); tokens/s, peak memory and MFU per method.

The loop is the trainer's own step (native model of trainer_image/ftscale_trainer/models.py, loss
on the target positions only, AdamW, gradient clipping), on synthetic token batches whose second
half is the "target", so the numbers are the trainer's compute path without data loading. As in
the trainer (models.base_dtype), the frozen base of LoRA and prompt tuning is held in bf16 and
FMT keeps fp32 master weights. Optionally also times transformers' LlamaForCausalLM (FMT) with
the same shapes for comparison (--hf).

    python benchmarks/bench_trainer_gpu.py                # 20 timed steps per method, one GPU
    python benchmarks/bench_trainer_gpu.py --hf --steps 30 --batch-size 8
    python benchmarks/bench_trainer_gpu.py --device cpu --tiny   # checks the script (tests do)

MFU = model FLOP/s ÷ the device's dense bf16 peak (--peak-tflops, default by GPU name:
H100/H200 989, A100 312). Tokens are the batch's real tokens (the soft prompt's are not counted).
Model FLOPs per token, N = non-embedding parameters + the LM head (V·d), L layers, width d:
  * FMT: 6·N + 12·L·d·seq (Kaplan et al.: forward 2·N, backward 4·N — input and weight
    gradients — plus attention scores and values over the sequence).
  * PET (LoRA, prompt): the frozen base still runs forward (2·N) and backward for input
    gradients only (2·N, no weight gradients), so 4·N; the trainable LoRA matrices cost 6 FLOPs
    per parameter (forward, input and weight gradients); attention has no weights and costs its
    full 12·L·d·ctx. Prompt tuning runs the decoder over ctx = seq + P positions, so its decoder
    and attention terms are scaled by ctx/seq per real token (the LM head is applied to real
    positions only); the soft prompt's own gradient is a copy, 0 FLOPs.
  So PET MFU is not inflated by weight-gradient work that never happens.
On CPU (--device cpu) peak memory is the process's max RSS (resource.getrusage), which covers
every method run so far, and MFU uses --peak-tflops (default 1.0): the numbers only prove the
script runs. Last line:
`gpu_tokens_per_second_fmt=… gpu_tokens_per_second_lora=… gpu_mfu_lora=… gpu_tokens_per_second_prompt=… gpu_mfu_prompt=… gpu_mfu_fmt=F`.
"""

from __future__ import annotations

import argparse
import sys
import time

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
METHODS = ("fmt", "lora", "prompt")
LORA_RANK = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_flops_per_token(n_decoder: int, n_head: int, layers: int, width: int, seq: int,
                          method: str, trainable_lora: int = 0, prompt_len: int = 0) -> float:
    """Training FLOPs per real token (see the module docstring for the accounting)."""
    if method == "fmt":
        return 6.0 * (n_decoder + n_head) + 12.0 * layers * width * seq
    ctx = seq + prompt_len
    scale = ctx / seq  # decoder positions per real token
    decoder = (4.0 * n_decoder + 12.0 * layers * width * ctx) * scale
    return decoder + 4.0 * n_head + 6.0 * trainable_lora


def result_line(results: dict[str, tuple[float, float]]) -> str:
    """The last line: per-method tokens/s and MFU, ending in gpu_mfu_fmt=F."""
    parts = [f"gpu_tokens_per_second_fmt={results['fmt'][0]:.0f}"]
    for m in METHODS[1:]:
        if m in results:
            parts += [f"gpu_tokens_per_second_{m}={results[m][0]:.0f}", f"gpu_mfu_{m}={results[m][1]:.3f}"]
    parts.append(f"gpu_mfu_fmt={results['fmt'][1]:.3f}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny model and 2 steps: checks the script (numbers meaningless)")
    p.add_argument("--smoke-cpu", action="store_true", help="alias of --device cpu --tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=100, help="virtual tokens of prompt tuning")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset (fmt always runs)")
    p.add_argument("--hf", action="store_true", help="also time transformers' LlamaForCausalLM (cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile the native model")
    p.add_argument("--peak-tflops", type=float, default=None)
    args = p.parse_args(argv)
    if args.smoke_cpu:
        args.device, args.tiny = "cpu", True
    methods = ["fmt"] + [m for m in args.methods.split(",") if m in METHODS and m != "fmt"]

    import torch
    import torch.nn.functional as F

    from ftscale_trainer.models import NativeTuned, add_lora, base_dtype
    from ftscale_trainer.tiny_llama import LlamaLM, LlamaShape, count_params

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("bench_trainer_gpu: no CUDA device; this benchmark needs a GPU "
              "(--device cpu --tiny checks the script itself)", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    if cuda:
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    else:
        name, peak = "cpu", args.peak_tflops or 1.0
    if args.tiny:
        shape = LlamaShape(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                           tie_word_embeddings=False)
        args.seq, args.batch_size, args.steps, args.warmup = 64, 2, 2, 1
    else:
        # ≈1.1B parameters: the paper's 1B layout (Table 3), 16 heads of 128 instead of 8 of 256.
        shape = LlamaShape(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                           num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                           max_position_embeddings=2048, tie_word_embeddings=False)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def peak_memory() -> str:
        if cuda:
            return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        import resource  # ru_maxrss is KiB on Linux; whole process, all methods so far

        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB max RSS (process)"

    n_head = shape.vocab_size * shape.hidden_size
    print(f"device {name}, torch {torch.__version__}, non-embedding params {shape.non_embedding_params():,}, "
          f"batch {args.batch_size} × seq {args.seq}, bf16 autocast, peak {peak} TFLOP/s")
    gen = torch.Generator(device=dev).manual_seed(0)
    results = {}
    for method in methods:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(0)
        base = LlamaLM(shape)
        prompt_len = args.prompt_len if method == "prompt" else 0
        if method != "fmt":  # as models.load: frozen base in bf16, trainable tensors fp32
            base.requires_grad_(False)
            base.to(base_dtype(method, "bf16"))
        if method == "lora":
            add_lora(base, LORA_TARGETS, LORA_RANK, 2.0 * LORA_RANK, 0.0)
        model = NativeTuned(base, method, prompt_len, torch.Generator().manual_seed(0)).to(dev)
        trainable, total = count_params(model)
        fpt = model_flops_per_token(shape.non_embedding_params(), n_head, shape.num_hidden_layers,
                                    shape.hidden_size, args.seq, method,
                                    trainable if method == "lora" else 0, prompt_len)
        if args.compile:
            model = torch.compile(model)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=cuda)
        ids = torch.randint(0, shape.vocab_size, (args.batch_size, args.seq + 1), device=dev, generator=gen)
        mask = torch.zeros(args.batch_size, args.seq, dtype=torch.bool, device=dev)
        mask[:, args.seq // 2:] = True
        labels = ids[:, 1:][mask]

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                logits = model(ids[:, :-1], mask)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        tps = args.steps * args.batch_size * args.seq / (time.perf_counter() - start)
        mfu = tps * fpt / (peak * 1e12) if peak else float("nan")
        results[method] = (tps, mfu)
        extra = f" (r={LORA_RANK})" if method == "lora" else f" ({prompt_len} virtual tokens)" if prompt_len else ""
        print(f"{method}{extra}: {tps:,.0f} tokens/s, peak memory {peak_memory()}, MFU {mfu:.1%} "
              f"({fpt / 1e9:.3g} GFLOP/token), trainable {trainable:,} of {total:,}")
        del model, base, opt, params
    if args.hf and cuda:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.cuda.empty_cache()
        hf = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in shape.hf_config().items()
                                             if k not in ("architectures", "model_type")})).to(dev)
        opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=True)
        ids = torch.randint(0, shape.vocab_size, (args.batch_size, args.seq), device=dev, generator=gen)
        lab = ids.clone()
        lab[:, : args.seq // 2] = -100
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = hf(input_ids=ids, labels=lab).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        tps = args.steps * args.batch_size * args.seq / (time.perf_counter() - start)
        fpt = model_flops_per_token(shape.non_embedding_params(), n_head, shape.num_hidden_layers,
                                    shape.hidden_size, args.seq, "fmt")
        print(f"hf LlamaForCausalLM fmt: {tps:,.0f} tokens/s, MFU {tps * fpt / (peak * 1e12):.1%}")
    print(result_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
