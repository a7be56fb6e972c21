"""GPU throughput of the trainer's model path: a ~1B-parameter Llama built from config (random
weights, nothing downloaded), bf16 autocast, sequence 512, FMT and LoRA, tokens/s and MFU.

The loop is the trainer's own step (native model, loss on the target positions only, AdamW,
gradient clipping), on synthetic token batches whose second half is the "target", so the
numbers are the trainer's compute path without data loading. Optionally also times
transformers' LlamaForCausalLM with the same shapes for comparison (--hf).

    python benchmarks/bench_trainer_gpu.py                # FMT and LoRA, 20 timed steps each
    python benchmarks/bench_trainer_gpu.py --hf --steps 30 --batch-size 8

MFU = achieved model FLOP/s ÷ the GPU's dense bf16 peak (--peak-tflops, default by device
name: H100/H200 989, A100 312). Model FLOPs per token: 6·N + 12·layers·d·seq (Kaplan et al.),
counted for the full backward even for LoRA (frozen weights still need input gradients, but
not weight gradients: LoRA MFU so counted is an upper-bound style figure; stated as such).
Last line: `gpu_tokens_per_second_fmt=… gpu_mfu_fmt=…`.
"""

from __future__ import annotations

import argparse
import sys
import time

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--hf", action="store_true", help="also time transformers' LlamaForCausalLM")
    p.add_argument("--compile", action="store_true", help="torch.compile the native model")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--smoke-cpu", action="store_true",
                   help="check the script on CPU with a tiny model (numbers meaningless)")
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    from ftscale_trainer.models import NativeTuned, add_lora
    from ftscale_trainer.tiny_llama import LlamaLM, LlamaShape, count_params, flops_per_token

    if args.smoke_cpu:
        dev, name, peak = torch.device("cpu"), "cpu (smoke test)", args.peak_tflops or 1.0
        shape = LlamaShape(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
        args.seq, args.batch_size, args.steps, args.warmup = 64, 2, 2, 1
    else:
        if not torch.cuda.is_available():
            print("bench_trainer_gpu: no CUDA device; this benchmark needs a GPU "
                  "(--smoke-cpu checks the script itself)", file=sys.stderr)
            return 2
        dev, name = torch.device("cuda"), torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        # ≈1.1B parameters: the paper's 1B layout (Table 3), 16 heads of 128 instead of 8 of 256.
        shape = LlamaShape(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                           num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                           max_position_embeddings=2048, tie_word_embeddings=False)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()
    fpt = flops_per_token(shape, args.seq)
    autocast_dtype = torch.bfloat16
    print(f"device {name}, torch {torch.__version__}, non-embedding params {shape.non_embedding_params():,}, "
          f"batch {args.batch_size} × seq {args.seq}, bf16 autocast")
    gen = torch.Generator(device=dev).manual_seed(0)
    results = {}
    for method in ("fmt", "lora"):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        base = LlamaLM(shape).to(dev)
        if method == "lora":
            base.requires_grad_(False)
            add_lora(base, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 4, 8.0, 0.0)
            base.to(dev)
        model = NativeTuned(base, method)
        if args.compile:
            model = torch.compile(model)
        trainable, total = count_params(model)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4, fused=cuda)
        ids = torch.randint(0, shape.vocab_size, (args.batch_size, args.seq + 1), device=dev, generator=gen)
        mask = torch.zeros(args.batch_size, args.seq, dtype=torch.bool, device=dev)
        mask[:, args.seq // 2:] = True
        labels = ids[:, 1:][mask]

        def step():
            with torch.autocast(dev.type, dtype=autocast_dtype):
                logits = model(ids[:, :-1], mask)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        elapsed = time.perf_counter() - start
        tps = args.steps * args.batch_size * args.seq / elapsed
        mfu = tps * fpt / (peak * 1e12) if peak else float("nan")
        results[method] = (tps, mfu)
        print(f"{method}: {tps:,.0f} tokens/s, MFU {mfu:.1%} (peak {peak} TFLOP/s), trainable {trainable:,} "
              f"of {total:,}, peak memory "
              f"{(torch.cuda.max_memory_allocated() if cuda else 0) / 2**30:.1f} GiB")
        del model, base, opt
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
        print(f"hf LlamaForCausalLM fmt: {tps:,.0f} tokens/s, MFU {tps * fpt / (peak * 1e12):.1%}")
    print(f"gpu_tokens_per_second_fmt={results['fmt'][0]:.0f} gpu_mfu_fmt={results['fmt'][1]:.3f} "
          f"gpu_tokens_per_second_lora={results['lora'][0]:.0f} gpu_mfu_lora={results['lora'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
