"""Trainer throughput against a plain Hugging Face `Trainer` (+ peft) doing the same work.

Same model (a toy-family checkpoint), same D_f examples in the same tokenization (source masked,
loss on the target), same batch size, steps, optimizer (AdamW) and schedule, same torch
threads, measured in this one process: FMT and LoRA. Only the training loop is timed
(start-up, model loading and final evaluation excluded on both sides; our loop's one dev
evaluation at its last step stays in — a cost HF's loop does not pay here).

Prints per method tokens/s (wall) and tokens per CPU-second of this process (the steadier
number on a shared machine) for both sides and, last, `trainer_speedup_vs_hf=R` with R the
smaller of the two wall-clock ratios (ours / HF tokens per second). Needs the toy world
(`ftscale toy build`).

    make bench-trainer                      # defaults
    python benchmarks/bench_trainer.py --model toy:tiny-3 --steps 60 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy:tiny-3", help="toy model source (default toy:tiny-3)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per measurement")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--data-size", type=int, default=800)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=2, help="take the best of N timings per side")
    return p.parse_args()


def our_tokens_per_second(method: str, args) -> tuple[float, int]:
    from ftscale_trainer import train
    from ftscale_trainer.config import TrainConfig
    from ftscale_trainer.metrics import TrainerMetrics
    from ftscale_trainer.runtime import PlainRuntime

    config = TrainConfig.from_dict({
        "model": "bench", "model_source": args.model, "method": method, "data_size": args.data_size,
        "task": "toy-en-de", "batch_size": args.batch_size, "max_steps": args.steps,
        "eval_interval": args.steps, "dev_examples": 16, "test_examples": 16,
        "learning_rate": 1e-3 if method == "fmt" else 1e-2, "log_interval": args.steps})
    config, path = train.resolve_identity(config)
    prep = train.prepare(config, path)
    runtime = PlainRuntime("fp32")
    metrics = TrainerMetrics({"study": "b", "run": "b", "model": "b", "method": method, "data_size": 0})
    start, cpu = time.perf_counter(), time.process_time()
    progress, _ = train._train(prep, runtime, metrics, train.StopFlag(), None, lambda _m: None, start)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return progress.tokens_seen / elapsed, progress.tokens_seen, progress.tokens_seen / cpu


def hf_tokens_per_second(method: str, args) -> tuple[float, int]:
    import torch
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    from ftscale_trainer import data, train, world
    from ftscale_trainer.config import TrainConfig
    from ftscale_trainer.models import Codec

    config = TrainConfig.from_dict({
        "model": "bench", "model_source": args.model, "method": method, "data_size": args.data_size,
        "task": "toy-en-de"})
    config, path = train.resolve_identity(config)
    splits, config = train._splits(config)
    codec = Codec(path)
    encoded = data.encode(data.subset(splits["train"], config.data_size, config.seed), config, codec)
    stream = data.BatchStream(len(encoded), args.batch_size, config.seed)
    # Exactly our batch sequence, so both sides see the same examples in the same order.
    ordered = [encoded[i] for step in range(args.steps) for i in stream.indices(step)]
    features = []
    for e in ordered:
        seq = list(e.source_ids + e.target_ids)
        labels = [-100] * len(e.source_ids) + list(e.target_ids)
        features.append({"input_ids": seq, "labels": labels})

    def collate(batch):
        width = max(len(f["input_ids"]) for f in batch)
        ids = torch.full((len(batch), width), codec.pad_id)
        lab = torch.full((len(batch), width), -100)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for row, f in enumerate(batch):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            lab[row, :n] = torch.tensor(f["labels"])
            att[row, :n] = 1
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    if method == "lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(
            task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    targs = TrainingArguments(
        output_dir="/tmp/ftscale-bench-hf", per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=1e-3 if method == "fmt" else 1e-2,
        lr_scheduler_type="cosine", warmup_steps=5, weight_decay=0.0, logging_strategy="no",
        save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, seed=0)

    class InOrder(Trainer):  # keep our order instead of HF's shuffling: same batches both sides
        def _get_train_sampler(self, *a, **k):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    trainer = InOrder(model=model, args=targs, train_dataset=features, data_collator=collate)
    start, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    tokens = sum(len(f["input_ids"]) for f in features)
    return tokens / elapsed, tokens, tokens / cpu


def main() -> int:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ftscale_trainer import world

    try:
        world.resolve_model(args.model)
    except world.WorldError as exc:
        print(f"bench_trainer: {exc}", file=sys.stderr)
        return 2
    print(f"model {args.model}, {args.steps} steps × batch {args.batch_size}, D_f {args.data_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    ratios = []
    for method in ("fmt", "lora"):
        ours = max(our_tokens_per_second(method, args) for _ in range(args.repeats))
        hf = max(hf_tokens_per_second(method, args) for _ in range(args.repeats))
        if ours[1] != hf[1]:
            print(f"warning: token counts differ (ours {ours[1]}, hf {hf[1]})")
        ratio = ours[0] / hf[0]
        ratios.append(ratio)
        print(f"{method}: ftscale {ours[0]:,.0f} tokens/s, hf_trainer {hf[0]:,.0f} tokens/s, "
              f"ratio {ratio:.2f} ({ours[1]:,} tokens)")
        # On a shared machine wall time also measures the neighbours; tokens per CPU-second of
        # this process is the steadier comparison (exact with --threads 1).
        print(f"{method}: ftscale {ours[2]:,.0f} tokens/cpu-s, hf_trainer {hf[2]:,.0f} tokens/cpu-s, "
              f"cpu ratio {ours[2] / hf[2]:.2f}")
    print(f"trainer_speedup_vs_hf={min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
