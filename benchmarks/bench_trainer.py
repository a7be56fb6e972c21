"""Trainer throughput against a plain Hugging Face `Trainer` (+ peft) doing the same work.

Same model (a toy-family checkpoint), same D_f examples in the same tokenization (source masked,
loss on the target), same batch size, steps, optimizer (AdamW) and schedule, same torch
threads, measured in this one process: FMT and LoRA, each on both of our backends —

* native: our loop on the pure-torch Llama of ftscale_trainer.tiny_llama;
* hf: our loop on transformers' `LlamaForCausalLM` (+ peft's LoRA), the `backend: hf` path
  every real checkpoint takes (ftscale_trainer.models.HFTuned) —

against HF `Trainer` on that same `LlamaForCausalLM` (+ peft). Only the training loop is timed
(start-up, model loading and final evaluation excluded on both sides; our loop's dev
evaluations before the first and after the last step stay in — a cost HF's loop does not pay
here).

Prints per backend and method tokens/s (wall) and tokens per CPU-second of this process (the
steadier number on a shared machine; exact with --threads 1) for both sides and, last,
`trainer_speedup_vs_hf=R` with R the hf backend's wall-clock ratio (ours / HF tokens per
second), the smaller of its FMT and LoRA ratios: the hf backend is the path whose work is
the same model code as HF's, so its ratio measures the loop alone. The native backend's
ratios are printed above it (`native_speedup_vs_hf=`). Needs the toy world (`ftscale toy
build`).

    make bench-trainer                      # defaults
    python benchmarks/bench_trainer.py --threads 1 --steps 30 --repeats 3
    python benchmarks/bench_trainer.py --backends hf --methods lora --profile   # cProfile
"""

from __future__ import annotations

import argparse
import os
import sys
import time

BACKENDS = ("native", "hf")
METHODS = ("fmt", "lora")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy:tiny-3", help="toy model source (default toy:tiny-3)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per measurement")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--data-size", type=int, default=800)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=2, help="take the best of N timings per side")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="our backends to measure, comma-separated (default native,hf)")
    p.add_argument("--methods", default=",".join(METHODS), help="default fmt,lora")
    p.add_argument("--profile", action="store_true",
                   help="print a cProfile of one timing of each side instead of measuring")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.methods = [m for m in args.methods.split(",") if m]
    for name, chosen, allowed in (("backend", args.backends, BACKENDS),
                                  ("method", args.methods, METHODS)):
        for value in chosen:
            if value not in allowed:
                p.error(f"unknown {name} {value!r} (choose from {', '.join(allowed)})")
    return args


def _learning_rate(method: str) -> float:
    return 1e-3 if method == "fmt" else 1e-2


def our_tokens_per_second(method: str, backend: str, args) -> tuple[float, int, float]:
    """(tokens/s, tokens, tokens per CPU-second) of our training loop on `backend`."""
    from ftscale_trainer import train
    from ftscale_trainer.config import TrainConfig
    from ftscale_trainer.metrics import TrainerMetrics
    from ftscale_trainer.runtime import PlainRuntime

    config = TrainConfig.from_dict({
        "model": "bench", "model_source": args.model, "method": method, "data_size": args.data_size,
        "task": "toy-en-de", "batch_size": args.batch_size, "max_steps": args.steps,
        "eval_interval": args.steps, "dev_examples": 16, "test_examples": 16, "backend": backend,
        "learning_rate": _learning_rate(method), "log_interval": args.steps})
    config, path = train.resolve_identity(config)
    prep = train.prepare(config, path)
    runtime = PlainRuntime("fp32")
    metrics = TrainerMetrics({"study": "b", "run": "b", "model": "b", "method": method, "data_size": 0})
    start, cpu = time.perf_counter(), time.process_time()
    progress, _ = train._train(prep, runtime, metrics, train.StopFlag(), None, lambda _m: None, start)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return progress.tokens_seen / elapsed, progress.tokens_seen, progress.tokens_seen / cpu


def hf_tokens_per_second(method: str, args) -> tuple[float, int, float]:
    """(tokens/s, tokens, tokens per CPU-second) of HF `Trainer` (+ peft) on our batches."""
    import torch
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    from ftscale_trainer import data, train
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

    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
    if method == "lora":
        import peft

        # Our LoRA defaults (pet_size 4, alpha 8, all linear layers but the head).
        model = peft.get_peft_model(model, peft.LoraConfig(
            task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    targs = TrainingArguments(
        output_dir="/tmp/ftscale-bench-hf", per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=_learning_rate(method),
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


def _profile(label: str, fn) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    print(f"==== {label}")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)


def best(timings: list[tuple[float, int, float]]) -> tuple[float, int, float]:
    """The best wall-clock and the best CPU-second rate of N timings of one side (each taken
    on its own: the neighbours' load slows either, in different repeats)."""
    return (max(t[0] for t in timings), timings[0][1], max(t[2] for t in timings))


def speedup(ours: tuple[float, int, float], hf: tuple[float, int, float]) -> tuple[float, float]:
    """(wall-clock ratio, CPU-second ratio) of our tokens/s over HF's."""
    return ours[0] / hf[0], ours[2] / hf[2]


def main(argv=None) -> int:
    args = parse_args(argv)
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
    if args.profile:
        for method in args.methods:
            for backend in args.backends:
                _profile(f"ftscale {backend} {method}",
                         lambda: our_tokens_per_second(method, backend, args))
            _profile(f"hf_trainer {method}", lambda: hf_tokens_per_second(method, args))
        return 0
    ratios: dict[str, list[float]] = {b: [] for b in args.backends}
    for method in args.methods:
        # Repeats interleave the sides, so that a burst of the neighbours' load falls on both
        # rather than on whichever side happened to run then; each side keeps its best timing.
        timings: dict[str, list] = {side: [] for side in ["hf_trainer", *args.backends]}
        for _ in range(args.repeats):
            timings["hf_trainer"].append(hf_tokens_per_second(method, args))
            for backend in args.backends:
                timings[backend].append(our_tokens_per_second(method, backend, args))
        hf = best(timings["hf_trainer"])
        for backend in args.backends:
            ours = best(timings[backend])
            if ours[1] != hf[1]:
                print(f"warning: token counts differ (ours {ours[1]}, hf {hf[1]})")
            wall, cpu = speedup(ours, hf)
            ratios[backend].append(wall)
            print(f"{backend} {method}: ftscale {ours[0]:,.0f} tokens/s, hf_trainer {hf[0]:,.0f} "
                  f"tokens/s, ratio {wall:.2f} ({ours[1]:,} tokens)")
            # On a shared machine wall time also measures the neighbours' load; tokens per
            # CPU-second of this process is the steadier comparison (exact with --threads 1).
            print(f"{backend} {method}: ftscale {ours[2]:,.0f} tokens/cpu-s, hf_trainer "
                  f"{hf[2]:,.0f} tokens/cpu-s, cpu ratio {cpu:.2f}")
    for backend in args.backends:
        if backend != "hf":
            print(f"{backend}_speedup_vs_hf={min(ratios[backend]):.2f}")
    headline = ratios["hf"] if "hf" in ratios else [r for rs in ratios.values() for r in rs]
    print(f"trainer_speedup_vs_hf={min(headline):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
