"""`ftscale toy build`: the offline tiny world — data, tokenizer, and a pretrained model family.

Phases (each idempotent: a finished phase leaves a marker and is skipped next time):

1. data       Debian package-description translations (ddtp.py) → JSONL splits for
              toy-en-de, toy-en-fr, toy-fr-de (zero-shot into German) and toy-sum; a generated
              language pair (synthetic.py) only when apt cannot provide the real text.
2. corpus     monolingual en/de/fr text of *training-split* descriptions only (dev/test
              descriptions never reach pretraining), shuffled by hash.
3. tokenizer  byte-level BPE (vocabulary 2,048) trained on that corpus, saved in HF format.
4. models     the family (FAMILY below), each pretrained from scratch with checkpoints at
              1/8, 1/4, 1/2 and all of its token budget.
5. sweep      each model's finetuning learning rate per method, chosen by its dev loss in a
              small grid (SWEEP below: the paper grid-searched its rates on its 1B model);
              family.json lists the models with these rates (world.family()).

Layout under world.world_dir(): manifest.json, family.json, data/<task>/{train,dev,test}.jsonl,
tokenizer/, corpus/{train,dev}.npy, models/<name>/tokens-<n>/ (config.json, model.safetensors,
tokenizer.json ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time

from ftscale_trainer import world

VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3: pad, bos, eos, unk

# The family: Llama-style, tied embeddings, SwiGLU width ≈ 8/3·d. Non-embedding parameters
# span 24K → 443K (18.7×). Learning rates shrink with width as in the design note's
# measurement; every model sees the same token budget so that size is the only factor.
FAMILY = (
    # name, hidden, layers, heads, peak learning rate
    ("tiny-1", 32, 2, 4, 4e-3),
    ("tiny-2", 48, 2, 4, 3e-3),
    ("tiny-3", 64, 3, 4, 2.5e-3),
)
PRETRAIN_TOKENS = 1_310_720  # 640 steps of 32 × 64 tokens

# The learning-rate sweep (phase 5). One rate per (model, method), chosen on the dev loss of
# toy-en-de finetuning with the trainer's tiny-model protocol (early stopping on dev loss, the
# best-dev checkpoint; ftscale_trainer.config._TINY): three rates a factor 3 apart per method.
# It runs at a small data size because that is where the rate matters most (measured: on 50
# examples the best FMT rate beats one 3× higher by 0.01–0.04 nats, on 800 by ≤ 0.02) and
# because it is cheap (≈ 100 CPU-seconds for the whole family). The grids stop at the low end
# on purpose: lower rates need more steps, and at 3e-4 (FMT) and 1e-3 (LoRA) a run on 400
# examples already takes 300–400 steps to reach its dev minimum; a pick at the low edge is
# logged, and docs/trainer.md says where it happens.
SWEEP_TASK = "toy-en-de"
SWEEP_DATA_SIZE = 50
SWEEP_DEV_EXAMPLES = 100
SWEEP_RATES = {
    "fmt": (3e-4, 1e-3, 3e-3),
    "lora": (1e-3, 3e-3, 1e-2),
    "prompt": (3e-2, 1e-1, 3e-1),
}


def _log(msg: str) -> None:
    print(f"toy: {msg}", file=sys.stderr, flush=True)


def _mark(root: str, phase: str, info: dict | None = None) -> None:
    with open(os.path.join(root, f".done-{phase}"), "w", encoding="utf-8") as handle:
        json.dump(info or {}, handle)


def _done(root: str, phase: str) -> bool:
    return os.path.exists(os.path.join(root, f".done-{phase}"))


def _write_jsonl(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _hash_order(rows: list[dict], key: str = "id") -> list[dict]:
    """A stable pseudo-random order (by hash), so "the first N" of a file is a fair sample."""
    return sorted(rows, key=lambda r: hashlib.sha256(r[key].encode()).hexdigest())


# ---- phase 1: data -------------------------------------------------------------------------
def build_data(root: str) -> dict:
    from ftscale_trainer import ddtp

    info: dict = {"source": "debian-ddtp", "suite": ddtp.SUITE}
    raw = os.path.join(root, "raw")
    try:
        files = ddtp.fetch_indexes(raw)
        descs = {lang: ddtp.parse_index(path) for lang, path in files.items()}
        info["sha256"] = {lang: ddtp.sha256_file(path) for lang, path in files.items()}
        for lang, digest in ddtp.PINNED_SHA256.items():
            if info["sha256"].get(lang) != digest:
                _log(f"warning: Translation-{lang} differs from the pinned digest; "
                     f"results may differ from world {world.WORLD_VERSION} elsewhere")
        tasks = {
            "en-de": ddtp.aligned_pairs(descs["en"], descs["de"]),
            "en-fr": ddtp.aligned_pairs(descs["en"], descs["fr"]),
            "fr-de": ddtp.aligned_pairs(descs["fr"], descs["de"]),
            "sum": sum((ddtp.summary_pairs(descs[lang], lang) for lang in ("en", "de", "fr")), []),
        }
        split_of = ddtp.split_of
        corpus_docs = _monolingual_docs(descs, split_of)
    except ddtp.DataUnavailable as exc:
        from ftscale_trainer import synthetic

        _log(f"real text unavailable ({exc}); falling back to a GENERATED language pair")
        info = {"source": "synthetic", "reason": str(exc)}
        tasks = synthetic.generate_pairs(30_000)

        def split_of(doc: str) -> str:  # same 3 % dev / 4 % test shares as the real data
            return ddtp.split_of(doc)
        corpus_docs = {"train": [], "dev": []}
        for rows in tasks.values():
            for r in rows:
                corpus_docs[("dev" if split_of(r["doc"]) != "train" else "train")] += [r["source"], r["target"]]
    counts = {}
    for task, rows in tasks.items():
        splits: dict[str, list] = {"train": [], "dev": [], "test": []}
        seen = set()
        for row in rows:
            if (row["source"], row["target"]) in seen:
                continue
            seen.add((row["source"], row["target"]))
            splits[split_of(row["doc"])].append(row)
        for split, split_rows in splits.items():
            _write_jsonl(os.path.join(root, "data", task, f"{split}.jsonl"), _hash_order(split_rows))
        counts[task] = {split: len(v) for split, v in splits.items()}
    info["pairs"] = counts
    with open(os.path.join(root, "corpus-text.json"), "w", encoding="utf-8") as handle:
        json.dump(corpus_docs, handle, ensure_ascii=False)
    shutil.rmtree(raw, ignore_errors=True)
    return info


def _monolingual_docs(descs: dict, split_of) -> dict[str, list[str]]:
    """Pretraining text: German and French descriptions, and the English ones that have a
    German or French translation (a balanced trilingual corpus), by split of description."""
    bilingual = set(descs["de"]) | set(descs["fr"])
    docs: dict[str, list[tuple[str, str]]] = {"train": [], "dev": []}
    for lang, by_md5 in descs.items():
        for md5, d in by_md5.items():
            if lang == "en" and md5 not in bilingual:
                continue
            text = "\n".join([d.short, *d.paragraphs])
            split = split_of(md5)
            docs["train" if split == "train" else "dev"].append(
                (hashlib.sha256(f"{lang}{md5}".encode()).hexdigest(), text))
    return {split: [t for _, t in sorted(rows)] for split, rows in docs.items()}


# ---- phases 2+3: tokenizer and packed corpus -------------------------------------------------
def build_tokenizer(root: str) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with open(os.path.join(root, "corpus-text.json"), encoding="utf-8") as handle:
        docs = json.load(handle)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(docs["train"][:40_000], trainer=trainer)
    folder = os.path.join(root, "tokenizer")
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    hf = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
          "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 512,
          "add_bos_token": False, "clean_up_tokenization_spaces": False}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump(hf, handle, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as handle:
        json.dump({k: hf[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}, handle)
    return {"vocab_size": tok.get_vocab_size()}


def build_corpus(root: str) -> dict:
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(root, "tokenizer", "tokenizer.json"))
    with open(os.path.join(root, "corpus-text.json"), encoding="utf-8") as handle:
        docs = json.load(handle)
    os.makedirs(os.path.join(root, "corpus"), exist_ok=True)
    info = {}
    eos = SPECIAL_TOKENS.index("</s>")
    for split, texts in docs.items():
        ids: list[int] = []
        for enc in tok.encode_batch(texts):
            ids += enc.ids
            ids.append(eos)
        arr = np.asarray(ids, dtype=np.uint16)
        np.save(os.path.join(root, "corpus", f"{split}.npy"), arr)
        info[f"{split}_tokens"] = int(arr.size)
    return info


# ---- phase 4: the model family ---------------------------------------------------------------
def family_plans():
    from ftscale_trainer.pretrain import PretrainPlan
    from ftscale_trainer.tiny_llama import LlamaShape

    plans = []
    for name, d, layers, heads, lr in FAMILY:
        shape = LlamaShape(vocab_size=VOCAB_SIZE, hidden_size=d,
                           intermediate_size=(d * 8 // 3 + 7) // 8 * 8, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=heads,
                           max_position_embeddings=512)
        plans.append(PretrainPlan(name=name, shape=shape, tokens=PRETRAIN_TOKENS, learning_rate=lr))
    return plans


_COUNTER = None  # shared step counter of a pretraining worker (set by _init_worker)


def _cores() -> int:
    """CPU cores this process may use (its affinity mask, e.g. under taskset or a CPU-pinned
    container), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _pretrain_one(root: str, index: int, threads: int) -> list[dict]:
    """Worker: pretrain family member `index` with `threads` torch threads (spawned process)."""
    import numpy as np
    import torch

    from ftscale_trainer.pretrain import pretrain

    torch.set_num_threads(threads)
    plan = family_plans()[index]
    train = np.load(os.path.join(root, "corpus", "train.npy"))
    dev = np.load(os.path.join(root, "corpus", "dev.npy"))
    out = os.path.join(root, "models", plan.name)
    shutil.rmtree(out, ignore_errors=True)

    def tick(n):
        with _COUNTER.get_lock():
            _COUNTER.value += n
    started, cpu_started = time.time(), time.process_time()
    saved = pretrain(plan, train, dev, out, os.path.join(root, "tokenizer"), tick)
    _log(f"{plan.name}: {plan.shape.non_embedding_params():,} non-embedding params, "
         f"{plan.tokens:,} tokens, dev loss {saved[-1]['dev_loss']:.3f} "
         f"({time.time() - started:.0f} s wall, {time.process_time() - cpu_started:.0f} s CPU, "
         f"{threads} thread(s))")
    with open(os.path.join(out, "checkpoints.json"), "w", encoding="utf-8") as handle:
        json.dump(saved, handle)
    return saved


def pick_rate(dev_loss_by_rate: dict[float, float]) -> float:
    """The swept learning rate with the lowest best-dev loss (the lower rate on a tie)."""
    return min(dev_loss_by_rate.items(), key=lambda item: (item[1], item[0]))[0]


def _sweep_path(root: str, name: str, method: str) -> str:
    return os.path.join(root, "models", name, f"sweep-{method}.json")


def _sweep_settings(method: str) -> dict:
    """What a recorded sweep must match to be reused (a changed grid or size redoes it)."""
    return {"task": SWEEP_TASK, "data_size": SWEEP_DATA_SIZE, "dev_examples": SWEEP_DEV_EXAMPLES,
            "rates": [f"{r:g}" for r in SWEEP_RATES[method]]}


def _current(entry: dict, method: str) -> bool:
    """Whether a recorded sweep entry was made with this code's settings."""
    return {k: entry.get(k) for k in _sweep_settings(method)} == _sweep_settings(method)


def _swept(root: str, name: str, method: str) -> bool:
    try:
        with open(_sweep_path(root, name, method), encoding="utf-8") as handle:
            return _current(json.load(handle), method)
    except (OSError, ValueError):
        return False


def _sweep_one(root: str, index: int, method: str, threads: int) -> dict:
    """Worker: finetune family member `index` (final checkpoint) with `method` at every rate of
    SWEEP_RATES[method] and record the best-dev losses and the chosen rate (spawned process).
    Only the dev split decides; the test loss of one example is computed because a run always
    ends with one, and is not recorded."""
    import torch

    from ftscale_trainer import train
    from ftscale_trainer.config import TrainConfig

    torch.set_num_threads(threads)
    plan = family_plans()[index]
    with open(os.path.join(root, "models", plan.name, "checkpoints.json"), encoding="utf-8") as handle:
        final = os.path.join(root, json.load(handle)[-1]["path"])
    spec = world.TASKS[SWEEP_TASK]
    folder = os.path.join(root, "data", spec["folder"])
    started, cpu_started = time.time(), time.process_time()
    dev: dict[float, float] = {}
    for rate in SWEEP_RATES[method]:
        config = TrainConfig.from_dict({
            "study": "toy-sweep", "model": plan.name, "model_source": final, "method": method,
            "model_params": plan.shape.non_embedding_params(), "data_size": SWEEP_DATA_SIZE,
            "learning_rate": rate, "train_path": os.path.join(folder, "train.jsonl"),
            "dev_path": os.path.join(folder, "dev.jsonl"),
            "test_path": os.path.join(folder, "test.jsonl"), "template": spec["template"],
            "source_lang": spec["source_lang"], "target_lang": spec["target_lang"],
            "dev_examples": SWEEP_DEV_EXAMPLES, "test_examples": 1, "threads": threads,
            "save": "none"})
        dev[rate] = train.run(config, None, None, lambda _m: None).best_dev_loss
    chosen = pick_rate(dev)
    edge = chosen in (min(dev), max(dev))
    _log(f"{plan.name} {method}: learning rate {chosen:g} (dev loss "
         + ", ".join(f"{r:g}: {v:.4f}" for r, v in dev.items())
         + f"){' — at the edge of the grid' if edge else ''} "
         f"({time.time() - started:.0f} s wall, {time.process_time() - cpu_started:.0f} s CPU)")
    entry = {"learning_rate": chosen, **_sweep_settings(method),
             "dev_loss": {f"{r:g}": round(v, 4) for r, v in dev.items()}}
    with open(_sweep_path(root, plan.name, method), "w", encoding="utf-8") as handle:
        json.dump(entry, handle)
    return entry


def build_models(root: str, progress, workers: int) -> dict:
    """Pretrain the missing family members, then sweep each one's finetuning learning rates,
    `workers` processes at a time; returns family.json's content. A model's sweeps start as
    soon as its pretraining ends, so both phases share the cores.

    Why processes: these models are too small for torch's intra-op threads to pay off, and two
    threads on a busy 2-core machine oversubscribe it badly (measured: 4× slower); one
    single-threaded process per core keeps both cores busy without contention.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from ftscale_trainer.tiny_llama import LlamaLM, count_params

    plans = family_plans()
    models_dir = os.path.join(root, "models")
    for stale in set(os.listdir(models_dir) if os.path.isdir(models_dir) else ()) - {
            p.name for p in plans}:  # a member an earlier family had (tiny-4)
        shutil.rmtree(os.path.join(models_dir, stale), ignore_errors=True)
    todo = [i for i, p in enumerate(plans)
            if not os.path.exists(os.path.join(root, "models", p.name, "checkpoints.json"))]
    sweeps = [(i, m) for i, p in enumerate(plans) for m in SWEEP_RATES
              if i in todo or not _swept(root, p.name, m)]
    progress.update(sum(p.steps for i, p in enumerate(plans) if i not in todo)
                    + len(plans) * len(SWEEP_RATES) - len(sweeps))
    if sweeps:
        ctx = mp.get_context("spawn")
        counter = ctx.Value("l", 0)
        threads = max(1, _cores() // workers)
        # Largest first, so the long job starts at once and the small ones fill the other core.
        order = sorted(todo, key=lambda i: -plans[i].shape.non_embedding_params())
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(counter,)) as pool:
            pretraining = {i: pool.submit(_pretrain_one, root, i, threads) for i in order}
            waiting = sorted(sweeps, key=lambda s: -plans[s[0]].shape.non_embedding_params())
            running = []
            progress.set_postfix_str(f"pretraining {len(todo)} models, {len(sweeps)} sweeps")
            shown = 0
            while waiting or not all(f.done() for f in [*pretraining.values(), *running]):
                time.sleep(0.5)
                for f in [*pretraining.values(), *running]:
                    if f.done():
                        f.result()  # re-raises a worker's error
                ready = [s for s in waiting
                         if s[0] not in pretraining or pretraining[s[0]].done()]
                for s in ready:
                    waiting.remove(s)
                    running.append(pool.submit(_sweep_one, root, s[0], s[1], threads))
                done_sweeps = sum(f.done() for f in running)
                progress.update(counter.value + done_sweeps - shown)
                shown = counter.value + done_sweeps
            for f in [*pretraining.values(), *running]:
                f.result()
    entries = []
    for plan in plans:
        with open(os.path.join(root, "models", plan.name, "checkpoints.json"), encoding="utf-8") as handle:
            saved = json.load(handle)
        finetune = {}
        for method in SWEEP_RATES:
            with open(_sweep_path(root, plan.name, method), encoding="utf-8") as handle:
                finetune[method] = json.load(handle)
        _, total = count_params(LlamaLM(plan.shape))
        entries.append({"name": plan.name, "non_embedding_params": plan.shape.non_embedding_params(),
                        "total_params": total, "hidden_size": plan.shape.hidden_size,
                        "layers": plan.shape.num_hidden_layers, "learning_rate": plan.learning_rate,
                        "checkpoints": saved, "finetune": finetune})
    return {"models": entries}


# ---- orchestration -------------------------------------------------------------------------
def build(root: str | None = None, force: bool = False, workers: int | None = None) -> str:
    """Build (or finish building) the tiny world under `root` (default world.world_dir()).

    `workers`: pretraining processes (default: one per CPU core, at most 4). Returns the root.
    Idempotent: finished phases are skipped; `force` rebuilds everything. Raises
    ddtp/pretrain errors with a message naming the phase's problem.
    """
    from tqdm import tqdm

    root = root or world.world_dir()
    if force and os.path.isdir(root):
        shutil.rmtree(root)
    if _complete(root):
        return root  # the cached world: no torch import, no work
    os.makedirs(root, exist_ok=True)
    workers = workers or max(1, min(4, _cores()))
    manifest_path = os.path.join(root, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    manifest["version"] = world.WORLD_VERSION
    steps = sum(p.steps for p in family_plans()) + len(FAMILY) * len(SWEEP_RATES)
    started = time.time()
    with tqdm(total=3 + steps, desc="toy world", unit="step", file=sys.stderr) as bar:
        for phase, fn in (("data", build_data), ("tokenizer", build_tokenizer), ("corpus", build_corpus)):
            if not _done(root, phase):
                bar.set_postfix_str(phase)
                manifest[phase] = fn(root)
                manifest.setdefault("seconds", {})[phase] = round(time.time() - started, 1)
                _mark(root, phase)
                with open(manifest_path, "w", encoding="utf-8") as handle:
                    json.dump(manifest, handle, indent=2)
            bar.update(1)
        fam = build_models(root, bar, workers)
    with open(os.path.join(root, "family.json"), "w", encoding="utf-8") as handle:
        json.dump({"version": world.WORLD_VERSION, **fam}, handle, indent=2)
    manifest.setdefault("seconds", {})["total_last_build"] = round(time.time() - started, 1)
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
    return root


def _complete(root: str) -> bool:
    """True when every phase is done and family.json lists exactly the FAMILY of this code,
    each model with its swept learning rates."""
    try:
        with open(os.path.join(root, "family.json"), encoding="utf-8") as handle:
            models = json.load(handle)["models"]
        names = [m["name"] for m in models]
        swept = all(set(m.get("finetune", {})) == set(SWEEP_RATES)
                    and all(_current(m["finetune"][k], k) for k in SWEEP_RATES) for m in models)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return names == [f[0] for f in FAMILY] and swept and all(
        _done(root, phase) for phase in ("data", "tokenizer", "corpus"))


def describe(root: str | None = None) -> str:
    """A human summary of the built world: tasks with split sizes, models with X values."""
    root = root or world.world_dir()
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    lines = [f"toy world {world.WORLD_VERSION} at {root}",
             f"data source: {manifest['data'].get('source')}"]
    for task, spec in world.TASKS.items():
        counts = manifest["data"]["pairs"].get(spec["folder"])
        if counts:
            lines.append(f"  task {task:10s} train {counts['train']:6d}  dev {counts['dev']:5d}  "
                         f"test {counts['test']:5d}")
    for m in world.family(root):
        tokens = ", ".join(f"{c.tokens}" for c in m.checkpoints)
        rates = "  ".join(f"{method} {rate:g}" for method, rate in m.learning_rates.items())
        lines.append(f"  model toy:{m.name:8s} non-embedding {m.non_embedding_params:8,d}  "
                     f"dev loss {m.final.dev_loss:.3f}  checkpoints @ {tokens}"
                     + (f"  learning rates: {rates}" if rates else ""))
    return "\n".join(lines)
