"""A trainer of your own for ftscale, on the plain Hugging Face `Trainer` + `peft`.

It keeps the run contract (docs/run-contract.md): ftscale starts it as
    python train_hf.py --config run.json [--output DIR] [--metrics-port N]
Phases: 0 config, 1 data, 2 model + method, 3 finetune, 4 test loss, 5 result + exit code.
It needs torch, transformers and peft but not ftscale: the result is plain JSON with the fields
of ftscale.results.RunResult, so it runs in any image (tests/e2e/test_custom_trainer.py checks
that ftscale parses what it writes).
"""
import argparse, json, math, os, random, signal, sys, tempfile, time

# ---- the contract (docs/run-contract.md), copied so that this file needs no ftscale ----------
SCHEMA = "ftscale.io/run-result/v1"
EXIT_CODES = {None: 0, "RuntimeError": 1, "InvalidConfig": 2, "NonFiniteLoss": 3,
              "GPUOutOfMemory": 4, "Interrupted": 143}
IDENTITY = ("study", "run_id", "model", "method", "pet_size", "data_size", "seed")
# Keys the spec leaves out are absent from the config: these defaults apply (AdamW, cosine).
DEFAULTS = dict(batch_size=16, max_steps=200, warmup_steps=10, eval_interval=50, grad_clip=1.0,
                weight_decay=0.0, min_lr_ratio=0.1, lora_dropout=0.0, max_source_tokens=48,
                max_target_tokens=48, dev_examples=200, test_examples=500, log_interval=10,
                template="translate", source_field="source", target_field="target")
LEARNING_RATES = {"fmt": 2e-5, "lora": 3e-4, "prompt": 3e-2}  # for ~1B-parameter models
# Config keys this trainer does not act on (it logs them): no generation metrics, zero-shot
# sets, saved weights, micro-batches or early stopping here.
IGNORED = ("generation", "generation_examples", "max_new_tokens", "bleu_tokenizer", "zero_shot",
           "save", "save_dir", "backend", "precision", "micro_batch_size", "data_format",
           "gradient_checkpointing", "early_stopping_patience", "checkpoint_interval")


class ConfigError(ValueError): """The config cannot run as written (exit 2: never retried)."""
class NonFiniteLoss(RuntimeError): """The loss became NaN/inf (exit 3: never retried)."""
class Interrupted(RuntimeError): """SIGTERM/SIGINT (exit 143: the same command resumes)."""


STOP = []  # appended to by SIGTERM: Kubernetes preempts a pod by SIGTERM, SIGKILL 30 s later


def log(message):
    print(f"[train_hf {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- phase 0: the config ---------------------------------------------------------------------
def from_world(what, lookup):
    """Built-in tasks and `toy:` models live in ftscale's offline world (its trainer package)."""
    try:
        from ftscale_trainer import world
        return lookup(world)
    except (ImportError, LookupError) as exc:
        raise ConfigError(f"{what}: {exc}")


def check_config(raw):
    """The config with defaults filled in, or ConfigError naming what is wrong."""
    if not isinstance(raw, dict) or any(raw.get(k) is None for k in IDENTITY if k != "pet_size"):
        raise ConfigError(f"the config must be a JSON object with {', '.join(IDENTITY)}")
    if raw["method"] not in LEARNING_RATES or (raw["method"] == "fmt") != (raw.get("pet_size") is None):
        raise ConfigError("method must be fmt, lora or prompt; pet_size set for lora and prompt only")
    if not isinstance(raw["data_size"], int) or raw["data_size"] < 1:
        raise ConfigError(f"data_size must be a positive integer, got {raw['data_size']!r}")
    cfg = {**DEFAULTS, "learning_rate": LEARNING_RATES[raw["method"]],
           **{k: v for k, v in raw.items() if v is not None}}
    if raw.get("eval_interval") is None and raw.get("evals_per_epoch"):  # spacing per pass over D_f
        cfg["eval_interval"] = max(1, round(raw["data_size"] / (raw["evals_per_epoch"] * cfg["batch_size"])))
    if cfg.get("task"):  # a built-in task: its splits, template and languages
        files, info = from_world(f"task {cfg['task']}", lambda w: (w.task_files(cfg["task"]),
                                                                    w.TASKS[cfg["task"]]))
        cfg.update({f"{split}_path": path for split, path in files.items()},
                   **{k: v for k, v in info.items() if k != "folder" and k not in raw})
    cfg["model_dir"] = cfg.get("model_source") or cfg["model"]
    if cfg["model_dir"].startswith("toy:"):  # the toy family knows its X values
        toy = from_world(cfg["model_dir"], lambda w: w.resolve_model(cfg["model_dir"]))
        cfg.update(model_dir=toy.path, **{k: cfg.get(k) or getattr(toy, k)
                                          for k in ("model_params", "pretrain_tokens")})
    if not os.path.isdir(cfg["model_dir"]):
        raise ConfigError(f"model folder {cfg['model_dir']} does not exist")
    for split in ("train", "dev", "test"):
        if not os.path.isfile(cfg.get(f"{split}_path") or ""):
            raise ConfigError(f"{split}_path {cfg.get(f'{split}_path')} is not a JSONL file")
    if any(k in raw for k in IGNORED):
        log(f"note: this trainer ignores {', '.join(k for k in IGNORED if k in raw)}")
    return cfg


# ---- phase 1: data ---------------------------------------------------------------------------
def read_jsonl(path, cfg, first=0):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    try:
        return [(str(r[cfg["source_field"]]), str(r[cfg["target_field"]])) for r in rows[: first or None]]
    except KeyError as exc:
        raise ConfigError(f"{path}: an example lacks the field {exc}")


def render(cfg, source, target):
    """(prompt, target text) under the config's template (docs/trainer.md names them)."""
    src, tgt = cfg.get("source_lang") or "Source", cfg.get("target_lang") or "Target"
    template = cfg["template"]
    if template == "translate":
        return f"{src}: {source}\n{tgt}:", " " + target
    if template == "summarize":
        return f"Summarize the following document in {tgt}:\n{source}\nSummary:", " " + target
    if template == "plain":
        return source + "\n", target
    return template.format(source=source, source_lang=src, target_lang=tgt), target


def encode(tok, cfg, pairs):
    """input_ids = BOS + prompt + target + EOS; labels mask the prompt (-100), so the loss is
    the per-token NLL of the target alone: the quantity the scaling law is fitted to."""
    texts = [render(cfg, s, t) for s, t in pairs]
    prompts = tok([p for p, _ in texts], add_special_tokens=False)["input_ids"]
    targets = tok([t for _, t in texts], add_special_tokens=False)["input_ids"]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    out = []
    for p, t in zip(prompts, targets):
        p = bos + p[max(0, len(p) - cfg["max_source_tokens"] + len(bos)):]  # keep the cue at the end
        t = t[: cfg["max_target_tokens"] - 1] + [tok.eos_token_id]
        out.append({"input_ids": p + t, "labels": [-100] * len(p) + t, "attention_mask": [1] * len(p + t)})
    return out


def collate(pad_id):
    import torch

    def batch(examples):
        width = max(len(e["input_ids"]) for e in examples)
        def pad(key, value):
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples])
        return {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", -100),
                "attention_mask": pad("attention_mask", 0)}
    return batch


# ---- phases 1-4 ------------------------------------------------------------------------------
def train(cfg, output_dir):
    import torch
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback,
                              TrainingArguments, set_seed)
    from transformers.trainer_utils import get_last_checkpoint

    started, method, size = time.time(), cfg["method"], cfg.get("pet_size")
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    set_seed(cfg["seed"])  # adapter init, dropout, data order
    tok = AutoTokenizer.from_pretrained(cfg["model_dir"])
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # 1. data. D_f = the first data_size examples of the train split shuffled by the seed: the
    # built-in trainer's rule, so both see the same examples and a larger D_f nests a smaller.
    pairs = read_jsonl(cfg["train_path"], cfg)
    if cfg["data_size"] > len(pairs):
        raise ConfigError(f"data_size {cfg['data_size']} exceeds the {len(pairs)} train examples")
    order = list(range(len(pairs)))
    random.Random(f"ftscale-subset-{cfg['seed']}").shuffle(order)
    train_set = encode(tok, cfg, [pairs[i] for i in order[: cfg["data_size"]]])
    dev_set = encode(tok, cfg, read_jsonl(cfg["dev_path"], cfg, cfg["dev_examples"]))
    test_set = encode(tok, cfg, read_jsonl(cfg["test_path"], cfg, cfg["test_examples"]))

    # 2. the model and the method: fmt trains every weight; LoRA adds rank-r adapters to every
    # linear layer; prompt tuning prepends |P| trainable vectors (peft masks their labels).
    model = AutoModelForCausalLM.from_pretrained(cfg["model_dir"], dtype=torch.float32)
    embeddings = {id(p) for m in (model.get_input_embeddings(), model.get_output_embeddings())
                  if m is not None for p in m.parameters()}
    model_params = cfg.get("model_params") or sum(  # X_m: non-embedding parameters, as the paper
        p.numel() for p in model.parameters() if id(p) not in embeddings)
    if method == "lora":
        targets = cfg.get("lora_targets") or ["all-linear"]
        targets = {("all-linear",): "all-linear", ("peft-default",): None}.get(tuple(targets), targets)
        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=size, lora_alpha=cfg.get("lora_alpha") or 2 * size,
            lora_dropout=cfg["lora_dropout"], target_modules=targets))
    elif method == "prompt":
        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=size))

    # 3. finetune; evaluate the dev loss every eval_interval steps and end on the best
    # checkpoint. Checkpoints go to DIR/checkpoint/, which survives a retry: resume from it.
    steps = cfg["max_steps"]
    if cfg.get("max_epochs"):
        steps = min(steps, math.ceil(cfg["max_epochs"] * cfg["data_size"] / cfg["batch_size"]))
    every, cuda = min(cfg["eval_interval"], steps), torch.cuda.is_available()
    ckpt_dir = os.path.join(output_dir or tempfile.mkdtemp(), "checkpoint")

    class Guard(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if STOP:  # SIGTERM: save a checkpoint at this step, then stop
                control.should_save = control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not math.isfinite(logs.get("loss", 0.0)):  # diverged: a retry diverges again
                raise NonFiniteLoss(f"train loss {logs['loss']} at step {state.global_step}")

    args = TrainingArguments(
        output_dir=ckpt_dir, max_steps=steps, per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["batch_size"], learning_rate=cfg["learning_rate"],
        warmup_steps=cfg["warmup_steps"], weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["grad_clip"], lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg["min_lr_ratio"]}, eval_strategy="steps",
        eval_steps=every, save_strategy="steps", save_steps=every, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        label_names=["labels"], logging_steps=cfg["log_interval"], logging_nan_inf_filter=False,
        seed=cfg["seed"],
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, report_to=[],
        include_num_input_tokens_seen="non_padding", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=dev_set,
                      data_collator=collate(pad_id), callbacks=[Guard()])
    resume = get_last_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None
    if resume:
        log(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    if STOP:
        raise Interrupted(f"stopped by a signal at step {state.global_step}; checkpoint in {ckpt_dir}")

    # 4. the test loss of the best-dev weights: summed NLL of every target token over their
    # number (not a mean of batch means).
    model, batch, total, count = trainer.model.eval(), collate(pad_id), 0.0, 0
    with torch.no_grad():
        for i in range(0, len(test_set), cfg["batch_size"]):
            inputs = {k: v.to(model.device) for k, v in batch(test_set[i: i + cfg["batch_size"]]).items()}
            n = int((inputs["labels"][:, 1:] != -100).sum())  # the model shifts labels by one
            total, count = total + model(**inputs).loss.item() * n, count + n
    test_loss, best_dev = total / count, state.best_metric
    if not (math.isfinite(test_loss) and best_dev is not None and math.isfinite(best_dev)):
        raise NonFiniteLoss(f"test loss {test_loss}, best dev loss {best_dev}")
    curves = {name: [[h["step"], h[key]] for h in state.log_history if math.isfinite(h.get(key, math.nan))]
              for name, key in (("train", "loss"), ("dev", "eval_loss"), ("lr", "learning_rate"))}
    return dict(model_params=model_params, pretrain_tokens=cfg.get("pretrain_tokens"),
                best_dev_loss=best_dev, test_loss=test_loss, test_ppl=math.exp(min(test_loss, 700.0)),
                steps=state.global_step, best_step=int(state.best_model_checkpoint.rsplit("-", 1)[1]),
                tokens_seen=int(state.num_input_tokens_seen), curves=curves,
                trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                total_params=sum(p.numel() for p in model.parameters()),
                wall_seconds=round(time.time() - started, 3),
                device=f"cuda:{torch.cuda.get_device_name()} x{torch.cuda.device_count()}" if cuda else "cpu")


# ---- phase 5: the result document and the exit code -------------------------------------------
def result(raw, reason=None, message=None, **metrics):
    """A run result (RunResult's fields); the identity is copied from the config unchanged:
    ftscale matches a result to its run by it."""
    raw = raw if isinstance(raw, dict) else {}
    doc = {k: raw.get(k) for k in IDENTITY + ("model_params", "pretrain_tokens")}
    doc.update(outcome="Failed" if reason else "Succeeded", reason=reason, schema=SCHEMA,
               message=message and message[:1000],  # keeps the compact form < 3000 bytes
               config=raw, **metrics)
    return doc


def write_result(doc, output_dir):
    """Compact form (no curves, no config) to the termination-message path — on a cluster the
    operator reads the result from there — and the full form to DIR/result.json."""
    compact = json.dumps({k: v for k, v in doc.items() if k not in ("curves", "config")},
                         sort_keys=True, separators=(",", ":"), allow_nan=False)
    path = os.environ.get("TERMINATION_MESSAGE_PATH") or "/dev/termination-log"
    try:
        if os.environ.get("TERMINATION_MESSAGE_PATH") or os.path.exists(path):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(compact)
    except OSError as exc:  # cannot report there: must not turn a good run into a failed one
        log(f"could not write {path}: {exc}")
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "result.json.tmp"), "w", encoding="utf-8") as handle:
            json.dump(doc, handle, sort_keys=True, allow_nan=False)
        os.replace(handle.name, os.path.join(output_dir, "result.json"))  # never half a file
    print(compact, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output")
    parser.add_argument("--metrics-port", type=int)  # optional live metrics: not served here
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.append(True))
    raw, reason, message, metrics = None, None, None, {}
    try:
        with open(args.config, encoding="utf-8") as handle:
            raw = json.load(handle)
        metrics = train(check_config(raw), args.output)
    except (ConfigError, NonFiniteLoss, Interrupted) as exc:
        reason, message = {ConfigError: "InvalidConfig"}.get(type(exc), type(exc).__name__), str(exc)
    except Exception as exc:  # noqa: BLE001 - every failure still reports a result
        reason = ("InvalidConfig" if raw is None else  # the config file is unreadable
                  "GPUOutOfMemory" if type(exc).__name__ == "OutOfMemoryError" else "RuntimeError")
        message = f"{type(exc).__name__}: {exc}"
    if reason:
        log(f"failed ({reason}): {message}")
    write_result(result(raw, reason, message, **metrics), args.output)
    return EXIT_CODES[reason]


if __name__ == "__main__":
    sys.exit(main())
