"""One finetuning run, start to finish: load → prepare → train → evaluate → report.

Read top to bottom; each phase is a function below `run()`. What the paper fixes (§3.3–3.6 of
paper.md) and where it happens here:
* loss on the target only (source and target concatenated, source masked) — data.collate +
  `_train_step` (summed target NLL / target tokens in the global batch);
* warm-up + cosine learning rate — `lr_at`;
* dev evaluation every `eval_interval` steps, the checkpoint with the best dev loss kept and
  restored before the test evaluation (token-level dev PPL selects the checkpoint) — `_train`;
* test loss = per-token NLL in nats of the selected checkpoint; perplexity = exp(loss).

Preemption: SIGTERM (or SIGINT) sets a flag; after the current step the run saves a resumable
checkpoint to <output>/checkpoint/ (when an output folder is given) and stops with exit code
143. Started again with the same output folder and config, it continues from that step and ends
with the same result an uninterrupted run gives (the batch order is a pure function of
(seed, step) and the optimizer, RNG and best-checkpoint states are saved).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ftscale import results
from ftscale.identity import RunKey
from ftscale_trainer import checkpoint, data, evaluate, models, world
from ftscale_trainer.config import ConfigError, TrainConfig
from ftscale_trainer.pretrain import lr_at



class NonFiniteLoss(RuntimeError):
    pass


class Interrupted(RuntimeError):
    pass


@dataclass
class Prepared:
    """Everything the training loop needs, after loading and tokenizing."""

    config: TrainConfig  # resolved: no None optimisation fields
    loaded: models.LoadedModel
    train: list[data.Encoded]
    dev: list[data.Encoded]
    test: list[data.Encoded]
    test_examples: list[data.Example]
    zero_shot: dict[str, tuple[list[data.Encoded], list[data.Example]]]
    model_path: str


@dataclass
class Progress:
    """The loop's state; saved in checkpoints (plus model/optimizer tensors)."""

    step: int = 0
    tokens_seen: int = 0
    best_dev_loss: float = math.inf
    best_step: int = -1
    evals_since_best: int = 0
    wall_before: float = 0.0  # seconds spent in earlier (preempted) attempts
    curves: dict[str, list[list[float]]] = field(
        default_factory=lambda: {"train": [], "dev": [], "lr": []})


class StopFlag:
    """Set by SIGTERM/SIGINT; checked between steps."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.raised = True

    def uninstall(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ---- phase 0: identity -------------------------------------------------------------------------
def resolve_identity(config: TrainConfig, log=lambda _m: None) -> tuple[TrainConfig, str]:
    """Fill the X values (toy family, or the checkpoint's config.json), then the per-method
    defaults (which depend on model size), then the run id. Returns (config, model folder).
    Raises ConfigError when the model source does not resolve."""
    config = TrainConfig.from_dict(config.to_dict())  # a copy: the caller's stays as given
    path = config.source
    if world.is_toy_source(config.source):
        try:
            toy = world.resolve_model(config.source)
        except world.WorldError as exc:
            raise ConfigError(str(exc)) from None
        path = toy.path
        if config.model_params is None:
            config.model_params = toy.model_params
        if config.pretrain_tokens is None:
            config.pretrain_tokens = toy.pretrain_tokens
        if config.learning_rate is None and config.method in toy.learning_rates:
            # the rate the world build's dev sweep chose for this model and method
            config.learning_rate = toy.learning_rates[config.method]
    elif config.model_params is None:
        config.model_params = _non_embedding_params(path)
        if config.model_params is None:
            log("model_params unknown (no readable config.json): tiny-model defaults apply to "
                "unset optimisation fields; set model_params or those fields explicitly")
    config = config.resolved()
    if config.run_id is None:
        config.run_id = RunKey(config.model, config.method, config.pet_size, config.data_size,
                               config.seed).run_id
    return config, path


def _non_embedding_params(folder: str) -> int | None:
    """Non-embedding parameters from a checkpoint's config.json (exact for Llama-style
    layouts, the usual decoder estimate otherwise); None when there is no such file."""
    from ftscale_trainer import tiny_llama

    try:
        hf = tiny_llama.read_hf_config(folder)
        return tiny_llama.shape_from_hf(hf).non_embedding_params()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def base_result(config: TrainConfig) -> results.RunResult:
    run_id = config.run_id
    if run_id is None:  # a failure before resolve_identity: derive it the same way
        filled = config.resolved()
        run_id = RunKey(config.model, config.method, filled.pet_size, config.data_size,
                        config.seed).run_id
    return results.RunResult(
        study=config.study, run_id=run_id, model=config.model,
        method=config.method, pet_size=config.pet_size if config.method != "fmt" else None,
        data_size=config.data_size, seed=config.seed, model_params=config.model_params,
        pretrain_tokens=config.pretrain_tokens, config=config.to_dict())


# ---- phase 1+2: load and prepare -----------------------------------------------------------------
def _splits(config: TrainConfig) -> tuple[dict[str, list[data.Example]], TrainConfig]:
    if config.task:
        try:
            files = world.task_files(config.task)
        except world.WorldError as exc:
            raise ConfigError(str(exc)) from None
        spec = world.TASKS[config.task]
        config.template = config.template if config.template != "translate" else spec["template"]
        config.source_lang = config.source_lang or spec["source_lang"]
        config.target_lang = config.target_lang or spec["target_lang"]
        fmt = "jsonl"
        paths = files
    else:
        fmt = config.data_format
        paths = {"train": config.train_path, "dev": config.dev_path, "test": config.test_path}
    splits = {name: data.load_examples(p, fmt, config.source_field, config.target_field, name,
                                       lazy=True)
              for name, p in paths.items()}
    # Before the model loads: an empty evaluation split is a config error, not a NaN at the end.
    for name in ("dev", "test"):
        data.require_examples(splits[name], name, paths[name])
    return splits, config


def _first(items: list, n: int) -> list:
    """The first n items (all for n = 0), keeping a lazy list lazy."""
    return items if n == 0 else type(items)(items[:n])


def prepare(config: TrainConfig, model_path: str, precision: str = "fp32",
            gradient_checkpointing: bool = False) -> Prepared:
    evaluate.preflight(config)  # a metric that cannot be computed fails now, not after training
    splits, config = _splits(config)
    train_examples = data.subset(splits["train"], config.data_size, config.seed)
    loaded = models.load(config, model_path, config.seed, precision, gradient_checkpointing)
    codec = loaded.codec
    test_examples = data.parse_rows(_first(splits["test"], config.test_examples))
    zero_shot = {}
    for zs in config.zero_shot:
        if zs.task:
            try:
                path, fmt = world.task_files(zs.task)["test"], "jsonl"
            except world.WorldError as exc:
                raise ConfigError(str(exc)) from None
            lang = zs.source_lang or world.TASKS[zs.task]["source_lang"]
        else:
            path, fmt, lang = zs.path, config.data_format, zs.source_lang
        examples = _first(data.load_examples(path, fmt, config.source_field, config.target_field, "test"),
                          zs.examples)
        data.require_examples(examples, "zero-shot", f"set {zs.name!r}, {path}")
        zero_shot[zs.name] = (data.encode(examples, config, codec, source_lang=lang), examples)
    return Prepared(
        config=config, loaded=loaded,
        train=data.encode(train_examples, config, codec),
        dev=data.encode(data.parse_rows(_first(splits["dev"], config.dev_examples)), config, codec),
        test=data.encode(test_examples, config, codec),
        test_examples=test_examples, zero_shot=zero_shot, model_path=model_path)


# ---- phase 3: train ------------------------------------------------------------------------------
def total_steps(config: TrainConfig) -> int:
    """min(max_steps, ceil(max_epochs · D_f / batch)) — whichever limit comes first (paper §3.5)."""
    by_epochs = math.ceil(config.max_epochs * config.data_size / config.batch_size)
    return max(1, min(config.max_steps, by_epochs))


def make_optimizer(model, config: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (HF Trainer's default optimizer too): one call per step instead of a
    # dozen ops per tensor — 4 % of a toy LoRA step on CPU. Same update, rounded in another order.
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate,
                             betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def _config_digest(config: TrainConfig) -> str:
    doc = config.to_dict()
    # Fields that change where things go or how memory is spent, not what is learnt: a resume
    # on another GPU may pick another micro-batch (the sums are the same to rounding).
    # Checkpoints hold whole tensors, so a resume may also shard differently.
    for volatile in ("output_dir", "metrics_port", "threads", "log_interval", "save", "save_dir",
                     "micro_batch_size", "gradient_checkpointing", "sharding"):
        doc.pop(volatile, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(folder: str, runtime, model, optimizer, progress: Progress, best_state,
                    config) -> None:
    """Commit what a resume needs to <folder> (ftscale_trainer.checkpoint: safetensors + JSON,
    fsync'd, atomic). Every rank calls it (sharded state is gathered collectively); rank 0 writes."""
    trainable = runtime.full_state(model)
    best = runtime.full_state(model, best_state) if best_state is not None else None
    optimizer_state = runtime.optimizer_state(model, optimizer)
    if runtime.is_main:
        checkpoint.save(folder, _config_digest(config), dict(progress.__dict__), trainable,
                        optimizer_state, best, checkpoint.rng_state())


def load_checkpoint(folder: str, runtime, model, optimizer, config, log) -> tuple[Progress, dict | None]:
    """Resume from <folder> when it holds this config's checkpoint: the trainable weights, the
    optimizer and RNG states are restored and (progress, best-dev weights) returned. Without one
    — none yet, another config's, or a corrupt one — (Progress(), None): step 0.

    A checkpoint that cannot be used (truncated, unparsable, not this model's) is logged, moved
    aside to <folder>.corrupt and the run starts at step 0: retrying would meet the same file,
    so failing would fail the run forever. Every rank reads it; they agree (a sum of their
    verdicts) before any state is applied, and rank 0 alone moves it.
    """
    if checkpoint.legacy(folder):
        log(f"checkpoint {folder} is in the old pickled format (state.pt), which is not read; "
            f"restarting from step 0")
        return Progress(), None
    if not checkpoint.exists(folder):
        return Progress(), None
    problem, ckpt, progress = None, None, None
    try:
        if checkpoint.read_digest(folder) != _config_digest(config):
            log(f"checkpoint {folder} belongs to a different config; starting afresh")
            return Progress(), None
        ckpt = checkpoint.read(folder, runtime.trainable_shapes(model))
        runtime.check_optimizer_state(model, optimizer, ckpt.optimizer)
        progress = Progress(**ckpt.progress)
    except checkpoint.CorruptCheckpoint as exc:
        problem = str(exc)
    except TypeError as exc:  # Progress(**...) with fields this trainer does not have
        problem = f"progress does not fit this trainer ({exc})"
    flag = torch.tensor(float(problem is not None), dtype=torch.float64, device=runtime.device)
    if float(runtime.sum_across(flag)) > 0:
        runtime.barrier()  # every rank has finished reading before the folder moves
        aside = checkpoint.move_aside(folder) if runtime.is_main else None
        log(f"checkpoint {folder} is corrupt: {problem or 'another rank could not read it'}; "
            f"restarting from step 0" + (f" (moved to {aside})" if aside else ""))
        return Progress(), None
    runtime.load_full_state(model, ckpt.model)
    runtime.load_optimizer_state(model, optimizer, ckpt.optimizer)
    checkpoint.set_rng_state(ckpt.rng)
    log(f"resuming from step {progress.step} ({folder})")
    return progress, (runtime.shard_state(model, ckpt.best) if ckpt.best is not None else None)


def micro_batches(local: list, micro_batch_size: int | None) -> list[list]:
    """This process's share of a step's batch cut into forward/backward passes (gradient
    accumulation); None = one pass."""
    size = micro_batch_size or len(local)
    return [local[i:i + size] for i in range(0, len(local), size)]


def _train(prep: Prepared, runtime, metrics, stop: StopFlag, output_dir: str | None, log,
           started: float) -> tuple[Progress, int]:
    """The loop. `started` is when this process began (for the wall time a checkpoint keeps)."""
    config = prep.config
    model = prep.loaded.model
    if config.batch_size < runtime.world_size:
        raise ConfigError(f"batch_size {config.batch_size} is smaller than the "
                          f"{runtime.world_size} data-parallel processes; each needs examples")
    if runtime.sharded and config.batch_size % runtime.world_size:
        # Every sharded forward pass gathers weights from every rank, so each rank must run as
        # many micro-batches as the others: equal shares of the batch.
        raise ConfigError(f"sharding: fsdp needs batch_size ({config.batch_size}) divisible by "
                          f"the {runtime.world_size} processes")
    # The optimizer is built by the runtime, after the model is placed (and sharded, whose
    # parameters are new tensors); a checkpoint is applied to both after that.
    model, optimizer = runtime.prepare(model, lambda placed: make_optimizer(placed, config))
    ckpt_dir = os.path.join(output_dir, "checkpoint") if output_dir else None
    progress, best_state = (load_checkpoint(ckpt_dir, runtime, model, optimizer, config, log)
                            if ckpt_dir else (Progress(), None))
    model.train()
    pad = prep.loaded.codec.pad_id
    steps = total_steps(config)
    stream = data.BatchStream(len(prep.train), config.batch_size, config.seed)
    window_tokens, window_start = 0, time.time()
    # With several processes a signal reaches them at different moments; they stop at the
    # step where the flag, summed with the step's loss, first shows on any rank — the same
    # step everywhere, since every rank sees the same sum.
    stop_agreed = False

    def save_state():
        # One writer (rank 0; sharded state is gathered to it first); the others wait, so that
        # no rank exits — and makes the launcher kill the group — mid-write.
        save_checkpoint(ckpt_dir, runtime, model, optimizer, progress, best_state, config)
        runtime.barrier()

    def evaluate_dev() -> float:
        """Dev loss now; the weights are kept when it is the best so far."""
        nonlocal best_state
        loss = evaluate.target_nll(model, prep.dev, pad, runtime)
        progress.curves["dev"].append([progress.step, loss])
        metrics.set("ftscale_trainer_eval_loss", loss)
        if loss < progress.best_dev_loss:
            progress.best_dev_loss, progress.best_step = loss, progress.step
            progress.evals_since_best = 0
            best_state = runtime.trainable_state(model)
            metrics.set("ftscale_trainer_best_eval_loss", loss)
        else:
            progress.evals_since_best += 1
        return loss

    if progress.step == 0 and not progress.curves["dev"]:
        # The starting point is a candidate too: on a few examples finetuning can overfit
        # before the first interval ends, and then the honest answer is the base model
        # (best_step 0), not a checkpoint worse than it.
        log(f"step 0/{steps} dev {evaluate_dev():.4f} (before training)")
    while progress.step < steps:
        if stop_agreed or (runtime.world_size == 1 and stop.raised):
            progress.wall_before += time.time() - started
            if ckpt_dir:
                save_state()
                log(f"signal: checkpoint saved at step {progress.step} to {ckpt_dir}")
            raise Interrupted(f"stopped by a signal at step {progress.step} of {steps}"
                              + ("; checkpoint saved" if ckpt_dir else "; no output folder, nothing saved"))
        lr = lr_at(progress.step, steps, config.learning_rate, config.warmup_steps, config.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [prep.train[i] for i in stream.indices(progress.step)]
        global_targets = sum(len(e.target_ids) for e in batch)
        chunks = micro_batches(batch[runtime.rank::runtime.world_size], config.micro_batch_size)
        nll_total = torch.zeros((), dtype=torch.float64, device=runtime.device)
        for k, chunk in enumerate(chunks):
            input_ids, target_mask, labels = data.collate(chunk, pad)
            last = k == len(chunks) - 1
            with contextlib.nullcontext() if last else runtime.no_sync(model):
                with runtime.autocast():
                    logits = model(input_ids.to(runtime.device), target_mask.to(runtime.device))
                nll = F.cross_entropy(logits.float(), labels.to(runtime.device), reduction="sum")
                # Per-token mean over the GLOBAL batch, so that the micro-batches' gradients add
                # up to the whole batch's; DDP averages gradients over ranks, hence × world.
                runtime.backward(nll * runtime.world_size / global_targets)
            nll_total += nll.detach().double()
        # The logged value is the whole global batch's (summed over ranks), so every rank sees
        # the same number and a NaN stops all ranks together; the stop flag rides along.
        flag = torch.tensor(float(stop.raised), dtype=torch.float64, device=runtime.device)
        summed = runtime.sum_across(torch.stack([nll_total, flag]))
        loss_value = float(summed[0]) / global_targets
        stop_agreed = bool(summed[1] > 0)
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"training loss is {loss_value} at step {progress.step} "
                                f"(learning rate {lr:.3g}); lower learning_rate or use fp32")
        runtime.clip_and_step(model, optimizer, config.grad_clip)
        optimizer.zero_grad(set_to_none=True)
        batch_tokens = sum(e.length for e in batch)
        progress.tokens_seen += batch_tokens
        progress.step += 1
        window_tokens += batch_tokens
        metrics.set("ftscale_trainer_step", progress.step)
        metrics.add("ftscale_trainer_tokens_seen_total", batch_tokens)
        if progress.step % config.log_interval == 0 or progress.step == steps:
            now = time.time()
            rate = window_tokens / max(1e-9, now - window_start)
            window_tokens, window_start = 0, now
            progress.curves["train"].append([progress.step, loss_value])
            progress.curves["lr"].append([progress.step, lr])
            metrics.set("ftscale_trainer_train_loss", loss_value)
            metrics.set("ftscale_trainer_learning_rate", lr)
            metrics.set("ftscale_trainer_tokens_per_second", rate)
            if runtime.device.type == "cuda":
                metrics.set("ftscale_trainer_gpu_memory_bytes", torch.cuda.max_memory_allocated(runtime.device))
        if progress.step % config.eval_interval == 0 or progress.step == steps:
            dev_loss = evaluate_dev()
            log(f"step {progress.step}/{steps} train {loss_value:.4f} dev {dev_loss:.4f} "
                f"best {progress.best_dev_loss:.4f}@{progress.best_step} lr {lr:.2e}")
            if config.early_stopping_patience and progress.evals_since_best >= config.early_stopping_patience:
                log(f"early stop: no better dev loss in {progress.evals_since_best} evaluations")
                break
        if ckpt_dir and config.checkpoint_interval and progress.step % config.checkpoint_interval == 0:
            save_state()
    # Checkpoint selection: the weights with the best dev loss (paper §3.6).
    if best_state is not None:
        runtime.load_trainable_state(model, best_state)
    return progress, steps


# ---- phase 4: evaluate ---------------------------------------------------------------------------
def _evaluate(prep: Prepared, runtime, log) -> dict:
    """The selected checkpoint's test metrics, as RunResult fields."""
    model, codec, config = prep.loaded.model, prep.loaded.codec, prep.config
    out: dict = {"generation": {}, "zero_shot": {}}
    out["test_loss"] = test_loss = evaluate.target_nll(model, prep.test, codec.pad_id, runtime)
    if not math.isfinite(test_loss):
        raise NonFiniteLoss(f"test loss is {test_loss}")
    out["test_ppl"] = math.exp(min(test_loss, 700.0))
    if config.generation:
        n = config.generation_examples
        hyps = evaluate.greedy_decode(model, prep.test[:n], codec, runtime, config.max_new_tokens)
        refs = [e.target for e in prep.test_examples[:n]]
        out["generation"] = evaluate.generation_scores(hyps, refs, config.generation,
                                                       config.bleu_tokenizer)
    for name, (encoded, examples) in prep.zero_shot.items():
        scores = {"loss": evaluate.target_nll(model, encoded, codec.pad_id, runtime)}
        scores["ppl"] = math.exp(min(scores["loss"], 700.0))
        if config.generation:
            n = config.generation_examples
            hyps = evaluate.greedy_decode(model, encoded[:n], codec, runtime, config.max_new_tokens)
            scores.update(evaluate.generation_scores(hyps, [e.target for e in examples[:n]],
                                                     config.generation, config.bleu_tokenizer))
        out["zero_shot"][name] = {k: round(v, 6) for k, v in scores.items()}
    log(f"test loss {test_loss:.4f} (ppl {out['test_ppl']:.2f}) {out['generation'] or ''}"
        f" {out['zero_shot'] or ''}")
    return out


# ---- the run -------------------------------------------------------------------------------------
def run(config: TrainConfig, output_dir: str | None, metrics_port: int | None, log) -> results.RunResult:
    """Run one finetuning condition and return its Succeeded result.

    Raises ConfigError (bad config or missing model/data: exit 2), NonFiniteLoss, Interrupted,
    or any runtime error; __main__ turns each into a Failed result and an exit code.
    """
    from ftscale_trainer.metrics import TrainerMetrics
    from ftscale_trainer.runtime import make_runtime

    wall_start = time.time()
    asked_to_save = config.save
    config, model_path = resolve_identity(config, log)
    config.save_dir = save_folder(config, output_dir, asked_to_save is not None, log)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    runtime = make_runtime(config.precision)
    runtime = shard_if_needed(config, runtime, model_path, log)
    config.micro_batch_size, checkpointing = memory_plan(config, runtime, model_path, log)
    config.gradient_checkpointing = "true" if checkpointing else "false"
    # phase 1+2: model, method, data subset, tokens
    prep = prepare(config, model_path, runtime.precision, checkpointing)
    config = prep.config
    labels = {"study": config.study, "run": config.run_id, "model": config.model,
              "method": config.method, "data_size": config.data_size}
    metrics = TrainerMetrics(labels, metrics_port if runtime.is_main else None)
    stop = StopFlag()
    stop.install()
    try:
        progress, steps = _train(prep, runtime, metrics, stop, output_dir, log, wall_start)  # 3
        scores = _evaluate(prep, runtime, log)  # phase 4
    finally:
        stop.uninstall()
        metrics.close()
    # phase 5: report. Earlier, preempted attempts count too: the cost of a run is all the
    # time it took.
    wall = round(progress.wall_before + (time.time() - wall_start), 3)
    result = replace(
        base_result(config), **scores, best_dev_loss=progress.best_dev_loss,
        best_step=progress.best_step, trainable_params=prep.loaded.trainable_params,
        total_params=prep.loaded.total_params, tokens_seen=progress.tokens_seen,
        steps=progress.step, curves=progress.curves, device=runtime.describe(),
        wall_seconds=wall, gpu_seconds=round(wall * runtime.gpu_count(), 3))
    if config.save != "none" and runtime.is_main:
        from ftscale_trainer import saving

        saving.save(runtime.unwrap(prep.loaded.model), prep.loaded.codec, config,
                    config.save_dir, model_path)
        log(f"saved the selected weights ({config.save}) to {config.save_dir}")
    # CPU seconds since the process started (imports included): on a shared machine the honest
    # measure of what a run costs, where wall time also counts other processes' load.
    log(f"done: {result.steps} steps, {result.tokens_seen} tokens, {result.wall_seconds:.1f} s wall "
        f"in run(), {time.process_time():.1f} s CPU in this process")
    return result


def save_folder(config: TrainConfig, output_dir: str | None, asked: bool, log) -> str | None:
    """Where `config.save` goes: save_dir, else <output_dir>/adapter or /model; None for
    save: none. Without either folder a default save is dropped (logged, and the config says
    save: none) but an explicit one is a ConfigError."""
    if config.save == "none":
        return None
    if config.save_dir:
        return config.save_dir
    if output_dir:
        return os.path.join(output_dir, "adapter" if config.save == "adapter" else "model")
    if asked:
        raise ConfigError(f"save: {config.save} needs a folder: give --output or save_dir")
    log("no output folder: the selected weights are not saved")
    config.save = "none"
    return None


def _model_dims(model_path: str):
    """memory.ModelDims from the model's config.json; None when it cannot be read."""
    from ftscale_trainer import memory, tiny_llama

    try:
        return memory.ModelDims.from_hf_config(tiny_llama.read_hf_config(model_path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shard_if_needed(config: TrainConfig, runtime, model_path: str, log):
    """The runtime, wrapped for FSDP when `config.sharding` (and, for auto, the memory estimate
    of one unsharded FMT process at one example with activation checkpointing — the least it can
    need) says so; config.sharding becomes what was chosen ("none" or "fsdp"), so the saved
    config says how the run ran. Raises ConfigError for combinations that cannot run."""
    from ftscale_trainer.runtime import ShardedRuntime
    from ftscale_trainer.sharding import choose_sharding, fmt_fits_one_device

    fits = None
    if config.sharding == "auto" and config.method == "fmt" and runtime.world_size > 1 \
            and runtime.device.type == "cuda":
        dims = _model_dims(model_path)
        if dims is not None:
            device_bytes = torch.cuda.get_device_properties(runtime.device).total_memory
            fits = fmt_fits_one_device(dims, runtime.precision, _tokens_per_example(config),
                                       device_bytes)
    kind, why = choose_sharding(config.sharding, config.method, runtime.world_size,
                                runtime.device.type, fits)
    if kind == "fsdp" and config.save not in (None, "none"):
        raise ConfigError(f"save: {config.save} is not written under sharding: fsdp yet (the "
                          f"weights are split across processes); use save: none")
    if config.sharding != "none" or kind == "fsdp":
        log(f"sharding: {kind} ({why})")
    config.sharding = kind
    return ShardedRuntime(runtime) if kind == "fsdp" else runtime


def _tokens_per_example(config: TrainConfig) -> int:
    return (config.max_source_tokens + config.max_target_tokens
            + (config.pet_size if config.method == "prompt" else 0))


def memory_plan(config: TrainConfig, runtime, model_path: str, log) -> tuple[int, bool]:
    """(micro-batch, gradient checkpointing) for this process. On a GPU, unset values come from
    the memory estimate of ftscale_trainer.memory; elsewhere the micro-batch defaults to the
    process's whole share of the batch and checkpointing is on only when asked for."""
    from ftscale_trainer import memory, tiny_llama
    from ftscale_trainer.sharding import sharded_estimate

    local = math.ceil(config.batch_size / runtime.world_size)
    explicit = config.micro_batch_size and min(config.micro_batch_size, local)
    if runtime.device.type != "cuda":
        return explicit or local, config.gradient_checkpointing == "true"
    try:
        dims = memory.ModelDims.from_hf_config(tiny_llama.read_hf_config(model_path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"memory plan: no estimate ({exc}); micro-batch = the whole share of the batch")
        return explicit or local, config.gradient_checkpointing == "true"
    est = memory.estimate(dims, config.method, runtime.precision, processes=runtime.world_size)
    if runtime.sharded:
        est = sharded_estimate(est, runtime.world_size, dims.layers)
    budget = int(torch.cuda.get_device_properties(runtime.device).total_memory
                 * memory.BUDGET_FRACTION)
    tokens = _tokens_per_example(config)
    micro, checkpointing = memory.plan(est, local, tokens, budget, explicit or None,
                                       config.gradient_checkpointing)
    log(f"memory plan: micro-batch {micro} of {local} per process, estimate "
        f"{est.describe(micro * tokens, checkpointing)} (budget {budget / 1024 ** 3:.1f} GiB)")
    return micro, checkpointing
